"""Tests of the matched-filter baseline for subhalo detection.

The correlation is checked against a direct sum, the template against the task's own
rendering of one subhalo (noise-free: the filter must peak at its pixel), and the
detection on noisy simulated images against the occupancy maps. Tolerances of the
statistical test come from the number of occupied pixels: the ROC AUC of scores
unrelated to occupancy is 0.5 with a standard error of about sqrt(1 / (12 n_pos)).
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sklearn_tmnre.tasks import subhalo_lensing
from sklearn_tmnre.tasks._matched_filter import _correlate, matched_filter, subhalo_matched_filter


@pytest.fixture(scope="module")
def task():
    return subhalo_lensing(npix=32)


def _lens(task):
    """A slightly elliptical lens with an offset source: arcs cross much of the field."""
    return pd.DataFrame([[1.1, 0.05, -0.05, 0.05, 0.0, 10.0]], columns=task.prior.names)


def test_correlation_is_the_direct_sum():
    rng = np.random.default_rng(0)
    maps, kernel = rng.normal(size=(2, 5, 6)), rng.normal(size=(9, 11))
    direct = np.zeros((2, 5, 6))
    for i, j, a, b in np.ndindex(5, 6, 5, 6):
        direct[:, i, j] += maps[:, a, b] * kernel[a - i + 4, b - j + 5]
    np.testing.assert_allclose(_correlate(maps, kernel), direct, atol=1e-10)


@pytest.mark.parametrize("pixel", [(16, 30), (4, 16), (16, 5), (10, 24)])
def test_noise_free_subhalo_is_found_at_its_pixel(task, pixel):
    # 10^9 M_sun: in the regime where the first-order template holds.
    theta = _lens(task)
    x, y = task.coordinates
    catalogue = pd.DataFrame({"x_sub": [x[pixel]], "y_sub": [y[pixel]], "log10_m_sub": [9.0]})
    scores = subhalo_matched_filter(task, task.noiseless(theta, catalogue), theta)
    k = int(np.searchsorted(task.bin_edges, 1e9)) - 1
    peak = np.unravel_index(np.argmax(scores[0, k]), scores.shape[2:])
    assert max(abs(peak[0] - pixel[0]), abs(peak[1] - pixel[1])) <= 1
    # Evidence for a subhalo: well above the noise (log-likelihood ratio of many units).
    assert scores[0, k][pixel] > 10


def test_without_subhalos_scores_are_at_noise_level(task):
    theta = _lens(task)
    smooth = task.noiseless(theta)
    scores = subhalo_matched_filter(task, smooth, theta)
    # A perfect smooth model leaves no residual: minus the template energy, never positive.
    assert np.all(scores <= 1e-9)


def test_occupied_pixels_score_higher_than_empty_ones(task):
    theta = task.prior.sample(12, random_state=0)
    X, occupancy = task.simulate_with_occupancy(theta, rng=0)
    scores = subhalo_matched_filter(task, X, theta)
    assert scores.shape == occupancy.shape
    heavy = slice(3, None)  # above 10^8.75 M_sun; the lighter ones are below the noise
    y, s = occupancy[:, heavy].ravel(), scores[:, heavy].ravel()
    n_pos = int(y.sum())
    assert n_pos >= 20
    auc = roc_auc_score(y, s)
    assert auc > 0.5 + 3 * np.sqrt(1 / (12 * n_pos))
    assert average_precision_score(y, s) > 1.5 * y.mean()


def test_blurred_smooth_model_runs_without_parameters(task):
    theta = task.prior.sample(2, random_state=1)
    X, _ = task.simulate_with_occupancy(theta, rng=1)
    scores = subhalo_matched_filter(task, X)
    assert scores.shape == (2, task.n_bins, 32, 32)
    assert np.all(np.isfinite(scores))
    # A single image (rows, cols) gets a leading axis of one.
    assert subhalo_matched_filter(task, X[0]).shape == (1, task.n_bins, 32, 32)


def test_bad_input(task):
    X = np.zeros((2, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        matched_filter(X, np.zeros((2, 16, 16)), 0.08, [0.05], 0.05)
    with pytest.raises(ValueError, match=r"\(n, rows, cols\)"):
        matched_filter(np.zeros(5), None, 0.08, [0.05], 0.05)
    with pytest.raises(ValueError, match="noise"):
        matched_filter(X, None, 0.08, [0.05], 0.0)
    with pytest.raises(ValueError, match="einstein_radii"):
        matched_filter(X, None, 0.08, [-0.05], 0.05)
    with pytest.raises(ValueError, match="NaN"):
        matched_filter(np.full((1, 8, 8), np.nan), None, 0.08, [0.05], 0.05)
    with pytest.raises(TypeError, match="real numbers"):
        matched_filter(np.full((1, 8, 8), "a"), None, 0.08, [0.05], 0.05)
    with pytest.raises(TypeError, match="SubhaloLensing"):
        subhalo_matched_filter(object(), X)
    with pytest.raises(ValueError, match="image shape"):
        subhalo_matched_filter(task, np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="one row per image"):
        subhalo_matched_filter(task, X, task.prior.sample(3, random_state=0))
