"""Accuracy of one amortized round of TMNREEstimator on SBI-benchmark tasks.

Trains on ``--n-sims`` simulations of a task, builds the marginal posteriors of
the observations ``--observations`` and reports the C2ST (SBI-benchmark
definition) of every 1-d and 2-d marginal against the task's reference
posterior, and the held-out loss of every marginal's classifier on
``--n-test`` fresh pairs (a low-noise measure of each head: on two moons the
2-d loss orders training runs as their 2-d C2ST does).

    python benchmarks/bench_estimator.py --task two_moons --n-sims 10000
    python benchmarks/bench_estimator.py --data-seed 0 --seed 2 --observations 1 2 3 \\
        --params '{"patience": 20}'
"""

import argparse
import json
import time

import numpy as np
import torch

from sklearn_tmnre import TMNREEstimator, tasks
from sklearn_tmnre.metrics import marginal_c2st


def held_out_loss(est, task, n, seed):
    """Cross-entropy of every marginal's classifier on ``n`` fresh joint and shuffled pairs."""
    theta, X = task.sample(n, random_state=np.random.SeedSequence([seed, 7]))
    shuffled = theta.iloc[np.random.default_rng(seed).permutation(n)].reset_index(drop=True)
    joint, marginal = est.log_ratio(X, theta), est.log_ratio(X, shuffled)
    loss = np.logaddexp(0, -joint).mean() + np.logaddexp(0, marginal).mean()
    return {k: round(float(v), 4) for k, v in loss.items()}


def run(task_name, n_sims, observations, seed, data_seed, n_ref, n_test, **params):
    task = tasks.get_task(task_name)
    theta, X = task.sample(n_sims, random_state=data_seed)
    est = TMNREEstimator(prior=task.prior, marginals="1d+2d", random_state=seed, **params)
    t0 = time.perf_counter()
    est.fit(X, theta)
    fit_seconds = time.perf_counter() - t0
    c2st = {}
    for obs in observations:
        post = est.posterior(task.observation(obs))
        ref = task.reference_samples(obs, n_ref, random_state=seed)
        table = marginal_c2st(post, ref, random_state=seed)
        c2st[obs] = [round(float(table.loc[table["dim"] == d, "c2st"].mean()), 4)
                     for d in (1, 2)]
    return {
        "task": task_name, "n_sims": n_sims, "seed": seed, "data_seed": data_seed,
        "c2st_1d_2d": c2st, "held_out_loss": held_out_loss(est, task, n_test, data_seed),
        "epochs": len(est.net_.history), "fit_seconds": round(fit_seconds, 1),
        "params": params,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="two_moons")
    p.add_argument("--n-sims", type=int, default=10_000)
    p.add_argument("--observations", type=int, nargs="+", default=[1])
    p.add_argument("--seed", type=int, default=0, help="seeds the estimator")
    p.add_argument("--data-seed", type=int, help="seeds the training set (default: --seed)")
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--params", default="{}", help="JSON of TMNREEstimator hyperparameters")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data_seed = args.seed if args.data_seed is None else args.data_seed
    out = run(args.task, args.n_sims, args.observations, args.seed, data_seed, args.n_ref,
              args.n_test, **json.loads(args.params))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
