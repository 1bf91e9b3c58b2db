"""Render the benchmark results as ``docs/benchmarks.md`` and a C2ST-vs-budget figure.

Inputs: ``accuracy.csv`` (written by ``benchmarks/run.py``) and, if present,
``speed.csv`` (``benchmarks/bench_speed.py``) in one results directory.
Published TMNRE (swyft) figures come from Miller et al. 2021 (marginalized SBI
benchmark, mean C2ST over every 1-d / 2-d marginal, 10 observations); the
targets are those of the project's benchmark issue.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform

import numpy as np
import pandas as pd
from _report_truncation import truncation_section
from bench_coverage_cost import section as coverage_cost_section
from bench_objects_scale import section as objects_scale_section
from bench_streaming import section as streaming_section

__all__ = ["PUBLISHED", "TARGETS", "render"]

#: Published TMNRE (swyft) mean marginal C2ST (1-d, 2-d) per task and budget.
PUBLISHED = {
    "two_moons": {1_000: (0.636, 0.861), 10_000: (0.547, 0.656), 100_000: (0.520, 0.550)},
    "slcp": {1_000: (0.730, 0.862), 10_000: (0.640, 0.762), 100_000: (0.590, 0.715)},
    "gaussian_mixture": {1_000: (0.678, 0.775), 10_000: (0.542, 0.679),
                         100_000: (0.517, 0.550)},
    "gaussian_linear_uniform": {1_000: (0.587, 0.636), 10_000: (0.531, 0.551),
                                100_000: (0.509, 0.525)},
}
#: Targets at 10^4 simulations (1-d, 2-d); at 10^3 the target is to beat PUBLISHED.
TARGETS = {"two_moons": (0.53, 0.60), "slcp": (0.58, 0.68), "gaussian_mixture": (0.53, 0.60)}
OURS = ("tmnre_amortized", "tmnre_truncated", "tmnre_balanced", "tmnre_ensemble",
        "tmnre_deepset", "tmnre_truncated_deepset")
#: Our methods held to the accuracy targets (the balanced one trades accuracy for calibration).
OURS_ACCURACY = ("tmnre_amortized", "tmnre_truncated", "tmnre_ensemble", "tmnre_deepset",
                 "tmnre_truncated_deepset")
#: What a non-default configuration of our estimator checks, beside its setting's heading.
PARAM_NOTES = {
    '{"patience": 20}': (": the default before 0.1.0, which lowers the learning rate sooner and "
                         "stops earlier (see `TMNREEstimator`'s `patience`): worse on two_moons "
                         "and gaussian_mixture, sharper but less calibrated on slcp"),
}

TASK_ORDER = ("two_moons", "slcp", "gaussian_mixture", "gaussian_linear_uniform",
              "gaussian_linear")
SETTING_ORDER = ("full", "tta", "quick", "tiny")
METHOD_ORDER = ("tmnre_amortized", "tmnre_ensemble", "tmnre_deepset", "tmnre_balanced",
                "tmnre_truncated", "tmnre_truncated_deepset", "sbi_nre_a", "sbi_nre_c",
                "sbi_bnre")


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib():
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _machine(frames):
    loads = pd.concat([f["load"] for f in frames if "load" in f]) if frames else pd.Series([])
    threads = sorted({int(t) for f in frames if "threads" in f for t in f["threads"].dropna()})
    lines = [
        f"- CPU: {_cpu_model()}; {os.cpu_count()} logical cores; "
        f"{_ram_gib():.1f} GiB RAM; {platform.system()} {platform.release()}",
        f"- Versions: Python {platform.python_version()}, torch {_version('torch')}, "
        f"sklearn_tmnre {_version('sklearn-tmnre')}, sbi {_version('sbi')}, "
        f"scikit-learn {_version('scikit-learn')}, numpy {_version('numpy')}",
    ]
    if threads:
        lines.append(f"- torch/BLAS threads per process: {', '.join(map(str, threads))}")
    if len(loads):
        lines.append(f"- 1-minute load average when the cells started: {loads.min():.1f} to "
                     f"{loads.max():.1f} (on {os.cpu_count()} cores; a load above the core "
                     "count means other jobs shared the machine and wall times are inflated)")
    return lines


def _fmt(value, digits=3):
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _mean_sd(values, digits=3):
    values = values.dropna()
    if not len(values):
        return "–"
    if len(values) == 1:
        return _fmt(values.iloc[0], digits)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _config_order(summary):
    """Configurations (setting, n_c2st, params), the most thorough first."""
    configs = summary[["setting", "n_c2st", "params"]].drop_duplicates()
    rank = {name: i for i, name in enumerate(SETTING_ORDER)}
    return sorted(configs.itertuples(index=False, name=None),
                  key=lambda c: (rank.get(c[0], len(rank)), -c[1], c[2] != "{}", c[2]))


def _summary(acc):
    """One row per configuration, task, budget and method: means over observations and seeds."""
    groups = acc.groupby(["setting", "n_c2st", "params", "task", "n_sims", "method"], sort=False)
    rows = []
    for (setting, n_c2st, params, task, budget, method), g in groups:
        rows.append({
            "setting": setting, "n_c2st": int(n_c2st), "params": params, "task": task,
            "n_sims": int(budget), "method": method,
            "c2st_1d": g["c2st_1d"].mean(), "c2st_2d": g["c2st_2d"].mean(),
            "c2st_1d_txt": _mean_sd(g["c2st_1d"]), "c2st_2d_txt": _mean_sd(g["c2st_2d"]),
            "coverage_mae": g["coverage_mae"].mean(),
            "coverage_max_shortfall": g["coverage_max_shortfall"].max(),
            "coverage_n_below": g["coverage_n_below"].max(),
            "n_sims_used": g["n_sims_used"].mean(), "seconds": g["seconds"].mean(),
            "train_seconds": g["train_seconds"].mean(),
            "posterior_seconds": g["posterior_seconds"].mean(), "peak_mb": g["peak_mb"].max(),
            "cells": len(g), "observations": g["observation"].nunique(),
            "seeds": g["seed"].nunique(),
        })
    out = pd.DataFrame(rows)
    out["order"] = out["method"].map({m: i for i, m in enumerate(METHOD_ORDER)}).fillna(99)
    out["task_order"] = out["task"].map({t: i for i, t in enumerate(TASK_ORDER)}).fillna(99)
    return out.sort_values(["task_order", "task", "n_sims", "order"])


def _task_table(summary, task):
    lines = [
        "| sims | method | C2ST 1-d | C2ST 2-d | coverage error (mean abs) | largest shortfall "
        "| sims used | seconds (train + posterior) | memory growth MiB | cells |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for budget, g in summary.groupby("n_sims", sort=True):
        for r in g.itertuples():
            lines.append(
                f"| {budget:,} | {r.method} | {r.c2st_1d_txt} | {r.c2st_2d_txt} | "
                f"{_fmt(r.coverage_mae)} | {_fmt(r.coverage_max_shortfall)} | "
                f"{_fmt(r.n_sims_used, 0)} | {_fmt(r.train_seconds, 1)} + "
                f"{_fmt(r.posterior_seconds, 1)} | {_fmt(r.peak_mb, 0)} | {r.cells} |")
        published = PUBLISHED.get(task, {}).get(int(budget))
        if published:
            lines.append(f"| {budget:,} | *swyft TMNRE (published)* | {published[0]:.3f} | "
                         f"{published[1]:.3f} | | | | | | 10 obs |")
    return lines


def _shortfalls(summary):
    """Plain statements of where our methods miss the targets."""
    lines = []
    ours = summary[summary["method"].isin(OURS)]
    for r in ours[ours["method"].isin(OURS_ACCURACY)].itertuples():
        pub = PUBLISHED.get(r.task, {}).get(r.n_sims)
        if r.n_sims == 10_000 and r.task in TARGETS:
            bar, what = TARGETS[r.task], "target"
        elif r.n_sims == 1_000 and pub:
            bar, what = pub, "published swyft TMNRE"
        else:
            continue
        got = (r.c2st_1d, r.c2st_2d)
        misses = [f"{k} {g:.3f} > {b:.3f}" for k, g, b in zip(("1-d", "2-d"), got, bar)
                  if np.isfinite(g) and g > b]
        verdict = "short: " + ", ".join(misses) if misses else "meets it"
        lines.append(f"- {r.task}, {r.n_sims:,} sims, {r.method} ({r.setting}, C2ST "
                     f"{r.n_c2st:,} draws{_params_note(r.params)}, cells: {r.cells}) vs "
                     f"{what} {bar[0]:.3f} / {bar[1]:.3f}: {verdict}")
    at_1e4 = ours[ours["n_sims"] == 10_000]
    for r in at_1e4.itertuples():
        if np.isfinite(r.coverage_n_below):
            ok = "none" if r.coverage_n_below == 0 else (
                f"{int(r.coverage_n_below)} of the (marginal, level) pairs")
            target = " (target: none)" if r.method == "tmnre_balanced" else ""
            lines.append(f"- {r.task}, 10,000 sims, {r.method}{_params_note(r.params)} "
                         f"calibration: coverage below its binomial 95 % interval at {ok}"
                         f"{target}; largest shortfall {_fmt(r.coverage_max_shortfall)}")
    return lines


def _headline(summary):
    """At a glance: per task and budget, our best method against the bar and sbi's best.

    Only the full setting with default hyperparameters counts. The bar is the target at
    10^4 simulations where the task has one, else the published swyft figure. "Best"
    is the lowest mean of the 1-d and 2-d C2ST.
    """
    full = summary[(summary["setting"] == "full") & (summary["params"] == "{}")]
    if full.empty:
        return []
    full = full[full["n_c2st"] == full["n_c2st"].max()]
    lines = ["| task | sims | bar (1-d / 2-d) | ours, best | sbi, best | ours vs bar |",
             "|---|---|---|---|---|---|"]

    def best(rows):
        if rows.empty:
            return None
        return rows.loc[(rows["c2st_1d"] + rows["c2st_2d"]).idxmin()]

    def cell(r):
        return "–" if r is None else (f"{r.c2st_1d:.3f} / {r.c2st_2d:.3f} "
                                     f"({r.method}, {r.cells} cells)")

    for (task, budget), g in full.groupby(["task", "n_sims"], sort=False):
        ours = best(g[g["method"].isin(OURS_ACCURACY)])
        sbi = best(g[g["method"].str.startswith("sbi_")])
        if task in TARGETS and budget == 10_000:
            bar, what = TARGETS[task], "target"
        elif budget in PUBLISHED.get(task, {}):
            bar, what = PUBLISHED[task][budget], "swyft"
        else:
            bar, what = None, ""
        verdict = "–"
        if bar is not None and ours is not None:
            misses = [f"{k} short by {g_ - b:.3f}" for k, g_, b in
                      zip(("1-d", "2-d"), (ours.c2st_1d, ours.c2st_2d), bar) if g_ > b]
            verdict = ", ".join(misses) if misses else "**meets**"
        bar_txt = "–" if bar is None else f"{bar[0]:.3f} / {bar[1]:.3f} ({what})"
        lines.append(f"| {task} | {budget:,} | {bar_txt} | {cell(ours)} | {cell(sbi)} "
                     f"| {verdict} |")
    return lines


def _params_note(params):
    """``, patience 20``-style note of a configuration's hyperparameters ("" for defaults)."""
    if params in ("{}", ""):
        return ""
    return ", " + ", ".join(f"{k} {v}" for k, v in json.loads(params).items())


