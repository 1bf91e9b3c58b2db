"""
Scaling out: simulations on a Dask cluster, kept in a resumable store
=====================================================================

Real simulators take seconds to hours per draw, so the simulations of a TMNRE
campaign belong on a cluster and on disk. This example runs the supernova
campaign of :ref:`sphx_glr_auto_examples_plot_supernova_cosmology.py` (global
parameters, 1-d marginals) with

* the simulations fanned out to a ``dask.distributed`` cluster through
  joblib's Dask backend: ``with joblib.parallel_config(backend="dask"):``.
  Nothing else changes; each draw is seeded by its position in the campaign,
  so the cluster produces bit for bit the simulations a laptop would;
* every batch of simulations committed to a
  :class:`~sklearn_tmnre.SimulationStore` on disk as soon as it finishes.

Running the same campaign again on the same store *resumes* it: finished
rounds are replayed from the stored simulations and only missing draws are
simulated. Here the second run finds everything in the store and simulates
nothing; after a crash it would simulate only what was lost.

By default a local cluster of two single-threaded worker processes is
started; ``--scheduler tcp://host:8786`` connects to a running scheduler
instead (start workers with ``dask worker tcp://host:8786 --nthreads 1``; the
store must be on storage this process can write). The store is
``examples/output/scaling_out.zarr``; it is deleted at the start unless
``--resume`` is given. ``--full`` runs a larger campaign and
``SKLEARN_TMNRE_QUICK=1`` a tiny one.

Worker processes are started with ``spawn``, which re-imports the main
script, so the code that starts the cluster runs under
``if __name__ == "__main__":``.
"""

import argparse
import os
import time
from pathlib import Path

import joblib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from sklearn_tmnre import TMNRE, SimulationStore, TMNREEstimator
from sklearn_tmnre.tasks.supernova import supernovae

parser = argparse.ArgumentParser(description="TMNRE with simulations on a Dask cluster.")
parser.add_argument("--full", action="store_true", help="a larger campaign")
parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="address of a running dask scheduler (default: a local cluster)")
parser.add_argument("--resume", action="store_true",
                    help="keep the store of an earlier run and resume its campaign")
ARGS, _ = parser.parse_known_args()
QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
SIZE = "quick" if QUICK else "full" if ARGS.full else "default"
SETTINGS = {
    "quick": {"n_sn": 200, "n_sims": 200, "max_rounds": 2, "max_epochs": 2},
    "default": {"n_sn": 1_000, "n_sims": 2_000, "max_rounds": 3, "max_epochs": 30},
    "full": {"n_sn": 1_000, "n_sims": 20_000, "max_rounds": 5, "max_epochs": 200},
}[SIZE]
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
STORE = OUT / "scaling_out.zarr"
# Small networks: one intra-op thread is as fast as several and leaves the other
# cores to the simulations.
torch.set_num_threads(1)

# %%
# The campaign
# ------------
# A function builds the TMNRE run, so that the first run and the rerun are
# configured identically. ``store`` makes it persistent; ``n_jobs=-1`` uses
# every worker of whatever joblib backend is active.
task = supernovae(n_sn=SETTINGS["n_sn"])
x_o = task.observation(1)
truth = dict(zip(task.prior.names, task.true_parameters(1)))


def make_run():
    """The TMNRE campaign of this example, on the store ``STORE``."""
    estimator = TMNREEstimator(marginals="1d", embedding_dim=16, patience=6, lr=2e-3,
                               max_epochs=SETTINGS["max_epochs"])
    return TMNRE(task.simulator, task.prior, estimator=estimator, n_sims=SETTINGS["n_sims"],
                 max_rounds=SETTINGS["max_rounds"], store=STORE, n_jobs=-1, random_state=0,
                 verbose=1)


# %%
# A cluster
# ---------
# ``LocalCluster`` stands in for a real cluster; a ``Client`` connected to any
# scheduler is used the same way.


def connect():
    """A dask Client (and the LocalCluster it owns, or None for a remote scheduler)."""
    from distributed import Client, LocalCluster

    if ARGS.scheduler:
        return Client(ARGS.scheduler), None
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    return Client(cluster), cluster


# %%
# Run, then run again on the same store
# -------------------------------------
# The first run simulates on the cluster and commits each batch to the store.
# The rerun builds a fresh TMNRE object, as a restarted job would: it finds
# every draw in the store (``n_resumed``), simulates none, and reproduces
# the boxes and posteriors of the first run.
if __name__ == "__main__":
    start = time.perf_counter()
    if not ARGS.resume:
        SimulationStore(STORE, mode="w")  # "w" deletes the store of an earlier run
    print(f"size={SIZE}; store {STORE} holds {len(SimulationStore(STORE))} simulations")
    client, cluster = connect()
    try:
        print("dask workers:", len(client.scheduler_info()["workers"]))
        with joblib.parallel_config(backend="dask"):
            t0 = time.perf_counter()
            run = make_run().fit(x_o)
            t_first = time.perf_counter() - t0
            n_stored = len(SimulationStore(STORE))
            t0 = time.perf_counter()
            rerun = make_run().fit(x_o)
            t_rerun = time.perf_counter() - t0
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    columns = ["round", "n_simulated", "n_resumed", "n_reused", "mass", "seconds"]
    print(f"\nFirst run ({t_first:.0f} s):")
    print(run.rounds_[columns].round(4).to_string(index=False))
    print(f"\nRerun on the same store ({t_rerun:.0f} s):")
    print(rerun.rounds_[columns].round(4).to_string(index=False))
    n_new = len(SimulationStore(STORE)) - n_stored
    print(f"\nThe store holds {n_stored} simulations after the first run; the rerun simulated "
          f"{n_new} new rows.")
    same_boxes = all(np.array_equal(a.prior_.bounds, b.prior_.bounds)
                     for a, b in zip(run.truncators_, rerun.truncators_))
    print("rerun found the same boxes:", same_boxes)
    store = SimulationStore(STORE, mode="r")
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    for r in np.unique(store.rounds):
        sims = store.theta[store.rounds == r]
        ax.plot(sims["Om"], sims["M"], ".", ms=2, label=f"round {r}: {len(sims)} simulations")
    ax.plot(truth["Om"], truth["M"], "k+", ms=12, mew=2)
    ax.set_xlabel(r"$\Omega_m$")
    ax.set_ylabel("$M$")
    ax.set_title("simulations in the store")
    ax.legend(markerscale=4)
    fig.savefig(OUT / "scaling_out_store.png", dpi=120, bbox_inches="tight")

    summary = run.posterior_.summary()
    summary.insert(0, "truth", summary.index.map(truth))
    print("\nPosterior of the first run:")
    print(summary[["truth", "mean", "std", "lower_95", "upper_95"]].round(4).to_string())
    print(f"\nFigure saved under {OUT}; total {time.perf_counter() - start:.0f} s")
