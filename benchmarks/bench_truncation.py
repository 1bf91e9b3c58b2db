"""Truncation against one untruncated round of the same simulation budget.

Problem: a linear Gaussian simulator ``x = A theta + sigma * noise`` (3
parameters, 5 data) under a uniform prior ``U(-5, 5)^3``. The posterior is
Gaussian, ``N(mu, Sigma)`` with ``Sigma = sigma^2 (A^T A)^-1`` and ``mu = (A^T A)^-1
A^T x_o`` (restricted to the prior box; the true parameters are drawn from
``U(-3, 3)^3``, more than 20 posterior standard deviations inside it, so the
restriction is negligible). ``sigma`` makes the mean marginal posterior
standard deviation ``--posterior-std`` (0.05): the box of the exact ratio at
epsilon = 1e-6 (about +-5.3 posterior standard deviations) is then about 1/19
of the prior per parameter, i.e. the prior is about 19x too wide.

For each observation, TMNRE (``--n-sims`` per round, up to ``--rounds``
rounds, reuse included) is compared with one TMNREEstimator trained on as many
simulations as TMNRE ran in total, drawn from the full prior. Per marginal:
posterior mean error and standard deviation against the analytic ones, C2ST
(``sklearn_tmnre.metrics.marginal_c2st`` against analytic posterior samples;
0.5 is perfect) and the optimal classifier's accuracy ``0.5 + TV / 2`` computed
exactly from the grid densities. Per round: box mass and fraction of reused
simulations.

    python benchmarks/bench_truncation.py                 # a few minutes on 2 cores
    python benchmarks/bench_truncation.py --observations 1 --n-sims 1000   # quick

Writes ``benchmarks/results/bench_truncation.csv`` (one row per observation,
method and parameter) and ``bench_truncation_rounds.csv`` (one row per round).
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

N_PARAMS, N_DATA, HALF_WIDTH = 3, 5, 5.0
RESULTS = pathlib.Path(__file__).parent / "results"


class LinearGaussian:
    """``x = A theta + sigma * noise`` with a fixed random ``A`` (picklable simulator)."""

    def __init__(self, posterior_std, seed=0):
        rng = np.random.default_rng(seed)
        self.A = rng.standard_normal((N_DATA, N_PARAMS))
        unit_cov = np.linalg.inv(self.A.T @ self.A)
        self.sigma = posterior_std / np.sqrt(np.mean(np.diag(unit_cov)))
        self.cov = self.sigma**2 * unit_cov

    def __call__(self, theta, rng):
        return self.A @ theta + self.sigma * rng.standard_normal(N_DATA)

    def posterior(self, x_o):
        """Mean and covariance of the analytic posterior."""
        return self.cov @ self.A.T @ x_o / self.sigma**2, self.cov


def _marginal_table(post, mean, cov, names, seed):
    """Per-parameter accuracy of a MarginalPosterior against the analytic Gaussian."""
    reference = pd.DataFrame(
        np.random.default_rng(seed).multivariate_normal(mean, cov, size=4000), columns=names)
    c2st = marginal_c2st(post, reference, n=4000, random_state=seed).set_index("marginal")
    est_mean, est_std = post.mean(), post.std()
    rows = []
    for i, name in enumerate(names):
        (centres, width), = post.axes[(name,)]
        edges = np.concatenate([[centres[0] - width / 2], centres + width / 2])
        true_mass = np.diff(stats.norm(mean[i], np.sqrt(cov[i, i])).cdf(edges))
        outside = 1.0 - true_mass.sum()
        tv = 0.5 * (np.abs(post.mass[(name,)] - true_mass).sum() + outside)
        rows.append({
            "parameter": name,
            "mean_error_in_std": (est_mean[name] - mean[i]) / np.sqrt(cov[i, i]),
            "std_ratio": est_std[name] / np.sqrt(cov[i, i]),
            "c2st": float(c2st.loc[name, "c2st"]),
            "c2st_optimal": 0.5 + tv / 2,
        })
    return pd.DataFrame(rows)


def run(observation, n_sims, rounds, seed, estimator, posterior_std):
    simulator = LinearGaussian(posterior_std, seed=0)
    names = [f"theta_{i}" for i in range(N_PARAMS)]
    prior = Prior({n: stats.uniform(-HALF_WIDTH, 2 * HALF_WIDTH) for n in names})
    rng = np.random.default_rng([seed, observation])
    theta_true = rng.uniform(-3, 3, N_PARAMS)
    x_o = simulator(theta_true, rng)
    mean, cov = simulator.posterior(x_o)

    start = time.perf_counter()
    tmnre = TMNRE(simulator, prior, estimator=estimator, n_sims=n_sims, max_rounds=rounds,
                  random_state=seed + observation, verbose=1).fit(x_o)
    tmnre_seconds = time.perf_counter() - start
    budget = int(tmnre.rounds_["n_simulated"].sum())

    start = time.perf_counter()
    one_round = TMNRE(simulator, prior, estimator=estimator, n_sims=budget, max_rounds=1,
                      random_state=seed + observation).fit(x_o)
    one_round_seconds = time.perf_counter() - start

    tables = []
    for method, fitted, seconds in (("tmnre", tmnre, tmnre_seconds),
                                    ("one_round", one_round, one_round_seconds)):
        table = _marginal_table(fitted.posterior_, mean, cov, names, seed)
        table.insert(0, "method", method)
        table.insert(0, "observation", observation)
        table["n_simulations"] = budget
        table["n_rounds"] = len(fitted.rounds_)
        table["seconds"] = seconds
        tables.append(table)
    per_round = tmnre.rounds_.drop(columns=["bounds", "n_resumed"]).assign(
        observation=observation,
        reused_fraction=lambda r: r["n_reused"] / r["n_train"],
        box_width_over_posterior_std=[
            float(np.mean([(hi - lo) / np.sqrt(cov[i, i])
                           for i, (lo, hi) in enumerate(box.values())]))
            for box in tmnre.rounds_["bounds"]])
    return pd.concat(tables, ignore_index=True), per_round


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--observations", type=int, default=2)
    p.add_argument("--posterior-std", type=float, default=0.05,
                   help="mean marginal posterior standard deviation (prior: U(-5, 5))")
    p.add_argument("--n-sims", type=int, default=2000, help="simulations per round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-grid", type=int, default=1024,
                   help="grid cells per 1-d marginal (both methods)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    estimator = TMNREEstimator(marginals="1d", n_grid_1d=args.n_grid)

    tables, per_round = [], []
    for obs in range(1, args.observations + 1):
        table, rounds = run(obs, args.n_sims, args.rounds, args.seed, estimator,
                            args.posterior_std)
        tables.append(table)
        per_round.append(rounds)
    table = pd.concat(tables, ignore_index=True)
    rounds = pd.concat(per_round, ignore_index=True)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "bench_truncation.csv", index=False)
    rounds.to_csv(RESULTS / "bench_truncation_rounds.csv", index=False)

    pd.set_option("display.width", 160)
    print("\nPer round (TMNRE):")
    print(rounds[["observation", "round", "n_simulated", "n_reused", "reused_fraction", "mass",
                  "box_width_over_posterior_std", "val_loss", "seconds"]]
          .round(4).to_string(index=False))
    print("\nPer method, averaged over observations and parameters:")
    summary = table.assign(abs_mean_error_in_std=table["mean_error_in_std"].abs()).groupby(
        "method")[["n_simulations", "abs_mean_error_in_std", "std_ratio", "c2st",
                   "c2st_optimal", "seconds"]].mean()
    print(summary.round(3).to_string())
    print(f"\nwrote {RESULTS / 'bench_truncation.csv'} and "
          f"{RESULTS / 'bench_truncation_rounds.csv'}")


if __name__ == "__main__":
    main()