def _legend_entries(axes):
    """Each label of a grid of axes once, with its first handle (one figure legend)."""
    handles, labels = [], []
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    return handles, labels


def _figure(summary, figure):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One configuration per task: the most thorough one available.
    chosen = []
    configs = _config_order(summary)
    for task, g in summary.groupby("task", sort=False):
        present = set(g[["setting", "n_c2st", "params"]].itertuples(index=False, name=None))
        config = next(c for c in configs if c in present)
        rows = g[(g["setting"] == config[0]) & (g["n_c2st"] == config[1])
                 & (g["params"] == config[2])]
        chosen.append((task, config[0], rows))
    fig, axes = plt.subplots(2, len(chosen), figsize=(3.6 * len(chosen), 6.2), squeeze=False,
                             sharex=True)
    colors = dict(zip(METHOD_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for j, (task, setting, g) in enumerate(chosen):
        for i, dim in enumerate(("1d", "2d")):
            ax = axes[i, j]
            for method, h in g.groupby("method", sort=False):
                h = h.sort_values("n_sims")
                ax.plot(h["n_sims"], h[f"c2st_{dim}"], "o-", color=colors.get(method),
                        label=method)
            pub = PUBLISHED.get(task)
            if pub:
                budgets = sorted(pub)
                ax.plot(budgets, [pub[b][i] for b in budgets], "k*--", label="swyft (published)")
            ax.axhline(0.5, color="0.7", lw=0.8)
            ax.set_xscale("log")
            ax.set_ylim(0.45, 1.02)
            ax.set_title(f"{task} ({setting})" if i == 0 else "", fontsize=9)
            ax.set_ylabel(f"mean {dim[0]}-d marginal C2ST" if j == 0 else "")
            if i == 1:
                ax.set_xlabel("simulations")
    handles, labels = _legend_entries(axes)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 2 * len(chosen)),
               fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)


