"""
Model comparison: the posterior probability of a model against the exact Bayes factor
=====================================================================================

Which of two models do the data prefer? With a *model index* as a discrete
parameter, its marginal posterior :math:`P(m \\mid x)` answers that question,
and the Bayes factor is the posterior odds over the prior odds,

.. math:: B_{10}(x) = \\frac{p(x \\mid m = 1)}{p(x \\mid m = 0)}
          = \\frac{P(m = 1 \\mid x)}{P(m = 0 \\mid x)}
            \\frac{P(m = 0)}{P(m = 1)} .

TMNRE learns :math:`P(m \\mid x)` like any other marginal: one head for the
model index, one for the shared parameter, both on one embedding of the data
(see :doc:`/user_guide/discrete`).

**The two models.** Both share a parameter :math:`\\mu \\sim \\mathcal N(0, 1)`
and observe :math:`n = 10` numbers with unit Gaussian noise; they differ in
how strongly :math:`\\mu` shows in the data,

.. math:: m = 0:\\ x_i \\sim \\mathcal N(\\mu, 1), \\qquad
          m = 1:\\ x_i \\sim \\mathcal N(3 \\mu, 1), \\qquad
          m \\sim \\mathrm{Bernoulli}(1/2).

(A prior is a product of independent 1-d distributions, so :math:`\\mu`'s
prior cannot depend on :math:`m`; scaling its effect in the simulator instead
gives the same evidence as a wider prior under model 1.) Both are conjugate:
the evidence is Gaussian, :math:`x \\mid m \\sim \\mathcal N(0,\\ I + \\tau_m^2
\\mathbf 1 \\mathbf 1^\\top)` with :math:`\\tau_0 = 1,\\ \\tau_1 = 3`, so the
exact :math:`P(m = 1 \\mid x) = B_{10} / (1 + B_{10})` is known for every
:math:`x`; and given :math:`m` the posterior of :math:`\\mu` is Gaussian with
precision :math:`1 + n \\tau_m^2` and mean :math:`\\tau_m \\sum_i x_i / (1 + n
\\tau_m^2)`, so the posterior of :math:`\\mu` marginalized over the models is
an exact two-component mixture.

We train one estimator on simulations of the joint :math:`(m, \\mu, x)` with
the marginals ``[("m",), ("mu",)]``, then compare on fresh test simulations:

* the estimated against the exact :math:`P(m = 1 \\mid x)` (mean absolute
  error) and :math:`\\log B_{10}` (root mean square error where the data do not
  decide beyond 150 : 1, :math:`|\\log B_{10}| \\le 5`: beyond it the
  training set holds few simulations and the classification loss barely
  changes with the exact value, so the estimate levels off; the probability is
  within 0.007 of 0 or 1 there anyway);
* calibration: the reliability of the predicted probabilities in bins (the
  fraction of test data from model 1 among those given probability
  :math:`\\approx p`), its expected calibration error beside that of the exact
  probabilities (the noise floor of the test set), and the expected coverage
  of both marginals;
* the posterior of :math:`\\mu` at one observation the data leave ambiguous,
  against the exact mixture.

Run with ``SKLEARN_TMNRE_QUICK=1`` for a tiny smoke test, or with ``--full``
for a larger simulation budget. The last line printed is a JSON object of the
key figures.
"""

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats
from scipy.special import expit

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.metrics import expected_coverage, jeffreys_interval
from sklearn_tmnre.plotting import corner

parser = argparse.ArgumentParser(description="Bayesian model comparison with TMNRE.")
parser.add_argument("--full", action="store_true", help="larger simulation budget")
ARGS, _ = parser.parse_known_args()
QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
SIZE = "quick" if QUICK else "full" if ARGS.full else "default"
SETTINGS = {
    # n_sims: training simulations; n_test: held-out simulations.
    "quick": {"n_sims": 2_000, "n_test": 500, "max_epochs": 10},
    "default": {"n_sims": 50_000, "n_test": 10_000, "max_epochs": 50},
    "full": {"n_sims": 200_000, "n_test": 20_000, "max_epochs": 100},
}[SIZE]
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
# Small networks: one intra-op thread is as fast as several, and it does not slow
# down when other processes share the cores.
torch.set_num_threads(1)
START = time.perf_counter()

