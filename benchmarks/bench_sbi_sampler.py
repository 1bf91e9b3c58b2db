"""Is sbi's deficit its network or its sampler? The same network, sampled two ways.

``benchmarks/run.py`` scores sbi's ratio estimators through sbi's default
posterior sampler (MCMC, vectorized slice sampling). On the two-parameter
tasks the network's posterior can also be read off a grid, the way our
estimators are scored: the joint log ratio plus log prior on a 128 x 128 grid
over the prior's range, then a second 128 x 128 grid zoomed onto the cells
that hold all but ``1e-6`` of each 1-d marginal (plus two cells each side),
as ``TMNREEstimator.posterior(x, zoom=True)`` does; draws pick a cell by its
mass and a uniform point inside it.

Both sets of draws come from the same trained network (trained on the same
simulations as in ``run.py``: ``task.sample(budget, SeedSequence([seed,
budget]))``), so the difference of their C2STs is what the sampler costs.

    python benchmarks/bench_sbi_sampler.py --threads 1
    python benchmarks/bench_sbi_sampler.py --tasks two_moons --methods sbi_nre_c

Writes ``benchmarks/results/sbi_sampler.csv`` (one row per task, budget, seed,
method, observation and sampler; finished rows are skipped on rerun).
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import time

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from _methods import (  # noqa: E402
    SBI_METHODS,
    Fitted,
    RatioOnGrid,
    Settings,
    _fit_sbi,
    grid_marginals,
    marginal_c2st_of,
)

from sklearn_tmnre._grids import zoom_ranges  # noqa: E402
from sklearn_tmnre.posterior import MarginalPosterior  # noqa: E402
from sklearn_tmnre.tasks import get_task  # noqa: E402

TASKS = ["two_moons", "gaussian_mixture"]
KEY = ["task", "n_sims", "seed", "method", "observation", "sampler"]


def grid_draws(net, prior, x_o, n, seed, n_grid=128):
    """``n`` draws of the network's posterior for ``x_o`` from a zoomed 2-d grid."""
    grid = RatioOnGrid(net, prior, n_grid)
    axes, masses = grid._grid_masses(np.asarray(x_o)[None])
    ranges = zoom_ranges(axes, masses, grid.names_)
    zoomed = []
    for name in grid.names_:
        (low,), (high,) = ranges[name]
        width = (high - low) / n_grid
        zoomed.append((low + (np.arange(n_grid) + 0.5) * width, width))
    pair = tuple(grid.names_)
    posterior = MarginalPosterior([pair], {pair: zoomed},
                                  {pair: grid.joint_masses(np.asarray(x_o)[None], zoomed)[0]})
    return posterior.sample(n, marginal=pair, random_state=seed)


def _done(path):
    if not path.exists():
        return set()
    rows = pd.read_csv(path)
    return set(rows[KEY].astype(str).itertuples(index=False, name=None))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(SBI_METHODS),
                        choices=list(SBI_METHODS))
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--observations", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--n", type=int, default=10_000, help="draws per side of each C2ST")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).parent / "results" / "sbi_sampler.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings(name="full", max_epochs=200, sbi_max_epochs=None, n_c2st=args.n,
                        n_coverage=0, truncated_rounds=1)
    done = _done(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for task_name in args.tasks:
        task = get_task(task_name)
        if task.prior.ndim != 2:
            raise SystemExit(f"{task_name} has {task.prior.ndim} parameters; the grid "
                             "sampler here needs two.")
        theta, X = task.sample(args.budget,
                               random_state=np.random.SeedSequence([args.seed, args.budget]))
        for method in args.methods:
            keys = {(o, s): tuple(map(str, (task_name, args.budget, args.seed, method, o, s)))
                    for o in args.observations for s in ("mcmc", "grid")}
            if all(k in done for k in keys.values()):
                continue
            posterior, net, epochs = _fit_sbi(method, task, theta, X, args.seed, settings)
            net.eval()
            fitted = Fitted(method, posterior, list(task.prior.names), len(X), 0.0, 0.0,
                            epochs, "", {})
            for obs in args.observations:
                x_o = task.observation(obs)
                reference = task.reference_samples(
                    obs, args.n, random_state=np.random.SeedSequence([args.seed, obs, 2]))
                for sampler in ("mcmc", "grid"):
                    if keys[obs, sampler] in done:
                        continue
                    start = time.perf_counter()
                    if sampler == "mcmc":
                        samples, _ = fitted.posterior(x_o, args.n, args.seed)
                    else:
                        joint = grid_draws(net, task.prior, x_o, args.n, args.seed)
                        samples = {m: joint[list(m)] for m in grid_marginals(fitted.names)}
                    seconds = time.perf_counter() - start
                    c1, c2 = marginal_c2st_of(samples, reference, args.seed)
                    row = dict(zip(KEY, (task_name, args.budget, args.seed, method, obs,
                                         sampler)),
                               c2st_1d=c1, c2st_2d=c2, sample_seconds=seconds, epochs=epochs,
                               timestamp=datetime.datetime.now().isoformat(timespec="seconds"))
                    pd.DataFrame([row]).to_csv(args.out, mode="a", index=False,
                                               header=not args.out.exists())
                    print(f"{task_name} {method} obs={obs} {sampler}: C2ST 1-d {c1:.3f}, "
                          f"2-d {c2:.3f} ({seconds:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
