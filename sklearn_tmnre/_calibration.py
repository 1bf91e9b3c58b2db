"""Calibration of probabilities of binary events (re-exported by :mod:`sklearn_tmnre.metrics`).

**Calibration of per-pixel probabilities.**  A map of binary events (is there
a subhalo of mass bin ``k`` in pixel ``(i, j)``) and the estimated probability
of each, :math:`p_j`, pooled over pixels, bins and images.  The reliability
curve groups the probabilities into ``B`` equal-width bins :math:`I_b` of
[0, 1] and compares, in each, the mean probability (confidence) with the
fraction of events that happened (observed frequency); the expected
calibration error is their gap weighted by the bin counts :math:`n_b`
(Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017),

.. math:: \\mathrm{ECE} = \\sum_{b=1}^{B} \\frac{n_b}{N}\\,
          \\Big|\\, \\frac{1}{n_b}\\sum_{j \\in I_b} y_j
          - \\frac{1}{n_b}\\sum_{j \\in I_b} p_j \\Big| ,

0 for calibrated probabilities (up to the counting noise of each bin, of order
:math:`\\sqrt{p(1-p)/n_b}`).  The Brier score and the area under the
precision-recall curve are in scikit-learn already, and take the flattened
maps: ``sklearn.metrics.brier_score_loss(occupancy.ravel(), proba.ravel())``
and ``sklearn.metrics.average_precision_score(occupancy.ravel(), score.ravel())``
(the average precision, which unlike the trapezoidal area under the curve is
not optimistic; for rare events such as occupied pixels, far more informative
than the ROC AUC).

**Brier score of blocks.**  The Brier score rewards an event's probability
only in the cell where it happened, so a map that places a subhalo to within
a few cells earns little, and the same physical knowledge earns less the finer
the grid (``benchmarks/bench_segmentation_ceiling.py``). Grouping the cells
into blocks ``b`` (e.g. 3 x 3 pixels and 3 mass bins) and scoring the number
of events in each block against its expectation,

.. math:: \\mathrm{BS}_{\\rm block} = \\frac{1}{N_b} \\sum_b
          \\Big( \\sum_{j \\in b} y_j - \\sum_{j \\in b} p_j \\Big)^2 ,

compares maps of different grids at one physical resolution. The expectation
of a count is the sum of the cells' marginal probabilities whatever their
correlations, so per-cell marginals give it exactly; the squared error is a
proper score of it (lowest, in expectation, for the true expected count), and
blocks of one cell give the Brier score.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike
from sklearn.calibration import calibration_curve

__all__ = ["block_brier_score", "expected_calibration_error", "reliability_curve"]


def _binary_events(y_true, proba, n_bins):
    """Flat labels (bool) and probabilities (float) of the same shape, and ``n_bins``, checked."""
    if not isinstance(n_bins, numbers.Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}.")
    y, p = np.asarray(y_true), np.asarray(proba)
    if y.shape != p.shape:
        raise ValueError(f"y_true and proba must have the same shape (one probability per "
                         f"event, e.g. occupancy maps (n, n_bins, rows, cols) and their "
                         f"probabilities); got {y.shape} and {p.shape}.")
    if y.size == 0:
        raise ValueError("y_true and proba are empty; pass at least one event.")
    if not (np.issubdtype(p.dtype, np.number) and not np.iscomplexobj(p)):
        raise TypeError(f"proba must hold real numbers (probabilities); got dtype {p.dtype}.")
    p = p.astype(np.float64).ravel()
    if not np.all(np.isfinite(p)):
        raise ValueError("proba contains NaN or infinite values.")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"proba must be probabilities in [0, 1]; got values in "
                         f"[{p.min():.4g}, {p.max():.4g}] (apply scipy.special.expit to "
                         "log-odds first).")
    if not (y.dtype == bool or np.issubdtype(y.dtype, np.number)):
        raise TypeError(f"y_true must hold binary labels (0/1 or False/True); got dtype "
                        f"{y.dtype}.")
    y = y.ravel()
    labels = np.unique(y)
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError(f"y_true must hold binary labels (0/1 or False/True); got values "
                         f"{labels[:10].tolist()}{' ...' if len(labels) > 10 else ''}.")
    return y.astype(bool), p, int(n_bins)


def reliability_curve(y_true: ArrayLike, proba: ArrayLike,
                      n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, observed frequency and count in equal-width bins.

    The points of a reliability diagram: the events are grouped by their
    predicted probability into ``n_bins`` equal-width bins of [0, 1] (edges
    ``np.linspace(0, 1, n_bins + 1)``; a probability on an inner edge belongs
    to the lower bin), and each bin's mean probability is compared with the
    fraction of its events that happened. The two fractions come from
    :func:`sklearn.calibration.calibration_curve` (``strategy="uniform"``),
    which drops empty bins; here every bin keeps its place, so the arrays line
    up with the edges.

    Parameters
    ----------
    y_true : array-like of bool or {0, 1}, any shape
        Whether each event happened, e.g. occupancy maps of shape
        ``(n, n_bins, rows, cols)``.
    proba : array-like of float in [0, 1], same shape as ``y_true``
        Predicted probability of each event.
    n_bins : int, default=10
        Equal-width bins of [0, 1].

    Returns
    -------
    mean_predicted : ndarray of shape (n_bins,)
        Mean predicted probability in each bin (NaN where the bin is empty).
    frequency : ndarray of shape (n_bins,)
        Fraction of events in each bin that happened (NaN where empty).
        Calibrated probabilities give ``frequency`` close to
        ``mean_predicted``.
    counts : ndarray of int of shape (n_bins,)
        Events in each bin.

    See Also
    --------
    expected_calibration_error : the count-weighted gap of these curves.
    sklearn_tmnre.plotting.plot_reliability_diagram : draws them.

    Examples
    --------
    >>> proba = np.array([0.05, 0.15, 0.15, 0.95])
    >>> mean_predicted, frequency, counts = reliability_curve([0, 0, 1, 1], proba, n_bins=2)
    >>> mean_predicted.round(3).tolist(), frequency.round(3).tolist(), counts.tolist()
    ([0.117, 0.95], [0.333, 1.0], [3, 1])
    """
    y, p, n_bins = _binary_events(y_true, proba, n_bins)
    # The bin of each probability exactly as calibration_curve finds it, so
    # that its non-empty bins can be put back in place.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
    frequency = np.full(n_bins, np.nan)
    mean_predicted = np.full(n_bins, np.nan)
    # pos_label: labels are bool here, so a map without any event is not ambiguous.
    frequency[counts > 0], mean_predicted[counts > 0] = calibration_curve(
        y, p, n_bins=n_bins, strategy="uniform", pos_label=True)
    return mean_predicted, frequency, counts