N_OBS = 10              # numbers per observation
TAU = np.array([1.0, 3.0])  # effect scale of mu under model 0 and model 1
LOG_BF_RANGE = 5.0      # |log B10| within which log Bayes factors are compared
RELIABILITY_BINS = 10

# %%
# The joint prior and the two simulators
# --------------------------------------
# The model index is a Bernoulli parameter beside the continuous one. One
# vectorized function runs both simulators, each row with its own model.
prior = Prior({"m": stats.bernoulli(0.5), "mu": stats.norm(0, 1)})


def simulate(theta, random_state):
    """``N_OBS`` draws of N(tau_m mu, 1) per row of ``theta`` (columns m, mu)."""
    rng = np.random.default_rng(random_state)
    mean = TAU[theta["m"].to_numpy().astype(int)] * theta["mu"].to_numpy()
    return mean[:, None] + rng.standard_normal((len(theta), N_OBS))


def exact_log_bayes_factor(X):
    """log p(x | m=1) - log p(x | m=0): two Gaussian evidences N(0, I + tau_m^2 11^T)."""
    evidence = [stats.multivariate_normal(np.zeros(N_OBS),
                                          np.eye(N_OBS) + tau**2 * np.ones((N_OBS, N_OBS)))
                for tau in TAU]
    # logpdf drops the axis of a single row; keep one value per row.
    return np.atleast_1d(evidence[1].logpdf(X) - evidence[0].logpdf(X))


def exact_mu_posterior(x):
    """The mixture over models of the conjugate posteriors of mu: (weights, means, stds)."""
    p1 = expit(exact_log_bayes_factor(x[None])[0])  # equal prior odds
    precision = 1 + N_OBS * TAU**2
    return np.array([1 - p1, p1]), TAU * x.sum() / precision, 1 / np.sqrt(precision)


theta = prior.sample(SETTINGS["n_sims"], random_state=0)
X = simulate(theta, random_state=0)
theta_test = prior.sample(SETTINGS["n_test"], random_state=1)
X_test = simulate(theta_test, random_state=1)
print(f"size={SIZE}: {len(X)} training and {len(X_test)} test simulations of "
      f"{N_OBS} numbers")

# %%
# One estimator for the model index and the parameter
# ---------------------------------------------------
# The observations are iid draws, so a permutation-invariant ``"deepset"``
# embedding fits them: it cannot learn anything that depends on the order.
# Early stopping is off (``patience`` = all epochs): the cosine learning-rate
# schedule takes its small final steps only in the last epochs, and those are
# what bring the probabilities onto the exact ones (stopped at the first
# plateau, the error in P(m = 1 | x) was several times larger in our runs).
estimator = TMNREEstimator(prior=prior, marginals=[("m",), ("mu",)], embedding="deepset",
                           embedding_dim=16, embedding__hidden=32, hidden_features=32,
                           max_epochs=SETTINGS["max_epochs"], patience=SETTINGS["max_epochs"],
                           random_state=0)
t0 = time.perf_counter()
estimator.fit(X, theta)
fit_seconds = time.perf_counter() - t0
print(f"fit in {fit_seconds:.0f} s, {len(estimator.net_.history)} epochs")

# %%
# Posterior model probabilities against the exact Bayes factor
# ------------------------------------------------------------
# ``predict_proba`` gives the class probabilities of the model index. The
# estimated log Bayes factor is the difference of the model head's log
# ratios at m = 1 and m = 0, :math:`\log [P(m{=}1 \mid x) / P(m{=}1)] -
# \log [P(m{=}0 \mid x) / P(m{=}0)]`, which stays finite where the
# probability rounds to 0 or 1.
p_est = estimator.predict_proba(X_test)[1.0].to_numpy()
log_bf = exact_log_bayes_factor(X_test)
p_exact = expit(log_bf)  # equal prior odds: P(m=1 | x) = B / (1 + B)


