"""The *Truncation* section of the benchmark report.

Three tables, each from its own results file:

* TMNRE's defaults against one amortized round of the same budget, on the
  SBI-benchmark tasks (``accuracy.csv``, setting ``tta``: ``tmnre_truncated``
  against ``tmnre_amortized`` on the cells both have);
* which truncation rule shrinks the box without cutting off the posterior
  (``truncation_rule.csv``, from ``bench_truncation_rule.py``);
* the simulations saved on wide priors (``truncation_savings.csv``, from
  ``bench_truncation.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["truncation_section"]

# (rule, level) of the rule table's columns: 0.1's default, the new default, a looser one.
_RULES = [("ratio", 1e-6, "ε = 1e-6 (0.1)"), ("mass", 1e-5, "tail mass 1e-5 (default)"),
          ("mass", 1e-4, "tail mass 1e-4")]


def _pm(values):
    values = pd.Series(values, dtype=float).dropna()
    if not len(values):
        return "–"
    return f"{values.mean():.3f}" + (f" ± {values.std():.3f}" if len(values) > 1 else "")


def _against_one_round(acc):
    rows = acc[(acc["setting"] == "tta")
               & acc["method"].isin(["tmnre_truncated", "tmnre_amortized"])]
    if not (rows["method"] == "tmnre_truncated").any():
        return []
    key = ["task", "n_sims", "seed", "observation"]
    cols = ["c2st_1d", "c2st_2d", "coverage_n_below", "train_cpu_seconds"]
    wide = rows.pivot_table(index=key, columns="method", values=cols).dropna()
    lines = ["### Against one round of the same budget", "",
             "`TMNRE(task.simulator, task.prior, estimator=TMNREEstimator(marginals=\"1d+2d\"), "
             "n_sims=budget)` per observation, with every default (at most 5 rounds, "
             "`Truncator()`), against `tmnre_amortized` (one round of the same budget), on the "
             "(seed, observation) cells both have; setting `tta`, C2ST with 10,000 draws. "
             "Difference: truncated minus one round, paired by cell (negative: truncation is "
             "more accurate); *within 1 SD* when the mean difference is below one standard "
             "deviation of one round's cells. Below: (marginal, level) pairs under their "
             "Jeffreys interval, per cell. CPU: training seconds of one observation "
             "(truncation trains every round; one round's training is shared by all "
             "observations).", "",
             "| task | sims | cells | one round 1-d / 2-d | truncated 1-d / 2-d "
             "| difference 1-d / 2-d | within 1 SD | below: one round / truncated "
             "| CPU s: one round / truncated |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (task, n), g in wide.groupby(level=["task", "n_sims"], sort=False):
        one = {c: g[(c, "tmnre_amortized")] for c in cols}
        tr = {c: g[(c, "tmnre_truncated")] for c in cols}
        diff = {c: tr[c] - one[c] for c in ("c2st_1d", "c2st_2d")}
        ok = all(diff[c].mean() <= max(one[c].std(), 0.0) if len(g) > 1
                 else diff[c].mean() <= 0 for c in diff)
        lines.append(
            f"| {task} | {n:,} | {len(g)} | {_pm(one['c2st_1d'])} / {_pm(one['c2st_2d'])} "
            f"| {_pm(tr['c2st_1d'])} / {_pm(tr['c2st_2d'])} "
            f"| {diff['c2st_1d'].mean():+.3f} / {diff['c2st_2d'].mean():+.3f} "
            f"| {'yes' if ok else '**no**'} "
            f"| {one['coverage_n_below'].mean():.1f} / {tr['coverage_n_below'].mean():.1f} "
            f"| {one['train_cpu_seconds'].mean():.0f} / {tr['train_cpu_seconds'].mean():.0f} |")
    return lines + [""]


def _rule_table(rules):
    lines = ["### Which rule cuts the box", "",
             "`python benchmarks/bench_truncation_rule.py`: a first round's estimator "
             "(defaults, 1-d marginals) on 300 and 3,000 prior draws (a 10³ and a 10⁴ "
             "campaign's round 0), 3 seeds x 3 observations; for each rule, the prior mass of "
             "the box it finds and the true posterior mass it leaves outside (the fraction of "
             "reference posterior draws outside the box: mean / largest). cmb_spectrum: the "
             "CMB toy with a prior 20 standard deviations wide and a linear embedding.", "",
             "| task | sims | " + " | ".join(f"{label}: box / cut" for *_, label in _RULES) + " |",
             "|---|---|" + "---|" * len(_RULES)]
    for (n, task), g in rules.groupby(["n_sims", "task"], sort=True):
        cells = []
        for rule, level, _ in _RULES:
            r = g[(g["rule"] == rule) & np.isclose(g["level"], level)]
            if r.empty:
                cells.append("–")
            elif r["ref_outside"].isna().all():  # no reference posterior (lensing)
                cells.append(f"{r['box_mass'].mean():.2f} / no reference")
            else:
                cells.append(f"{r['box_mass'].mean():.2f} / {r['ref_outside'].mean():.1e} "
                             f"({r['ref_outside'].max():.1e})")
        lines.append(f"| {task} | {n:,} | " + " | ".join(cells) + " |")
    return lines + [""]


def _savings_table(savings):
    if savings.empty:
        return []
    multiples = [c for c in savings.columns if c.startswith("one_round_")]
    lines = ["### Simulations saved on wide priors", "",
             "`python benchmarks/bench_truncation.py`: TMNRE's defaults at a budget B against "
             "one round at B, 2B, 4B and 8B; accuracy 0.5 is perfect (wide_gaussian: the "
             "optimal classifier's accuracy against the exact 1-d marginals; cmb: 1-d C2ST "
             "against 2,000 exact draws), means over seeds. Saved: the budget one round needs "
             "to match TMNRE at B, over B.", "",
             "| problem | seeds | B | TMNRE at B | "
             + " | ".join(f"one round {c.removeprefix('one_round_')}" for c in multiples)
             + " | simulations saved |",
             "|---|---|---|---|" + "---|" * len(multiples) + "---|"]
    for _, r in savings.iterrows():
        saved = r["simulations_saved"]
        saved = saved if isinstance(saved, str) else f"{saved:.1f}x"
        lines.append(f"| {r['problem']} | {r['seeds']} | {r['budget']:,} "
                     f"| {r['truncated']:.3f}"
                     + (f" ± {r['truncated_sd']:.3f}" if r["seeds"] > 1 else "") + " | "
                     + " | ".join(f"{r[c]:.3f}" for c in multiples) + f" | {saved} |")
    return lines + [""]


def truncation_section(acc, results):
    """Lines of the *Truncation* section (empty when there is nothing to show).

    Parameters
    ----------
    acc : DataFrame or None
        The rows of ``accuracy.csv``.
    results : pathlib.Path
        The results directory (for ``truncation_rule.csv`` and ``truncation_savings.csv``).
    """
    from bench_truncation import savings

    body = _against_one_round(acc) if acc is not None else []
    rule_path, savings_path = results / "truncation_rule.csv", results / "truncation_savings.csv"
    if rule_path.exists():
        body += _rule_table(pd.read_csv(rule_path))
    if savings_path.exists():
        body += _savings_table(savings(pd.read_csv(savings_path)))
    if not body:
        return []
    return ["## Truncation", "",
            "Does truncation pay? TMNRE's defaults spend the whole budget (`n_sims` counts "
            "new simulations; when the box converges, a final round in it gets the rest) "
            "and cut the box with the tail-mass rule.", "", *body]