def expected_calibration_error(y_true: ArrayLike, proba: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error of binary probabilities (equal-width bins).

    The mean, weighted by the number of events in each bin, of the absolute
    gap between the observed frequency and the mean predicted probability of
    :func:`reliability_curve` (see the module docstring for the formula).

    Parameters
    ----------
    y_true : array-like of bool or {0, 1}, any shape
        Whether each event happened, e.g. occupancy maps of shape
        ``(n, n_bins, rows, cols)``.
    proba : array-like of float in [0, 1], same shape as ``y_true``
        Predicted probability of each event.
    n_bins : int, default=10
        Equal-width bins of [0, 1].

    Returns
    -------
    float
        In [0, 1]; 0 for calibrated probabilities, up to the counting noise
        of the bins (of order ``sqrt(n_bins / len(proba))`` at most).
        Overconfident probabilities (too close to 0 and 1) and underconfident
        ones both raise it; the reliability diagram tells which.

    See Also
    --------
    reliability_curve : the per-bin values it averages.
    sklearn.metrics.brier_score_loss : the mean squared error of the
        probabilities (calibration and sharpness together).

    Examples
    --------
    Events drawn with the predicted probabilities, then the same
    probabilities made overconfident (log-odds tripled):

    >>> from scipy.special import expit, logit
    >>> rng = np.random.default_rng(0)
    >>> proba = rng.random(100_000)
    >>> happened = rng.random(100_000) < proba
    >>> bool(expected_calibration_error(happened, proba) < 0.01)
    True
    >>> round(expected_calibration_error(happened, expit(3 * logit(proba))), 2)
    0.14
    """
    return _calibration_error(*reliability_curve(y_true, proba, n_bins))


def _calibration_error(mean_predicted, frequency, counts):
    """The count-weighted mean gap of a reliability curve (empty bins have no weight)."""
    filled = counts > 0
    gaps = np.abs(frequency[filled] - mean_predicted[filled])
    return float(np.sum(counts[filled] * gaps) / np.sum(counts))


def block_brier_score(y_true: ArrayLike, proba: ArrayLike, block: tuple[int, ...]) -> float:
    """Brier score of the expected number of events in blocks of cells.

    The cells of each map are grouped into blocks of shape ``block`` over the
    trailing axes (where a side is not a multiple of the block, the last
    block along it is smaller); each block's number of events is compared with
    its expectation, the sum of its probabilities, and the squared differences
    are averaged over blocks and maps (see the module docstring). With blocks
    of one cell it is :func:`sklearn.metrics.brier_score_loss`.

    Parameters
    ----------
    y_true : array-like of bool or {0, 1}
        Whether each event happened, e.g. occupancy maps of shape
        ``(n, n_bins, rows, cols)``.
    proba : array-like of float in [0, 1], same shape as ``y_true``
        Predicted probability of each event.
    block : tuple of int
        Block size along each of the last ``len(block)`` axes, e.g.
        ``(3, 3, 3)`` for 3 mass bins by 3 x 3 pixels; leading axes (the
        maps) are not grouped.

    Returns
    -------
    float
        Mean squared error of the expected counts (lower is better). Compare
        it with that of the prior's probabilities on the same blocks:
        ``1 - block_brier_score(y, p, b) / block_brier_score(y, prior, b)``
        is the skill at that resolution.

    See Also
    --------
    sklearn.metrics.brier_score_loss : the score of single cells.
    expected_calibration_error : whether the probabilities mean what they say.

    Examples
    --------
    An event placed one cell off: no better than the prior cell by cell, exact
    in blocks of two cells.

    >>> y = np.array([[0, 1, 0, 0]])
    >>> off_by_one = np.array([[1.0, 0, 0, 0]])
    >>> prior = np.full((1, 4), 0.25)
    >>> block_brier_score(y, off_by_one, (1,)), block_brier_score(y, prior, (1,))
    (0.5, 0.1875)
    >>> block_brier_score(y, off_by_one, (2,)), block_brier_score(y, prior, (2,))
    (0.0, 0.25)
    """
    y_arr, p_arr = np.asarray(y_true), np.asarray(proba)
    y, p, _ = _binary_events(y_arr, p_arr, 1)
    shape = y_arr.shape
    block = tuple(block) if np.ndim(block) else (block,)
    if (not block or len(block) > len(shape)
            or not all(isinstance(b, numbers.Integral) and not isinstance(b, bool) and b >= 1
                       for b in block)):
        raise ValueError(f"block must be a tuple of positive integers, one per trailing "
                         f"axis of the maps (at most {len(shape)} for maps of shape "
                         f"{shape}); got {block!r}.")
    error = (y.astype(np.float64) - p).reshape(shape)
    for axis, size in zip(range(len(shape) - len(block), len(shape)), block):
        error = np.add.reduceat(error, np.arange(0, shape[axis], size), axis=axis)
    return float(np.mean(error**2))