def model_log_ratio(m):
    at = pd.DataFrame({"m": np.full(len(X_test), float(m)), "mu": 0.0})
    return estimator.log_ratio(X_test, at)["m"].to_numpy()


log_bf_est = model_log_ratio(1) - model_log_ratio(0)
decisive = np.abs(log_bf) > LOG_BF_RANGE
mae = float(np.mean(np.abs(p_est - p_exact)))
rmse = float(np.sqrt(np.mean((log_bf_est - log_bf)[~decisive] ** 2)))
print(f"\nP(m=1 | x): mean absolute error {mae:.4f} over {len(X_test)} test observations")
print(f"log B10: rmse {rmse:.3f} over the {np.sum(~decisive)} with |log B10| <= "
      f"{LOG_BF_RANGE:g}; beyond, the sign agrees for "
      f"{np.mean(np.sign(log_bf_est[decisive]) == np.sign(log_bf[decisive])):.1%} of "
      f"{np.sum(decisive)}")

# %%
# Calibration
# -----------
# Among test observations given probability about p of model 1, a fraction p
# should come from model 1. The expected calibration error weighs each bin's
# gap by its share of the test set; the exact probabilities' own error is what
# a perfect estimator would show on this many test observations.
truth_m = theta_test["m"].to_numpy()
edges = np.linspace(0, 1, RELIABILITY_BINS + 1)


def reliability(p):
    """Per bin of predicted probability: mean prediction, frequency of m=1, count."""
    bins = np.clip(np.digitize(p, edges) - 1, 0, RELIABILITY_BINS - 1)
    rows = [(p[bins == b].mean(), truth_m[bins == b].mean(), np.sum(bins == b))
            for b in range(RELIABILITY_BINS) if np.any(bins == b)]
    return pd.DataFrame(rows, columns=["predicted", "observed", "count"])


def calibration_error(table):
    return float(np.sum(table["count"] * np.abs(table["predicted"] - table["observed"]))
                 / table["count"].sum())


rel_est, rel_exact = reliability(p_est), reliability(p_exact)
ece, ece_exact = calibration_error(rel_est), calibration_error(rel_exact)
print(f"\nexpected calibration error {ece:.4f} (exact probabilities: {ece_exact:.4f})")
print(rel_est.round(3).to_string(index=False))

levels = [0.5, 0.9]
coverage = expected_coverage(estimator, X_test, theta_test, levels=levels, dims=(1,))
print("\nExpected coverage (randomized levels for the model index):")
print(coverage.round(3).to_string(index=False))
cov_at = coverage[coverage["level"] == 0.9].set_index("marginal")["coverage"]

# %%
# The posterior of mu at an ambiguous observation
# -----------------------------------------------
# Where the data leave the model open, the posterior of :math:`\mu` is a
# mixture of two conjugate posteriors, one per model, weighted by their
# posterior probabilities: near :math:`\bar x` under model 0 and near
# :math:`\bar x / 3` under model 1. The observation shown is the test one
# whose exact :math:`P(m = 1 \mid x)` is closest to one half.
i_o = int(np.argmin(np.abs(p_exact - 0.5)))
x_o = X_test[i_o]
post = estimator.posterior(x_o)
weights, means, stds = exact_mu_posterior(x_o)
(centres,), density = post.density("mu")
width = centres[1] - centres[0]
exact_density = np.sum(weights[:, None] * stats.norm.pdf(centres[None], means[:, None],
                                                          stds[:, None]), axis=0)
total_variation = float(0.5 * np.sum(np.abs(density - exact_density)) * width)
exact_mean = float(weights @ means)
exact_std = float(np.sqrt(weights @ (stds**2 + means**2) - exact_mean**2))
print(f"\nObservation {i_o}: P(m=1 | x_o) = {post.probabilities('m')[1.0]:.3f} "
      f"(exact {p_exact[i_o]:.3f})")
print(pd.DataFrame({"estimated": [post.mean()["mu"], post.std()["mu"]],
                    "exact": [exact_mean, exact_std]}, index=["mean of mu", "std of mu"])
      .round(3).to_string())
print(f"total variation distance to the exact mixture: {total_variation:.3f}")

