"""Plots: corner plots of marginal posteriors, coverage curves, training curves, the
truncation of a TMNRE run round by round, and per-pixel probability maps with their
reliability diagrams (defined in ``_plotting_maps``).

matplotlib is an optional extra (``pip install 'sklearn-tmnre[plot]'``) and is
imported only when a plot is drawn.

Corner-plot contours are highest-posterior-density (HPD) regions: for a level
:math:`L` the contour is drawn at the density :math:`t_L` such that the cells
denser than :math:`t_L` hold mass :math:`L`,

.. math:: \\sum_{c:\\ p_c \\ge t_L} p_c\\, \\Delta = L ,

so the 0.68 contour encloses 68 % of the estimated posterior mass.  In panel
(row ``i``, column ``j``) of the lower triangle the x axis is the column's
parameter and the y axis the row's, as on the diagonal above it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from ._plotting_maps import plot_posterior_map, plot_reliability_diagram
from .posterior import hpd_threshold

__all__ = ["corner", "coverage_plot", "plot_posterior_map", "plot_reliability_diagram",
           "training_curve", "truncation_plot"]

# Central probability of each parameter's plotted range (then padded): wide
# enough for the 0.95 contour's tails, narrow enough that a posterior much
# tighter than its prior is not drawn as a spike.
_RANGE_PROB = 0.999
_RANGE_PAD = 0.05
# Reference histograms: bins per axis grow with the sample (about 4 samples per
# 1-d bin at the edges of a 2-d one), within these bounds; 2-d histograms are
# smoothed by a Gaussian of this many bins so that contours of a few thousand
# samples are not dominated by counting noise.
_REFERENCE_BINS = (10, 100)
_REFERENCE_SMOOTH = 1.0
# Above this many marginals a legend would hide the coverage curves.
_MAX_LEGEND_ENTRIES = 10
# Bars of a discrete parameter's classes fill this fraction of the spacing of
# neighbouring classes (shared side by side by overlaid posteriors), so that
# neighbouring classes stay apart; up to this many classes get a tick each.
_BAR_FILL = 0.8
_MAX_CLASS_TICKS = 12


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("sklearn_tmnre.plotting needs matplotlib; install it with "
                          "pip install 'sklearn-tmnre[plot]'.") from err
    return plt


def _hpd_thresholds(density, cell_area, levels):
    """Densities at which the cells at least as dense hold mass ``levels`` (same order).

    The one highest-density rule of the package (:func:`~sklearn_tmnre.posterior.hpd_threshold`,
    linear inside each cell), so a contour encloses what ``hpd`` and coverage count.
    """
    total = float(np.sum(density)) * cell_area
    return np.array([hpd_threshold(density, level) * total / cell_area
                     for level in np.asarray(levels, dtype=float)])


def _contour_levels(density, cell_area, levels):
    """Increasing, distinct contour thresholds for ``levels`` (contour() requires that)."""
    thresholds = _hpd_thresholds(density, cell_area, levels)
    return np.unique(thresholds[thresholds > 0])


def _reference_bins(n):
    return int(np.clip(np.sqrt(n / 2), *_REFERENCE_BINS))


def _check_levels(levels):
    arr = np.sort(np.atleast_1d(np.asarray(levels, dtype=float)))
    if arr.ndim != 1 or arr.size == 0 or not np.all((arr > 0) & (arr < 1)):
        raise ValueError(f"levels must be credibility levels in (0, 1), e.g. (0.68, 0.95); "
                         f"got {levels!r}.")
    return arr


def _parameter_values(values, names, argname):
    """A dict name -> value from a dict, Series or sequence in ``names`` order."""
    if values is None:
        return {}
    if isinstance(values, dict | pd.Series):
        return {n: float(values[n]) for n in names if n in values}
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size != len(names):
        raise ValueError(f"{argname} has {arr.size} values but {len(names)} parameters are "
                         f"plotted ({names}); pass a dict keyed by parameter name.")
    return dict(zip(names, arr))


def _reference_frame(reference, names):
    if reference is None:
        return None
    if isinstance(reference, pd.DataFrame):
        missing = [n for n in names if n not in reference.columns]
        if missing:
            raise ValueError(f"reference lacks columns {missing}; it has "
                             f"{list(reference.columns)}.")
        return reference[names].astype(float)
    arr = np.asarray(reference, dtype=float)
    if arr.ndim == 1 and len(names) == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"reference must have shape (n, {len(names)}) with columns {names}; "
                         f"got {arr.shape}.")
    return pd.DataFrame(arr, columns=names)


def _labels(labels, names):
    if labels is None:
        return list(names)
    if isinstance(labels, dict):
        return [str(labels.get(n, n)) for n in names]
    labels = [str(v) for v in labels]
    if len(labels) != len(names):
        raise ValueError(f"labels has {len(labels)} entries for {len(names)} parameters "
                         f"({names}); pass one per parameter or a dict.")
    return labels


def _density(post, marginal):
    """(axes, density) of a marginal of ``post``, or None if it was not estimated."""
    if marginal not in post.mass and marginal[::-1] not in post.mass:
        return None
    return post.density(marginal)


def _discrete_names(posts):
    """Parameters that some posterior holds as discrete (a table of class probabilities)."""
    return {n for post in posts for n in getattr(post, "discrete", ())}


def _classes(posts, name):
    """Sorted class values of a discrete parameter, over every posterior that has them."""
    found = [np.asarray(post.grid((name,))[0], dtype=float) for post in posts
             if name in getattr(post, "discrete", ())]
    return np.unique(np.concatenate(found))


def _class_spacing(classes):
    return float(np.min(np.diff(classes))) if len(classes) > 1 else 1.0


def _ranges(posts, names, reference, truths, discrete=frozenset()):
    """Plotted interval of each parameter: the central mass of every layer, padded.

    A discrete parameter's interval holds all its classes (every bar, however
    improbable: a model index shows both models) and half a spacing beyond.
    """
    tail = (1 - _RANGE_PROB) / 2
    out = {}
    for name in names:
        if name in discrete:
            classes = _classes(posts, name)
            half = 0.5 * _class_spacing(classes)
            lo, hi = classes[0], classes[-1]
            if name in truths:
                lo, hi = min(lo, truths[name]), max(hi, truths[name])
            out[name] = (lo - half, hi + half)
            continue
        lows, highs = [], []
        for post in posts:
            if name in post.names:
                q = post.quantile([tail, 1 - tail])[name]
                lows.append(q.iloc[0])
                highs.append(q.iloc[1])
        if reference is not None:
            lo, hi = np.quantile(reference[name], [tail, 1 - tail])
            lows.append(lo)
            highs.append(hi)
        if name in truths:
            lows.append(truths[name])
            highs.append(truths[name])
        lo, hi = min(lows), max(highs)
        pad = _RANGE_PAD * (hi - lo) if hi > lo else 0.5
        out[name] = (lo - pad, hi + pad)
    return out


def _draw_classes(ax, posts, colors, name, reference):
    """Bars of a discrete parameter's class probabilities on a diagonal panel.

    Each posterior's bar stands at the class value (offset side by side when
    several posteriors are overlaid), its height the class probability, so
    nothing is smoothed between classes as a density curve would be.
    Reference samples are drawn as dashed outlines of their class frequencies.
    """
    classes = _classes(posts, name)
    spacing = _class_spacing(classes)
    layers = [(post, color) for post, color in zip(posts, colors)
              if name in getattr(post, "discrete", ())]
    width = _BAR_FILL * spacing / len(layers)
    for k, (post, color) in enumerate(layers):
        p = post.probabilities(name)
        offset = (k - 0.5 * (len(layers) - 1)) * width
        ax.bar(p.index.to_numpy(dtype=float) + offset, p.to_numpy(), width=width,
               color=color, alpha=0.7)
    if reference is not None:
        freq = reference[name].value_counts(normalize=True).sort_index()
        ax.bar(freq.index.to_numpy(dtype=float), freq.to_numpy(), width=_BAR_FILL * spacing,
               fill=False, edgecolor="k", ls="--")
    if len(classes) <= _MAX_CLASS_TICKS:
        ax.set_xticks(classes)


def _corner_axes(plt, fig, d):
    if fig is None:
        size = min(2.4 * d, 24)
        fig = plt.figure(figsize=(size, size))
    existing = fig.get_axes()
    if not existing:
        axes = fig.subplots(d, d, squeeze=False)
        fig.subplots_adjust(hspace=0.06, wspace=0.06)
        return fig, axes
    if len(existing) != d * d:
        raise ValueError(f"fig has {len(existing)} axes but a corner plot of {d} parameters "
                         f"needs {d * d}; pass an empty figure or one made by corner().")
    return fig, np.asarray(existing).reshape(d, d)


def _label_outer(axes, labels):
    """Labels and tick labels on the lowest visible panel of each column and the
    leftmost visible off-diagonal panel of each row (hidden panels lose theirs)."""
    d = len(labels)
    for j in range(d):
        bottom = max(i for i in range(j, d) if axes[i, j].get_visible())
        for i in range(j, d):
            axes[i, j].set_xlabel(labels[j] if i == bottom else "")
            axes[i, j].tick_params(labelbottom=i == bottom)
    for i in range(1, d):
        visible = [j for j in range(i) if axes[i, j].get_visible()]
        for j in range(i):
            left = bool(visible) and j == visible[0]
            axes[i, j].set_ylabel(labels[i] if left else "")
            axes[i, j].tick_params(labelleft=left)


def corner(posterior, truths=None, reference=None, levels=(0.68, 0.95), labels=None, names=None,
           fig=None, colors=None, legend=None):
    """Corner plot of 1-d and 2-d marginal posteriors.

    Parameters
    ----------
    posterior : MarginalPosterior or list of MarginalPosterior
        One posterior, or several to overlay in different colours.
    truths : dict, Series or sequence, optional
        True parameter values (a sequence follows ``names``), drawn as lines
        and markers.
    reference : DataFrame or ndarray, optional
        Samples of a reference posterior (an array's columns follow
        ``names``), drawn as black step histograms and dashed HPD contours.
    levels : sequence of float in (0, 1), default=(0.68, 0.95)
        Credibility levels of the 2-d HPD contours.
    labels : dict or sequence of str, optional
        Axis labels per parameter (default: the names).
    names : sequence of str, optional
        Parameters to plot, in order (default: every parameter with a 1-d
        marginal in the posteriors).
    fig : matplotlib Figure, optional
        An empty figure to draw into, or a figure returned by ``corner`` with
        the same parameters to overlay on.
    colors : sequence of colours, optional
        One per posterior (default: ``"C0"``, ``"C1"``, ...).
    legend : sequence of str, optional
        One label per posterior; adds a figure legend (``"reference"`` is
        appended when reference samples are drawn).

    Returns
    -------
    matplotlib.figure.Figure
        Diagonal: 1-d densities, or for a discrete parameter bars of its class
        probabilities (:meth:`MarginalPosterior.probabilities`) at the class
        values. Below the diagonal, panel (i, j): HPD contours of the 2-d
        marginal of parameter ``j`` (x axis) and ``i`` (y axis); panels whose
        2-d marginal no posterior estimated, or that involve a discrete
        parameter, are hidden, as is the upper triangle.

    Examples
    --------
    >>> fig = corner(est.posterior(x_o), truths={"a": 0.1, "b": -0.3})   # doctest: +SKIP
    """
    plt = _pyplot()
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    posts = list(posterior) if isinstance(posterior, list | tuple) else [posterior]
    if not posts or not all(hasattr(p, "density") and hasattr(p, "names") for p in posts):
        raise TypeError("posterior must be a MarginalPosterior or a non-empty list of them.")
    if names is None:
        names = []
        for post in posts:
            names += [n for n in post.names if n not in names]
    names = [str(n) for n in names]
    unknown = [n for n in names if not any(n in p.names for p in posts)]
    if unknown or not names:
        raise ValueError(f"names {unknown or names} have no 1-d marginal in the posterior(s); "
                         f"available: {sorted({n for p in posts for n in p.names})}.")
    levels = _check_levels(levels)
    labels = _labels(labels, names)
    colors = [f"C{i}" for i in range(len(posts))] if colors is None else list(colors)
    if len(colors) < len(posts):
        raise ValueError(f"colors has {len(colors)} entries for {len(posts)} posteriors.")
    if legend is not None and len(legend) != len(posts):
        raise ValueError(f"legend has {len(legend)} labels for {len(posts)} posteriors.")
    truths = _parameter_values(truths, names, "truths")
    reference = _reference_frame(reference, names)
    discrete = _discrete_names(posts)
    ranges = _ranges(posts, names, reference, truths, discrete)

    d = len(names)
    fig, axes = _corner_axes(plt, fig, d)
    # Fill shades: the innermost region darkest.
    alphas = np.linspace(0.45, 0.15, len(levels))
    for i, row in enumerate(names):
        for j, col in enumerate(names):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j and row in discrete:
                _draw_classes(ax, posts, colors, row, reference)
                if row in truths:
                    ax.axvline(truths[row], color="k", lw=1)
                ax.set_ylim(bottom=0)
                ax.set_yticks([])
            elif i == j:
                for post, color in zip(posts, colors):
                    found = _density(post, (row,))
                    if found is not None:
                        (centres,), dens = found
                        ax.plot(centres, dens, color=color)
                if reference is not None:
                    ax.hist(reference[row], bins=_reference_bins(len(reference)),
                            range=ranges[row],
                            density=True, histtype="step", color="k", ls="--")
                if row in truths:
                    ax.axvline(truths[row], color="k", lw=1)
                ax.set_ylim(bottom=0)
                ax.set_yticks([])
            else:
                drawn = False
                for post, color in zip(posts, colors):
                    # Contours of a class table are meaningless (fit refuses 2-d
                    # marginals of discrete parameters): such a panel stays hidden.
                    if {col, row} & discrete:
                        break
                    found = _density(post, (col, row))
                    if found is None:
                        continue
                    (xc, yc), dens = found
                    area = (xc[1] - xc[0]) * (yc[1] - yc[0])
                    thresholds = _contour_levels(dens, area, levels[::-1])
                    if thresholds.size:
                        fills = [to_rgba(color, a) for a in alphas[::-1][-len(thresholds):]]
                        ax.contourf(xc, yc, dens.T, levels=[*thresholds, np.inf], colors=fills)
                        ax.contour(xc, yc, dens.T, levels=thresholds, colors=[color],
                                   linewidths=1)
                    drawn = True
                if not drawn:
                    ax.set_visible(ax.has_data())
                    continue
                if reference is not None:
                    hist, xe, ye = np.histogram2d(reference[col], reference[row],
                                                  bins=_reference_bins(len(reference)),
                                                  range=[ranges[col], ranges[row]], density=True)
                    hist = gaussian_filter(hist, _REFERENCE_SMOOTH)
                    area = (xe[1] - xe[0]) * (ye[1] - ye[0])
                    thresholds = _contour_levels(hist, area, levels[::-1])
                    if thresholds.size:
                        ax.contour(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), hist.T,
                                   levels=thresholds, colors="k", linestyles="--",
                                   linewidths=1)
                if col in truths:
                    ax.axvline(truths[col], color="k", lw=1)
                if row in truths:
                    ax.axhline(truths[row], color="k", lw=1)
                if col in truths and row in truths:
                    ax.plot(truths[col], truths[row], "s", color="k", ms=4)
                ax.set_ylim(ranges[row])
            ax.set_xlim(ranges[col])
    _label_outer(axes, labels)
    if legend is not None:
        handles = [Line2D([], [], color=c) for c in colors[:len(posts)]]
        names_in_legend = list(legend)
        if reference is not None:
            handles.append(Line2D([], [], color="k", ls="--"))
            names_in_legend.append("reference")
        fig.legend(handles, names_in_legend, loc="upper right")
    return fig


def coverage_plot(frame, ax=None):
    """Empirical against nominal coverage, per marginal, with Jeffreys bands.

    Parameters
    ----------
    frame : DataFrame
        The output of :func:`sklearn_tmnre.metrics.expected_coverage` (columns
        ``marginal``, ``level``, ``coverage``, ``lower``, ``upper``), ideally
        at many levels, e.g. ``levels=np.linspace(0.05, 0.95, 19)``.
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
        Curves above the diagonal are conservative, below it overconfident.

    Examples
    --------
    >>> table = expected_coverage(est, X_test, theta_test, levels=np.linspace(.05, .95, 19))
    ... # doctest: +SKIP
    >>> coverage_plot(table)                                   # doctest: +SKIP
    """
    plt = _pyplot()
    required = ["marginal", "level", "coverage", "lower", "upper"]
    if not isinstance(frame, pd.DataFrame) or not set(required) <= set(frame.columns):
        raise ValueError(f"frame must be a DataFrame with columns {required}, as returned by "
                         "sklearn_tmnre.metrics.expected_coverage.")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    marginals = list(dict.fromkeys(frame["marginal"]))
    for k, marginal in enumerate(marginals):
        part = frame[frame["marginal"] == marginal].sort_values("level")
        color = f"C{k % 10}"
        ax.fill_between(part["level"], part["lower"], part["upper"], color=color, alpha=0.2,
                        lw=0)
        ax.plot(part["level"], part["coverage"], "o-", color=color, ms=3, label=str(marginal))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.text(0.04, 0.96, "conservative", ha="left", va="top", color="0.4",
            transform=ax.transAxes)
    ax.text(0.96, 0.04, "overconfident", ha="right", va="bottom", color="0.4",
            transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal credibility level")
    ax.set_ylabel("empirical coverage")
    if len(marginals) <= _MAX_LEGEND_ENTRIES:
        ax.legend(title="marginal", loc="lower right", bbox_to_anchor=(1, 0.1))
    return ax.figure


def training_curve(estimator, ax=None):
    """Training and validation loss per epoch.

    Parameters
    ----------
    estimator : TMNREEstimator or skorch.NeuralNet
        A fitted estimator (its ``net_.history`` is read) or a skorch net.
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
        The validation curve (absent when validation was off) marks its best
        epoch, whose weights a TMNREEstimator keeps.

    Examples
    --------
    >>> training_curve(est)                                    # doctest: +SKIP
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    net = getattr(estimator, "net_", estimator)
    history = getattr(net, "history", None)
    if history is None or len(history) == 0:
        raise ValueError(f"estimator must be a fitted TMNREEstimator or skorch net with a "
                         f"training history; got {type(estimator).__name__} without one "
                         "(call fit first).")
    epochs = np.array([row["epoch"] for row in history])
    train = np.array([row.get("train_loss", np.nan) for row in history], dtype=float)
    valid = np.array([row.get("valid_loss", np.nan) for row in history], dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    ax.plot(epochs, train, "-", color="C0", label="train")
    if np.isfinite(valid).any():
        ax.plot(epochs, valid, "-", color="C1", label="validation")
        best = int(np.nanargmin(valid))
        ax.plot(epochs[best], valid[best], "o", color="C1", label=f"best (epoch {epochs[best]})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return ax.figure


def truncation_plot(run, truths=None, labels=None, names=None):
    """The box of every round of a TMNRE run, per parameter, and its prior mass.

    Parameters
    ----------
    run : TMNRE
        A fitted run (its ``rounds_``, ``prior_`` and ``truncator_`` are read).
    truths : dict, Series or array-like, optional
        True parameter values, drawn as horizontal lines.
    labels : dict or list of str, optional
        Axis labels per parameter (default: the names).
    names : list of str, optional
        Parameters to show (default: all).

    Returns
    -------
    matplotlib.figure.Figure
        The first panel is the prior mass of the box each round sampled (log
        scale) and of the box the last round found; then one panel per
        parameter with the interval each round sampled and the final box.
        Infinite bounds (an unbounded prior's round 0) are drawn up to the
        panel's edge.

    Examples
    --------
    >>> truncation_plot(run, truths=task.true_parameters(1))   # doctest: +SKIP
    """
    plt = _pyplot()
    if not hasattr(run, "rounds_"):
        raise ValueError(f"run must be a fitted TMNRE (with rounds_); got "
                         f"{type(run).__name__} without it (call fit first).")
    all_names = list(run.prior_.names)
    names = all_names if names is None else [str(n) for n in names]
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"names {unknown} are not parameters of the run ({all_names}).")
    labels = _labels(labels, names)
    truths = _parameter_values(truths, all_names, "truths")
    rounds = run.rounds_
    final = {n: tuple(b) for n, b in zip(all_names, run.prior_.bounds)}
    boxes = [*rounds["bounds"], final]
    ticks = [str(r) for r in rounds["round"]] + ["final"]
    x = np.arange(len(boxes))

    n_panels = len(names) + 1
    ncols = min(4, n_panels)
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows),
                             layout="constrained", squeeze=False)
    axes = axes.ravel()
    masses = [*rounds["mass"], run.truncator_.mass_]
    axes[0].semilogy(x, masses, "o-", color="0.3")
    axes[0].set_ylabel("prior mass of the box")
    for ax, name, label in zip(axes[1:], names, labels):
        lows = np.array([box[name][0] for box in boxes], dtype=float)
        highs = np.array([box[name][1] for box in boxes], dtype=float)
        finite = np.concatenate([lows[np.isfinite(lows)], highs[np.isfinite(highs)]])
        span = np.ptp(finite) if len(finite) > 1 else 1.0
        edge = (finite.min() - 0.1 * span, finite.max() + 0.1 * span)
        lows, highs = np.where(np.isfinite(lows), lows, edge[0]), np.where(
            np.isfinite(highs), highs, edge[1])
        colors = ["C0"] * len(rounds) + ["C1"]
        ax.vlines(x, lows, highs, colors=colors, lw=6, alpha=0.7)
        if name in truths:
            ax.axhline(truths[name], color="C3", ls="--", lw=1)
        ax.set_ylabel(label)
        ax.set_ylim(*edge)
    for ax in axes[:n_panels]:
        ax.set_xticks(x, ticks)
        ax.set_xlabel("round")
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig
