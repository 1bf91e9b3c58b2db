"""Which loss learns subhalo occupancy maps: the cell posterior's or the ratio form?

Field cells (``Prior.with_field``) can learn from two losses with the same
optimum (:mod:`sklearn_tmnre.loss`): ``field_loss="posterior"``, the
cross-entropy of each cell's posterior probability, and ``field_loss="ratio"``,
the binary ratio loss with both values of the cell as exact negatives. This
script trains both on the same simulations of the subhalo example's physics
(``examples/plot_subhalo_segmentation.py``) and scores them on the same
held-out images: Brier skill against the prior frequency (per cell, per bin,
and on blocks of about 0.16'' and 0.5 dex), average precision, expected
calibration error, and the reliability of the cells given a high probability
(where the ratio form was overconfident).

    python benchmarks/bench_field_loss.py                  # --small grid, ~10 CPU-minutes
    python benchmarks/bench_field_loss.py --grid default   # 64 x 64 x 10, ~35 CPU-minutes

Appends to ``benchmarks/results/field_loss.csv``; a row already there (same grid,
loss, seed, simulations and epochs) is not run again.
"""

import argparse
import json
import pathlib
import resource
import time

import numpy as np
import pandas as pd
from bench_segmentation_ceiling import GRIDS, PHYSICS
from sklearn.metrics import average_precision_score, brier_score_loss

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.metrics import block_brier_score, expected_calibration_error
from sklearn_tmnre.tasks import subhalo_lensing

# The example's networks per grid (its SETTINGS).
NETWORKS = {"small": {"embedding__channels": 16, "embedding__depth": 2, "hidden_features": 32},
            "default": {"embedding__channels": 8, "embedding__depth": 3, "hidden_features": 16}}
# Blocks of about 0.16'' and 0.5 dex: (bins, rows, cols).
BLOCKS = {"small": (1, 1, 1), "default": (3, 3, 3)}
KEY = ["grid", "field_loss", "seed", "n_sims", "max_epochs"]


def simulate(task, n, seed):
    rng = np.random.default_rng(seed)
    theta = task.prior.sample(n, random_state=rng)
    X, occupancy = task.simulate_with_occupancy(theta, rng)
    return theta, X.astype(np.float32), occupancy


def reliability_above(y, proba, low, high):
    """Cells with probability in [low, high): their count, mean probability, frequency."""
    inside = (proba >= low) & (proba < high)
    n = int(inside.sum())
    return n, float(proba[inside].mean()) if n else np.nan, float(y[inside].mean()) if n else np.nan


def score(grid, task, est, X_test, occ_test):
    """The row's scores on the held-out images."""
    proba = est.predict_field(X_test)
    y = occ_test.astype(bool)
    frequency = est.field_prior_["occupancy"]
    prior = np.broadcast_to(frequency[None, :, None, None], proba.shape)
    per_bin = [1 - brier_score_loss(y[:, k].ravel(), proba[:, k].ravel())
               / brier_score_loss(y[:, k].ravel(), prior[:, k].ravel())
               for k in range(task.n_bins)]
    precision = [average_precision_score(y[:, k].ravel(), proba[:, k].ravel())
                 for k in range(task.n_bins) if y[:, k].any()]
    row = {
        "brier_skill": 1 - brier_score_loss(y.ravel(), proba.ravel())
        / brier_score_loss(y.ravel(), prior.ravel()),
        "brier_skill_blocks": 1 - block_brier_score(y, proba, BLOCKS[grid])
        / block_brier_score(y, prior, BLOCKS[grid]),
        "brier_skill_per_bin": json.dumps([round(v, 4) for v in per_bin]),
        "average_precision": float(np.mean(precision)),
        "expected_calibration_error": expected_calibration_error(y, proba),
    }
    for name, (low, high) in {"mid": (0.2, 0.4), "high": (0.4, 1.01)}.items():
        n, predicted, observed = reliability_above(y.ravel(), proba.ravel(), low, high)
        row.update({f"n_{name}": n, f"predicted_{name}": predicted, f"observed_{name}": observed})
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", choices=sorted(GRIDS), default="small")
    p.add_argument("--n-sims", type=int, default=None,
                   help="training images (default: 60,000 small, 55,000 default)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--losses", nargs="+", default=["posterior", "ratio"])
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    n_sims = args.n_sims or {"small": 60_000, "default": 55_000}[args.grid]
    path = pathlib.Path(args.out) / "field_loss.csv"
    done = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=KEY)
    task = subhalo_lensing(**GRIDS[args.grid], **PHYSICS)
    # The held-out images are the same for every row (their own seed).
    _, X_test, occ_test = simulate(task, args.n_test, seed=10_000)
    for seed in args.seeds:
        theta, X, occupancy = simulate(task, n_sims, seed=seed)
        prior = Prior.with_field(task.prior, "occupancy", occupancy.shape[1:])
        for loss in args.losses:
            key = (args.grid, loss, seed, n_sims, args.epochs)
            if (done[KEY].astype(str) == [str(v) for v in key]).all(axis=1).any():
                continue
            # One thread per process (n_threads, scoped to fit and predict).
            est = TMNREEstimator(prior=prior, embedding="unet", embedding_dim=16,
                                 batch_size=64, lr=2e-3, max_epochs=args.epochs, patience=5,
                                 field_loss=loss, random_state=seed, n_threads=1,
                                 **NETWORKS[args.grid])
            start = time.process_time()
            est.fit(X, theta, occupancy=occupancy)
            row = dict(zip(KEY, key), n_test=args.n_test,
                       cpu_seconds=time.process_time() - start,
                       epochs_run=len(est.net_.history),
                       peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                       **score(args.grid, task, est, X_test, occ_test))
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                              for k, v in row.items()}), flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame([row])
            frame.to_csv(path, mode="a", header=not path.exists(), index=False)
            done = pd.concat([done, frame], ignore_index=True)


if __name__ == "__main__":
    main()
