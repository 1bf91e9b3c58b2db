"""What 2-d coverage costs, and what a coarser 2-d grid would change.

For each task, a default ``TMNREEstimator(marginals="1d+2d")`` is trained on
simulations from the prior, and :func:`sklearn_tmnre.metrics.credibility` is
timed on held-out pairs: the 1-d marginals alone (``dims=(1,)``), then the 2-d
marginals on zoomed grids of ``n_grid_2d`` = 128 (the default), 64, 32 and 16
cells per side. Each coarser grid is compared with the default one, on the
same fitted network and test pairs: the mean and largest change of a row's
credibility level, and the largest change of the expected coverage at the
levels 0.5, 0.68 and 0.95. A cheaper 2-d check is only worth having where
these changes are small.

    python benchmarks/bench_coverage_cost.py                      # 3 tasks
    python benchmarks/bench_coverage_cost.py --tasks two_moons --n-test 100

Writes ``benchmarks/results/coverage_cost.csv`` (one row per task and grid) and
prints it.
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd
import torch

from sklearn_tmnre import TMNREEstimator
from sklearn_tmnre.metrics import credibility
from sklearn_tmnre.tasks import get_task

RESULTS = pathlib.Path(__file__).parent / "results"
LEVELS = (0.5, 0.68, 0.95)
GRIDS = (128, 64, 32, 16)


def coverage(levels):
    """Fraction of rows whose credibility level is at most each nominal level, per column."""
    return np.array([(levels <= q).mean() for q in LEVELS])


def measure(task_name, n_sims, n_test, seed):
    """Rows of the table for one task: 1-d cost, then each 2-d grid against the default."""
    task = get_task(task_name)
    theta, X = task.sample(n_sims, random_state=np.random.SeedSequence([seed, n_sims]))
    start = time.process_time()
    est = TMNREEstimator(prior=task.prior, marginals="1d+2d", n_threads=1,
                         random_state=seed).fit(X, theta)
    fit_cpu = time.process_time() - start
    test_theta, test_X = task.sample(n_test, random_state=np.random.SeedSequence([seed, 1]))
    base = dict(task=task_name, n_sims=n_sims, n_test=n_test, seed=seed,
                n_2d=sum(len(m) == 2 for m in est.marginals_), fit_cpu_seconds=fit_cpu)
    start = time.process_time()
    credibility(est, test_X, test_theta, dims=(1,))
    one_d = (time.process_time() - start) / n_test
    rows = [dict(base, dims="1-d", n_grid_2d=None, cpu_seconds_per_row=one_d)]
    reference = None
    for n_grid in GRIDS:
        est.set_params(n_grid_2d=n_grid)
        start = time.process_time()
        levels = credibility(est, test_X, test_theta, dims=(2,)).to_numpy()
        per_row = (time.process_time() - start) / n_test
        reference = levels if reference is None else reference
        change = np.abs(levels - reference)
        rows.append(dict(
            base, dims="2-d", n_grid_2d=n_grid, cpu_seconds_per_row=per_row,
            cost_vs_1d=per_row / one_d, level_change_mean=change.mean(),
            level_change_max=change.max(),
            coverage_change_max=np.abs(coverage(levels) - coverage(reference)).max()))
        print(f"{task_name} 2-d on {n_grid}^2: {per_row:.3f} CPU-s/row ({per_row / one_d:.0f}x "
              f"1-d), level change mean {change.mean():.4f} max {change.max():.3f}", flush=True)
    return rows


def section(frame):
    """Markdown of ``coverage_cost.csv`` for ``docs/benchmarks.md``."""
    lines = ["## Cost of 2-d coverage", "",
             "`python benchmarks/bench_coverage_cost.py`: `credibility` on held-out pairs of a "
             "default `TMNREEstimator(marginals=\"1d+2d\")` fitted on 10^4 simulations, one "
             "thread. CPU seconds per test row for the 1-d marginals, then for the 2-d ones "
             "on zoomed grids of `n_grid_2d` cells per side (128 is the default), and what a "
             "coarser grid changes against the default one: the credibility level of a row "
             "(mean and largest change) and the expected coverage at 0.5, 0.68 and 0.95 "
             "(largest change).", "",
             "| task | 2-d marginals | grid | CPU s / row | x 1-d | level change mean | "
             "level change max | coverage change max |",
             "|---|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        if r.dims == "1-d":
            lines.append(f"| {r.task} | {r.n_2d} | 1-d only | {r.cpu_seconds_per_row:.4f} "
                         "| 1 | | | |")
            continue
        lines.append(f"| {r.task} | {r.n_2d} | {int(r.n_grid_2d)}^2 | "
                     f"{r.cpu_seconds_per_row:.4f} | {r.cost_vs_1d:.1f} | "
                     f"{r.level_change_mean:.4f} | {r.level_change_max:.3f} | "
                     f"{r.coverage_change_max:.4f} |")
    return lines + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["two_moons", "slcp", "gaussian_linear"])
    parser.add_argument("--n-sims", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [row for name in args.tasks
            for row in measure(name, args.n_sims, args.n_test, args.seed)]
    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "coverage_cost.csv", index=False)
    print(frame.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
