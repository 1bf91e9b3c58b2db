"""Which truncation rule shrinks the box without cutting off the posterior?

For each task, a first-round estimator (``TMNREEstimator`` defaults, 1-d
marginals) is trained on ``n`` draws of the prior (300 and 3,000: the first
round of a 10^3 and a 10^4 campaign), and for each observation the box of
every rule is measured against the task's reference posterior:

* ``box_mass``: prior mass of the box (smaller shrinks more);
* ``ref_outside``: the fraction of reference posterior samples outside the box,
  i.e. the true posterior mass the truncation cuts off (0 is safe);
* ``width_over_std``: mean over parameters of the box's half-width in
  reference posterior standard deviations.

Rules: the ratio threshold of Miller et al. (``Truncator(epsilon=...)``) and the
tail-mass rule (``Truncator(tail_mass=...)``), at several levels each. The
science toy ``cmb_spectrum`` runs with a prior 20 Planck standard deviations
wide (as in its example) and a linear embedding; ``strong_lensing`` (on
request: a CNN, minutes per fit) with its example's first-round estimator. It
has no reference posterior: ``ref_outside`` is empty and ``width_over_std``
is in standard deviations of the estimated posterior.

    python benchmarks/bench_truncation_rule.py                  # resumable
    python benchmarks/bench_truncation_rule.py --tasks two_moons --n-sims 300

Writes ``benchmarks/results/truncation_rule.csv``: one row per (task, n_sims,
seed, observation, rule, level). Cells already in the file are skipped.
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd
import torch

from sklearn_tmnre import TMNREEstimator
from sklearn_tmnre.tasks import TASKS, get_task
from sklearn_tmnre.tasks.cmb import cmb_spectrum
from sklearn_tmnre.truncation import Truncator

RESULTS = pathlib.Path(__file__).parent / "results"
RULES = [("ratio", eps) for eps in (1e-6, 1e-4, 1e-3, 1e-2)] + [
    ("mass", a) for a in (1e-6, 1e-5, 1e-4, 1e-3)]
KEY = ["task", "n_sims", "seed"]


def _task(name):
    if name == "cmb_spectrum":
        return cmb_spectrum(prior_width=20.0), {"embedding": "linear", "embedding_dim": 10}
    if name == "strong_lensing":
        return get_task(name), {
            "embedding": "cnn2d", "embedding_dim": 32, "embedding__channels": (8, 16, 32),
            "embedding__pooling": "flatten", "hidden_features": 64, "max_epochs": 10,
            "patience": 3, "lr": 2e-3}
    return get_task(name), {}


def _truncator(rule, level):
    return Truncator(epsilon=level) if rule == "ratio" else Truncator(tail_mass=level)


def cell_rows(name, n, seed, observations, n_reference):
    """Rows of one (task, n_sims, seed): every observation and rule."""
    task, params = _task(name)
    theta, X = task.sample(n, random_state=seed)
    start = time.perf_counter()
    est = TMNREEstimator(prior=task.prior, marginals="1d", random_state=seed, n_threads=1,
                         **params).fit(X, theta)
    fit_seconds = time.perf_counter() - start
    rows = []
    for obs in observations:
        x_o = task.observation(obs)
        try:
            reference = task.reference_samples(obs, n_reference, random_state=seed)
            std = reference.std().to_numpy()
        except NotImplementedError:
            reference = None
            std = est.posterior(x_o).summary()["std"].reindex(task.prior.names).to_numpy()
        for rule, level in RULES:
            trunc = _truncator(rule, level).fit(x_o, estimator=est)
            bounds = trunc.bounds_[["low", "high"]].to_numpy()
            half = (bounds[:, 1] - bounds[:, 0]) / 2
            rows.append({
                "task": name, "n_sims": n, "seed": seed, "observation": obs, "rule": rule,
                "level": level, "box_mass": trunc.mass_,
                "ref_outside": (np.nan if reference is None
                                else float(1 - trunc.contains(reference).mean())),
                "width_over_std": float(np.mean(half / std)),
                "epochs": len(est.net_.history), "fit_seconds": fit_seconds,
            })
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=[*TASKS, "cmb_spectrum"],
                   choices=[*TASKS, "cmb_spectrum", "strong_lensing"])
    p.add_argument("--n-sims", nargs="+", type=int, default=[3_000, 300])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--observations", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--n-reference", type=int, default=10_000)
    p.add_argument("--out", type=pathlib.Path, default=RESULTS / "truncation_rule.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    done = set()
    if args.out.exists():
        old = pd.read_csv(args.out)
        done = {tuple(r) for r in old[KEY].itertuples(index=False)}
    for n in args.n_sims:
        for name in args.tasks:
            for seed in args.seeds:
                if (name, n, seed) in done:
                    continue
                rows = pd.DataFrame(cell_rows(name, n, seed, args.observations,
                                              args.n_reference))
                rows.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
                print(rows.groupby(["rule", "level"])[["box_mass", "ref_outside"]].mean()
                      .assign(task=name, n=n, seed=seed).to_string(), flush=True)
    summary(pd.read_csv(args.out))


def summary(df):
    """Per rule and level: mean box mass and the worst cut-off, per task and budget."""
    table = df.groupby(["n_sims", "task", "rule", "level"]).agg(
        box_mass=("box_mass", "mean"), ref_outside_mean=("ref_outside", "mean"),
        ref_outside_max=("ref_outside", "max"), width_over_std=("width_over_std", "median"),
        cells=("box_mass", "size"))
    print(table.to_string(float_format="{:.4g}".format))
    return table


if __name__ == "__main__":
    main()
