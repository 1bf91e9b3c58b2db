r"""
Probabilistic image segmentation: where are the subhalos, pixel by pixel?
=========================================================================

A strong-lensing image (:class:`~sklearn_tmnre.tasks.SubhaloLensing`) holds a
Poisson population of dark subhalos. Their joint posterior -- how many, where,
how heavy -- has about :math:`N_{\rm sub}!` modes, one per labelling. Its
*marginals* per pixel are simple: for every pixel :math:`p` and mass bin
:math:`k`, the probability that at least one subhalo of bin :math:`k` lies in
pixel :math:`p`,

.. math:: P(o_{k,p} = 1 \mid x),

a map of probabilities per mass bin: probabilistic image segmentation. The
occupancy :math:`o` is a *field parameter*
(:meth:`Prior.with_field <sklearn_tmnre.Prior.with_field>`): derived from each
simulation, passed to ``fit`` beside ``theta``, and learned by one small head
shared by every pixel, which reads the per-pixel features of a U-Net embedding
(``embedding="unet"``); see :doc:`/user_guide/segmentation`.

We train the estimator, then check on held-out simulations that

* the maps find the subhalos (posterior maps beside the truth; average
  precision against a classical matched filter that is *given* the main lens);
* the probabilities mean what they say: among pixels given probability
  :math:`\approx 0.3`, about 30 % hold a subhalo (reliability diagram, expected
  calibration error);
* they beat the prior: Brier score against that of the prior frequency.

**Setting.** The task's defaults (64 x 64 pixels of 0.08'', ten bins from
:math:`10^8` to :math:`10^{10.5} M_\odot`, noise 0.05, 5 to 25 subhalos, a free
main lens) are not learnable on a CPU in minutes: a point mass deflects by
:math:`b^2/r` at every distance, so 15 subhalos shift the arcs together far more
than the pixel noise, and at 32 x 32 pixels the matched filter, given the true
lens, ranks occupied pixels barely above chance (average precision within a
factor two of the occupancy rate); an earlier trial at 32 x 32 with the task's
physics (1,000 images, 8 epochs) learned nothing. The example makes the problem
learnable at a CPU budget and says so: the main lens and source are fixed
(``fixed=``), three subhalos are expected, the subhalos are heavy
(:math:`10^{9}` to :math:`10^{10.5} M_\odot`, Einstein radii 0.06'' to 0.36''),
and the noise is 0.02. Only the Einstein radius stays free. With this physics
a subhalo leaves a local imprint: in 56 % of them (300 noiseless images) the
image differs from the smooth lens's by more than five noise sigmas within a
pixel of the subhalo.

The default images have the task's grid and bin count: 64 x 64 pixels of
0.05'' (the 3.2'' field holds the whole Einstein ring) with ten mass bins of
0.15 dex. The U-Net has 8 channels and depth 3, the pixel head width 16 (at
4,096 pixels the head, not the U-Net, costs the most: an image-epoch took 17
CPU-ms with a head of width 32, 9 with 16). It trains on 55,000 images for 5
epochs, within 30 minutes (``max_time=1800``). Simulations are cheap next to
training (0.7 ms an image against about 6 ms per image and epoch), so the
budget goes to many images seen a few times. ``--small`` is 20 x 20 pixels of
0.16'' with three bins of 0.5 dex (16 channels, depth 2; 60,000 images, 5
epochs, about 5 CPU-minutes).

**The loss.** Each cell learns from the cross-entropy of its posterior
probability (``field_loss="posterior"``, the default). The ratio loss of the
other parameters (``field_loss="ratio"``) has the same optimum but learns rare
cells slowly: it pulls a cell whose log ratio overshoots back with a gradient
of at most the cell's prior frequency, here :math:`10^{-5}` to
:math:`10^{-3}`. Trained on the same simulations (``--small`` grid, 60,000
images, 5 epochs, ``benchmarks/bench_field_loss.py``, seeds 0 and 1), the
ratio form reached a Brier skill of 6.9-7.1 % (heaviest bin 2.2-4.1 %) against
21.6 % (34-39 %) for the posterior loss, and an average precision of 0.12
against 0.42-0.43.

**What it gave** (default; one run, one thread on a shared two-core CPU; 1,000
held-out images, 41 million cells): training took 1,634 s (1,614 CPU-s, 27
minutes), 6.9 GB peak memory. A second run of the same code, with other jobs on
the machine, gave the same figures (the fit is deterministic) but trained for
2,187 s: its fifth epoch started before 30 minutes and ended after them.
``max_time`` now ends such a run at the last epoch that fits. Brier score
:math:`6.21 \times 10^{-5}` against the prior's :math:`7.51 \times 10^{-5}`:
skill 17.2 % (90 % interval from resampling the test images: 16.5 % to
18.0 %), every bin between 11 % and 29 %, the heaviest 18 %. On blocks of
3 x 3 pixels and 3 bins (0.15'' and 0.45 dex, about one cell of ``--small``)
the skill is 37 %. Average precision
0.32 averaged over the bins (0.17 to 0.45, against occupancy rates of
:math:`10^{-5}` to :math:`2 \times 10^{-4}`), against the matched filter's
0.0006, although the filter is given the true lens (it is linear in a
subhalo's deflection, and subhalos this heavy perturb the arcs nonlinearly; it
was tuned on lighter ones at 0.08'' pixels). Expected calibration error
:math:`2 \times 10^{-6}` (target: at most 0.02), easy for a sparse field; the
reliability diagram's upper bins, which the ECE hardly weighs, lie on or
slightly above the diagonal (underconfident: 0.45 predicted, 0.50 observed).

``--small`` (one run, 266 CPU-s, 0.9 GB): Brier skill 19.5 % (18.5 % to
20.5 %; per bin 15 %, 25 % and 37 %), average precision 0.39 against the
filter's 0.011, ECE 0.00012, with the upper bins on the diagonal within their
intervals up to 0.55 and slightly overconfident above (0.65 predicted, 0.57
observed).

``SKLEARN_TMNRE_QUICK=1`` is a smoke test (seconds; its maps mean nothing).
``--full`` is the 100 x 100, ten-bin configuration of the published analyses at
the task's default physics; it prints an estimate of its training time and
memory, measured by timing one epoch of its network on a few images, and runs
only with ``--full --force``. The last line printed is a JSON object of the key
figures.
"""

