"""Memory and time of a TMNRE round at scale: 100,000 simulations of 1,000-bin data.

The problem is linear-Gaussian, ``x = A theta + sigma * noise`` with 100 parameters
(uniform on [-1, 1]), a fixed random ``A`` of shape (1000, 100) and
``sigma = 0.1``: cheap to simulate, so the run measures the library (simulation
fan-out, the on-disk store, training, truncation, posterior grids), not the
simulator. Every configuration runs in a fresh subprocess, whose peak resident
memory (``getrusage`` ``ru_maxrss``) is then the peak of that configuration alone.

Configurations: the number of simulations (1e4, 3e4, 1e5 with the 100 1-d
marginals) and the number of marginals at 1e4 simulations (10 and 100 1-d
marginals; 1000 = the 100 1-d marginals plus 900 2-d ones, since there are only
100 parameters). ``embedding="linear"``, two torch threads, one round
(``max_rounds=1``), ``--epochs`` epochs (default 3). The heads are fixed by
``--hidden``, ``--blocks`` and ``--negatives`` (default 64, 2, 1: the cost of an
epoch is proportional to ``negatives + 1`` times ``hidden**2 * blocks``), so the
table does not move when the library's defaults do.

Training memory has a part proportional to the simulations (copies of ``X``)
and a part per batch (activations of batch x candidates x marginals x hidden
units per layer). ``--probe`` measures the second: the peak memory of one
training step of 256 pairs, for 100 and 1000 marginals, with these heads and
with the library's default ones.

    python benchmarks/bench_load.py                 # the whole table, then the probe
    python benchmarks/bench_load.py --only 100000:100

Writes ``benchmarks/results/load.csv`` (one row per configuration, written as
each finishes) and ``benchmarks/results/load_step.csv`` (the probe).
"""

import argparse
import csv
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_PARAMS, N_BINS, SIGMA = 100, 1000, 0.1
# Small runs first, so that a partial table is already informative.
CONFIGS = [(10_000, 10), (10_000, 100), (30_000, 100), (10_000, 1000), (100_000, 100)]
RESULTS = Path(__file__).parent / "results" / "load.csv"
STEP_RESULTS = Path(__file__).parent / "results" / "load_step.csv"
COLUMNS = ["n_sims", "n_marginals", "n_1d", "n_2d", "rounds", "epochs", "hidden", "blocks",
           "negatives", "peak_rss_gib",
           "baseline_rss_gib", "simulate_store_s", "train_s", "truncate_s", "posterior_s",
           "total_s", "cpu_s",
           "n_train", "mass"]


def design_matrix():
    return np.random.default_rng(12345).standard_normal((N_BINS, N_PARAMS)) / np.sqrt(N_PARAMS)


class LinearGaussian:
    """``x = A theta + SIGMA * noise`` for one parameter row (picklable for joblib)."""

    def __init__(self):
        self.A = design_matrix()

    def __call__(self, theta, rng):
        return (self.A @ theta + SIGMA * rng.standard_normal(N_BINS)).astype(np.float32)


def marginal_list(names, n_marginals):
    if n_marginals <= len(names):
        return [(n,) for n in names[:n_marginals]]
    pairs = list(itertools.islice(itertools.combinations(names, 2), n_marginals - len(names)))
    return [(n,) for n in names] + pairs


def _rss_gib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(n_sims, n_marginals, rounds, epochs, heads):
    """One configuration in this process; returns a row of the table."""
    import torch
    from scipy import stats

    from sklearn_tmnre import Prior, TMNREEstimator
    from sklearn_tmnre.rounds import TMNRE
    from sklearn_tmnre.truncation import Truncator

    torch.set_num_threads(2)
    names = [f"t{i:03d}" for i in range(N_PARAMS)]
    prior = Prior({n: stats.uniform(-1, 2) for n in names})
    simulator = LinearGaussian()
    theta_o = np.linspace(-0.5, 0.5, N_PARAMS)
    x_o = simulator(theta_o, np.random.default_rng(0))
    marginals = marginal_list(names, n_marginals)
    baseline = _rss_gib()

    est = TMNREEstimator(marginals=marginals, embedding="linear", max_epochs=epochs,
                         batch_size=256, **heads)
    start = time.perf_counter()
    run = TMNRE(simulator, prior, estimator=est, truncator=Truncator(epsilon=1e-6),
                n_sims=n_sims, max_rounds=rounds, convergence_ratio=1.0,
                random_state=0).fit(x_o)
    total = time.perf_counter() - start
    # Per round: training is the epochs' durations; truncation and the final
    # posterior are timed here; simulation and the store are the rest.
    # Per round: training is the epochs' durations, truncation is timed again here,
    # and the rest of the round is simulation, the store, data selection and net setup.
    train = sum(float(np.sum(e.net_.history[:, "dur"])) for e in run.estimators_)
    t0 = time.perf_counter()
    Truncator(epsilon=1e-6, prior=run.estimator_.prior_).fit(x_o, estimator=run.estimator_)
    truncate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.estimator_.posterior(x_o)
    posterior_s = time.perf_counter() - t0
    rest = float(run.rounds_["seconds"].sum()) - train - truncate_s * len(run.estimators_)
    n_1d = sum(len(m) == 1 for m in marginals)
    return {
        "n_sims": n_sims, "n_marginals": len(marginals), "n_1d": n_1d,
        "n_2d": len(marginals) - n_1d, "rounds": len(run.rounds_), "epochs": epochs,
        "hidden": est.hidden_features, "blocks": est.num_blocks, "negatives": est.n_negatives,
        "peak_rss_gib": round(_rss_gib(), 3), "baseline_rss_gib": round(baseline, 3),
        "simulate_store_s": round(max(rest, 0.0), 1), "train_s": round(train, 1),
        "truncate_s": round(truncate_s, 1), "posterior_s": round(posterior_s, 1),
        "total_s": round(total, 1), "cpu_s": round(_cpu_seconds(), 1),
        "n_train": int(run.rounds_["n_train"].sum()),
        "mass": float(f"{run.truncator_.mass_:.3g}"),
    }


