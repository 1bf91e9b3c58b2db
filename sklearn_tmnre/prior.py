"""Named product priors built from frozen ``scipy.stats`` distributions.

A :class:`Prior` is a product of independent 1-d distributions, one per named
parameter, optionally restricted to a box ``[low_i, high_i]``.  Truncation is
exact: the truncated density is

.. math:: p_\\Gamma(\\theta_i) = p(\\theta_i) / (F_i(h_i) - F_i(l_i)),
          \\quad l_i \\le \\theta_i \\le h_i,

and it is sampled by the inverse CDF between ``F(low)`` and ``F(high)``, so
draws of a truncated prior are draws of the original prior conditioned on the
box.  That is what lets TMNRE reuse earlier simulations that fall inside a new,
smaller box.

A parameter may also be discrete with finitely many values (*classes*):
``bernoulli``, ``randint``, ``binom`` or an ``rv_discrete(values=(xk, pk))``
table. Its density is its probability mass function (the density with respect
to the counting measure), it is sampled by the inverse CDF over its classes,
and it is never truncated: a box leaves all its classes in place.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils import check_random_state

from ._distributions import (
    Families,
    check_distribution,
    class_index,
    discrete_table,
    distribution_from_dict,
    distribution_to_dict,
)

__all__ = ["Prior"]


class Prior:
    """A product of named, independent 1-d priors, optionally truncated to a box.

    Parameters
    ----------
    distributions : dict or list
        ``{name: frozen scipy.stats distribution}``; a list gives the names
        ``theta_0, theta_1, ...``. Continuous distributions, and discrete ones
        of finite support (*classes*): ``stats.bernoulli(p)``,
        ``stats.randint(low, high)``, ``stats.binom(n, p)``, or a categorical
        table ``stats.rv_discrete(values=(xk, pk))``. A discrete distribution of
        infinite support (``poisson``, ``geom``) is refused: cut it to a table.
    bounds : dict, DataFrame or array-like of shape (n_params, 2), optional
        Restrict the prior to this box (exact truncation). Usually created by
        :meth:`truncate`, not passed by hand. Discrete parameters keep their
        whole support whatever their bounds (see :meth:`truncate`).
    object_blocks : dict, optional
        ``{name: n_objects}``: blocks of per-object parameters, each named
        ``name[0]``, ..., ``name[n_objects - 1]`` among the parameters. Usually
        set by :meth:`with_objects`, not passed by hand.
    fields : dict, optional
        ``{name: shape}``: field parameters, one binary value per pixel (and
        bin) of the data's grid, derived by the simulator. Usually set by
        :meth:`with_field`, not passed by hand.

    Attributes
    ----------
    names : list of str
        Parameter names, in column order.
    ndim : int
        Number of parameters.
    distributions : dict
        The untruncated 1-d distributions.
    object_blocks : dict of str to int
        Blocks of exchangeable per-object parameters, ``{name: n_objects}``
        (empty without objects; see :meth:`with_objects`).
    fields : dict of str to tuple of int
        Field parameters and their shapes, ``{name: shape}`` (empty without
        fields; see :meth:`with_field`). They are not among :attr:`names`.

    Examples
    --------
    >>> from scipy import stats
    >>> from sklearn_tmnre import Prior
    >>> prior = Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1)})
    >>> prior.sample(3, random_state=0).shape
    (3, 2)
    >>> float(prior.mass({"a": (0, 1), "b": (-np.inf, np.inf)}))
    0.5

    A discrete parameter (here a model index) beside a continuous one:

    >>> mixed = Prior({"model": stats.bernoulli(0.5), "sigma": stats.uniform(1, 2)})
    >>> mixed.is_discrete("model"), mixed.is_discrete("sigma")
    (True, False)
    >>> mixed.probabilities("model").round(6).tolist()
    [0.5, 0.5]
    """

    def __init__(self, distributions, bounds=None, object_blocks=None, fields=None):
        if isinstance(distributions, Prior):
            if fields is None:
                fields = distributions.fields
            # A truncated prior keeps its box unless bounds are given.
            if bounds is None and distributions.is_truncated:
                bounds = distributions.bounds
            if object_blocks is None:
                object_blocks = distributions.object_blocks
            distributions = distributions.distributions
        if isinstance(distributions, dict):
            items = list(distributions.items())
        elif isinstance(distributions, list | tuple):
            items = [(f"theta_{i}", d) for i, d in enumerate(distributions)]
        else:
            raise TypeError(
                "Prior: distributions must be a dict {{name: frozen scipy.stats "
                f"distribution}} or a list of them; got {type(distributions).__name__}."
            )
        if not items:
            raise ValueError("Prior: at least one parameter is required.")
        names = [str(n) for n, _ in items]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Prior: duplicate parameter names {dup}.")
        items = [(name, check_distribution(name, dist)) for name, dist in items]
        self.distributions = dict(zip(names, (d for _, d in items)))
        self.names = names
        self.ndim = len(names)
        # Column of each name: list.index per name is quadratic for 10^4 object parameters.
        self._column = {n: i for i, n in enumerate(names)}
        self.object_blocks = _check_object_blocks(object_blocks, self._column)
        self.fields = _check_fields(fields, self._column)
        # Discrete parameters: column index -> (support points, probabilities).
        self._tables = {i: discrete_table(n, d) for i, (n, d) in enumerate(items)
                        if isinstance(d.dist, stats.rv_discrete)}
        self._families = Families(list(self.distributions.values()))
        full = self._families.support(self.ndim)
        for i, (points, _) in self._tables.items():
            full[i] = points[0], points[-1]
        self._full_support = full
        self._bounds = full.copy() if bounds is None else self._parse_bounds(bounds, clip=True)
        # Discrete parameters are never truncated: they keep their whole support.
        discrete = list(self._tables)
        self._bounds[discrete] = full[discrete]
        self._cdf_low = self._families("cdf", self._bounds[:, 0])
        self._sf_high = self._families("sf", self._bounds[:, 1])
        # Mass per dimension from whichever tail keeps precision (far upper tails
        # have cdf == 1.0 in floating point, but a tiny, exact survival function).
        cdf_high = self._families("cdf", self._bounds[:, 1])
        sf_low = self._families("sf", self._bounds[:, 0])
        self._mass_1d = np.clip(np.maximum(cdf_high - self._cdf_low, sf_low - self._sf_high),
                                0.0, 1.0)
        self._cdf_low[discrete], self._sf_high[discrete], self._mass_1d[discrete] = 0, 0, 1
        if np.any(self._mass_1d <= 0) or np.any(self._bounds[:, 1] <= self._bounds[:, 0]):
            bad = [n for n, m, b in zip(names, self._mass_1d, self._bounds)
                   if m <= 0 or b[1] <= b[0]]
            raise ValueError(f"Prior: the box has zero prior mass for parameter(s) {bad}.")

    @classmethod
    def with_objects(cls, globals: dict, objects: dict, n_objects: int) -> Prior:
        """A prior of global parameters and blocks of ``n_objects`` per-object parameters.

        Each per-object parameter ``z`` of ``objects`` becomes ``n_objects``
        ordinary parameters ``z[0]``, ..., ``z[N-1]`` with the same
        distribution, independent a priori,

        .. math:: p(\\theta) = \\prod_g p(\\theta_g)
                  \\prod_z \\prod_{i=0}^{N-1} p_z(z_i),

        so sampling, truncation, stores and the grids treat them as any other
        parameter, while :attr:`object_blocks` records the block: a
        :class:`~sklearn_tmnre.TMNREEstimator` then learns all of a block's 1-d
        marginals with one shared-weight head (see :mod:`sklearn_tmnre.objects`).
        Sampling draws a block in one vectorized inverse-CDF call of shape
        ``(n, N)``.

        Parameters
        ----------
        globals : dict
            ``{name: frozen distribution}`` of the global parameters (may be empty).
        objects : dict
            ``{name: frozen distribution}`` of the per-object parameters.
        n_objects : int
            Number of objects N (at least 1).

        Returns
        -------
        Prior
            Parameters in the order: globals, then each object parameter's
            block ``z[0]``, ..., ``z[N-1]``.

        Examples
        --------
        >>> from scipy import stats
        >>> prior = Prior.with_objects({"mu": stats.norm(0, 1)},
        ...                            {"z": stats.uniform(0, 1)}, n_objects=3)
        >>> prior.names
        ['mu', 'z[0]', 'z[1]', 'z[2]']
        >>> prior.object_blocks
        {'z': 3}
        """
        if not isinstance(n_objects, numbers.Integral) or isinstance(n_objects, bool) \
                or n_objects < 1:
            raise ValueError(f"Prior.with_objects: n_objects must be a positive integer; got "
                             f"{n_objects!r}.")
        if not isinstance(globals, dict) or not isinstance(objects, dict):
            raise TypeError("Prior.with_objects: globals and objects must be dicts "
                            "{name: frozen scipy.stats distribution}.")
        if not objects:
            raise ValueError("Prior.with_objects: objects is empty; a prior without per-object "
                             "parameters is Prior(globals).")
        clash = sorted(set(map(str, globals)) & set(map(str, objects)))
        if clash:
            raise ValueError(f"Prior.with_objects: names {clash} are both global and "
                             "per-object parameters.")
        dists = {str(k): v for k, v in globals.items()}
        for name, dist in objects.items():
            # Checked once per block: the N parameters share the frozen distribution.
            dist = check_distribution(str(name), dist)
            dists.update({f"{name}[{i}]": dist for i in range(int(n_objects))})
        return cls(dists, object_blocks={str(k): int(n_objects) for k in objects})

    @classmethod
    def with_field(cls, globals: dict | Prior, name: str, shape: tuple[int, ...]) -> Prior:
        """A prior of global parameters and a binary field parameter over the data's grid.

        A field holds one binary value per pixel and bin, e.g. whether pixel
        ``(i, j)`` of an image holds a subhalo of mass bin ``k``: shape
        ``(n_bins, H, W)``, or ``(H, W)`` without bins (``(n_bins, L)`` or
        ``(L,)`` for 1-d signals). Its values are *derived*: the simulator
        returns them beside ``X`` and :meth:`TMNREEstimator.fit
        <sklearn_tmnre.TMNREEstimator.fit>` takes them as a keyword,
        ``fit(X, theta, name=values)``; their prior is given by simulation (the
        training set's frequency of each bin). The field is not among
        :attr:`names`: sampling, truncation and the grids see the globals
        only. See :mod:`sklearn_tmnre.fields`.

        Parameters
        ----------
        globals : dict or Prior
            ``{name: frozen distribution}`` of the global parameters (at least
            one), or a Prior (its box and fields are kept).
        name : str
            The field's name (not a global parameter's).
        shape : tuple of int
            The field's shape: the data's grid, with an optional leading bin axis.

        Returns
        -------
        Prior

        Examples
        --------
        >>> from scipy import stats
        >>> prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occupancy", (3, 16, 16))
        >>> prior.names, prior.fields
        (['a'], {'occupancy': (3, 16, 16)})
        """
        base = globals if isinstance(globals, Prior) else cls(globals)
        fields = dict(base.fields)
        if str(name) in fields:
            raise ValueError(f"Prior.with_field: the prior already has a field {name!r}.")
        fields[str(name)] = shape
        return cls(base, fields=fields)

    def object_names(self, name: str) -> list[str]:
        """The parameter names ``name[0]``, ..., ``name[N-1]`` of an object block.

        Parameters
        ----------
        name : str
            A key of :attr:`object_blocks`.

        Returns
        -------
        list of str
        """
        if name not in self.object_blocks:
            raise ValueError(f"Prior.object_names: {name!r} is not an object block; the blocks "
                             f"are {sorted(self.object_blocks)} (see Prior.with_objects).")
        return [f"{name}[{i}]" for i in range(self.object_blocks[name])]

    # ------------------------------------------------------------------ helpers
    def _parse_bounds(self, bounds, clip):
        """Return bounds as an array (ndim, 2); unknown names are an error."""
        if isinstance(bounds, pd.DataFrame):
            unknown = [n for n in bounds.index if n not in self.names]
            if unknown:
                raise ValueError(f"Prior: unknown parameter names in bounds: {unknown}.")
            arr = self._full_support.copy()
            for n in bounds.index:
                i = self.names.index(n)
                arr[i] = bounds.loc[n, ["low", "high"]].to_numpy(dtype=float)
        elif isinstance(bounds, dict):
            unknown = [n for n in bounds if n not in self.names]
            if unknown:
                raise ValueError(f"Prior: unknown parameter names in bounds: {unknown}.")
            arr = self._full_support.copy()
            for n, (lo, hi) in bounds.items():
                arr[self.names.index(n)] = (lo, hi)
        else:
            arr = np.asarray(bounds, dtype=float)
            if arr.shape != (self.ndim, 2):
                raise ValueError(
                    f"Prior: bounds must have shape ({self.ndim}, 2) (one [low, high] per "
                    f"parameter); got {arr.shape}."
                )
            arr = arr.copy()
        if np.isnan(arr).any():
            raise ValueError("Prior: bounds contain NaN.")
        if np.any(arr[:, 1] < arr[:, 0]):
            bad = [n for n, b in zip(self.names, arr) if b[1] < b[0]]
            raise ValueError(f"Prior: bounds with high < low for parameter(s) {bad}.")
        if clip:
            arr[:, 0] = np.maximum(arr[:, 0], self._full_support[:, 0])
            arr[:, 1] = np.minimum(arr[:, 1], self._full_support[:, 1])
        return arr

    def _as_array(self, theta, argname="theta", allow_inf=False):
        """Validate ``theta`` into a float array (n, ndim) in this prior's column order.

        ``allow_inf``: infinite values are points outside every support (densities
        and membership are defined there); NaN is always an error.
        """
        if isinstance(theta, pd.DataFrame):
            dups = sorted(set(theta.columns[theta.columns.duplicated()]))
            if dups:
                raise ValueError(f"{argname}: duplicate columns {dups}.")
            missing = [n for n in self.names if n not in theta.columns]
            if missing:
                raise ValueError(
                    f"{argname}: missing columns {missing}; expected columns {self.names}."
                )
            theta = theta[self.names].to_numpy()
        arr = np.asarray(theta)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{argname}: expected numeric values, got dtype {arr.dtype}.")
        arr = arr.astype(float)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1) if self.ndim == 1 else arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.ndim:
            raise ValueError(
                f"{argname}: expected shape (n, {self.ndim}) for parameters {self.names}; "
                f"got {np.shape(theta)}."
            )
        if np.isnan(arr).any():
            raise ValueError(f"{argname}: contains NaN values.")
        if not allow_inf and np.isinf(arr).any():
            raise ValueError(f"{argname}: contains infinite values.")
        return arr

    # ---------------------------------------------------------------- interface
    @property
    def bounds(self):
        """ndarray of shape (ndim, 2): the box ``[low, high]`` of each parameter."""
        return self._bounds.copy()

    @property
    def support(self):
        """DataFrame (index = names, columns ``low``, ``high``) of the current support."""
        return pd.DataFrame(self._bounds, index=pd.Index(self.names, name="parameter"),
                            columns=["low", "high"])

    def is_discrete(self, name: str) -> bool:
        """Whether parameter ``name`` has a discrete distribution (finitely many classes).

        Parameters
        ----------
        name : str

        Returns
        -------
        bool
        """
        return self._index(name) in self._tables

    def probabilities(self, name: str) -> pd.Series:
        """Prior probability of each class of a discrete parameter.

        Parameters
        ----------
        name : str
            A discrete parameter (see :meth:`is_discrete`).

        Returns
        -------
        Series
            Indexed by the class values (sorted), summing to one; classes of
            zero probability are left out.
        """
        i = self._index(name)
        if i not in self._tables:
            raise ValueError(f"Prior.probabilities: parameter {name!r} is continuous; class "
                             "probabilities exist for discrete parameters only.")
        points, pmf = self._tables[i]
        return pd.Series(pmf, index=pd.Index(points, name=name), name="probability")

    def _index(self, name):
        if name not in self._column:
            raise ValueError(f"Prior: unknown parameter name {name!r}; known: {self.names}.")
        return self._column[name]

    @property
    def is_truncated(self):
        """bool: whether the box is narrower than the distributions' own support."""
        return not np.array_equal(self._bounds, self._full_support)

    def untruncated(self):
        """Return the prior without its box (the original distributions)."""
        return Prior(self.distributions, object_blocks=self.object_blocks, fields=self.fields)

    def marginal(self, names):
        """Return the (truncated) prior of a subset of parameters, in the given order."""
        names = [names] if isinstance(names, str) else list(names)
        if len(set(names)) != len(names):
            dups = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Prior: duplicate parameter names {dups}.")
        column = self._column
        unknown = [n for n in names if n not in column]
        if unknown:
            raise ValueError(f"Prior: unknown parameter names {unknown}; known: {self.names}.")
        idx = [column[n] for n in names]
        # A block survives only whole and in order (otherwise its members are plain parameters).
        position = {n: j for j, n in enumerate(names)} if self.object_blocks else {}
        blocks = {}
        for block, size in self.object_blocks.items():
            if len(names) < size or f"{block}[0]" not in position:
                continue
            members = [position.get(n) for n in self.object_names(block)]
            if None not in members and members == list(range(members[0],
                                                             members[0] + len(members))):
                blocks[block] = self.object_blocks[block]
        return Prior({n: self.distributions[n] for n in names}, bounds=self._bounds[idx],
                     object_blocks=blocks, fields=self.fields)

    def sample(self, n, random_state=None):
        """Draw ``n`` samples (exact inverse-CDF sampling inside the box).

        Parameters
        ----------
        n : int
            Number of draws.
        random_state : int, RandomState, Generator or None
            Seed for reproducible draws.

        Returns
        -------
        theta : DataFrame of shape (n, ndim)
        """
        if not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"Prior.sample: n must be a non-negative integer; got {n!r}.")
        if isinstance(random_state, np.random.Generator):
            u = random_state.random((int(n), self.ndim))
        else:
            u = check_random_state(random_state).random_sample((int(n), self.ndim))
        return pd.DataFrame(self._from_unit(u), columns=self.names)

    def _from_unit(self, u):
        lo, sf_hi, mass = self._cdf_low, self._sf_high, self._mass_1d
        out = self._families("ppf", lo + u * mass)
        upper = lo > 0.5  # boxes far in the upper tail: invert the survival function
        if upper.any():
            tail = self._families("isf", sf_hi + (1.0 - u) * mass)
            out[:, upper] = tail[:, upper]
        out = np.clip(out, self._bounds[:, 0], self._bounds[:, 1])
        for i, (points, pmf) in self._tables.items():
            # Exact inverse CDF over the classes: the first whose CDF exceeds u.
            cdf = np.cumsum(pmf)
            cdf[-1] = 1.0
            idx = np.searchsorted(cdf, u[:, i], side="right")
            out[:, i] = points[np.minimum(idx, len(points) - 1)]
        return out

    def from_unit(self, u):
        """Map points of the unit cube to parameters (inverse probability integral transform).

        Parameters
        ----------
        u : array-like or DataFrame of shape (n, ndim), values in [0, 1]

        Returns
        -------
        theta : DataFrame of shape (n, ndim)
        """
        u = self._as_array(u, "u")
        if np.any((u < 0) | (u > 1)):
            raise ValueError("Prior.from_unit: u must lie in [0, 1].")
        return pd.DataFrame(self._from_unit(u), columns=self.names)

    def to_unit(self, theta):
        """Map parameters to the unit cube of this (truncated) prior, per parameter.

        Values outside the box map to 0 or 1 (clipped). A class of a discrete
        parameter maps to the middle of its step of the CDF, which
        :meth:`from_unit` maps back to it.

        Parameters
        ----------
        theta : array-like or DataFrame of shape (n, ndim)

        Returns
        -------
        u : DataFrame of shape (n, ndim)
        """
        th = self._as_array(theta)
        out = (self._families("cdf", th) - self._cdf_low) / self._mass_1d
        upper = self._cdf_low > 0.5
        if upper.any():
            sf_low = self._sf_high + self._mass_1d
            tail = (sf_low - self._families("sf", th)) / self._mass_1d
            out[:, upper] = tail[:, upper]
        for i, (points, pmf) in self._tables.items():
            # A class maps to the middle of its CDF step, so from_unit maps it back.
            cdf = np.concatenate([[0.0], np.cumsum(pmf)])
            below = np.searchsorted(points, th[:, i], side="right")
            idx, on = class_index(points, th[:, i])
            out[:, i] = np.where(on, cdf[idx + 1] - pmf[idx] / 2, cdf[below])
        return pd.DataFrame(np.clip(out, 0.0, 1.0), columns=self.names)

    def log_prob_per_param(self, theta):
        """Log density of each parameter separately, shape (n, ndim); ``-inf`` outside.

        For a discrete parameter, the log probability of its class (``-inf``
        for a value that is not one of its classes).
        """
        th = self._as_array(theta, allow_inf=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self._families("logpdf", th) - np.log(self._mass_1d)
            for i, (points, pmf) in self._tables.items():
                idx, on = class_index(points, th[:, i])
                out[:, i] = np.where(on, np.log(pmf[idx]), -np.inf)
        outside = (th < self._bounds[:, 0]) | (th > self._bounds[:, 1])
        out[outside] = -np.inf
        return out

    def log_prob(self, theta):
        """Log density of the (truncated) prior; ``-inf`` outside the support.

        Discrete parameters contribute their log probability (log pmf), i.e. the
        density with respect to the counting measure.

        Parameters
        ----------
        theta : array-like or DataFrame of shape (n, ndim)

        Returns
        -------
        log_prob : ndarray of shape (n,)
        """
        return self.log_prob_per_param(theta).sum(axis=1)

    def contains(self, theta):
        """Boolean mask (n,): rows inside the box (bounds included), discrete values on a class."""
        th = self._as_array(theta, allow_inf=True)
        # Bounds may be infinite; an infinite value is still no point of the support.
        inside = np.all((th >= self._bounds[:, 0]) & (th <= self._bounds[:, 1])
                        & np.isfinite(th), axis=1)
        for i, (points, _) in self._tables.items():
            inside &= class_index(points, th[:, i])[1]
        return inside

    def mass(self, bounds):
        """Probability under this prior of the box ``bounds``.

        Parameters
        ----------
        bounds : dict, DataFrame (``low``/``high``) or array (ndim, 2)
            Parameters left out of a dict or DataFrame keep their full range.
            For a discrete parameter, the classes in ``[low, high]`` count.

        Returns
        -------
        mass : float
        """
        box = self._parse_bounds(bounds, clip=False)
        lo = np.maximum(box[:, 0], self._bounds[:, 0])
        hi = np.minimum(box[:, 1], self._bounds[:, 1])
        continuous = np.ones(self.ndim, bool)
        continuous[list(self._tables)] = False
        if np.any((hi <= lo) & continuous):
            return 0.0
        f = self._families
        with np.errstate(divide="ignore"):
            inner = np.maximum(f("cdf", hi) - f("cdf", lo), f("sf", lo) - f("sf", hi))
            for i, (points, pmf) in self._tables.items():
                # The classes inside [lo, hi] (a box may hold a single class).
                inner[i] = pmf[(points >= lo[i]) & (points <= hi[i])].sum()
            total = np.exp(np.sum(np.log(np.maximum(inner, 0.0) / self._mass_1d)))
        return float(min(max(total, 0.0), 1.0))

    def truncate(self, bounds):
        """Return a new prior restricted to ``bounds`` intersected with the current box.

        Discrete parameters are not truncated: they keep their whole support
        whatever ``bounds`` says of them, so that every class keeps its prior
        probability and its simulations (a box of classes would save little,
        and a wrongly dropped class could never be recovered).

        Parameters
        ----------
        bounds : dict, DataFrame (``low``/``high``) or array (ndim, 2)

        Returns
        -------
        prior : Prior

        Raises
        ------
        ValueError
            If the box is empty or does not overlap the current support.
        """
        box = self._parse_bounds(bounds, clip=False)
        lo = np.maximum(box[:, 0], self._bounds[:, 0])
        hi = np.minimum(box[:, 1], self._bounds[:, 1])
        discrete = list(self._tables)
        lo[discrete], hi[discrete] = self._bounds[discrete, 0], self._bounds[discrete, 1]
        empty = [n for n, a, b in zip(self.names, lo, hi) if not b > a]
        if empty:
            raise ValueError(
                f"Prior.truncate: the box is empty or outside the support for {empty}; "
                f"the current support is\n{self.support}"
            )
        return Prior(self.distributions, bounds=np.column_stack([lo, hi]),
                     object_blocks=self.object_blocks, fields=self.fields)

    def __repr__(self):
        parts = []
        for (name, dist), (lo, hi), full in zip(
            self.distributions.items(), self._bounds, self._full_support
        ):
            args = ", ".join(f"{a:.4g}" for a in dist.args)
            kw = ", ".join(f"{k}={v:.4g}" for k, v in dist.kwds.items())
            family = dist.dist.name
            if getattr(dist.dist, "xk", None) is not None:  # a table: its classes
                family, args = "rv_discrete", ", ".join(
                    p for p in (f"xk={np.asarray(dist.dist.xk).tolist()}", args) if p)
            desc = f"{family}({', '.join(p for p in (args, kw) if p)})"
            if (lo, hi) != tuple(full):
                desc += f" in [{lo:.4g}, {hi:.4g}]"
            parts.append(f"{name}: {desc}")
        return "Prior({" + "; ".join(parts) + "})"

    # ------------------------------------------------------------ serialization
    def to_dict(self):
        """The prior as JSON-serializable data: the one serialized form of a prior.

        Its distributions must be named ``scipy.stats`` distributions (continuous
        or discrete), ``rv_histogram`` ones or ``rv_discrete(values=(xk, pk))``
        tables.

        Returns
        -------
        dict
            ``names``, ``distributions`` (name, args, kwds; histogram arrays for
            ``rv_histogram``, ``xk`` and ``pk`` for ``rv_discrete`` tables) and
            ``bounds`` (the box, one ``[low, high]`` per name); and
            ``object_blocks`` (``{name: n_objects}``) when there are blocks.

        Examples
        --------
        >>> from scipy import stats
        >>> prior = Prior({"a": stats.uniform(-1, 2)}).truncate({"a": (0, 1)})
        >>> Prior.from_dict(prior.to_dict()) == prior
        True
        """
        data = {
            "names": list(self.names),
            "distributions": [distribution_to_dict(n, d)
                              for n, d in self.distributions.items()],
            "bounds": self.bounds.tolist(),
        }
        if self.object_blocks:  # absent without blocks: older files stay equal
            data["object_blocks"] = dict(self.object_blocks)
        if self.fields:
            data["fields"] = {k: list(v) for k, v in self.fields.items()}
        return data

    @classmethod
    def from_dict(cls, data):
        """Rebuild a prior from :meth:`to_dict` output.

        Only ``scipy.stats``' own distributions are looked up by name; nothing
        else in the data is called.

        Parameters
        ----------
        data : dict

        Returns
        -------
        Prior
        """
        try:
            names, specs, bounds = data["names"], data["distributions"], data["bounds"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"Prior.from_dict: the data lack names, distributions or bounds "
                             f"({exc!r}).") from None
        if len(names) != len(specs):
            raise ValueError(f"Prior.from_dict: {len(names)} names but {len(specs)} "
                             "distributions.")
        # One frozen distribution per distinct spec: an object block's N equal specs share
        # it (freezing costs ~0.5 ms, and shared objects keep one vectorized family).
        frozen, dists = {}, {}
        for n, spec in zip(names, specs):
            key = repr(spec)
            if key not in frozen:
                frozen[key] = distribution_from_dict(n, spec)
            dists[str(n)] = frozen[key]
        return cls(dists, bounds=np.asarray(bounds, dtype=float),
                   object_blocks=data.get("object_blocks"), fields=data.get("fields"))

    def __eq__(self, other):
        if not isinstance(other, Prior):
            return NotImplemented
        if (self.names != other.names or self.object_blocks != other.object_blocks
                or self.fields != other.fields
                or not np.array_equal(self._bounds, other._bounds)):
            return False
        try:
            return self.to_dict() == other.to_dict()
        except ValueError:  # a distribution without a data form: compare the objects
            return all(a is b for a, b in zip(self.distributions.values(),
                                              other.distributions.values()))

    __hash__ = None


def _check_fields(fields, known):
    """``{field: shape}`` checked: integer shapes of 1 to 3 axes, names not parameters."""
    if not fields:
        return {}
    if not isinstance(fields, dict):
        raise TypeError(f"Prior: fields must be a dict {{name: shape}}; got "
                        f"{type(fields).__name__}.")
    out = {}
    for name, shape in fields.items():
        if str(name) in known:
            raise ValueError(f"Prior: field {name!r} has the name of a global parameter; "
                             "give it another name.")
        try:
            dims = tuple(shape)
        except TypeError:
            dims = (shape,)
        if not (1 <= len(dims) <= 3 and all(isinstance(d, numbers.Integral)
                                            and not isinstance(d, bool) and d >= 1
                                            for d in dims)):
            raise ValueError(f"Prior: field {name!r} needs a shape of 1 to 3 positive integers "
                             "(the data's grid (H, W) or (L,), with an optional leading bin "
                             f"axis); got {shape!r}.")
        out[str(name)] = tuple(int(d) for d in dims)
    return out


def _check_object_blocks(blocks, known):
    """``{block: n_objects}`` checked against the parameter names (every member present)."""
    if not blocks:
        return {}
    if not isinstance(blocks, dict):
        raise TypeError(f"Prior: object_blocks must be a dict {{name: n_objects}}; got "
                        f"{type(blocks).__name__}.")
    out = {}
    for block, n in blocks.items():
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"Prior: object block {block!r} needs a positive number of "
                             f"objects; got {n!r}.")
        missing = [f"{block}[{i}]" for i in range(int(n)) if f"{block}[{i}]" not in known]
        if missing:
            raise ValueError(f"Prior: object block {block!r} of {n} objects lacks the "
                             f"parameters {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                             "build such priors with Prior.with_objects.")
        out[str(block)] = int(n)
    return out
