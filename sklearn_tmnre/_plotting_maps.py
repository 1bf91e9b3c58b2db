"""Plots of per-pixel probabilities: posterior maps and reliability diagrams.

Re-exported by :mod:`sklearn_tmnre.plotting`, which holds the plots of marginal
posteriors; these two show binary events on a pixel grid (is there a subhalo of mass
bin ``k`` in pixel ``(i, j)``) and the calibration of their probabilities
(:func:`~sklearn_tmnre.metrics.reliability_curve`).
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ._calibration import _calibration_error, reliability_curve
from .metrics import jeffreys_interval

__all__ = ["plot_posterior_map", "plot_reliability_diagram"]

# Panels per row of a multi-bin posterior map made here.
_MAX_MAP_COLUMNS = 5
# Confidence of the error bars of the observed frequencies.
_BAR_CONFIDENCE = 0.68


def _maps(proba):
    arr = np.asarray(proba)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"proba must hold probabilities (real numbers); got dtype {arr.dtype}.")
    if arr.ndim not in (2, 3) or min(arr.shape) < 1:
        raise ValueError(f"proba must be one map (rows, cols) or one per bin (n_bins, rows, "
                         f"cols); got shape {arr.shape}. For several images, plot one at a "
                         "time: proba[i].")
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValueError("proba must hold probabilities in [0, 1] without NaN.")
    return arr if arr.ndim == 3 else arr[None]


def _truth_pixels(truth, shape):
    """(bin, row, col) of every true subhalo: from occupancy maps or a catalogue."""
    n_bins, rows, cols = shape
    if isinstance(truth, pd.DataFrame):
        need = ["row", "col"] + (["bin"] if n_bins > 1 else [])
        missing = [c for c in need if c not in truth.columns]
        if missing:
            raise ValueError(f"truth: a catalogue needs columns {need} (as returned by "
                             f"SubhaloLensing.true_catalogue); missing {missing}.")
        b = truth["bin"].to_numpy() if n_bins > 1 else np.zeros(len(truth), dtype=int)
        r, c = truth["row"].to_numpy(), truth["col"].to_numpy()
        # Subhalos outside the field or the mass range have no cell (-1): not drawn.
        inside = (b >= 0) & (b < n_bins) & (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        return b[inside], r[inside], c[inside]
    occupied = np.asarray(truth)
    if occupied.ndim == 2:
        occupied = occupied[None]
    if occupied.shape != shape or not np.all(np.isin(occupied, (0, 1))):
        raise ValueError(f"truth must be occupancy maps of proba's shape {shape} (bool) or "
                         f"a catalogue DataFrame; got an array of shape {np.shape(truth)}.")
    return np.nonzero(occupied)


def _map_axes(plt, n_bins, ax):
    if ax is None:
        ncols = min(n_bins, _MAX_MAP_COLUMNS)
        nrows = -(-n_bins // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols + 0.8, 2.8 * nrows),
                                 layout="constrained", squeeze=False)
        axes = axes.ravel()
        for extra in axes[n_bins:]:
            extra.set_visible(False)
        return fig, list(axes[:n_bins])
    axes = list(np.ravel(ax)) if isinstance(ax, list | tuple | np.ndarray) else [ax]
    if len(axes) != n_bins:
        raise ValueError(f"ax holds {len(axes)} axes for {n_bins} maps; pass one Axes per "
                         "bin, or None.")
    return axes[0].figure, axes


def plot_posterior_map(proba: ArrayLike, image: ArrayLike | None = None,
                       truth: ArrayLike | pd.DataFrame | None = None, ax=None,
                       bin_labels: list[str] | None = None, vmax: float | None = None,
                       cmap: str = "plasma", colorbar: bool = True):
    """Per-pixel probabilities as colour that fades to transparent where they are low.

    Each pixel's colour and opacity both grow with its probability (opacity
    ``p / vmax``), so improbable pixels vanish and the observed image underneath shows
    through. Row ``i`` of a map is drawn at height ``i`` (``origin="lower"``): ``y``
    upwards, as in :class:`~sklearn_tmnre.tasks.SubhaloLensing`.

    Parameters
    ----------
    proba : array-like of shape (rows, cols) or (n_bins, rows, cols)
        Probabilities in [0, 1]: one map, or one per mass bin (one panel each).
    image : array-like of shape (rows, cols), optional
        The observed image, drawn in grey under every map.
    truth : array-like of bool of the shape of ``proba``, or DataFrame, optional
        True subhalos, drawn as open circles: occupancy maps, or a catalogue with
        columns ``row``, ``col`` (and ``bin`` for several maps) such as
        :meth:`SubhaloLensing.true_catalogue <sklearn_tmnre.tasks.SubhaloLensing.true_catalogue>`.
    ax : Axes or sequence of Axes, optional
        One Axes per map (default: a new figure, up to five panels a row).
    bin_labels : sequence of str, optional
        Panel titles (default: ``"bin 0"``, ``"bin 1"``, ... for several maps).
    vmax : float in (0, 1], optional
        Probability drawn fully opaque at the top of the colour scale (default: the
        largest in ``proba``, so that rare events such as occupied pixels stay visible);
        shared by all panels.
    cmap : str, default="plasma"
        Colour map of the probabilities.
    colorbar : bool, default=True
        Add one colour bar for all panels.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> task = subhalo_lensing(npix=32)                                  # doctest: +SKIP
    >>> plot_posterior_map(proba[0, -3:], image=task.observation(1),    # doctest: +SKIP
    ...                    truth=task.true_occupancy(1)[-3:])
    """
    from .plotting import _pyplot

    plt = _pyplot()
    from matplotlib.colors import Normalize

    maps = _maps(proba)
    n_bins, rows, cols = maps.shape
    if image is not None:
        image = np.asarray(image, dtype=float)
        if image.shape != (rows, cols):
            raise ValueError(f"image must have the maps' shape {(rows, cols)}; got "
                             f"{image.shape}.")
    if vmax is None:
        vmax = float(maps.max()) or 1.0
    elif not (isinstance(vmax, numbers.Real) and 0 < vmax <= 1):
        raise ValueError(f"vmax must be a probability in (0, 1]; got {vmax!r}.")
    if bin_labels is None:
        bin_labels = [f"bin {k}" for k in range(n_bins)] if n_bins > 1 else [None]
    elif len(bin_labels) != n_bins:
        raise ValueError(f"bin_labels has {len(bin_labels)} entries for {n_bins} maps.")
    truths = None if truth is None else _truth_pixels(truth, maps.shape)
    fig, axes = _map_axes(plt, n_bins, ax)
    norm = Normalize(0.0, vmax)
    colours = plt.get_cmap(cmap)
    for k, (panel, label) in enumerate(zip(axes, bin_labels)):
        if image is not None:
            panel.imshow(image, cmap="gray", origin="lower", interpolation="nearest")
        rgba = colours(norm(maps[k]))
        rgba[..., 3] = np.clip(maps[k] / vmax, 0.0, 1.0)
        panel.imshow(rgba, origin="lower", interpolation="nearest")
        if truths is not None:
            here = truths[0] == k
            panel.scatter(truths[2][here], truths[1][here], s=40, facecolors="none",
                          edgecolors="C2", linewidths=1.2)
        panel.set_xlim(-0.5, cols - 0.5)
        panel.set_ylim(-0.5, rows - 0.5)
        panel.set_xticks([])
        panel.set_yticks([])
        if label is not None:
            panel.set_title(str(label))
    if colorbar:
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=colours)
        fig.colorbar(mappable, ax=axes, label="probability", shrink=0.8)
    return fig


def plot_reliability_diagram(y_true: ArrayLike, proba: ArrayLike, n_bins: int = 10, ax=None):
    """Reliability diagram: observed frequency against predicted probability.

    The points of :func:`~sklearn_tmnre.metrics.reliability_curve`, with 68 % Jeffreys
    intervals of each frequency (:func:`~sklearn_tmnre.metrics.jeffreys_interval`), the
    diagonal of calibrated probabilities, the number of events per bin as grey bars
    (log scale, right axis), and the expected calibration error in the title.

    Parameters
    ----------
    y_true : array-like of bool or {0, 1}, any shape
        Whether each event happened, e.g. occupancy maps.
    proba : array-like of float in [0, 1], same shape as ``y_true``
        Predicted probabilities.
    n_bins : int, default=10
        Equal-width bins of [0, 1].
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
        Points below the diagonal are overconfident (events happen less often than
        predicted), above it underconfident.

    Examples
    --------
    >>> plot_reliability_diagram(occupancy, proba)                   # doctest: +SKIP
    """
    from .plotting import _pyplot

    plt = _pyplot()
    mean_predicted, frequency, counts = reliability_curve(y_true, proba, n_bins)
    ece = _calibration_error(mean_predicted, frequency, counts)
    filled = counts > 0
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    edges = np.linspace(0.0, 1.0, len(counts) + 1)
    bars = ax.twinx()
    bars.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="0.85",
             edgecolor="0.6", lw=0.5)
    bars.set_yscale("log")
    bars.set_ylabel("events per bin")
    bars.set_ylim(bottom=0.5)
    # The curve in front of its bars.
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    happened = np.round(frequency[filled] * counts[filled])
    lower, upper = jeffreys_interval(happened, counts[filled], _BAR_CONFIDENCE)
    ax.errorbar(mean_predicted[filled], frequency[filled],
                yerr=[frequency[filled] - lower, upper - frequency[filled]], fmt="o-",
                color="C0", ms=4, capsize=2, label="estimate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"ECE = {ece:.3g}")
    ax.legend(loc="upper left")
    return ax.figure