def _per_fit(rows):
    """One row per fit (task, budget, method, seed, threads): an amortized fit's costs are
    repeated on every observation's row; a truncated method fits once per observation, so
    its costs are the mean over them (calibration: the worst)."""
    keys = ["task", "n_sims", "method", "seed", "threads"]
    return rows.groupby(keys, sort=False).agg(
        train_seconds=("train_seconds", "mean"), train_cpu_seconds=("train_cpu_seconds", "mean"),
        epochs=("epochs", "mean"), peak_mb=("peak_mb", "max"),
        coverage_n_below=("coverage_n_below", "max"),
        coverage_max_shortfall=("coverage_max_shortfall", "max")).reset_index()


def _time_to_accuracy(acc, figure):
    """The time-to-accuracy section: costs and accuracy of our defaults beside sbi's."""
    # Default hyperparameters only: rows with other params are checks of one lever.
    tta = acc[(acc["setting"] == "tta") & (acc["params"] == "{}")].copy()
    if tta.empty:
        return []
    if "train_cpu_seconds" not in tta:
        tta["train_cpu_seconds"] = np.nan
    fits = _per_fit(tta)
    lines = [
        "## Time to accuracy", "",
        "Setting `tta` (`python benchmarks/run.py --tta`): every method with its own default "
        "hyperparameters and no epoch cap, trained on the same simulations in one process "
        "per cell block, with the torch/BLAS threads of column *threads*. CPU and wall "
        "seconds are of training alone (means over seeds); epochs and peak memory growth "
        "per fit; C2ST means ± sd over observations and seeds; calibration: the most "
        "(marginal, level) pairs of the 1-d marginals below their Jeffreys 95 % interval in "
        "any fit, and the largest shortfall (sbi's networks are graded on two-parameter tasks "
        "only). *ours / sbi*: the ratio of mean training CPU seconds over the seeds both "
        "trained on in the same run (same simulations, one process, same code), or, where "
        "no seed was, over the seeds both trained on in different runs (marked; CPU "
        "seconds drift with the machine's load and with our code between runs). "
        "*0.1 defaults*: the committed rows of the `full` setting (version 0.1's defaults: "
        "128 x 3 heads, 4 negatives, plateau schedule with patience 60, at most 200 epochs) "
        "on the same simulations, for accuracy; their wall seconds come from earlier, more "
        "crowded runs (up to five processes on two cores), so compare times within a run. "
        "Rows with two threads were run alone on the idle machine, every method in one "
        "process; the figure shows the one-thread cells.",
        "",
        f"![C2ST against training seconds]({os.path.relpath(figure, figure.parent.parent)})",
        "",
        "| task | sims | threads | method | train CPU s | wall s | epochs | peak MiB "
        "| C2ST 1-d | C2ST 2-d | pairs below | largest shortfall | cells |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    task_rank = {t: i for i, t in enumerate(TASK_ORDER)}
    groups = sorted(tta.groupby(["task", "n_sims", "threads"]),
                    key=lambda kv: (task_rank.get(kv[0][0], 99), -kv[0][1], kv[0][2]))
    for (task, budget, threads), g in groups:
        f = fits[(fits["task"] == task) & (fits["n_sims"] == budget)
                 & (fits["threads"] == threads)]
        for method, h in sorted(g.groupby("method"), key=lambda kv: order.get(kv[0], 99)):
            fm = f[f["method"] == method]
            lines.append(
                f"| {task} | {budget:,} | {threads} | {method} | "
                f"{_fmt(fm['train_cpu_seconds'].mean(), 1)} | "
                f"{_fmt(fm['train_seconds'].mean(), 1)} | "
                f"{_fmt(fm['epochs'].mean(), 0)} | {_fmt(fm['peak_mb'].max(), 0)} | "
                f"{_mean_sd(h['c2st_1d'])} | {_mean_sd(h['c2st_2d'])} | "
                f"{_fmt(fm['coverage_n_below'].max(), 0)} | "
                f"{_fmt(fm['coverage_max_shortfall'].max())} | {len(h)} |")
        before = acc[(acc["setting"] == "full") & (acc["params"] == "{}")
                     & (acc["method"] == "tmnre_amortized") & (acc["task"] == task)
                     & (acc["n_sims"] == budget) & (acc["threads"] == threads)]
        if len(before):
            fb = _per_fit(before)
            lines.append(
                f"| {task} | {budget:,} | {threads} | *0.1 defaults (setting `full`, earlier "
                f"runs)* | | {_fmt(fb['train_seconds'].mean(), 1)} | "
                f"{_fmt(fb['epochs'].mean(), 0)} | {_fmt(fb['peak_mb'].max(), 0)} | "
                f"{_mean_sd(before['c2st_1d'])} | {_mean_sd(before['c2st_2d'])} | "
                f"{_fmt(fb['coverage_n_below'].max(), 0)} | "
                f"{_fmt(fb['coverage_max_shortfall'].max())} | {len(before)} |")
        lines += _before_rows(acc, task, budget, threads)
        ratios = []
        for m in ("sbi_nre_c", "sbi_nre_a"):
            ratio = _cpu_ratio(g, m)
            if ratio:
                ratios.append(ratio)
        if ratios:
            lines.append(f"| {task} | {budget:,} | {threads} | *ours / sbi (CPU s)* | "
                         f"{', '.join(ratios)} | | | | | | | | |")
    _tta_figure(tta[tta["threads"] == 1], figure)
    return lines + [""]


def _cpu_ratio(rows, method):
    """Our mean training CPU seconds over ``method``'s, from fits of the same simulations.

    Pairs made in the same run (same seed and code commit, one process) are used when
    there are any: CPU seconds drift with the machine's load and our code between runs.
    Otherwise the seeds both methods trained on, marked "across runs".
    """
    if "commit" not in rows:  # rows without provenance pair across runs only
        rows = rows.assign(commit=np.nan)
    fits = rows.groupby(["method", "seed"]).agg(
        cpu=("train_cpu_seconds", "first"), commit=("commit", "first")).reset_index()
    ours = fits[fits["method"] == "tmnre_amortized"].set_index("seed")
    theirs = fits[fits["method"] == method].set_index("seed")
    common = ours.index.intersection(theirs.index)
    if not len(common):
        return None
    same = [s for s in common if pd.notna(ours.loc[s, "commit"])
            and ours.loc[s, "commit"] == theirs.loc[s, "commit"]]
    seeds, how = (same, "same run") if same else (list(common), "across runs")
    if theirs.loc[seeds, "cpu"].mean() <= 0:
        return None
    value = ours.loc[seeds, "cpu"].mean() / theirs.loc[seeds, "cpu"].mean()
    return f"{value:.2f}× {method} ({len(seeds)} seed(s), {how})"


def _before_rows(acc, task, budget, threads):
    """Our methods' rows of the defaults before weight averaging (setting ``tta-0.2``)."""
    lines = []
    before = acc[(acc["setting"] == "tta-0.2") & (acc["task"] == task)
                 & (acc["n_sims"] == budget) & (acc["threads"] == threads)]
    for method, h in before.groupby("method"):
        fb = _per_fit(h)
        lines.append(
            f"| {task} | {budget:,} | {threads} | *{method}, before weight averaging "
            f"(setting `tta-0.2`)* | {_fmt(fb['train_cpu_seconds'].mean(), 1)} | "
            f"{_fmt(fb['train_seconds'].mean(), 1)} | {_fmt(fb['epochs'].mean(), 0)} | "
            f"{_fmt(fb['peak_mb'].max(), 0)} | {_mean_sd(h['c2st_1d'])} | "
            f"{_mean_sd(h['c2st_2d'])} | {_fmt(fb['coverage_n_below'].max(), 0)} | "
            f"{_fmt(fb['coverage_max_shortfall'].max())} | {len(h)} |")
    return lines


def _tta_figure(tta, figure):
    """C2ST (1-d top, 2-d bottom) against training CPU seconds, one point per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    task_rank = {t: i for i, t in enumerate(TASK_ORDER)}
    tasks_ = sorted(tta["task"].unique(), key=lambda t: task_rank.get(t, 99))
    fig, axes = plt.subplots(2, len(tasks_), figsize=(3.4 * len(tasks_), 6), squeeze=False)
    colors = dict(zip(METHOD_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = {1_000: "s", 10_000: "o", 100_000: "^"}
    for j, task in enumerate(tasks_):
        g = tta[tta["task"] == task]
        for i, dim in enumerate(("1d", "2d")):
            ax = axes[i, j]
            for (method, budget), h in g.groupby(["method", "n_sims"]):
                ax.scatter(h["train_cpu_seconds"], h[f"c2st_{dim}"], s=18, alpha=0.8,
                           color=colors.get(method), marker=markers.get(budget, "x"),
                           label=f"{method}, {budget:,} sims")
            ax.set_xscale("log")
            # Minor tick labels collide on axes spanning under two decades.
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.axhline(0.5, color="0.7", lw=0.8)
            ax.set_title(task if i == 0 else "", fontsize=9)
            ax.set_ylabel(f"{dim[0]}-d marginal C2ST" if j == 0 else "")
            if i == 1:
                ax.set_xlabel("training CPU seconds")
    handles, labels = _legend_entries(axes)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)


def _speed_section(speed):
    lines = ["## Speed", "",
             "Measured by `python benchmarks/bench_speed.py`; each ratio compares two timings "
             "taken in the same run.", ""]
    for section, g in speed.groupby("section", sort=False):
        lines += [f"### {section}", "", "| case | value | unit | note |", "|---|---|---|---|"]
        for r in g.itertuples():
            note = "" if pd.isna(r.note) else r.note
            lines.append(f"| {r.case} | {r.value:.4g} | {r.unit} | {note} |")
        lines.append("")
    return lines


def _grid_floor_section(floor):
    """Markdown of ``grid_floor.csv`` (``benchmarks/bench_grid_floor.py``)."""
    table = (floor.groupby(["task", "grid"], sort=False)
             .agg(c2st_1d=("c2st_1d", "mean"), c2st_2d=("c2st_2d", "mean"),
                  cells=("observation", "count"), n=("n", "first"))
             .reset_index())
    lines = ["## Grid floor", "",
             "The C2ST of the *exact* posterior read off our grids "
             "(`python benchmarks/bench_grid_floor.py`): reference draws moved to a uniform "
             "point of their own grid cell, against independent reference draws, averaged over "
             "observations. No ratio estimator can score below its grid's floor. Grids of "
             "256 cells (1-d) and 128 x 128 (2-d) over the prior's range, or zoomed like "
             "`posterior(x, zoom=True)`: each parameter's range narrowed to the prior-grid "
             "cells that hold its central reference mass (all but `--tail`, 1e-4 by default, "
             "on each side; `posterior` uses 1e-6 of its estimated 1-d marginal) plus two "
             "cells; `none (reference)` compares two sets of reference draws, the C2ST's own "
             "noise.", "",
             "| task | grid | C2ST 1-d | C2ST 2-d | observations | draws per side |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.task} | {r.grid} | {r.c2st_1d:.3f} | {r.c2st_2d:.3f} | "
                     f"{r.cells} | {r.n:,} |")
    return lines + [""]


def _sampler_section(rows):
    """Markdown of ``sbi_sampler.csv`` (``benchmarks/bench_sbi_sampler.py``)."""
    table = (rows.groupby(["task", "n_sims", "method", "sampler"], sort=False)
             .agg(c2st_1d=("c2st_1d", "mean"), c2st_2d=("c2st_2d", "mean"),
                  cells=("observation", "count"), seconds=("sample_seconds", "mean"))
             .reset_index())
    wide = table.pivot_table(index=["task", "n_sims", "method"], columns="sampler",
                             values=["c2st_1d", "c2st_2d", "cells", "seconds"], sort=False)
    lines = ["## sbi: network or sampler?", "",
             "sbi's ratio networks sampled two ways (`python benchmarks/bench_sbi_sampler.py`): "
             "by sbi's default MCMC, as in the accuracy tables, and off a 128 x 128 grid of the "
             "same network's log ratio plus log prior, zoomed onto its posterior as our "
             "estimators' grids are. Same network, same simulations, same reference draws "
             "(10,000 per side); means over observations. Where the grid scores better, the "
             "sampler, not the network, costs sbi that much accuracy.", "",
             "| task | sims | method | MCMC C2ST 1-d / 2-d | grid C2ST 1-d / 2-d | "
             "seconds per 10,000 draws (MCMC / grid) | observations |",
             "|---|---|---|---|---|---|---|"]
    def pair(r, sampler):
        return f"{_fmt(r.get(('c2st_1d', sampler)))} / {_fmt(r.get(('c2st_2d', sampler)))}"

    for (task, n_sims, method), r in wide.iterrows():
        cells = int(np.nanmin([r.get(("cells", s), np.nan) for s in ("mcmc", "grid")]))
        lines.append(f"| {task} | {int(n_sims):,} | {method} | {pair(r, 'mcmc')} | "
                     f"{pair(r, 'grid')} "
                     f"| {_fmt(r.get(('seconds', 'mcmc')), 1)} / "
                     f"{_fmt(r.get(('seconds', 'grid')), 2)} | {cells} |")
    return lines + [""]


def render(results, docs, figure):
    """Write the Markdown report and the figure from a results directory.

    Parameters
    ----------
    results : pathlib.Path
        Directory with ``accuracy.csv`` and optionally ``speed.csv``.
    docs : pathlib.Path
        The Markdown file to write.
    figure : pathlib.Path
        The PNG to write; the report links it relative to ``docs``.
    """
    results, docs, figure = pathlib.Path(results), pathlib.Path(docs), pathlib.Path(figure)
    acc_path, speed_path = results / "accuracy.csv", results / "speed.csv"
    acc = pd.read_csv(acc_path, dtype={"params": str}, keep_default_na=False,
                      na_values=[""]) if acc_path.exists() else None
    speed = pd.read_csv(speed_path) if speed_path.exists() else None
    lines = [
        "# Benchmarks", "",
        "Generated by `python benchmarks/run.py` (accuracy, calibration) and "
        "`python benchmarks/bench_speed.py` (speed) on "
        f"{datetime.date.today().isoformat()}; raw rows in `benchmarks/results/*.csv`.", "",
        "## Machine", "",
        *_machine([f for f in (acc, speed) if f is not None]), "",
    ]
    if acc is not None and len(acc):
        acc["params"] = acc["params"].fillna("{}")
        summary = _summary(acc)
        _figure(summary, figure)
        rel = os.path.relpath(figure, docs.parent)
        lines += [
            "## Methods", "",
            "- `tmnre_amortized`: one round of `TMNREEstimator(prior=task.prior, "
            "marginals=\"1d+2d\")` with the package defaults (early stopping decides the "
            "epochs); posteriors are read off its 1-d and 2-d grids. From commit f4d0a04 on, "
            "the grids zoom onto each observation's posterior (`posterior(x, zoom=True)`, "
            "the new default); rows of earlier commits (column `commit`) used grids over the "
            "prior's range. Which grid matters only on gaussian_mixture (see *Grid floor*).",
            "- `tmnre_ensemble`: the same with `n_ensemble=5`: five networks trained side by "
            "side from different initial weights, their logits averaged.",
            "- `tmnre_deepset` (slcp only): the same with `embedding=\"deepset\"`, "
            "`embedding__set_size=4`: a permutation-invariant embedding of slcp's four "
            "independent 2-d draws. Domain knowledge, which is what the embedding is for; "
            "sbi's methods get their default networks, which do not know it.",
            "- `tmnre_balanced`: the same with `balance=100` (balanced NRE, the weight of sbi's "
            "BNRE).",
            "- `tmnre_truncated`: `TMNRE(task.simulator, task.prior, n_sims=budget)` per "
            "observation: 30 % of the budget in round 0, the rest split evenly over the later "
            "rounds (at most 4 rounds in the full setting, 5 in `tta`); when the box keeps "
            "more than 80 % of its prior mass, what is left of the budget trains one last "
            "round in the last box, on every stored simulation inside it plus new ones, so "
            "the whole budget is spent. Rows before 0.2 did that last round in the harness "
            "and cut boxes at ε = 1e-6; from 0.2 on `TMNRE` does it itself, with the "
            "tail-mass rule (see *Truncation*).",
            "- `tmnre_truncated_deepset` (slcp only): `tmnre_truncated` whose rounds use "
            "`tmnre_deepset`'s embedding.",
            "- `sbi_nre_a`, `sbi_nre_c`, `sbi_bnre`: sbi's `NRE_A`, `NRE_C`, `BNRE` with their "
            "default classifier (residual net, 50 hidden units) and training (batch 200, "
            "lr 5e-4, early stopping after 20 epochs); posterior samples from sbi's default "
            "MCMC (vectorized slice sampling), marginalized by taking columns.",
            "",
            "Amortized methods (all but `tmnre_truncated`) train once per task, budget and seed "
            "on the same simulations, `task.sample(budget)`, and answer every observation.", "",
            "## Accuracy per simulation", "",
            "Mean C2ST over every 1-d and every 2-d marginal (SBI-benchmark classifier, "
            "5-fold; 0.5 is perfect, lower is better), averaged over observations and seeds "
            "(± standard deviation over cells). Coverage error: mean |empirical - nominal| "
            "coverage of every 1-d marginal at levels 0.05 ... 0.95 on 1,000 fresh test pairs "
            "(`tmnre_truncated` inside its last box; sbi's networks on two-parameter tasks "
            "only, from their joint ratio on a 128 x 128 grid summed to 1-d, since MCMC for "
            "a thousand test observations is out of reach); largest shortfall: the "
            "largest nominal - empirical coverage (overconfidence). Seconds: training (shared "
            "by all observations for amortized methods) + producing the posterior draws of one "
            "observation; C2ST time excluded. Memory growth: of the process's resident "
            "memory during the cell (memory held from earlier cells is reused and not "
            "counted). On the 10-parameter Gaussian linear tasks 10 of the 45 2-d marginals "
            "are scored: a fixed subset, the same for every method (column `n_2d`); each C2ST "
            "costs seconds, and the subset's mean estimates the mean over all pairs without "
            "bias. Every method still learns or samples all 45.", "",
            f"![C2ST vs budget]({rel})", "",
        ]
        headline = _headline(summary)
        if headline:
            lines += ["### At a glance", "",
                      "Setting `full`, default hyperparameters; means over observations and "
                      "seeds. Bar: the target at 10⁴ simulations, else the published swyft "
                      "TMNRE figure. Ours, best: the lowest mean of 1-d and 2-d C2ST among "
                      f"{', '.join(f'`{m}`' for m in OURS_ACCURACY)} (`tmnre_balanced` trades "
                      "accuracy for calibration and is left out).", "", *headline, ""]
        for setting, n_c2st, params in _config_order(summary):
            part = summary[(summary["setting"] == setting) & (summary["n_c2st"] == n_c2st)
                           & (summary["params"] == params)]
            extra = "" if params == "{}" else f"; estimator hyperparameters {params}"
            extra += PARAM_NOTES.get(params, "")
            lines += [f"### Setting `{setting}` (C2ST with {n_c2st:,} draws per side{extra})",
                      ""]
            for task, g in part.groupby("task", sort=False):
                lines += [f"#### {task}", "", *_task_table(g, task), ""]
        lines += _time_to_accuracy(acc, figure.parent / "time_to_accuracy.png")
    lines += truncation_section(acc, results)
    if acc is not None and len(acc):
        shortfalls = _shortfalls(summary)
        if shortfalls:
            lines += ["## Against the targets", "",
                      "Targets at 10⁴ simulations (1-d / 2-d): two_moons ≤ 0.53 / 0.60, slcp ≤ "
                      "0.58 / 0.68, gaussian_mixture ≤ 0.53 / 0.60; at 10³: beat the published "
                      "swyft TMNRE figures. Results from fewer observations or seeds than the "
                      "published 10 observations are noisier. Calibration counts the (marginal, "
                      "level) pairs whose coverage lies below its own 95 % Jeffreys interval: "
                      "with 19 levels per 1-d marginal, a perfectly calibrated estimator has "
                      "about one such pair per 40 by chance (levels of one marginal are "
                      "correlated, so they come in runs).", "", *shortfalls, ""]
    floor_path = results / "grid_floor.csv"
    if floor_path.exists():
        lines += _grid_floor_section(pd.read_csv(floor_path))
    cost_path = results / "coverage_cost.csv"
    if cost_path.exists():
        lines += coverage_cost_section(pd.read_csv(cost_path))
    for name, section in (("streaming.csv", streaming_section),
                          ("objects_scale.csv", objects_scale_section)):
        if (results / name).exists():
            lines += section(pd.read_csv(results / name))
    sampler_path = results / "sbi_sampler.csv"
    if sampler_path.exists():
        lines += _sampler_section(pd.read_csv(sampler_path))
    if speed is not None and len(speed):
        lines += _speed_section(speed)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join(lines).rstrip() + "\n")
