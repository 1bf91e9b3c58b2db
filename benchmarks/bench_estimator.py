"""Accuracy of one amortized round of TMNREEstimator on SBI-benchmark tasks.

Trains on ``--n-sims`` simulations of a task, builds the marginal posterior of
observation ``--observation`` and reports the C2ST (SBI-benchmark definition)
of every 1-d and 2-d marginal against the task's reference posterior.

    python benchmarks/bench_estimator.py --task two_moons --n-sims 10000
"""

import argparse
import json
import time

import torch

from sklearn_tmnre import TMNREEstimator, tasks
from sklearn_tmnre.metrics import marginal_c2st


def run(task_name, n_sims, observation, seed, n_ref, **params):
    task = tasks.get_task(task_name)
    theta, X = task.sample(n_sims, random_state=seed)
    est = TMNREEstimator(prior=task.prior, marginals="1d+2d", random_state=seed, **params)
    t0 = time.perf_counter()
    est.fit(X, theta)
    fit_seconds = time.perf_counter() - t0
    post = est.posterior(task.observation(observation))
    ref = task.reference_samples(observation, n_ref, random_state=seed)
    table = marginal_c2st(post, ref, random_state=seed)
    return {
        "task": task_name, "n_sims": n_sims, "observation": observation, "seed": seed,
        "c2st_1d": float(table.loc[table["dim"] == 1, "c2st"].mean()),
        "c2st_2d": float(table.loc[table["dim"] == 2, "c2st"].mean()),
        "epochs": len(est.net_.history), "fit_seconds": round(fit_seconds, 1),
        "params": params,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="two_moons")
    p.add_argument("--n-sims", type=int, default=10_000)
    p.add_argument("--observation", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--params", default="{}", help="JSON of TMNREEstimator hyperparameters")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = run(args.task, args.n_sims, args.observation, args.seed, args.n_ref,
              **json.loads(args.params))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
