"""
Quickstart: the two-moons posterior in a few lines
===================================================

The *two moons* problem of the SBI benchmark has two parameters and a
crescent-shaped, bimodal posterior.  We

1. draw parameters from the prior and run the simulator,
2. train a :class:`~sklearn_tmnre.TMNREEstimator` (one amortized round) that
   learns every 1-d and 2-d marginal posterior at once,
3. run :class:`~sklearn_tmnre.TMNRE`, which truncates the prior round by round
   around the observation and spends the simulations where they matter,
4. print the marginal posteriors and compare them with the exact reference
   (C2ST: 0.5 means indistinguishable), and save corner plots.

Set ``SKLEARN_TMNRE_QUICK=1`` for a tiny run (CI does this).
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch

from sklearn_tmnre import TMNRE, TMNREEstimator, simulate, tasks
from sklearn_tmnre.metrics import marginal_c2st
from sklearn_tmnre.plotting import corner

QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
N_SIMS = 1_000 if QUICK else 10_000
MAX_EPOCHS = 5 if QUICK else 300
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
# One thread in the tiny setting: torch's thread pool spins badly on a shared machine.
# The cores this process may use (a shared machine or container may grant fewer than
# os.cpu_count() reports; more torch threads than cores slows training several-fold).
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
torch.set_num_threads(1 if QUICK else max(1, CORES or 1))
N_C2ST = 500 if QUICK else None

# %%
# The problem: a prior, a simulator, an observation
# -------------------------------------------------
task = tasks.two_moons()
prior = task.prior
x_o = task.observation(1)
print(prior)
print("observation x_o =", x_o)

# %%
# One amortized round: simulate, then fit like any scikit-learn estimator
# -----------------------------------------------------------------------
theta = prior.sample(N_SIMS, random_state=0)
X = simulate(task.simulator, theta, n_jobs=-1, random_state=0)
est = TMNREEstimator(prior=prior, marginals="1d+2d", max_epochs=MAX_EPOCHS, random_state=0)
est.fit(X, theta)
posterior = est.posterior(x_o)
print(f"\nMarginal posteriors (one amortized round, {N_SIMS} simulations):")
print(posterior.summary().round(3).to_string())

reference = task.reference_samples(1, 2_000 if QUICK else 10_000, random_state=0)
scores = marginal_c2st(posterior, reference, n=N_C2ST)
print("\nC2ST against the exact posterior (0.5 = perfect):")
print(scores.round(3).to_string(index=False))

# %%
# Truncated rounds: TMNRE focuses the simulations on the observation
# -------------------------------------------------------------------
run = TMNRE(task.simulator, prior,
            estimator=TMNREEstimator(marginals="1d+2d", max_epochs=MAX_EPOCHS),
            n_sims=[N_SIMS // 3] * 3, max_rounds=3, spend_budget=True, n_jobs=-1,
            random_state=0, verbose=1)
run.fit(x_o)
print("\nRounds:")
print(run.rounds_[["round", "n_simulated", "n_reused", "mass", "val_loss", "seconds"]]
      .round(3).to_string(index=False))
print("\nMarginal posteriors after truncation:")
print(run.posterior_.summary().round(3).to_string())
scores_t = marginal_c2st(run.posterior_, reference, n=N_C2ST)
print("\nC2ST after truncation:")
print(scores_t.round(3).to_string(index=False))

# %%
# Corner plots against the reference posterior
# --------------------------------------------
fig = corner([posterior, run.posterior_], reference=reference, truths=task.true_parameters(1),
             legend=["one round", "TMNRE (truncated)"])
fig.savefig(OUT / "quickstart_corner.png", dpi=120, bbox_inches="tight")
print(f"\nSaved {OUT / 'quickstart_corner.png'}")
