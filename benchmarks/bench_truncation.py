"""Simulations saved by truncation: one round needs how many to match TMNRE?

Truncation pays where the prior is much wider than the posterior. For each
problem and seed, :class:`~sklearn_tmnre.TMNRE` with its defaults spends a
budget ``B`` (``n_sims=B``: 30 % in round 0, the rest over later rounds, the
default :class:`~sklearn_tmnre.Truncator`), and one untruncated round of
``TMNREEstimator`` trains on ``B``, ``2B``, ``4B`` and ``8B`` draws of the prior.
The *simulations saved* are the budget one round needs to be as accurate as
TMNRE at ``B``, divided by ``B`` (interpolated in log budget between measured
points; "> 8" when even ``8B`` falls short).

Problems (1-d marginals, defaults of the estimator):

* ``wide_gaussian``: ``x = A theta + sigma * noise`` (3 parameters, 5 data)
  under ``U(-5, 5)^3``, posterior standard deviation 0.05: the box of the
  posterior's +-5 standard deviations is about 1/19 of the prior per
  parameter. Accuracy: the optimal classifier's accuracy ``0.5 + TV / 2``
  between each estimated 1-d marginal and the exact Gaussian one, computed on
  the estimator's grid (0.5 is perfect), averaged over parameters.
* ``cmb``: :func:`sklearn_tmnre.tasks.cmb.cmb_spectrum` with a prior 20 Planck
  standard deviations wide (as in the CMB example), a linear embedding of
  dimension 10. Accuracy: 1-d C2ST against 2,000 exact posterior draws,
  averaged over the six parameters.

    python benchmarks/bench_truncation.py                     # resumable
    python benchmarks/bench_truncation.py --problems wide_gaussian --seeds 0

Writes ``benchmarks/results/truncation_savings.csv`` (one row per problem,
seed, method and budget) and prints the savings.
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd
import torch
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.metrics import marginal_c2st
from sklearn_tmnre.rounds import TMNRE
from sklearn_tmnre.tasks.cmb import cmb_spectrum

RESULTS = pathlib.Path(__file__).parent / "results"
KEY = ["problem", "seed", "method", "n_sims"]
MULTIPLES = (1, 2, 4, 8)
N_PARAMS, N_DATA, HALF_WIDTH = 3, 5, 5.0


class LinearGaussian:
    """``x = A theta + sigma * noise`` with a fixed random ``A`` (picklable simulator)."""

    def __init__(self, posterior_std=0.05, seed=0):
        rng = np.random.default_rng(seed)
        self.A = rng.standard_normal((N_DATA, N_PARAMS))
        unit_cov = np.linalg.inv(self.A.T @ self.A)
        self.sigma = posterior_std / np.sqrt(np.mean(np.diag(unit_cov)))
        self.cov = self.sigma**2 * unit_cov

    def __call__(self, theta, rng):
        return self.A @ theta + self.sigma * rng.standard_normal(N_DATA)

    def posterior(self, x_o):
        """Mean and covariance of the analytic posterior (the prior box is far wider)."""
        return self.cov @ self.A.T @ x_o / self.sigma**2, self.cov


class Problem:
    """A simulator, prior, observation, estimator settings and an accuracy measure."""

    def __init__(self, name, seed):
        self.name = name
        if name == "wide_gaussian":
            self.simulator = LinearGaussian()
            names = [f"theta_{i}" for i in range(N_PARAMS)]
            self.prior = Prior({n: stats.uniform(-HALF_WIDTH, 2 * HALF_WIDTH) for n in names})
            rng = np.random.default_rng([seed, 1])
            self.x_o = self.simulator(rng.uniform(-3, 3, N_PARAMS), rng)
            self.params = {}
            self.budget = 3_000
        else:
            task = cmb_spectrum(prior_width=20.0)
            self.simulator, self.prior, self.x_o = task.simulator, task.prior, task.observation(1)
            self.reference = task.reference_samples(1, 2_000, random_state=seed)
            self.params = {"embedding": "linear", "embedding_dim": 10}
            self.budget = 5_000

    def estimator(self, seed):
        return TMNREEstimator(marginals="1d", random_state=seed, n_threads=1, **self.params)

    def accuracy(self, posterior, seed):
        """Mean over parameters of the 1-d accuracy (0.5 is perfect)."""
        if self.name == "cmb":
            return float(marginal_c2st(posterior, self.reference, n=2_000,
                                       random_state=seed)["c2st"].mean())
        mean, cov = self.simulator.posterior(self.x_o)
        scores = []
        for i, name in enumerate(self.prior.names):
            (centres, width), = posterior.axes[(name,)]
            edges = np.concatenate([[centres[0] - width / 2], centres + width / 2])
            true_mass = np.diff(stats.norm(mean[i], np.sqrt(cov[i, i])).cdf(edges))
            tv = 0.5 * (np.abs(posterior.mass[(name,)] - true_mass).sum() + 1 - true_mass.sum())
            scores.append(0.5 + tv / 2)
        return float(np.mean(scores))


def truncated_row(problem, seed):
    start = time.process_time()
    run = TMNRE(problem.simulator, problem.prior, estimator=problem.estimator(seed),
                n_sims=problem.budget, random_state=seed).fit(problem.x_o)
    seconds = time.process_time() - start
    return {"problem": problem.name, "seed": seed, "method": "truncated",
            "n_sims": int(run.rounds_["n_simulated"].sum()),
            "accuracy": problem.accuracy(run.posterior_, seed), "rounds": len(run.rounds_),
            "box_mass": float(run.rounds_["mass"].iloc[-1]), "cpu_seconds": seconds}


def one_round_row(problem, seed, n):
    rng = np.random.default_rng([seed, n])
    theta = problem.prior.sample(n, random_state=rng)
    start = time.process_time()
    X = np.stack([problem.simulator(row, rng) for row in theta.to_numpy()])
    est = problem.estimator(seed).set_params(prior=problem.prior).fit(X, theta)
    seconds = time.process_time() - start
    return {"problem": problem.name, "seed": seed, "method": "one_round", "n_sims": n,
            "accuracy": problem.accuracy(est.posterior(problem.x_o), seed), "rounds": 1,
            "box_mass": 1.0, "cpu_seconds": seconds}


def savings(df):
    """Per problem: mean accuracy of each method and budget, and the simulations saved."""
    rows = []
    for name, g in df.groupby("problem"):
        seeds = sorted(set(g.loc[g.method == "truncated", "seed"])
                       & set(g.loc[g.method == "one_round", "seed"]))
        g = g[g.seed.isin(seeds)]
        if g.empty:
            continue
        trunc = g[g.method == "truncated"]
        target, budget = trunc["accuracy"].mean(), trunc["n_sims"].mean()
        curve = g[g.method == "one_round"].groupby("n_sims")["accuracy"].mean()
        ratio = np.nan
        below = curve[curve <= target]
        if len(below):
            # First budget at or below the target, interpolated in log budget.
            b1 = below.index[0]
            prev = curve[curve.index < b1]
            if len(prev) and prev.iloc[-1] > target:
                b0, a0, a1 = prev.index[-1], prev.iloc[-1], curve[b1]
                t = (a0 - target) / (a0 - a1)
                b1 = np.exp(np.log(b0) + t * (np.log(b1) - np.log(b0)))
            ratio = b1 / budget
        if not len(below):
            saved = f"> {MULTIPLES[-1]}"
        elif below.index[0] == curve.index[0]:
            saved = "≤ 1"  # one round of the same budget is already as accurate
        else:
            saved = ratio
        rows.append({"problem": name, "seeds": len(seeds), "budget": int(budget),
                     "truncated": target,
                     "truncated_sd": trunc["accuracy"].std(),
                     **{f"one_round_{int(n / budget)}x": a for n, a in curve.items()},
                     "simulations_saved": saved})
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", default=["wide_gaussian", "cmb"],
                   choices=["wide_gaussian", "cmb"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=pathlib.Path, default=RESULTS / "truncation_savings.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    done = set()
    if args.out.exists():
        done = {tuple(str(v) for v in r)
                for r in pd.read_csv(args.out)[KEY].itertuples(index=False)}
    for name in args.problems:
        for seed in args.seeds:
            problem = Problem(name, seed)
            todo = [("truncated", problem.budget)] + [
                ("one_round", m * problem.budget) for m in MULTIPLES]
            for method, n in todo:
                if method == "truncated" and any(
                        k[:3] == (name, str(seed), "truncated") for k in done):
                    continue
                if (name, str(seed), method, str(n)) in done:
                    continue
                row = (truncated_row(problem, seed) if method == "truncated"
                       else one_round_row(problem, seed, n))
                pd.DataFrame([row]).to_csv(args.out, mode="a", header=not args.out.exists(),
                                           index=False)
                print(row, flush=True)
    print(savings(pd.read_csv(args.out)).to_string(index=False, float_format="{:.4g}".format))


if __name__ == "__main__":
    main()
