"""Time per epoch and peak memory of object-by-object models as the number of objects grows.

A survey of N objects has one global parameter ``mu ~ N(0, 1)`` and one latent
parameter per object, ``z_i ~ N(mu, 0.5^2)``, observed as ``x_i = z_i + 0.3 *
noise`` (data of shape (n, N, 1)). Two ways to learn the N + 1 1-d marginals:

* ``shared``: :meth:`Prior.with_objects <sklearn_tmnre.Prior.with_objects>`
  declares the block, and one shared-weight head reads each object's own data
  (:mod:`sklearn_tmnre.objects`): the weights do not depend on N;
* ``dense``: the same parameters as a plain prior, one batched dense head per
  marginal over the whole embedding (0.1's only option): the weights grow with N.

Each configuration runs in a fresh subprocess (its peak resident memory,
``VmHWM``, is its own) on ``--sims`` simulations with the estimator's defaults
for two epochs, one torch thread; the time per epoch is the second epoch's
(skorch's duration), so start-up is not counted.

    python benchmarks/bench_objects_scale.py                       # N = 1e2, 1e3, 1e4
    python benchmarks/bench_objects_scale.py --objects 100000 --modes shared

Writes ``benchmarks/results/objects_scale.csv``, one row per (N, mode); a rerun
replaces the rows it ran and keeps the others.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "objects_scale.csv"
COLUMNS = ["n_objects", "mode", "n_sims", "batch_size", "threads", "epoch_s", "peak_rss_mib",
           "n_weights", "head_weights"]


def _peak_rss_mib():
    """This process's peak resident memory in MiB (VmHWM; ru_maxrss off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n_objects, mode, n_sims, batch_size=256):
    """Fit one configuration for two epochs in this process; return its row."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    from sklearn_tmnre import Prior, TMNREEstimator

    prior = Prior.with_objects({"mu": stats.norm(0, 1)}, {"z": stats.norm(0, 1)}, n_objects)
    if mode == "dense":
        prior = Prior(prior.distributions)  # the same parameters, no object block
    rng = np.random.default_rng(0)
    mu = rng.standard_normal(n_sims)
    z = mu[:, None] + 0.5 * rng.standard_normal((n_sims, n_objects))
    x = (z + 0.3 * rng.standard_normal((n_sims, n_objects)))[:, :, None].astype(np.float32)
    theta = pd.DataFrame(np.column_stack([mu, z]), columns=prior.names)
    est = TMNREEstimator(prior=prior, max_epochs=2, batch_size=batch_size, patience=100,
                         n_threads=1, random_state=0)
    est.fit(x, theta)
    net = est.net_.module_
    heads = sum(p.numel() for name, p in net.named_parameters() if "head" in name)
    return {"n_objects": n_objects, "mode": mode, "n_sims": n_sims, "batch_size": batch_size,
            "threads": 1,
            "epoch_s": round(float(est.net_.history[-1, "dur"]), 3),
            "peak_rss_mib": round(_peak_rss_mib()), "n_weights": sum(p.numel() for p in
                                                                     net.parameters()),
            "head_weights": heads}


def run_target(n_objects, n_sims, epochs, batch_size=16, n_test=4):
    """One model of ``n_objects`` objects on ``n_sims`` simulations for ``epochs`` epochs.

    The issue's target (10^4 objects x 10^4 simulations: at most 30 minutes of fit
    and 8 GB). The per-object prior is the simulator's marginal, ``N(0, 1 + 0.5^2)``,
    so the learned ratio and the prior it multiplies agree. Accuracy: the rms error
    of the per-object posterior means against the exact ones (conjugate Gaussian,
    ``mu`` marginalized), in units of the exact posterior standard deviation, and
    the median ratio of posterior widths, over ``n_test`` fresh surveys.
    """
    import time

    import numpy as np
    import pandas as pd
    from scipy import stats

    from sklearn_tmnre import Prior, TMNREEstimator

    s_z, s_x = 0.5, 0.3
    prior = Prior.with_objects({"mu": stats.norm(0, 1)},
                               {"z": stats.norm(0, np.hypot(1.0, s_z))}, n_objects)

    def survey(n, rng):
        mu = rng.standard_normal(n)
        z = mu[:, None] + s_z * rng.standard_normal((n, n_objects))
        return mu, z, (z + s_x * rng.standard_normal((n, n_objects))).astype(np.float32)

    rng = np.random.default_rng(0)
    mu, z, x = survey(n_sims, rng)
    theta = pd.DataFrame(np.column_stack([mu, z]), columns=prior.names)
    del z
    # Small batches: each row holds n_objects training examples of the shared head.
    est = TMNREEstimator(prior=prior, max_epochs=epochs, batch_size=batch_size, patience=100,
                         n_threads=1, random_state=0)
    start = time.process_time()
    est.fit(x[:, :, None], theta)
    fit_cpu = time.process_time() - start
    del x, theta
    # Exact: mu | x ~ N(m, v); z_i | x ~ N(a m + b x_i, v_c + a^2 v).
    pz, px = 1 / s_z**2, 1 / s_x**2
    a, b, v_c = pz / (pz + px), px / (pz + px), 1 / (pz + px)
    errors, widths = [], []
    for _, _, x_o in (survey(1, np.random.default_rng(100 + i)) for i in range(n_test)):
        x_o = x_o[0].astype(np.float64)
        v_mu = 1 / (1 + n_objects / (s_z**2 + s_x**2))
        m_mu = x_o.sum() / (s_z**2 + s_x**2) * v_mu
        mean, sd = a * m_mu + b * x_o, np.sqrt(v_c + a * a * v_mu)
        frame = est.posterior(x_o[:, None]).objects("z")
        errors.append((frame["mean"].to_numpy() - mean) / sd)
        widths.append(frame["std"].to_numpy() / sd)
    return {"n_objects": n_objects, "n_sims": n_sims, "epochs": epochs, "batch_size": batch_size,
            "fit_cpu_s": round(fit_cpu, 1), "peak_rss_mib": round(_peak_rss_mib()),
            "rms_error_ratio": round(float(np.sqrt(np.mean(np.square(errors)))), 3),
            "median_width_ratio": round(float(np.median(widths)), 3), "n_test": n_test}


def _save(rows):
    old = []
    if RESULTS.exists():
        with open(RESULTS) as f:
            old = list(csv.DictReader(f))
    def key(r):
        return str(r["n_objects"]), r["mode"], str(r.get("batch_size") or 256)

    ran = {key(r) for r in rows}
    kept = [{**r, "batch_size": r.get("batch_size") or 256} for r in old if key(r) not in ran]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(kept + rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", nargs="+", type=int, default=[100, 1_000, 10_000])
    p.add_argument("--modes", nargs="+", choices=["shared", "dense"],
                   default=["shared", "dense"])
    p.add_argument("--sims", type=int, default=512)
    p.add_argument("--batch", type=int, default=256, help="batch size (the default's 256)")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: N mode
    p.add_argument("--target", nargs=4, type=int, metavar=("N", "SIMS", "EPOCHS", "BATCH"),
                   help="one model of N objects on SIMS simulations for EPOCHS epochs: "
                        "fit CPU seconds, peak memory, per-object accuracy (objects_target.csv)")
    args = p.parse_args(argv)
    if args.target:
        row = run_target(*args.target)
        print(json.dumps(row), flush=True)
        path = RESULTS.with_name("objects_target.csv")
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        return
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), args.one[1], args.sims, args.batch)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    for n in args.objects:
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--sims", str(args.sims),
                                  "--batch", str(args.batch), "--one", str(n), mode],
                                 env=env, capture_output=True, text=True)
            if out.returncode:
                print(f"N={n} {mode}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(row, flush=True)
            rows.append(row)
    _save(rows)


if __name__ == "__main__":
    main()


def section(df):
    """The report's section (``docs/benchmarks.md``) from ``objects_scale.csv``'s rows."""
    lines = ["## Objects: scale", "",
             "`python benchmarks/bench_objects_scale.py`: one global and N per-object "
             "parameters (data (n, N, 1)), default estimator but the batch size, one torch "
             "thread, "
             f"{int(df['n_sims'].iloc[0]):,} simulations; seconds of the second epoch and the "
             "subprocess's peak resident memory. *shared*: `Prior.with_objects`, one "
             "shared-weight head for all objects; *dense*: the same parameters as a plain "
             "prior, one head per marginal. *head weights* count the heads alone (the "
             "global embedding reads all N objects in both).", "",
             "| N objects | mode | batch | s / epoch | peak MiB | weights | head weights |",
             "|---|---|---|---|---|---|---|"]
    order = ["n_objects", "mode", "batch_size"]
    for r in df.sort_values(order, ascending=[True, False, False]).itertuples():
        lines.append(f"| {r.n_objects:,} | {r.mode} | {r.batch_size} | {r.epoch_s:.2f} | "
                     f"{r.peak_rss_mib:,.0f} | {r.n_weights:,} | {r.head_weights:,} |")
    return lines + [""]
