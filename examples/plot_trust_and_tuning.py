"""
Trust and tuning: coverage tests, cross-validation and grid search
==================================================================

A posterior is only useful if its credible regions can be trusted: a 90 %
region should contain the true parameters of 90 % of the data sets drawn from
the prior. Neural ratio estimators trained on a limited budget of simulations
tend to be *overconfident* (Hermans et al. 2022, "A trust crisis in
simulation-based inference?"). This example checks calibration with the
scikit-learn tools every user already knows:

1. ``cross_val_score`` with :func:`~sklearn_tmnre.metrics.coverage_scorer`
   measures, fold by fold, how far the empirical coverage of held-out pairs
   is from the nominal level (0 is perfect, more negative is worse);
2. :func:`~sklearn_tmnre.metrics.expected_coverage` and
   :func:`~sklearn_tmnre.plotting.coverage_plot` draw the whole coverage curve
   with its binomial uncertainty band;
3. ``GridSearchCV`` tunes the embedding width and the *balance* weight of
   balanced NRE (Delaunoy et al. 2022). Balancing pushes the classifier towards
   conservative (wider) posteriors: the table shows the trade between sharpness
   (mean posterior standard deviation) and calibration (coverage gap).

The problem is the *two moons* task of the SBI benchmark (two parameters,
crescent-shaped posteriors), with a deliberately small budget of 1,500
simulations, where overconfidence shows. Set ``SKLEARN_TMNRE_QUICK=1`` for a tiny run, or
pass ``--full`` for a larger simulation budget.
"""

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from sklearn_tmnre import TMNREEstimator, tasks
from sklearn_tmnre.metrics import coverage_scorer, expected_coverage
from sklearn_tmnre.plotting import coverage_plot

parser = argparse.ArgumentParser(description="Coverage tests and hyperparameter search.")
parser.add_argument("--full", action="store_true", help="larger simulation budget")
ARGS, _ = parser.parse_known_args()
QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
SIZE = "quick" if QUICK else "full" if ARGS.full else "default"
SETTINGS = {
    # n_train: simulations to train and cross-validate on; n_test: held-out pairs.
    "quick": {"n_train": 300, "n_test": 100, "max_epochs": 2, "hidden_features": 16,
              "embedding_dim": [4, 16]},
    "default": {"n_train": 1_500, "n_test": 2_000, "max_epochs": 100, "hidden_features": 32,
                "embedding_dim": [4, 16]},
    "full": {"n_train": 20_000, "n_test": 5_000, "max_epochs": 200, "hidden_features": 64,
             "embedding_dim": [4, 16, 64]},
}[SIZE]
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
# The networks are small: one intra-op thread is as fast as several, and it does
# not slow down when other processes share the cores.
torch.set_num_threads(1)
START = time.perf_counter()

# %%
# Simulations from the prior
# --------------------------
# Calibration is a property of the estimator over the whole prior, so training
# and test pairs are both drawn from the prior (one amortized round, no
# truncation). ``Task.sample`` runs the vectorized simulator.
task = tasks.two_moons()
prior = task.prior
theta, X = task.sample(SETTINGS["n_train"], random_state=0)
theta_test, X_test = task.sample(SETTINGS["n_test"], random_state=1)
print(f"size={SIZE}: {len(X)} training and {len(X_test)} test simulations")

est = TMNREEstimator(prior=prior, marginals="1d", hidden_features=SETTINGS["hidden_features"],
                     max_epochs=SETTINGS["max_epochs"], patience=10, lr=2e-3, random_state=0)

# %%
# Cross-validated coverage
# ------------------------
# ``coverage_scorer()`` returns minus the mean absolute gap between empirical
# and nominal coverage over the levels 0.05, 0.10, ..., 0.95 and all 1-d
# marginals. It plugs into any scikit-learn model-selection tool.
scores = cross_val_score(est, X, theta, cv=3, scoring=coverage_scorer())
print("\nCross-validated coverage score per fold (0 = calibrated):", np.round(scores, 3))
print(f"mean {scores.mean():.3f} +/- {scores.std():.3f}")

