"""How sharp must an occupancy map be to beat the prior's Brier score? Oracle maps.

The subhalo example (``examples/plot_subhalo_segmentation.py``) scores its
per-pixel, per-bin probabilities by the Brier score against the prior frequency's.
A map that places a subhalo only to within a few cells spreads its probability
over them, and the Brier score rewards that little: a subhalo known to lie
uniformly in K cells lowers its cells' squared error by only 1/K of what a
sharp map would. This script measures that ceiling with *oracle* maps built
from the true occupancy of simulated images:

* a fraction ``detected`` of the subhalos is known up to a Gaussian blur of
  ``sigma_px`` pixels in position and ``sigma_bins`` bins in mass (the blur keeps
  each subhalo's total probability; cells are clipped to [0, 1]);
* the others stay at the prior frequency of their bin.

No network can beat the oracle with the same blur and detected fraction, so a
row's skill bounds what a ratio estimator that localizes subhalos that well can
reach. Run for the example's default grid (64 x 64 pixels of 0.05'', ten bins of
0.15 dex) and its ``--small`` grid (20 x 20 pixels of 0.16'', three bins of
0.5 dex), on the example's physics. (The example's maps now beat the 64 x 64
rows with one pixel and one bin of blur: they place many subhalos to the very
pixel and bin; see the user guide's segmentation page.)

    python benchmarks/bench_segmentation_ceiling.py

Writes ``benchmarks/results/segmentation_ceiling.csv``.
"""

import argparse
import pathlib

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from sklearn_tmnre.tasks import subhalo_lensing

# The example's learnable physics (examples/plot_subhalo_segmentation.py, EASY).
PHYSICS = {"m_min": 1e9, "m_max": 10**10.5, "noise": 0.02,
           "fixed": {"e1": 0.05, "e2": -0.05, "x_src": 0.05, "y_src": 0.0,
                     "n_sub_mean": 3.0}}
GRIDS = {"small": {"npix": 20, "pixel_scale": 0.16, "n_bins": 3},
         "default": {"npix": 64, "pixel_scale": 0.05, "n_bins": 10}}


def oracle_skill(occupancy, sigma_px, sigma_bins, detected):
    """Brier skill against the prior frequency of a blurred-truth map.

    Parameters
    ----------
    occupancy : ndarray of shape (n, n_bins, rows, cols), bool
    sigma_px, sigma_bins : float
        Gaussian blur of each known subhalo in pixels and in mass bins.
    detected : float
        Fraction of the subhalos the oracle knows (the rest at the prior frequency).

    Returns
    -------
    float
        ``1 - Brier(map) / Brier(prior)``.
    """
    y = occupancy.astype(float)
    prior = y.mean(axis=(0, 2, 3), keepdims=True)
    blurred = gaussian_filter(y, sigma=(0, sigma_bins, sigma_px, sigma_px), mode="constant")
    p = np.clip(detected * blurred + (1 - detected) * prior, 0, 1)
    return 1 - ((p - y) ** 2).mean() / ((prior - y) ** 2).mean()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400, help="simulated images per grid")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = p.parse_args()
    rows = []
    for grid, cfg in GRIDS.items():
        task = subhalo_lensing(**cfg, **PHYSICS)
        rng = np.random.default_rng(0)
        theta = task.prior.sample(args.n, random_state=rng)
        _, occupancy = task.simulate_with_occupancy(theta, rng)
        dex_per_bin = (np.log10(PHYSICS["m_max"]) - np.log10(PHYSICS["m_min"])) / cfg["n_bins"]
        for sigma_px in (0.0, 0.5, 1.0, 2.0, 3.0):
            for sigma_bins in (0.0, 0.5, 1.0, 2.0, 3.0):
                for detected in (1.0, 0.3):
                    rows.append({
                        "grid": grid, "npix": cfg["npix"], "n_bins": cfg["n_bins"],
                        "n_images": args.n, "occupancy_rate": float(occupancy.mean()),
                        "sigma_px": sigma_px, "sigma_arcsec": sigma_px * cfg["pixel_scale"],
                        "sigma_bins": sigma_bins, "sigma_dex": sigma_bins * dex_per_bin,
                        "detected": detected,
                        "brier_skill": oracle_skill(occupancy, sigma_px, sigma_bins, detected)})
    frame = pd.DataFrame(rows)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "segmentation_ceiling.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(frame.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
