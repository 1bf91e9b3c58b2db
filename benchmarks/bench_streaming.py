"""Throughput and memory of training streamed from a store against training in memory.

``TMNREEstimator.fit(store)`` reads a :class:`~sklearn_tmnre.store.SimulationStore`
a few chunks at a time (shuffled by chunk, the next chunks read by a background
thread), so a campaign larger than memory trains; ``fit(X, theta)`` holds the
whole campaign in memory. This measures what streaming costs in speed and saves
in memory.

The toy is linear-Gaussian, ``x = A theta + 0.1 * noise`` with 5 parameters
(uniform on [-1, 1]) and 100 features (float32, 400 bytes a row; the store's
chunks then hold 4,096 rows), ``embedding="mlp"``, the 5 1-d marginals and
otherwise the estimator's defaults (batches of 256, two negatives, a 10 %
validation split), one torch thread. Each campaign (2e4 and 1e5 rows by
default) is written to a store once; every configuration then runs in a fresh
subprocess, whose peak resident memory (``VmHWM``, or ``getrusage`` ``ru_maxrss``
off Linux) is that of the configuration alone, ``--repeats`` times in alternating
order (the load of a shared machine drifts; compare the modes over all runs):

* ``in_memory``: ``X, theta`` loaded with ``store.select()``, then ``fit(X, theta)``;
* ``streamed``: ``fit(store)``.

Throughput is the rows of the campaign (training and validation rows) per
second of an epoch, from skorch's per-epoch durations (the median over
``--epochs`` epochs; an epoch trains on the training rows and evaluates the
validation rows). ``setup_s`` is the time before the first epoch (loading the
store, or the streamed pass that standardizes ``X``); ``extra_rss_mib`` is the
peak resident memory above that after the imports.

    python benchmarks/bench_streaming.py                 # both campaigns, both modes
    python benchmarks/bench_streaming.py --rows 500000 --epochs 1

Writes ``benchmarks/results/streaming.csv``, one row per (rows, mode, run); a
rerun replaces the rows of the campaigns it ran and keeps the others.
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_PARAMS, N_FEATURES, SIGMA = 5, 100, 0.1
RESULTS = Path(__file__).parent / "results" / "streaming.csv"
COLUMNS = ["n_rows", "mode", "run", "epochs", "threads", "rows_per_s", "epoch_s", "setup_s",
           "fit_s", "peak_rss_mib", "baseline_rss_mib", "extra_rss_mib", "valid_loss"]


def _rss_mib():
    """Peak resident memory of this process so far, in MiB."""
    # VmHWM is this program's own peak: ru_maxrss also counts the parent's peak when the
    # child was spawned with vfork (as subprocess does), which would hide small peaks.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def _prior():
    from scipy import stats

    from sklearn_tmnre import Prior

    return Prior({f"theta_{i}": stats.uniform(-1, 2) for i in range(N_PARAMS)})


def write_store(path, n_rows, batch=20_000):
    """A store of ``n_rows`` simulations of the linear-Gaussian toy."""
    from sklearn_tmnre.store import SimulationStore

    rng = np.random.default_rng(0)
    A = rng.standard_normal((N_FEATURES, N_PARAMS)) / np.sqrt(N_PARAMS)
    prior = _prior()
    store = SimulationStore(path, mode="w")
    for start in range(0, n_rows, batch):
        theta = prior.sample(min(batch, n_rows - start), random_state=start)
        X = theta.to_numpy() @ A.T + SIGMA * rng.standard_normal((len(theta), N_FEATURES))
        store.append(theta, X.astype(np.float32))
    return store


def run_one(path, mode, epochs):
    """Train once from the store at ``path``; the figures of one CSV row."""
    import torch

    from sklearn_tmnre import TMNREEstimator
    from sklearn_tmnre.store import SimulationStore

    torch.set_num_threads(1)
    # The first optimizer imports torch._dynamo (seconds, ~100 MiB): not part of either mode.
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    store = SimulationStore(path, mode="r")
    baseline = _rss_mib()
    est = TMNREEstimator(prior=_prior(), max_epochs=epochs, patience=epochs + 1, n_threads=1,
                         random_state=0)
    start = time.perf_counter()
    if mode == "streamed":
        est.fit(store)
    else:
        theta, X, _ = store.select()
        est.fit(X, theta)
    fit_s = time.perf_counter() - start
    history = est.net_.history
    epoch_s = float(np.median(history[:, "dur"]))
    return {
        "n_rows": store.n_done, "mode": mode, "epochs": epochs, "threads": 1,
        "rows_per_s": round(store.n_done / epoch_s), "epoch_s": round(epoch_s, 2),
        "setup_s": round(fit_s - float(np.sum(history[:, "dur"])), 2),
        "fit_s": round(fit_s, 2), "peak_rss_mib": round(_rss_mib()),
        "baseline_rss_mib": round(baseline), "extra_rss_mib": round(_rss_mib() - baseline),
        "valid_loss": round(float(history[-1, "valid_loss"]), 4),
    }


def _subprocess(path, mode, epochs):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--one", str(path), mode,
                          "--epochs", str(epochs)], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"{mode} on {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", nargs="+", type=int, default=[20_000, 100_000])
    p.add_argument("--modes", nargs="+", default=["in_memory", "streamed"],
                   choices=["in_memory", "streamed"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2,
                   help="runs of each mode, in alternating order")
    p.add_argument("--dir", help="where to write the stores (default: a temporary folder)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--one", nargs=2, metavar=("STORE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.epochs)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n_rows in args.rows:
            path = Path(tmp) / f"toy_{n_rows}.zarr"
            start = time.perf_counter()
            write_store(path, n_rows)
            print(f"wrote {n_rows} rows in {time.perf_counter() - start:.1f} s", flush=True)
            for run in range(args.repeats):
                # Alternate the order (ABBA): the load of a shared machine drifts.
                for mode in args.modes if run % 2 == 0 else args.modes[::-1]:
                    rows.append({**_subprocess(path, mode, args.epochs), "run": run})
                    print(json.dumps(rows[-1]), flush=True)
    _write(Path(args.out), rows)
    return 0


def _write(path, rows):
    """Merge ``rows`` into the CSV at ``path``: a rerun replaces the rows of its campaigns."""
    new = {int(r["n_rows"]) for r in rows}
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["n_rows"]) not in new] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (int(r["n_rows"]), r["mode"],
                                                     int(r["run"]))))


if __name__ == "__main__":
    sys.exit(main())


def section(df):
    """The report's section (``docs/benchmarks.md``) from ``streaming.csv``'s rows."""
    lines = ["## Training from the store", "",
             "`python benchmarks/bench_streaming.py`: `fit(store)` (streamed a few chunks at "
             "a time) against `fit(X, theta)` on the same campaign (5 parameters, 100 float32 "
             "features, mlp embedding, defaults, one torch thread); rows of the campaign per "
             "second of an epoch (median over epochs; mean over runs), seconds before the "
             "first epoch, and peak resident memory above the imports' (max over runs). Runs "
             "of one mode vary by up to 30 % on a loaded machine: compare within a campaign.",
             "", "| rows | mode | runs | rows / s | setup s | extra MiB |",
             "|---|---|---|---|---|---|"]
    for (n, mode), g in df.groupby(["n_rows", "mode"]):
        lines.append(f"| {n:,} | {mode} | {len(g)} | {g['rows_per_s'].mean():,.0f} | "
                     f"{g['setup_s'].mean():.2f} | {g['extra_rss_mib'].max():,.0f} |")
    return lines + [""]
