r"""
Strong lensing: finding a dark subhalo in an Einstein ring
==========================================================

A galaxy-scale lens (a singular isothermal ellipsoid) bends the light of a
background source into an Einstein ring. A small dark-matter subhalo near the
ring adds a local kink to the arcs; its position and mass are the quantities
of interest, while the lens (Einstein radius, ellipticity) and the source
position are nuisance parameters. The task
:func:`sklearn_tmnre.tasks.lensing.strong_lensing` ray-shoots 64x64 images
(0.08'' pixels, peak signal-to-noise about 20; lens at :math:`z = 0.5`,
source at :math:`z = 2`).

The likelihood of the image is known here, but the posterior over all eight
parameters is multimodal and expensive to sample; marginal ratio estimation
needs only simulations. We

1. embed the images with a small convolutional network (``embedding="cnn2d"``),
2. learn the eight 1-d marginal posteriors, and the 2-d marginal of the
   subhalo position, with :class:`~sklearn_tmnre.TMNRE`, which truncates the
   prior round by round wherever the 1-d marginals are narrower than it, so
   that later rounds spend the simulations on images that look like the
   observation,
3. show the observed image, the imprint of the subhalo and the marginals of
   the subhalo's :math:`x`, :math:`y` and :math:`\log_{10} m`.

**What to expect.** The embedding must keep *where* things are in the image:
``"cnn2d"`` flattens its last feature map by default
(``embedding__pooling="flatten"``); a global average
(``embedding__pooling="avg"``) records what the arcs look like but not where
they are. The subhalo is found only once the lens and the source are pinned
down: its kink is a small difference between images, invisible among images
whose rings differ in size, shape and brightness. So the default setting runs
five rounds of 3,000 simulations, which shrink the box of the lens and the
source (:math:`\varepsilon = 10^{-2}`, see below) to about ±3 posterior
standard deviations, then two rounds of 12,000 inside it.

Measured with version 0.1, whose ``n_sims`` also counted reused simulations
(the boxes shrink so fast here that few were reused), at the default setting
(one run, ``random_state=0``, observation 1;
8 minutes of wall time on one thread, on a 2-core machine shared with other
jobs). Prior mass of the box each round sampled: 1, 1.3e-3,
5.3e-5, 5.6e-6, 9.5e-7, 4.3e-7, 3.6e-8; the first five rounds shrink only the
lens and the source, round 5's estimator also cuts the subhalo's position to
:math:`x_{\rm sub} > 0.33`, :math:`y_{\rm sub} > 0.38` for round 6. Posterior
mean ± standard deviation (truth; ratio of posterior to prior standard
deviation):

============  =============================  =============================
parameter     round 5 (12,000 sims)          round 6 (12,000 sims)
============  =============================  =============================
x_sub ['']    1.21 ± 0.38 (0.75; 0.33)       0.793 ± 0.068 (0.75; 0.059)
y_sub ['']    1.06 ± 0.35 (0.80; 0.30)       0.843 ± 0.060 (0.80; 0.052)
log10_m_sub   9.54 ± 0.30 (9.5; 0.41)        9.58 ± 0.12 (9.5; 0.17)
theta_E ['']  1.102 ± 0.004 (1.10; 0.025)    1.098 ± 0.003 (1.10; 0.015)
e1            0.094 ± 0.004 (0.10; 0.034)    0.099 ± 0.002 (0.10; 0.019)
e2            -0.049 ± 0.004 (-0.05; 0.036)  -0.055 ± 0.003 (-0.05; 0.027)
x_src ['']    0.054 ± 0.005 (0.05; 0.028)    0.052 ± 0.002 (0.05; 0.010)
y_src ['']    0.021 ± 0.003 (0.02; 0.019)    0.020 ± 0.002 (0.02; 0.010)
============  =============================  =============================

In rounds 0 to 4 the subhalo marginals stay close to the prior (standard
deviation ratios 0.63 to 1.04) while the lens and source tighten from 0.09–0.23
to 0.015–0.042 of the prior's. The last round places the subhalo within
0.05'' (less than a pixel) of the truth in each coordinate and its mass within
0.1 dex; every true value lies within 1.7 posterior standard deviations of
the posterior mean. This is one observation and one seed: it shows the
subhalo can be found at this budget, not that the widths are calibrated (that
needs :func:`~sklearn_tmnre.metrics.expected_coverage` over many
observations). The ``--full`` budget (``--device cuda``) scales the same plan
and has not been run. The example prints all of these tables.
``SKLEARN_TMNRE_QUICK=1`` is a smoke test (seconds) whose posteriors mean
nothing.
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

from sklearn_tmnre import TMNRE, TMNREEstimator
from sklearn_tmnre.tasks.lensing import strong_lensing
from sklearn_tmnre.truncation import Truncator

parser = argparse.ArgumentParser(description="Strong-lensing subhalo inference with TMNRE.")
parser.add_argument("--full", action="store_true", help="larger simulation budget and network")
parser.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
ARGS, _ = parser.parse_known_args()
QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
SIZE = "quick" if QUICK else "full" if ARGS.full else "default"
# n_sims lists one budget per round: five cheap rounds that shrink the box of
# the lens and the source, then two large ones inside it, where the subhalo's
# imprint is what still differs between the images.
SETTINGS = {
    "quick": {"n_sims": [200, 200], "max_epochs": 1, "channels": (4, 8)},
    "default": {"n_sims": [3_000] * 5 + [12_000] * 2, "max_epochs": 10,
                "channels": (8, 16, 32)},
    "full": {"n_sims": [10_000] * 5 + [50_000] * 2, "max_epochs": 200,
             "channels": (16, 32, 64)},
}[SIZE]
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
# One intra-op thread: it does not slow down when other processes share the cores
# (on an idle many-core machine, more threads speed up the convolutions).
torch.set_num_threads(1)
START = time.perf_counter()

# %%
# The observation
# ---------------
# Observation 1 has a :math:`10^{9.5} M_\odot` subhalo on the Einstein ring of
# a mildly elliptical lens. The imprint of the subhalo is the difference
# between the noiseless images with and without it.
task = strong_lensing()
prior = task.prior
x_o = task.observation(1)
truth = pd.Series(task.true_parameters(1), index=prior.names)
subhalo = ["x_sub", "y_sub", "log10_m_sub"]
print(f"size={SIZE}; images of shape {task.event_shape}; truth:")
print(truth.round(3).to_string())

without = truth.copy()
without["log10_m_sub"] = 0.0  # a one-solar-mass subhalo deflects nothing visible
imprint = task.noiseless(truth.to_numpy())[0] - task.noiseless(without.to_numpy())[0]
half = task.npix * task.pixel_scale / 2
extent = (-half, half, -half, half)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
image = axes[0].imshow(x_o, origin="lower", extent=extent, cmap="magma")
fig.colorbar(image, ax=axes[0], label="surface brightness")
axes[0].set_title("observed image")
limit = np.abs(imprint).max()
image = axes[1].imshow(imprint, origin="lower", extent=extent, cmap="RdBu_r",
                       vmin=-limit, vmax=limit)
fig.colorbar(image, ax=axes[1], label="with minus without subhalo")
axes[1].set_title(f"imprint of the subhalo (pixel noise {task.noise:g})")
for ax in axes:
    ax.plot(truth["x_sub"], truth["y_sub"], "+", color="cyan", ms=12, mew=2)
    ax.set_xlabel('x ["]')
    ax.set_ylabel('y ["]')
fig.savefig(OUT / "lensing_observation.png", dpi=120, bbox_inches="tight")

# %%
# Truncated rounds with a convolutional embedding
# -----------------------------------------------
# All eight parameters get a 1-d marginal, so that truncation also shrinks the
# nuisance parameters; a 2-d marginal of the subhalo position (which truncation
# does not use) shows where in the image the subhalo sits. The CNN's layer
# widths and its pooling are embedding arguments (``embedding__channels``,
# ``embedding__pooling``), tunable like any hyperparameter. Pooling matters
# here: at 3,000 simulations of the prior the best validation loss (summed over
# the eight marginals) was 10.2 with a global average and 7.0 with the
# flattened map. Small heads (64 units, two blocks) leave the time to the
# convolutions, which carry the information. Each round starts from the
# previous round's network (``warm_start=True``), so the early rounds need not
# relearn what an Einstein ring looks like.
#
# The truncation here is the ratio threshold :math:`\varepsilon = 10^{-2}`
# (``Truncator(epsilon=1e-2)``), with which the figures above were made, not the
# library's default tail-mass rule, and not the :math:`10^{-6}` that was the
# default before. On round 0 of this setting (3,000 simulations,
# ``benchmarks/bench_truncation_rule.py``) the default rule (tail mass
# :math:`10^{-5}`) kept 35 % of the prior, about ±5.6 estimated posterior
# standard deviations per parameter; :math:`\varepsilon = 10^{-6}` kept 67 %
# (±6.5) and :math:`10^{-2}` 0.6 % (±2.7). Rerunning the example with the
# default rule is still to be measured. The learned log-ratio falls off far more slowly in
# its tails than the true one: after round 0 its :math:`\theta_E` marginal had
# a standard deviation of 0.019'', but the ratio stayed within
# :math:`10^{-6}` of its peak over 0.59'' (±15 standard deviations), within
# :math:`10^{-2}` over 0.12'' (±3). With :math:`10^{-6}` (three rounds of
# 10,000) or :math:`10^{-4}` (rounds of 3,000, 3,000, 4,000 and 12,000) the
# box of the lens and the source stayed over ±13 posterior widths wide, and the
# subhalo marginals stayed at the prior (standard deviation ratios 0.9 to 1.04).
marginals = [(name,) for name in prior.names] + [("x_sub", "y_sub")]
estimator = TMNREEstimator(marginals=marginals, embedding="cnn2d", embedding_dim=32,
                           embedding__channels=SETTINGS["channels"],
                           embedding__pooling="flatten", hidden_features=64, num_blocks=2,
                           max_epochs=SETTINGS["max_epochs"], patience=3, lr=2e-3,
                           device=ARGS.device)
run = TMNRE(task.simulator, prior, estimator=estimator, truncator=Truncator(epsilon=1e-2),
            n_sims=SETTINGS["n_sims"], max_rounds=len(SETTINGS["n_sims"]), warm_start=True,
            spend_budget=True, random_state=0, verbose=1)
run.fit(x_o)
print("\nRounds (mass: prior mass of the box each round sampled):")
print(run.rounds_[["round", "n_simulated", "n_reused", "mass", "val_loss", "seconds"]]
      .round(4).to_string(index=False))
print(f"box found after the last round: mass {run.truncator_.mass_:.4g}")
boxes = pd.concat({f"round {r}": pd.DataFrame(bounds, index=["low", "high"]).T
                   for r, bounds in zip(run.rounds_["round"], run.rounds_["bounds"])}, axis=1)
print("\nBoxes sampled by each round:")
print(boxes.round(3).to_string())

# %%
# The marginal posteriors
# -----------------------
# Prior-normalized 1-d marginals of each round for the subhalo parameters;
# the vertical line is the truth.
prior_std = pd.Series({name: dist.std() for name, dist in prior.distributions.items()})
posteriors = [est.posterior(x_o) for est in run.estimators_]
for r, posterior in zip(run.rounds_["round"], posteriors):
    summary = posterior.summary()
    table = pd.DataFrame({"truth": truth, "mean": summary["mean"], "std": summary["std"],
                          "std / prior std": summary["std"] / prior_std})
    print(f"\nRound {r} posterior (mean, std) against the truth:")
    print(table.round(3).to_string())
summary = run.posterior_.summary()
summary.insert(0, "truth", truth)
print("\nCredible intervals of the last round:")
print(summary[["truth", "lower_68", "upper_68", "lower_95", "upper_95"]].round(3).to_string())

labels = {"x_sub": r"$x_{\rm sub}$ ['']", "y_sub": r"$y_{\rm sub}$ ['']",
          "log10_m_sub": r"$\log_{10} m_{\rm sub} / M_\odot$"}
fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), layout="constrained")
for ax, name in zip(axes, subhalo):
    for r, posterior in zip(run.rounds_["round"], posteriors):
        (grid,), density = posterior.density(name)
        ax.plot(grid, density, label=f"round {r}")
    ax.axvline(truth[name], color="k", lw=1)
    ax.set_xlim(prior.support.loc[name, "low"], prior.support.loc[name, "high"])
    ax.set_ylim(bottom=0)
    ax.set_xlabel(labels[name])
axes[0].set_ylabel("posterior density")
axes[2].legend(fontsize="small")
(grid_x, grid_y), density = run.posterior_.density(("x_sub", "y_sub"))
axes[3].pcolormesh(grid_x, grid_y, density.T, cmap="Greys", shading="auto")
axes[3].plot(truth["x_sub"], truth["y_sub"], "+", color="C3", ms=12, mew=2)
axes[3].set_xlabel(labels["x_sub"])
axes[3].set_ylabel(labels["y_sub"])
axes[3].set_title("last round, 2-d")
fig.savefig(OUT / "lensing_marginals.png", dpi=120, bbox_inches="tight")
print(f"\nFigures saved under {OUT}; total {time.perf_counter() - START:.0f} s")