# Exact posterior draws, drawn over the estimate: the model from its exact
# probability, then mu from that model's conjugate posterior.
rng = np.random.default_rng(2)
m_draws = (rng.random(20_000) < weights[1]).astype(float)
reference = pd.DataFrame({"m": m_draws, "mu": rng.normal(means[m_draws.astype(int)],
                                                         stds[m_draws.astype(int)])})
fig = corner(post, reference=reference, truths=theta_test.iloc[i_o], legend=["TMNRE"],
             labels={"m": "model $m$", "mu": r"$\mu$"})
fig.savefig(OUT / "model_comparison_posterior.png", dpi=120, bbox_inches="tight")

# %%
# Figures: estimated against exact
# --------------------------------
fig, axes = plt.subplots(1, 3, figsize=(14, 4.5), layout="constrained")
for m, color in ((0, "C0"), (1, "C1")):
    on = truth_m == m
    axes[0].plot(p_exact[on], p_est[on], ".", ms=3, alpha=0.5, color=color,
                 label=f"simulated by model {m}")
axes[0].plot([0, 1], [0, 1], "k--", lw=1)
axes[0].set_xlabel(r"exact $P(m = 1 \mid x)$")
axes[0].set_ylabel(r"estimated $P(m = 1 \mid x)$")
axes[0].set_title(f"mean absolute error {mae:.3f}")
axes[0].legend(loc="upper left")

# The exact log Bayes factor is bounded below (at xbar = 0 the data favour the
# narrower model by at most sqrt((1/n + 9) / (1/n + 1)) : 1), not above: the
# panel runs from its minimum to the 99th percentile.
lim = (log_bf.min() - 1, np.quantile(log_bf, 0.99))
axes[1].plot(log_bf, log_bf_est, ".", ms=3, alpha=0.5, color="0.3")
axes[1].plot(lim, lim, "k--", lw=1)
axes[1].axvspan(lim[0], LOG_BF_RANGE, color="C2", alpha=0.1,
                label=rf"$|\log B_{{10}}| \leq {LOG_BF_RANGE:g}$: rmse {rmse:.2f}")
axes[1].set_xlim(lim)
axes[1].set_ylim(lim)
axes[1].set_xlabel(r"exact $\log B_{10}$")
axes[1].set_ylabel(r"estimated $\log B_{10}$")
axes[1].legend(loc="upper left")

for table, label, style in ((rel_est, f"TMNRE (ECE {ece:.3f})", "o-"),
                            (rel_exact, f"exact (ECE {ece_exact:.3f})", "s--")):
    lower, upper = jeffreys_interval(np.round(table["observed"] * table["count"]),
                                     table["count"])
    axes[2].errorbar(table["predicted"], table["observed"],
                     yerr=[table["observed"] - lower, upper - table["observed"]],
                     fmt=style, ms=4, capsize=2, label=label)
axes[2].plot([0, 1], [0, 1], "k--", lw=1)
axes[2].set_aspect("equal")
axes[2].set_xlabel(r"predicted $P(m = 1 \mid x)$")
axes[2].set_ylabel("fraction simulated by model 1")
axes[2].set_title("reliability")
axes[2].legend(loc="upper left")
fig.savefig(OUT / "model_comparison_bayes_factor.png", dpi=120, bbox_inches="tight")
print(f"\nFigures saved under {OUT}; total {time.perf_counter() - START:.0f} s")

print(json.dumps({
    "model_probability_mae": round(mae, 4),
    "log_bayes_factor_rmse": round(rmse, 4),
    "log_bayes_factor_range": LOG_BF_RANGE,
    "expected_calibration_error": round(ece, 4),
    "expected_calibration_error_exact": round(ece_exact, 4),
    "coverage_level": 0.9,
    "coverage_m": round(float(cov_at["m"]), 4),
    "coverage_mu": round(float(cov_at["mu"]), 4),
    "mu_posterior_total_variation": round(total_variation, 4),
    "fit_seconds": round(fit_seconds, 1),
    "n_sims": len(X),
    "n_test": len(X_test),
}))