import argparse
import json
import os
import resource
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import average_precision_score, brier_score_loss

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.metrics import block_brier_score, expected_calibration_error
from sklearn_tmnre.plotting import plot_posterior_map, plot_reliability_diagram
from sklearn_tmnre.tasks import subhalo_lensing, subhalo_matched_filter

parser = argparse.ArgumentParser(description="Subhalo segmentation with field parameters.")
parser.add_argument("--full", action="store_true",
                    help="100 x 100 pixels, ten bins: print the measured cost estimate")
parser.add_argument("--small", action="store_true",
                    help="20 x 20 pixels of 0.16'', three bins: about five CPU-minutes")
parser.add_argument("--force", action="store_true",
                    help="with --full: run it after printing the estimate")
ARGS, _ = parser.parse_known_args()
QUICK = os.environ.get("SKLEARN_TMNRE_QUICK") == "1"
SIZE = "quick" if QUICK else "full" if ARGS.full else "small" if ARGS.small else "default"
# The learnable physics of the default and --small (see the docstring); --full uses the
# task's own.
EASY = {"m_min": 1e9, "m_max": 10**10.5, "noise": 0.02,
        "fixed": {"e1": 0.05, "e2": -0.05, "x_src": 0.05, "y_src": 0.0, "n_sub_mean": 3.0}}
