"""The C2ST a perfect ratio estimator would score on our grids: the grid's own floor.

Our posteriors are piecewise constant on grid cells (``posterior.sample`` draws
a cell by its mass, then a uniform point inside it). With the exact ratio, a
cell's mass is the posterior mass of the cell, so reference draws *snapped* to
their cell and redrawn uniformly inside it are exact draws of the best grid
posterior. Their C2ST against independent reference draws is the floor that no
ratio estimator can beat on that grid.

Compared, for every 1-d and 2-d marginal scored by the benchmark
(``benchmarks/run.py``): the grids over the prior's range (``n_grid_1d=256``,
``n_grid_2d=128``, the defaults) and zoomed grids of the same sizes over each
parameter's central ``1 - 2 * tail`` reference mass, padded by two cells (what
``TMNREEstimator.posterior(x, zoom=True)`` does with the estimated 1-d marginals).

    python benchmarks/bench_grid_floor.py                       # all tasks, obs 1-3
    python benchmarks/bench_grid_floor.py --tasks gaussian_mixture --n 5000

Writes ``benchmarks/results/grid_floor.csv`` (one row per task, observation and grid).
"""

import argparse
import pathlib
import sys

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _methods import grid_marginals, marginal_c2st_of  # noqa: E402

from sklearn_tmnre.posterior import grid_axes  # noqa: E402
from sklearn_tmnre.tasks import get_task  # noqa: E402

TASKS = ["two_moons", "slcp", "gaussian_mixture", "gaussian_linear_uniform"]


def snapped(draws, marginal, prior, n_grid, rng, zoom_to=None, tail=1e-4, pad=2):
    """``draws`` of ``marginal`` moved to a uniform point of their grid cell."""
    cols = {}
    for name in marginal:
        (centres, width), = grid_axes(prior, [name], n_grid)
        low, high = centres[0] - width / 2, centres[-1] + width / 2
        if zoom_to is not None:
            # The zoom: the coarse cells holding all but ``tail`` on each side, plus ``pad``.
            q_low, q_high = np.quantile(zoom_to[name], [tail, 1 - tail])
            first = np.clip(np.floor((q_low - low) / width) - pad, 0, n_grid - 1)
            last = np.clip(np.floor((q_high - low) / width) + pad, 0, n_grid - 1)
            low, high = low + first * width, low + (last + 1) * width
            width = (high - low) / n_grid
        cell = np.clip(np.floor((draws[name].to_numpy() - low) / width), 0, n_grid - 1)
        cols[name] = low + (cell + rng.random(len(draws))) * width
    return pd.DataFrame(cols)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--observations", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--n", type=int, default=5000, help="draws per side")
    parser.add_argument("--tail", type=float, default=1e-4)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for task_name in args.tasks:
        task = get_task(task_name)
        names = list(task.prior.names)
        for obs in args.observations:
            ref = task.reference_samples(obs, n=2 * args.n, random_state=0)
            a = ref.iloc[:args.n].reset_index(drop=True)
            b = ref.iloc[args.n:].reset_index(drop=True)
            marginals = grid_marginals(names, 10)
            for grid in ("prior range", "zoomed"):
                rng = np.random.default_rng(obs)
                samples = {m: snapped(b, m, task.prior, 256 if len(m) == 1 else 128, rng,
                                      zoom_to=a if grid == "zoomed" else None, tail=args.tail)
                           for m in marginals}
                c1, c2 = marginal_c2st_of(samples, a, seed=0)
                rows.append(dict(task=task_name, observation=obs, grid=grid, n=args.n,
                                 c2st_1d=c1, c2st_2d=c2))
                print(f"{task_name} obs {obs} {grid:11s}: C2ST 1-d {c1:.3f}, 2-d {c2:.3f}",
                      flush=True)
            # Two independent reference halves: the C2ST's own noise around 0.5.
            c1, c2 = marginal_c2st_of({m: b[list(m)] for m in marginals}, a, seed=0)
            rows.append(dict(task=task_name, observation=obs, grid="none (reference)",
                             n=args.n, c2st_1d=c1, c2st_2d=c2))
            print(f"{task_name} obs {obs} reference  : C2ST 1-d {c1:.3f}, 2-d {c2:.3f}",
                  flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "grid_floor.csv", index=False)
    print(frame.groupby(["task", "grid"])[["c2st_1d", "c2st_2d"]].mean().round(3).to_string())


if __name__ == "__main__":
    main()
