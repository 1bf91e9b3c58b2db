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
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sklearn_tmnre import TMNRE, TMNREEstimator, simulate, tasks
from sklearn_tmnre.metrics import marginal_c2st
from sklearn_tmnre.plotting import corner

QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
N_SIMS = 1_000 if QUICK else 10_000
# The estimator's defaults choose the epochs; the tiny setting caps them.
CAP = {"max_epochs": 5} if QUICK else {}
# C2ST on 2,000 posterior and reference draws per marginal: each test trains a small
# classifier five times, and on 10,000 draws the tests alone would take minutes.
N_C2ST = 500 if QUICK else 2_000
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
START = time.perf_counter()


def elapsed():
    return f"[{time.perf_counter() - START:.0f} s]"


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
print(f"{elapsed()} simulated {len(X)} draws; training (a line every few seconds):")
# verbose=1: a progress line every few seconds. Torch threads follow the free cores
# (n_threads=None); pass n_threads=1 on a machine shared with other jobs.
est = TMNREEstimator(prior=prior, marginals="1d+2d", random_state=0, verbose=1, **CAP)
est.fit(X, theta)
posterior = est.posterior(x_o)
print(f"\n{elapsed()} marginal posteriors (one amortized round, {N_SIMS} simulations):")
print(posterior.summary().round(3).to_string())

reference = task.reference_samples(1, 2_000 if QUICK else 10_000, random_state=0)
scores = marginal_c2st(posterior, reference, n=N_C2ST)
print("\nC2ST against the exact posterior (0.5 = perfect):")
print(scores.round(3).to_string(index=False))

# %%
# Truncated rounds: TMNRE focuses the simulations on the observation
# -------------------------------------------------------------------
run = TMNRE(task.simulator, prior,
            estimator=TMNREEstimator(marginals="1d+2d", verbose=1, **CAP),
            n_sims=N_SIMS, max_rounds=2, n_jobs=-1,
            random_state=0, verbose=1)
run.fit(x_o)
print(f"\n{elapsed()} rounds:")
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
print(f"\n{elapsed()} saved {OUT / 'quickstart_corner.png'}")