# Simulations are cheap next to training (0.1 ms for a 20 x 20 image, 0.7 ms at 64 x 64,
# against about 1 and 6 ms per image and epoch of training), so each setting spends its
# budget on many images seen a few times (at --small, 60,000 images for 5 epochs
# against 10,000 for 30 at the same cost: Brier skill 8.8 % against 6.5 % with the ratio
# form of the field loss).
SETTINGS = {
    "quick": {"task": {"npix": 16, "pixel_scale": 0.16, "n_bins": 2, **EASY},
              "n_sims": 300, "n_test": 40, "max_epochs": 2, "channels": 4, "depth": 2},
    # A 3.2'' field (64 x 0.05''), ten bins of 0.15 dex. The pixel head runs at every
    # pixel, so at 4,096 pixels it, not the U-Net, costs the most: a head of width 16
    # halves an image-epoch (measured: 17 ms at width 32, 9 ms at 16, CPU, one thread);
    # depth 3 widens what each pixel sees for little more. 275,000 image-epochs take
    # about 27 CPU-minutes; max_time ends the training at the last epoch that fits in 30
    # minutes of wall time on a busier machine (the best weights so far are kept).
    "default": {"task": {"npix": 64, "pixel_scale": 0.05, "n_bins": 10, **EASY},
                "n_sims": 55_000, "n_test": 1000, "max_epochs": 5, "channels": 8,
                "depth": 3, "hidden_features": 16, "max_time": 1800},
    "small": {"task": {"npix": 20, "pixel_scale": 0.16, "n_bins": 3, **EASY},
              "n_sims": 60_000, "n_test": 1000, "max_epochs": 5, "channels": 16,
              "depth": 2},
    "full": {"task": {"npix": 100, "pixel_scale": 0.05, "n_bins": 10},
             "n_sims": 100_000, "n_test": 200, "max_epochs": 50, "channels": 32,
             "depth": 4},
}[SIZE]
# Brier skill is also scored on blocks of cells of about --small's cells (0.16'' and
# 0.5 dex), so that the grids compare at one resolution: (bins, rows, cols).
BLOCK = {"default": (3, 3, 3), "full": (3, 3, 3)}.get(SIZE, (1, 1, 1))
OUT = Path(__file__).resolve().parent / "output"
OUT.mkdir(exist_ok=True)
# One intra-op thread: it does not slow down when other processes share the cores.
torch.set_num_threads(1)


def peak_memory_mb():
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_estimator(prior, settings, **overrides):
    """The U-Net ratio estimator: pixel features for the occupancy, a summary for the lens."""
    params = {"prior": prior, "embedding": "unet", "embedding__channels": settings["channels"],
              "embedding__depth": settings["depth"], "embedding_dim": 16,
              "hidden_features": settings.get("hidden_features", 32), "batch_size": 64, "lr": 2e-3,
              "max_epochs": settings["max_epochs"], "patience": 5,
              "max_time": settings.get("max_time"), "random_state": 0, "n_threads": 1}
    return TMNREEstimator(**{**params, **overrides})


def simulate(task, n, seed):
    """``n`` images of ``task``, their parameters and occupancy maps."""
    rng = np.random.default_rng(seed)
    theta = task.prior.sample(n, random_state=rng)
    X, occupancy = task.simulate_with_occupancy(theta, rng)
    # float32, as the network computes: fit then needs no copy of the images.
    return theta, X.astype(np.float32), occupancy


def estimate_full_cost(settings, n_probe=64):
    """Time one epoch of the full network on ``n_probe`` images; scale to the full run.

    An epoch's work is linear in the number of images (the U-Net sees each once),
    so the fit takes ``epoch(n_probe) * n_sims / n_probe * max_epochs``. Memory: the
    probe's peak (the network and one batch's activations) plus the data of the
    images beyond the probe (float32 image, uint8 occupancy, float32 copy for
    training).
    """
    task = subhalo_lensing(**settings["task"])
    theta, X, occupancy = simulate(task, n_probe, seed=0)
    prior = Prior.with_field(task.prior, "occupancy", occupancy.shape[1:])
    est = make_estimator(prior, settings, max_epochs=1, validation_fraction=0.0)
    start = time.process_time()
    est.fit(X, theta, occupancy=occupancy)
    epoch = time.process_time() - start
    fit_seconds = epoch * settings["n_sims"] / n_probe * settings["max_epochs"]
    pixels = int(np.prod(task.event_shape))
    bytes_per_image = pixels * (4 + 4 + task.n_bins)
    peak_mb = peak_memory_mb() + settings["n_sims"] * bytes_per_image / 2**20
    print(f"probe: {n_probe} images of {task.event_shape}, one epoch: {epoch:.1f} CPU-s")
    return fit_seconds, peak_mb


if SIZE == "full" and not ARGS.force:
    fit_estimate, memory_estimate = estimate_full_cost(SETTINGS)
    print(f"\n--full: {SETTINGS['n_sims']:,} images of 100 x 100 pixels, ten bins, "
          f"{SETTINGS['max_epochs']} epochs would need about {fit_estimate / 3600:.0f} "
          f"CPU-hours of training on one thread and {memory_estimate / 1024:.1f} GB of memory "
          "(measured scaling above). Run with --full --force to run it (on a GPU).")
    print(json.dumps({"size": SIZE, "ran": False, "n_sims": SETTINGS["n_sims"],
                      "estimated_fit_seconds": round(fit_estimate),
                      "estimated_peak_memory_mb": round(memory_estimate)}))
    raise SystemExit(0)