def probe_step(n_marginals, heads):
    """Peak memory of one training step (256 pairs) above the memory before it."""
    import torch
    from scipy import stats

    from sklearn_tmnre import Prior, TMNREEstimator

    torch.set_num_threads(2)
    names = [f"t{i:03d}" for i in range(N_PARAMS)]
    prior = Prior({n: stats.uniform(-1, 2) for n in names})
    theta = prior.sample(256, random_state=0)
    simulator = LinearGaussian()
    X = np.stack([simulator(t, np.random.default_rng(i)) for i, t in enumerate(theta.to_numpy())])
    est = TMNREEstimator(prior=prior, marginals=marginal_list(names, n_marginals),
                         embedding="linear", max_epochs=1, batch_size=256,
                         validation_fraction=0.0, **heads)
    before = _rss_gib()
    start = time.perf_counter()
    est.fit(X, theta)
    return {"n_marginals": n_marginals, "hidden": est.hidden_features,
            "blocks": est.num_blocks, "negatives": est.n_negatives,
            "step_peak_gib": round(_rss_gib() - before, 3),
            "step_s": round(time.perf_counter() - start, 1)}


def _subprocess(args):
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode != 0:
        print(f"{args} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="one configuration N_SIMS:N_MARGINALS, run in this process")
    p.add_argument("--probe", action="store_true", help="only the one-step memory probe")
    p.add_argument("--probe-one", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--negatives", type=int, default=1)
    args = p.parse_args()
    heads = {"hidden_features": args.hidden, "num_blocks": args.blocks,
             "n_negatives": args.negatives}
    head_args = ["--hidden", str(args.hidden), "--blocks", str(args.blocks),
                 "--negatives", str(args.negatives)]
    if args.only:
        n_sims, n_marginals = (int(v) for v in args.only.split(":"))
        print(json.dumps(run_one(n_sims, n_marginals, args.rounds, args.epochs, heads)),
              flush=True)
        return
    if args.probe_one:
        n_marginals, which = args.probe_one.split(":")
        print(json.dumps(probe_step(int(n_marginals), heads if which == "bench" else {})),
              flush=True)
        return
    if not args.probe:
        rows = []
        for n_sims, n_marginals in CONFIGS:
            row = _subprocess(["--only", f"{n_sims}:{n_marginals}", "--rounds",
                               str(args.rounds), "--epochs", str(args.epochs), *head_args])
            if row is None:
                continue
            rows.append(row)
            print(" ".join(f"{k}={row[k]}" for k in COLUMNS), flush=True)
            _write(RESULTS, rows, COLUMNS)
        print(f"\n{'sims':>7} {'marg':>5} {'peak GiB':>9} {'base GiB':>9} {'sim+store s':>11} "
              f"{'train s':>8} {'trunc s':>8} {'post s':>7} {'total s':>8} {'cpu s':>7}")
        for r in rows:
            print(f"{r['n_sims']:>7} {r['n_marginals']:>5} {r['peak_rss_gib']:>9.2f} "
                  f"{r['baseline_rss_gib']:>9.2f} {r['simulate_store_s']:>11.1f} "
                  f"{r['train_s']:>8.1f} {r['truncate_s']:>8.1f} {r['posterior_s']:>7.1f} "
                  f"{r['total_s']:>8.1f} {r['cpu_s']:>7.1f}")
        print(f"written to {RESULTS}")
    steps = []
    for n_marginals, which in itertools.product((100, 1000), ("bench", "library")):
        row = _subprocess(["--probe-one", f"{n_marginals}:{which}", *head_args])
        if row is not None:
            steps.append(row)
            print(json.dumps(row), flush=True)
            _write(STEP_RESULTS, steps, list(row))
    print(f"written to {STEP_RESULTS}")


if __name__ == "__main__":
    main()
