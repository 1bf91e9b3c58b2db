"""Marginal posteriors on grids: densities, draws, intervals and summaries.

For a marginal :math:`m` and observation :math:`x_o` the estimated density is

.. math:: \\hat p(\\theta_m \\mid x_o) = \\frac{\\exp f_m(x_o, \\theta_m)\\, p(\\theta_m)}
          {\\int \\exp f_m(x_o, \\theta'_m)\\, p(\\theta'_m)\\, d\\theta'_m},

evaluated on a regular grid of cell centres over the (truncated) prior
support and normalized by the sum over cells.  Within a cell the density is
taken as constant, so draws pick a cell by its mass and place the point
uniformly inside it.  Highest-density regions (credibility levels,
:func:`hpd_level`, and :meth:`MarginalPosterior.hpd`) instead take the density
as linear inside each cell, with slopes from central differences of the cell
masses: the region at level :math:`q` then holds mass :math:`q` rather than up
to one boundary cell more, and a point's level moves continuously with it.
Unbounded priors (e.g. normal) get a grid over their central
``1 - 2 * tail`` probability range (``tail=1e-6`` by default: about ±4.9
standard deviations for a normal).

Marginals of three or more parameters have no grid; they are represented by
prior samples weighted by :math:`\\exp f_m` (``weighted_samples``).

**Discrete parameters.** The "grid" of a discrete parameter is its classes,
each a cell of width 1 (the counting measure), so its cell masses are the
class probabilities :math:`\\hat P(\\theta_i = k \\mid x_o) \\propto
\\exp f_i(x_o, k)\\, P(\\theta_i = k)`. Draws are exact class values;
quantiles are the smallest class whose CDF reaches ``q``
(:func:`class_quantile`); the highest-density region becomes the
*highest-probability set*, the most probable classes until they hold the level
(:func:`class_set_extent`). The credibility of a class :math:`k^*` is
randomized (:func:`class_level`),

.. math:: c(k^*) = \\sum_{k:\\, P_k > P_{k^*}} P_k
          + U \\sum_{k:\\, P_k = P_{k^*}} P_k, \\qquad U \\sim \\mathcal U(0, 1),

which is uniform on (0, 1) when :math:`k^* \\sim \\hat P`: a calibrated
estimator has exactly nominal expected coverage, as for continuous
parameters, instead of the steps a deterministic rule would leave.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.utils import check_random_state

from ._distributions import class_index

__all__ = ["MarginalPosterior", "class_level", "class_quantile", "class_set_extent",
           "grid_axes", "hpd_extent", "hpd_level", "hpd_threshold"]


def grid_axes(prior, names, n_points, tail=1e-6):
    """Cell centres and widths of a regular grid over each parameter's high-mass range.

    Parameters
    ----------
    prior : Prior
    names : sequence of str
    n_points : int
    tail : float
        Probability left out in each unbounded tail.

    Returns
    -------
    list of (centres, width) per name
        A discrete parameter's "grid" is its classes (whatever ``n_points``),
        each a cell of width 1: the counting measure, so that cell masses are
        class probabilities.
    """
    bounds = dict(zip(prior.names, prior.bounds))
    # Parameters with the same distribution object and box (an object block's N members)
    # have the same grid: computed once, not N times.
    done = {}
    axes = []
    for name in names:
        if prior.is_discrete(name):
            axes.append((prior.probabilities(name).index.to_numpy(dtype=float), 1.0))
            continue
        lo, hi = bounds[name]
        key = (id(prior.distributions[name]), lo, hi)
        if key not in done:
            marginal = prior.marginal([name])
            if not np.isfinite(lo):
                lo = float(marginal.from_unit(np.array([[tail]])).iloc[0, 0])
            if not np.isfinite(hi):
                hi = float(marginal.from_unit(np.array([[1 - tail]])).iloc[0, 0])
            edges = np.linspace(lo, hi, n_points + 1)
            done[key] = (0.5 * (edges[1:] + edges[:-1]), (hi - lo) / n_points)
        axes.append(done[key])
    return axes


def _grid_cells(axes, values):
    """The cell of each point on a grid, whether it lies on the grid, and where in its cell.

    Each axis is ``(centres, width)``: one grid for every point (centres of
    shape (G,), a float width), or one per point (centres (n, G), widths (n,)),
    as the zoomed grids of several observations are.

    Returns
    -------
    cells : list of int ndarray (n,), one per axis (clipped to the grid)
    inside : bool ndarray (n,)
    offsets : list of float ndarray (n,), the position in the cell, in (-1/2, 1/2)
    """
    inside = np.ones(len(values), bool)
    cells, offsets = [], []
    for k, (centres, width) in enumerate(axes):
        centres = np.asarray(centres, dtype=float)
        n_cells = centres.shape[-1]
        position = (values[:, k] - (centres[..., 0] - np.asarray(width) / 2)) / width
        cell = np.floor(position)
        inside &= (cell >= 0) & (cell < n_cells)
        cell = np.clip(cell, 0, n_cells - 1).astype(np.int64)
        cells.append(cell)
        offsets.append(position - cell - 0.5)
    return cells, inside, offsets


def _slopes(mass, n_axes):
    """Change of the cell mass per cell along each of the last ``n_axes`` axes.

    Central differences inside the grid, one-sided at its edges; zero along an
    axis of a single cell.
    """
    lead = mass.ndim - n_axes
    return [np.gradient(mass, axis=lead + k) if mass.shape[lead + k] > 1
            else np.zeros_like(mass) for k in range(n_axes)]


def _fraction_denser(mass, slopes, threshold):
    """Fraction of each cell where the linear in-cell density exceeds ``threshold``.

    Inside a cell of a 1-d or 2-d grid the density (in mass per cell) is
    modelled as ``mass + A + B``, with ``A`` and ``B`` the slopes times
    offsets uniform on (-1/2, 1/2): uniform on ``(-a, a)`` and ``(-b, b)``
    with ``a >= b`` half the larger and the smaller absolute slope.  The
    tail of their sum (a trapezoid) has a closed form; a cell without slope
    counts fully when denser than the threshold and half when tied with it.
    """
    half = [0.5 * np.abs(s) for s in slopes] + [0.0]
    a, b = np.maximum(half[0], half[1]), np.minimum(half[0], half[1])
    excess = threshold - mass
    gap = np.abs(excess)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inner = np.where(a > 0, 0.5 - gap / (2 * a), 0.5)
        outer = (a + b - gap) ** 2 / (8 * a * b)
    # P(A + B > gap) for gap >= 0; by symmetry P(A + B > -gap) = 1 - that.
    tail = np.where(gap <= a - b, inner, np.where(gap < a + b, outer, 0.0))
    return np.where(excess > 0, tail, 1.0 - tail)


def hpd_level(mass, axes, values):
    """Mass of the highest-density region whose boundary passes through each point.

    The density is taken as linear inside each cell (slopes from central
    differences of the cell masses), so the level varies continuously with
    the point's position instead of jumping by a whole cell's mass at cell
    edges.  For a normal on 64 cells (6.5 per standard deviation), wherever
    its mode sits in its cell, the level is within 0.006 of the exact
    :math:`2\\Phi(|z|) - 1` more than one cell from the mode and the coverage
    ``P(level <= q)`` within 0.001 of ``q``; counting half of the point's own
    cell was off by up to 0.09 and 0.026.  Within one cell of the mode the
    grid cannot place the peak: the level can be off by up to the mode
    cell's mass there.

    Parameters
    ----------
    mass : ndarray of shape (*grid) or (n, *grid)
        Probability of each cell of a 1-d or 2-d grid (summing to one), one
        grid for every point or one per point.
    axes : list of (centres, width)
        The grid of each axis, as returned by :func:`grid_axes`; or, with one
        grid per point, centres of shape (n, G) and widths of shape (n,).
    values : ndarray of shape (n, len(axes))
        The points.

    Returns
    -------
    ndarray of shape (n,)
        0 at the mode, 1 for points outside the grid.

    Examples
    --------
    >>> centres = np.arange(4) + 0.5
    >>> mass = np.array([0.1, 0.4, 0.4, 0.1])
    >>> hpd_level(mass, [(centres, 1.0)], [[0.1], [1.5], [2.0], [5.0]]).round(3).tolist()
    [0.98, 0.4, 0.0, 1.0]
    """
    mass = np.asarray(mass, dtype=float)
    values = np.asarray(values, dtype=float)
    n_axes = len(axes)
    if n_axes not in (1, 2):
        raise ValueError(f"axes must describe a 1-d or 2-d grid; got {n_axes} axes.")
    if values.ndim != 2 or values.shape[1] != n_axes:
        raise ValueError(f"values must have shape (n, {n_axes}), one column per grid axis; "
                         f"got {values.shape}.")
    batched = mass.ndim == n_axes + 1
    if mass.ndim != n_axes + batched or (batched and len(mass) != len(values)):
        raise ValueError(f"mass must have shape (*grid) or (n={len(values)}, *grid) for a "
                         f"{n_axes}-d grid; got {mass.shape}.")
    cells, inside, offsets = _grid_cells(axes, values)
    index = ((np.arange(len(values)),) if batched else ()) + tuple(cells)
    slopes = _slopes(mass, n_axes)
    threshold = mass[index] + sum(s[index] * u for s, u in zip(slopes, offsets))
    threshold = threshold.reshape((-1,) + (1,) * n_axes)
    denser = mass * _fraction_denser(mass, slopes, threshold)
    level = np.clip(denser.reshape(len(values), -1).sum(-1), 0.0, 1.0)
    return np.where(inside, level, 1.0)


def _hpd_threshold(mass, slopes, level):
    """Density (in mass per cell) at which the denser part of the grid holds ``level``."""
    spread = 0.5 * sum(np.abs(s) for s in slopes)
    lo, hi = float(np.min(mass - spread)), float(np.max(mass + spread))
    # The denser mass falls continuously from 1 at ``lo`` to 0 at ``hi``:
    # bisect, keeping ``lo`` on the side holding at least ``level``.
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        if np.sum(mass * _fraction_denser(mass, slopes, mid)) >= level:
            lo = mid
        else:
            hi = mid
    return lo


def hpd_threshold(mass, level):
    """Cell mass at which the denser part of a 1-d or 2-d grid holds ``level``.

    The density is linear inside each cell, as in :func:`hpd_level`, so the
    region above the threshold holds ``level`` exactly rather than up to one
    cell more: the threshold that :meth:`MarginalPosterior.hpd`,
    :func:`hpd_level` and the contours of :func:`sklearn_tmnre.plotting.corner`
    share.

    Parameters
    ----------
    mass : ndarray of shape (G,) or (G, G)
        Cell masses of one grid (normalized here).
    level : float in (0, 1)

    Returns
    -------
    float
        The threshold, in mass per cell of the normalized grid.
    """
    m = np.asarray(mass, dtype=float)
    m = m / m.sum()
    return _hpd_threshold(m, _slopes(m, m.ndim), level)


def hpd_extent(mass, centres, width, level):
    """Extent of the highest-density region of one 1-d grid marginal.

    The density is linear inside each cell, as in :func:`hpd_level`, and the
    region is where it exceeds the threshold at which it holds ``level``; its
    edges fall inside cells rather than on cell edges, so its mass is
    ``level`` instead of up to one cell more.

    Parameters
    ----------
    mass : ndarray of shape (G,)
        Cell masses.
    centres : ndarray of shape (G,)
    width : float
    level : float in (0, 1)

    Returns
    -------
    lower, upper : float
        The region's extent.
    n_intervals : int
        Its number of disjoint intervals (more than one: multimodal).
    """
    m = np.asarray(mass, dtype=float)
    m = m / m.sum()
    slope, = _slopes(m, 1)
    threshold = _hpd_threshold(m, [slope], level)
    # Part of each cell above the threshold, in offsets from its centre.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        crossing = np.clip((threshold - m) / slope, -0.5, 0.5)
    low = np.where(slope > 0, crossing, -0.5)
    high = np.where(slope < 0, crossing, 0.5)
    keep = np.where(slope == 0, m > threshold, high > low)
    starts = np.flatnonzero(keep & ~np.concatenate([[False], keep[:-1]]))
    return (float(np.min(centres[keep] + width * low[keep])),
            float(np.max(centres[keep] + width * high[keep])), len(starts))


def class_level(mass: ArrayLike, classes: ArrayLike, values: ArrayLike,
                u: float | ArrayLike) -> np.ndarray:
    """Randomized credibility level of classes of a discrete posterior.

    The mass of the classes strictly more probable than the value's, plus
    ``u`` times the mass of the classes exactly as probable (its own
    included). With ``u`` uniform on (0, 1) and the value drawn from the
    posterior, the level is uniform on (0, 1), so a calibrated estimator's
    coverage is exactly nominal; ``u = 1`` gives the mass of the smallest
    highest-probability set that holds the value (a conservative level).

    Parameters
    ----------
    mass : ndarray of shape (K,) or (n, K)
        Class probabilities, one table for every value or one per value.
    classes : ndarray of shape (K,)
        The class values, sorted.
    values : array-like of shape (n,)
    u : float or array-like of shape (n,)
        In [0, 1].

    Returns
    -------
    ndarray of shape (n,)
        1 for values that are not classes.

    Examples
    --------
    >>> class_level(np.array([0.2, 0.5, 0.3]), np.array([0.0, 1.0, 2.0]),
    ...             [1.0, 2.0, 0.0, 5.0], u=0.5).round(2).tolist()
    [0.25, 0.65, 0.9, 1.0]
    """
    classes = np.asarray(classes, dtype=float)
    values = np.asarray(values, dtype=float).reshape(-1)
    mass = np.asarray(mass, dtype=float)
    mass = np.broadcast_to(mass / mass.sum(axis=-1, keepdims=True), (len(values), len(classes)))
    idx, on = class_index(classes, values)
    own = mass[np.arange(len(values)), idx][:, None]
    tied = np.isclose(mass, own, rtol=1e-9, atol=0.0)
    more = np.sum(np.where((mass > own) & ~tied, mass, 0.0), axis=1)
    level = more + np.asarray(u, dtype=float) * np.sum(np.where(tied, mass, 0.0), axis=1)
    return np.where(on, np.clip(level, 0.0, 1.0), 1.0)


def class_quantile(mass: ArrayLike, classes: ArrayLike, q: float | ArrayLike) -> np.ndarray:
    """Quantiles of a discrete posterior: the smallest class whose CDF reaches ``q``.

    Parameters
    ----------
    mass : ndarray of shape (K,)
        Class probabilities.
    classes : ndarray of shape (K,)
        The class values, sorted.
    q : float or array-like of float in [0, 1]

    Returns
    -------
    ndarray of class values, of the shape of ``q``
    """
    mass = np.asarray(mass, dtype=float)
    cdf = np.cumsum(mass) / mass.sum()
    # A hair of slack: a CDF summed in floating point may miss q by rounding.
    idx = np.searchsorted(cdf, np.asarray(q, dtype=float) - 1e-12, side="left")
    return np.asarray(classes, dtype=float)[np.minimum(idx, len(cdf) - 1)]


def class_set_extent(mass: ArrayLike, classes: ArrayLike,
                     level: float) -> tuple[float, float, int]:
    """Extent of the highest-probability set of a discrete posterior.

    The set is the most probable classes, taken in decreasing probability
    (ties: smaller class first) until they hold at least ``level``: the
    discrete counterpart of :func:`hpd_extent`.

    Parameters
    ----------
    mass : ndarray of shape (K,)
        Class probabilities.
    classes : ndarray of shape (K,)
        The class values, sorted.
    level : float in (0, 1)

    Returns
    -------
    lower, upper : float
        The smallest and largest class of the set.
    n_intervals : int
        Runs of neighbouring classes in the set (more than one: it has gaps).

    Examples
    --------
    >>> class_set_extent(np.array([0.5, 0.1, 0.4]), np.array([0.0, 1.0, 2.0]), 0.8)
    (0.0, 2.0, 2)
    """
    mass = np.asarray(mass, dtype=float)
    classes = np.asarray(classes, dtype=float)
    order = np.argsort(-mass, kind="stable")
    cum = np.cumsum(mass[order]) / mass.sum()
    n_keep = min(int(np.searchsorted(cum, level - 1e-12, side="left")) + 1, len(mass))
    keep = np.zeros(len(mass), bool)
    keep[order[:n_keep]] = True
    starts = np.flatnonzero(keep & ~np.concatenate([[False], keep[:-1]]))
    return float(classes[keep].min()), float(classes[keep].max()), len(starts)


class MarginalPosterior:
    """Estimated 1-d and 2-d marginal posteriors of one observation.

    Created by :meth:`TMNREEstimator.posterior`; not usually built by hand.

    Parameters
    ----------
    marginals : list of tuple of str
        The marginals on a grid (1 or 2 names each).
    axes : dict
        ``{marginal: [(centres, width), ...]}``: the grid of each marginal,
        one (cell centres, cell width) pair per parameter.
    mass : dict
        ``{marginal: ndarray}``: probability of each grid cell, shape (G,) for
        1-d and (G, G) for 2-d marginals (axis order as in the marginal).
    estimator : TMNREEstimator, optional
        Used for weighted prior samples and higher-dimensional marginals.
    x : ndarray, optional
        The observation.
    discrete : sequence of str, optional
        The discrete parameters, whose grids are their classes (cells of
        width 1); by default those of ``estimator.prior_``.

    Attributes
    ----------
    names : list of str
        Parameters that have a 1-d marginal.
    discrete : list of str
        The discrete parameters among ``names``: their posterior is a table of
        class probabilities (:meth:`probabilities`); draws, quantiles, the
        mean and standard deviation are those of that table, :meth:`hpd` gives
        the highest-probability set and :meth:`credibility` its randomized
        level (:func:`class_level`).

    Examples
    --------
    >>> post = est.posterior(x_o)                       # doctest: +SKIP
    >>> post.summary()                                  # doctest: +SKIP
    >>> post.sample(1000, marginal=("a", "b"))          # doctest: +SKIP
    >>> post.probabilities("model")                     # doctest: +SKIP
    """

    def __init__(self, marginals, axes, mass, estimator=None, x=None, discrete=None):
        self.marginals = [tuple(m) for m in marginals]
        self.axes = axes
        self.mass = mass
        self.estimator = estimator
        self.x = x
        self.names = [m[0] for m in self.mass if len(m) == 1]
        if discrete is None:
            prior = getattr(estimator, "prior_", None)
            discrete = [] if prior is None else [n for n in prior.names
                                                 if prior.is_discrete(n)]
        self.discrete = [n for n in self.names if n in set(discrete)]

    # ------------------------------------------------------------- accessors
    def _key(self, marginal):
        key = (marginal,) if isinstance(marginal, str) else tuple(marginal)
        if key in self.mass:
            return key, False
        if key[::-1] in self.mass:
            return key[::-1], True
        raise ValueError(f"marginal {key} was not estimated; available: {list(self.mass)}.")

    def grid(self, marginal):
        """Cell centres of a marginal's grid: a tuple of 1-d arrays (one per parameter)."""
        key, flipped = self._key(marginal)
        axes = tuple(c for c, _ in self.axes[key])
        return axes[::-1] if flipped else axes

    def density(self, marginal):
        """Normalized density on the grid of ``marginal``.

        Returns
        -------
        axes : tuple of ndarray
            Cell centres per parameter.
        density : ndarray of shape (G,) or (G, G)
            Probability density (integrates to one over the grid).
        """
        key, flipped = self._key(marginal)
        volume = np.prod([w for _, w in self.axes[key]])
        dens = self.mass[key] / volume
        if flipped:
            dens = dens.T
        return self.grid(marginal), dens

    def probabilities(self, name: str) -> pd.Series:
        """Posterior probability of each class of a discrete parameter.

        Parameters
        ----------
        name : str
            A discrete parameter (see :attr:`discrete`).

        Returns
        -------
        Series
            Indexed by the class values (sorted), summing to one.

        Examples
        --------
        >>> post.probabilities("model")                 # doctest: +SKIP
        model
        0.0    0.13
        1.0    0.87
        Name: probability, dtype: float64
        """
        if name not in self.discrete:
            kind = "continuous" if name in self.names else "not estimated"
            raise ValueError(f"probabilities: parameter {name!r} is {kind}; class "
                             f"probabilities exist for the discrete parameters {self.discrete}.")
        (classes, _), = self.axes[(name,)]
        mass = self.mass[(name,)]
        return pd.Series(mass / mass.sum(), index=pd.Index(classes, name=name),
                         name="probability")

    def pdf(self, marginal, values):
        """Density of a 1-d or 2-d marginal at given points (cell lookup; 0 outside the grid).

        For a discrete parameter, the probability of the class (0 for a value
        that is not one).
        """
        key, flipped = self._key(marginal)
        values = np.asarray(values, dtype=float).reshape(-1, len(key))
        if len(key) == 1 and key[0] in self.discrete:
            (classes, _), = self.axes[key]
            idx, on = class_index(classes, values[:, 0])
            return np.where(on, self.probabilities(key[0]).to_numpy()[idx], 0.0)
        if flipped:
            values = values[:, ::-1]
        dens = self.mass[key] / np.prod([w for _, w in self.axes[key]])
        cells, inside, _ = _grid_cells(self.axes[key], values)
        out = np.zeros(len(values))
        out[inside] = dens[tuple(c[inside] for c in cells)]
        return out

    def credibility(self, marginal, value, random_state=0) -> np.ndarray:
        """Mass of the highest-density region of ``marginal`` bounded at ``value``.

        0 means the value sits at the mode; values outside the grid get 1
        (see :func:`hpd_level`). For a discrete parameter, the randomized
        level of its highest-probability sets (:func:`class_level`), with the
        uniform draws seeded by ``random_state`` (continuous marginals do not
        use it).
        """
        key, flipped = self._key(marginal)
        values = np.asarray(value, dtype=float).reshape(-1, len(key))
        if len(key) == 1 and key[0] in self.discrete:
            (classes, _), = self.axes[key]
            u = check_random_state(random_state).random_sample(len(values))
            return class_level(self.mass[key], classes, values[:, 0], u)
        if flipped:
            values = values[:, ::-1]
        return hpd_level(self.mass[key], self.axes[key], values)

    # ---------------------------------------------------------------- draws
    def sample(self, n, marginal=None, random_state=None):
        """Unweighted draws from estimated marginals.

        Parameters
        ----------
        n : int
            Number of draws.
        marginal : tuple of str, optional
            ``("a", "b")`` draws from that 2-d marginal (columns ``a``, ``b``),
            ``("a",)`` from a 1-d one. ``None`` draws every 1-d marginal
            independently, one column each: not a joint sample.
        random_state : int, RandomState or None

        Returns
        -------
        DataFrame of shape (n, n_columns)
        """
        rng = check_random_state(random_state)
        if marginal is None:
            return pd.DataFrame({name: self._sample_grid((name,), n, rng)[:, 0]
                                 for name in self.names})
        key = (marginal,) if isinstance(marginal, str) else tuple(marginal)
        try:
            self._key(key)
        except ValueError:
            if self.estimator is None or key not in self.estimator.marginals_:
                raise
            return self._resample_weighted(key, n, rng)
        return pd.DataFrame(self._sample_grid(key, n, rng), columns=list(key))

    def _sample_grid(self, marginal, n, rng):
        key, flipped = self._key(marginal)
        m = self.mass[key].ravel()
        flat = rng.choice(m.size, size=n, p=m / m.sum())
        idx = np.unravel_index(flat, self.mass[key].shape)
        cols = []
        for j, (centres, width) in enumerate(self.axes[key]):
            if key[j] in self.discrete:  # exact class values
                cols.append(centres[idx[j]])
                continue
            cols.append(centres[idx[j]] + width * (rng.random_sample(n) - 0.5))
        out = np.column_stack(cols)
        return out[:, ::-1] if flipped else out

    def weighted_samples(self, n=10_000, random_state=None):
        """Prior draws and their normalized weights ``exp f_m`` for every marginal.

        Returns
        -------
        theta : DataFrame (n, D)
            Draws of the (truncated) prior.
        weights : DataFrame (n, n_marginals)
            Self-normalized importance weights per marginal (each column sums to one).
        """
        if self.estimator is None or self.x is None:
            raise ValueError("weighted_samples needs the estimator and the observation.")
        theta = self.estimator.prior_.sample(n, random_state=random_state)
        logr = self.estimator.log_ratio(np.repeat(self.x[None], n, axis=0), theta).to_numpy()
        w = np.exp(logr - logr.max(axis=0))
        w /= w.sum(axis=0)
        return theta, pd.DataFrame(w, columns=self.estimator.log_ratio_columns_)

    def _resample_weighted(self, key, n, rng):
        theta, w = self.weighted_samples(max(20 * n, 10_000), random_state=rng)
        col = self.estimator.log_ratio_columns_[self.estimator.marginals_.index(key)]
        rows = rng.choice(len(theta), size=n, p=w[col].to_numpy())
        return theta.loc[rows, list(key)].reset_index(drop=True)

    # ------------------------------------------------------------ summaries
    def _cdf(self, name):
        (centres, width), = self.axes[(name,)]
        m = self.mass[(name,)]
        edges = np.concatenate([[centres[0] - width / 2], centres + width / 2])
        return edges, np.concatenate([[0.0], np.cumsum(m) / m.sum()])

    def quantile(self, q):
        """Quantiles of every 1-d marginal (piecewise-linear CDF).

        For a discrete parameter, the smallest class whose CDF reaches ``q``.

        Parameters
        ----------
        q : float or sequence of float in [0, 1]

        Returns
        -------
        DataFrame (index = q, columns = parameter names)
        """
        qs = np.atleast_1d(np.asarray(q, dtype=float))
        out = {}
        for name in self.names:
            if name in self.discrete:
                (classes, _), = self.axes[(name,)]
                out[name] = class_quantile(self.mass[(name,)], classes, qs)
                continue
            edges, cdf = self._cdf(name)
            out[name] = np.interp(qs, cdf, edges)
        return pd.DataFrame(out, index=pd.Index(qs, name="q"))

    def mean(self):
        """Posterior mean of every 1-d marginal (Series)."""
        return pd.Series({n: float(np.sum(self.axes[(n,)][0][0] * self.mass[(n,)]))
                          for n in self.names})

    def std(self):
        """Posterior standard deviation of every 1-d marginal (Series), cell width included.

        Discrete parameters: the standard deviation of the class table.
        """
        out = {}
        for n in self.names:
            (c, w), = self.axes[(n,)]
            m = self.mass[(n,)]
            mu = np.sum(c * m)
            spread = 0.0 if n in self.discrete else w**2 / 12
            out[n] = float(np.sqrt(np.sum((c - mu) ** 2 * m) + spread))
        return pd.Series(out)

    def interval(self, level=0.9):
        """Central credible intervals of every 1-d marginal.

        Returns
        -------
        DataFrame (index = names, columns ``lower``, ``upper``)
        """
        q = self.quantile([(1 - level) / 2, (1 + level) / 2])
        return pd.DataFrame({"lower": q.iloc[0], "upper": q.iloc[1]})

    def hpd(self, level=0.9):
        """Highest-posterior-density region of every 1-d marginal.

        The region is where the density, linear inside each cell as in
        :func:`hpd_level`, exceeds the threshold at which it holds ``level``;
        its edges fall inside cells rather than on cell edges, so its mass is
        ``level`` instead of up to one cell more.

        For a discrete parameter, the highest-probability set: its most
        probable classes until they hold ``level`` (:func:`class_set_extent`).

        Returns
        -------
        DataFrame (index = names, columns ``lower``, ``upper``, ``n_intervals``)
            The extent of the region; ``n_intervals`` > 1 flags a multimodal
            region (a set of classes with gaps, for a discrete parameter).
        """
        rows = {}
        for n in self.names:
            (c, w), = self.axes[(n,)]
            if n in self.discrete:
                lower, upper, n_intervals = class_set_extent(self.mass[(n,)], c, level)
            else:
                lower, upper, n_intervals = hpd_extent(self.mass[(n,)], c, w, level)
            rows[n] = {"lower": lower, "upper": upper, "n_intervals": n_intervals}
        return pd.DataFrame(rows).T.astype({"n_intervals": int})

    def summary(self):
        """Table of mean, std, median and 68 % / 95 % central intervals per parameter."""
        q = self.quantile([0.025, 0.16, 0.5, 0.84, 0.975])
        return pd.DataFrame({
            "mean": self.mean(),
            "std": self.std(),
            "median": q.iloc[2],
            "lower_68": q.iloc[1],
            "upper_68": q.iloc[3],
            "lower_95": q.iloc[0],
            "upper_95": q.iloc[4],
        })

    def objects(self, name: str | None = None) -> pd.DataFrame:
        """Per-object summaries of object blocks as a tidy frame, one row per object.

        For a prior of per-object parameters (:meth:`Prior.with_objects
        <sklearn_tmnre.Prior.with_objects>`) the posterior of block ``z`` is N
        1-d marginals ``z[0]``, ..., ``z[N-1]``; this tabulates them without N
        columns. All objects are summarized at once from the stacked grids
        (the columns of :meth:`summary`, computed as arrays of shape (N, G)).

        Parameters
        ----------
        name : str, optional
            An object block (a key of the prior's ``object_blocks``); None: every block.

        Returns
        -------
        DataFrame
            Columns ``parameter`` (the block), ``object`` (its index), ``mean``,
            ``std``, ``median``, ``lower_68``, ``upper_68``, ``lower_95``,
            ``upper_95`` (central intervals); objects without a 1-d marginal are
            left out.

        Examples
        --------
        >>> post = est.posterior(x_o)                       # doctest: +SKIP
        >>> post.objects("z").head()                        # doctest: +SKIP
        """
        prior = getattr(self.estimator, "prior_", None)
        blocks = getattr(prior, "object_blocks", None) or {}
        if name is not None and name not in blocks:
            raise ValueError(f"objects: {name!r} is not an object block of the prior; the "
                             f"blocks are {sorted(blocks)} (a prior declares them with "
                             "Prior.with_objects).")
        frames = []
        present = set(self.names)
        for block in ([name] if name is not None else list(blocks)):
            members = [(i, n) for i, n in enumerate(prior.object_names(block)) if n in present]
            if not members:
                continue
            index = np.array([i for i, _ in members])
            names = [n for _, n in members]
            stats_ = self._stacked_summary(names)
            frames.append(pd.DataFrame({"parameter": block, "object": index, **stats_}))
        if not frames:
            raise ValueError("objects: no object block has 1-d marginals in this posterior.")
        return pd.concat(frames, ignore_index=True)

    def field(self, name: str | None = None) -> np.ndarray:
        """Posterior probability of value 1 in every cell of a field parameter.

        The probability map of this observation, as
        :meth:`TMNREEstimator.predict_field <sklearn_tmnre.TMNREEstimator.predict_field>`
        gives it (e.g. subhalo occupancy per mass bin and pixel).

        Parameters
        ----------
        name : str, optional
            The field; may be left out when there is only one.

        Returns
        -------
        ndarray of the field's shape, e.g. (n_bins, H, W)

        Examples
        --------
        >>> est.posterior(x_o).field("occupancy").shape    # doctest: +SKIP
        (10, 64, 64)
        """
        if self.estimator is None or self.x is None:
            raise ValueError("field: this posterior has no estimator and observation to "
                             "evaluate field parameters with.")
        return self.estimator.predict_field(self.x[None], name)[0]

    def _stacked_summary(self, names):
        """mean, std, median and 68 % / 95 % central intervals of 1-d marginals, vectorized."""
        qs = np.array([0.025, 0.16, 0.5, 0.84, 0.975])
        if any(n in self.discrete for n in names):
            q = self.quantile(qs)[names].to_numpy().T
            mean, std = self.mean()[names].to_numpy(), self.std()[names].to_numpy()
        else:
            centres = np.stack([self.axes[(n,)][0][0] for n in names])
            widths = np.array([self.axes[(n,)][0][1] for n in names], dtype=float)
            mass = np.stack([self.mass[(n,)] for n in names])
            mass = mass / mass.sum(axis=1, keepdims=True)
            mean = np.sum(centres * mass, axis=1)
            std = np.sqrt(np.sum((centres - mean[:, None]) ** 2 * mass, axis=1)
                          + widths**2 / 12)
            # The piecewise-linear CDF of quantile(), inverted for all rows at once.
            edges = np.concatenate([centres[:, :1] - widths[:, None] / 2,
                                    centres + widths[:, None] / 2], axis=1)
            cdf = np.concatenate([np.zeros((len(names), 1)), np.cumsum(mass, axis=1)], axis=1)
            q = np.empty((len(names), len(qs)))
            for j, level in enumerate(qs):
                upper = np.clip((cdf < level).sum(axis=1), 1, cdf.shape[1] - 1)
                rows = np.arange(len(names))
                c0, c1 = cdf[rows, upper - 1], cdf[rows, upper]
                e0, e1 = edges[rows, upper - 1], edges[rows, upper]
                frac = np.where(c1 > c0, (level - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
                q[:, j] = e0 + np.clip(frac, 0.0, 1.0) * (e1 - e0)
        return {"mean": mean, "std": std, "median": q[:, 2], "lower_68": q[:, 1],
                "upper_68": q[:, 3], "lower_95": q[:, 0], "upper_95": q[:, 4]}

    def plot(self, **kwargs):
        """Corner plot of this posterior (see :func:`sklearn_tmnre.plotting.corner`)."""
        from .plotting import corner

        return corner(self, **kwargs)

    def __repr__(self):
        return (f"MarginalPosterior({len(self.names)} 1-d and "
                f"{sum(len(m) == 2 for m in self.marginals)} 2-d marginals)")