# %%
# Simulate images and their occupancy maps
# ----------------------------------------
# ``simulate_with_occupancy`` returns, beside every image, its occupancy maps
# of shape ``(n_bins, rows, cols)``. The field parameter is declared with the
# prior of the main lens's (free) parameters: its name and shape only, since
# its values come from the simulator.
task = subhalo_lensing(**SETTINGS["task"])
n_sims, n_test = SETTINGS["n_sims"], SETTINGS["n_test"]
theta, X, occupancy = simulate(task, n_sims + n_test, seed=1)
prior = Prior.with_field(task.prior, "occupancy", occupancy.shape[1:])
X_train, X_test = X[:n_sims], X[n_sims:]
theta_train, theta_test = theta.iloc[:n_sims], theta.iloc[n_sims:]
occ_train, occ_test = occupancy[:n_sims], occupancy[n_sims:]
edges = np.log10(task.bin_edges)
labels = [f"$10^{{{lo:.2f}}}$-$10^{{{hi:.2f}}}\\,M_\\odot$"
          for lo, hi in zip(edges[:-1], edges[1:])]
print(f"size={SIZE}: {n_sims} training and {n_test} test images of {task.event_shape} "
      f"pixels, {task.n_bins} mass bins; free parameters {task.prior.names}")
print("fraction of occupied pixels per bin:",
      [float(f"{rate:.2g}") for rate in occ_train.mean(axis=(0, 2, 3))])

# %%
# Train the U-Net ratio estimator
# -------------------------------
# One fit learns the global parameter(s) and every pixel's occupancy. The
# pixel head learns from the cross-entropy of each cell's posterior probability
# (``field_loss="posterior"``, the default), in units of the prior's: each
# bin's share of the validation loss starts at 1 and falls as the maps learn.
est = make_estimator(prior, SETTINGS)
start_wall, start_cpu = time.perf_counter(), time.process_time()
est.fit(X_train, theta_train, occupancy=occ_train)
fit_seconds = time.perf_counter() - start_wall
fit_cpu = time.process_time() - start_cpu
frequency = est.field_prior_["occupancy"]
print(f"fit: {fit_seconds:.0f} s wall, {fit_cpu:.0f} CPU-s, {len(est.net_.history)} epochs; "
      f"prior frequency per bin {[float(f'{p:.2g}') for p in frequency]}")

# %%
# Posterior occupancy maps
# ------------------------
# ``predict_field`` gives :math:`P(o_{k,p} = 1 \mid x)` for every image, bin
# and pixel (``est.posterior(x).field("occupancy")`` for one image). Each
# panel draws one bin's map over the image, fading to transparent where the
# probability is low; circles mark the true subhalos of that bin.
proba = est.predict_field(X_test)
shown = np.argsort(occ_test[:, -1].sum(axis=(1, 2)) + occ_test.sum(axis=(1, 2, 3)))[-2:]
fig, axes = plt.subplots(len(shown), task.n_bins, figsize=(3.4 * task.n_bins, 3.2 * len(shown)),
                         layout="constrained", squeeze=False)
for row, i in zip(axes, shown):
    plot_posterior_map(proba[i], image=X_test[i], truth=occ_test[i], ax=row,
                       bin_labels=labels, vmax=max(0.05, float(proba[shown].max())))
fig.savefig(OUT / "segmentation_maps.png", dpi=110, bbox_inches="tight")

# %%
# Calibration on held-out images
# ------------------------------
# Every pixel of every bin of every test image is one event. Calibrated
# probabilities lie on the diagonal of the reliability diagram; the expected
# calibration error is the mean distance from it, weighted by the number of
# events in each probability bin.
ece = expected_calibration_error(occ_test, proba)
fig = plot_reliability_diagram(occ_test, proba)
fig.savefig(OUT / "segmentation_reliability.png", dpi=110, bbox_inches="tight")

# %%
# Against the prior and the matched filter
# ----------------------------------------
# The Brier score is the mean squared error of the probabilities; the prior's
# is that of the bin's frequency in every pixel. Average precision (area under
# the precision-recall curve, per bin, then averaged over bins) ranks the
# pixels. The matched filter is given the true main lens of every image, which
# the network is not; its scores rank but are not probabilities. The skill's
# interval resamples the held-out images, not the cells: the cells of one image
# are not independent (a subhalo raises its neighbours' probabilities too).
y = occ_test.astype(bool)
prior_proba = np.broadcast_to(frequency[None, :, None, None], proba.shape)
brier = brier_score_loss(y.ravel(), proba.ravel())
brier_prior = brier_score_loss(y.ravel(), prior_proba.ravel())
skill = 1 - brier / brier_prior
squared = [((p - y) ** 2).sum(axis=(1, 2, 3)) for p in (proba, prior_proba)]
draws = np.random.default_rng(0).integers(0, n_test, (1000, n_test))
skill_interval = np.percentile(1 - squared[0][draws].sum(1) / squared[1][draws].sum(1), [5, 95])
# The same skill on blocks of cells (expected counts; see block_brier_score): a map that
# places a subhalo within a block earns it even if not within the very pixel and bin.
skill_blocks = 1 - block_brier_score(y, proba, BLOCK) / block_brier_score(y, prior_proba, BLOCK)
block_size = (f"{BLOCK[1] * task.pixel_scale:.2f}'' x {BLOCK[2] * task.pixel_scale:.2f}'', "
              f"{BLOCK[0] * np.diff(edges).mean():.2f} dex")
scores = subhalo_matched_filter(task, X_test, theta_test)


def mean_average_precision(values):
    """Average precision per bin (bins with an occupied pixel), averaged over bins."""
    kept = [k for k in range(task.n_bins) if y[:, k].any()]
    per_bin = [average_precision_score(y[:, k].ravel(), values[:, k].ravel()) for k in kept]
    return float(np.mean(per_bin)), dict(zip(kept, per_bin))


pr_auc, pr_bins = mean_average_precision(proba)
pr_auc_mf, mf_bins = mean_average_precision(scores)
print(f"\nheld-out: {n_test} images, {y.size:,} cells; ECE {ece:.2g}; Brier {brier:.4g} "
      f"(prior {brier_prior:.4g}, skill {skill:+.4f}, 90 % over images "
      f"[{skill_interval[0]:+.4f}, {skill_interval[1]:+.4f}]); on blocks of {BLOCK} cells "
      f"({block_size}): skill {skill_blocks:+.4f}")
print("bin  occupied   Brier      prior      skill    AP      AP matched filter")
for k in range(task.n_bins):
    b = brier_score_loss(y[:, k].ravel(), proba[:, k].ravel())
    bp = brier_score_loss(y[:, k].ravel(), prior_proba[:, k].ravel())
    print(f"{k:>3}  {y[:, k].mean():.2e}  {b:.3e}  {bp:.3e}  {1 - b / bp:+.4f}  "
          f"{pr_bins.get(k, np.nan):.4f}  {mf_bins.get(k, np.nan):.4f}")

fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
width = 0.38
bins = np.arange(task.n_bins)
ax.bar(bins - width / 2, [pr_bins.get(k, np.nan) for k in bins], width, label="U-Net TMNRE")
ax.bar(bins + width / 2, [mf_bins.get(k, np.nan) for k in bins], width,
       label="matched filter (true lens)")
ax.plot(bins, y.mean(axis=(0, 2, 3)), "k_", ms=20, mew=2, label="chance (occupancy rate)")
ax.set_xticks(bins, labels, fontsize=7)
ax.set_ylabel("average precision")
ax.legend(fontsize=8)
fig.savefig(OUT / "segmentation_precision.png", dpi=110, bbox_inches="tight")

print(json.dumps({
    "size": SIZE, "n_sims": n_sims, "npix": task.event_shape[0], "n_bins": task.n_bins,
    "n_test": n_test, "expected_calibration_error": float(f"{ece:.3g}"),
    "brier_score": float(f"{brier:.4g}"), "brier_score_prior": float(f"{brier_prior:.4g}"),
    "brier_skill": round(float(skill), 4),
    "brier_skill_interval_90": [round(float(v), 4) for v in skill_interval],
    "brier_skill_blocks": round(float(skill_blocks), 4), "block": list(BLOCK),
    "pr_auc": round(pr_auc, 4), "pr_auc_matched_filter": round(pr_auc_mf, 4),
    "fit_seconds": round(fit_seconds, 1), "fit_cpu_seconds": round(fit_cpu, 1),
    "peak_memory_mb": round(peak_memory_mb(), 1)}))