# %%
# The coverage curve of one estimator
# -----------------------------------
# A curve below the diagonal is overconfident (credible regions too small),
# above it conservative. The bands are Jeffreys 95 % intervals of the
# empirical coverage of ``n_test`` pairs.
levels = np.round(np.linspace(0.05, 0.95, 19), 2)
est.fit(X, theta)
table = expected_coverage(est, X_test, theta_test, levels=levels)
print("\nExpected coverage of the unbalanced estimator at the 70 % and 95 % levels:")
print(table[table["level"].isin([0.7, 0.95])].round(3).to_string(index=False))
fig = coverage_plot(table)
fig.axes[0].set_title("balance = 0")
fig.savefig(OUT / "trust_coverage.png", dpi=120, bbox_inches="tight")

# %%
# Grid search: embedding width and balance
# ----------------------------------------
# Two scorers run on every held-out fold: calibration (``coverage_scorer``)
# and sharpness, here minus the mean posterior standard deviation (higher is
# sharper). ``refit="coverage"`` keeps the best calibrated setting. A third
# scorer, the signed coverage gap (mean of empirical minus nominal coverage),
# tells overconfidence (negative) from conservativeness (positive).


def sharpness(estimator, X, theta):
    """Minus the posterior standard deviation, averaged over 1-d marginals and data sets."""
    posteriors = estimator.posterior(X)
    return -float(np.mean([post.std().mean() for post in posteriors]))


def coverage_gap(estimator, X, theta):
    """Mean signed gap between empirical and nominal coverage (negative = overconfident)."""
    frame = expected_coverage(estimator, X, theta, levels=levels)
    return float((frame["coverage"] - frame["level"]).mean())


grid = {"embedding_dim": SETTINGS["embedding_dim"], "balance": [0.0, 10.0]}
search = GridSearchCV(est, grid, cv=KFold(3),
                      scoring={"coverage": coverage_scorer(), "sharpness": sharpness,
                               "gap": coverage_gap},
                      refit="coverage")
search.fit(X, theta)
results = pd.DataFrame(search.cv_results_)
summary = pd.DataFrame({
    "embedding_dim": results["param_embedding_dim"],
    "balance": results["param_balance"],
    "posterior_std": -results["mean_test_sharpness"],
    "coverage_error": -results["mean_test_coverage"],
    "coverage_gap": results["mean_test_gap"],
})
print("\nGrid search (3-fold means; posterior_std: mean 1-d posterior std; coverage_error: mean "
      "|empirical - nominal|;\ncoverage_gap: mean empirical - nominal, < 0 overconfident):")
print(summary.round(4).to_string(index=False))
print("best setting by coverage:", search.best_params_)

# %%
# Balanced against unbalanced, on the held-out test set
# -----------------------------------------------------
# The same architecture with ``balance=10``, trained on the same simulations.
# Balancing moves the coverage curve up, towards or above the diagonal; the
# price, if any, is wider posteriors (compare the mean posterior standard
# deviations printed below).
balanced = clone(est).set_params(balance=10.0).fit(X, theta)
table_b = expected_coverage(balanced, X_test, theta_test, levels=levels)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), layout="constrained")
for ax, frame, title in ((axes[0], table, "balance = 0"), (axes[1], table_b, "balance = 10")):
    coverage_plot(frame, ax=ax)
    ax.set_title(title)
fig.savefig(OUT / "trust_balance.png", dpi=120, bbox_inches="tight")
for name, model, frame in (("balance=0", est, table), ("balance=10", balanced, table_b)):
    gap = (frame["coverage"] - frame["level"]).mean()
    print(f"test set, {name}: mean posterior std {-sharpness(model, X_test, theta_test):.4f}, "
          f"coverage gap {gap:+.3f}, coverage score "
          f"{coverage_scorer()(model, X_test, theta_test):.3f}")
print(f"\nFigures saved under {OUT}; total {time.perf_counter() - START:.0f} s")
