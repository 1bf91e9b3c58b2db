"""One parameter's prior: checks of a frozen ``scipy.stats`` distribution, the class
table of a discrete one, vectorized evaluation of many by family, and their (de)serialization.

:class:`~sklearn_tmnre.prior.Prior` owns the product and the box; this module owns
what a single named distribution must be and how it is written as data.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy
from scipy import stats

__all__ = ["MAX_CLASSES", "Families", "check_distribution", "class_index", "discrete_table",
           "distribution_from_dict", "distribution_to_dict"]


# Largest number of classes of a discrete parameter (its support points are its grid).
MAX_CLASSES = 65_536


def check_distribution(name, dist):
    """The frozen distribution of parameter ``name``, checked (an ``rv_discrete(values=...)``
    table is frozen here: it has no shape parameters)."""
    if isinstance(dist, stats.rv_discrete) and getattr(dist, "xk", None) is not None:
        dist = dist()
    if isinstance(dist, stats.rv_continuous | stats.rv_discrete):
        raise TypeError(
            f"Prior: distribution {name!r} is not frozen; pass e.g. "
            f"stats.{dist.name}(loc, scale) instead of stats.{dist.name}."
        )
    if not hasattr(dist, "dist") or not hasattr(dist, "ppf"):
        raise TypeError(
            f"Prior: distribution {name!r} must be a frozen univariate scipy.stats "
            f"distribution such as stats.uniform(0, 1); got {type(dist).__name__}."
        )
    values = [*dist.args, *dist.kwds.values()]
    if not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in values):
        raise ValueError(f"Prior: distribution {name!r} has NaN, infinite or non-scalar "
                         f"parameters {dist.args} {dist.kwds}.")
    if isinstance(dist.dist, stats.rv_discrete):
        discrete_table(name, dist)
        return dist
    # rv_continuous generators are univariate by construction; scipy's
    # multivariate distributions are a different class and fail this check.
    if not isinstance(dist.dist, stats.rv_continuous):
        raise TypeError(
            f"Prior: distribution {name!r} must be a continuous or a finite discrete "
            "univariate distribution; multivariate priors are not supported (give one "
            "univariate distribution per parameter)."
        )
    return dist


def discrete_table(name, dist):
    """Support points (sorted) and their probabilities of a frozen discrete distribution.

    Points of zero probability are left out; infinite supports, and supports of
    fewer than two or more than ``MAX_CLASSES`` points, are refused.
    """
    low, high = (float(v) for v in dist.support())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise TypeError(
            f"Prior: discrete distribution {name!r} ({dist.dist.name}) has infinite support "
            f"[{low:g}, {high:g}]; a discrete parameter needs finitely many classes (its "
            "posterior is a table of class probabilities; continuous distributions have no "
            "such limit). Cut it to a table of values, e.g. xk = np.arange(0, 30); "
            "pk = stats.poisson(3).pmf(xk); stats.rv_discrete(values=(xk, pk / pk.sum())).")
    xk = getattr(dist.dist, "xk", None)
    if xk is not None:  # an rv_discrete(values=...) table, shifted by its loc
        points = np.asarray(xk, dtype=float) + (low - float(np.min(xk)))
    else:
        if high - low + 1 > MAX_CLASSES:
            raise ValueError(
                f"Prior: discrete distribution {name!r} has {high - low + 1:.0f} support "
                f"points, more than {MAX_CLASSES}; use a continuous distribution for it.")
        points = np.arange(low, high + 1, dtype=float)
    pmf = np.asarray(dist.pmf(points), dtype=float)
    keep = pmf > 0
    points, pmf = points[keep], pmf[keep]
    if len(points) < 2 or len(points) > MAX_CLASSES:
        raise ValueError(
            f"Prior: discrete distribution {name!r} has {len(points)} value(s) of positive "
            f"probability; a discrete parameter needs between 2 and {MAX_CLASSES} (a single "
            "value is a constant: leave it out of the prior).")
    order = np.argsort(points)
    return points[order], pmf[order] / pmf.sum()


class Families:
    """Parameters grouped by distribution family, so each scipy method is one
    vectorized call per family rather than one call per parameter (priors with
    thousands of per-object parameters stay fast)."""

    def __init__(self, dists):
        groups = {}
        for i, d in enumerate(dists):
            # Every frozen distribution holds its own generator instance; scipy's
            # built-in families are equal by type, anything else (histograms,
            # user subclasses with their own state) only to itself.
            builtin = (type(d.dist).__module__.startswith(("scipy.stats._continuous_distns",
                                                           "scipy.stats._discrete_distns"))
                       and not isinstance(d.dist, stats.rv_histogram))
            family = type(d.dist) if builtin else id(d.dist)
            key = (family, len(d.args), tuple(sorted(d.kwds)))
            groups.setdefault(key, (d.dist, [], []))
            groups[key][1].append(i)
            groups[key][2].append(d)
        self.groups = []
        for gen, idx, members in groups.values():
            args = [np.array([m.args[j] for m in members], dtype=float)
                    for j in range(len(members[0].args))]
            kwds = {k: np.array([m.kwds[k] for m in members], dtype=float)
                    for k in members[0].kwds}
            self.groups.append((gen, np.array(idx), args, kwds))

    def __call__(self, method, values):
        """``method`` of each parameter's distribution on ``values[..., i]``."""
        values = np.asarray(values, dtype=float)
        out = np.empty(values.shape, dtype=float)
        for gen, idx, args, kwds in self.groups:
            name = "logpmf" if method == "logpdf" and isinstance(gen, stats.rv_discrete) else method
            out[..., idx] = getattr(gen, name)(values[..., idx], *args, **kwds)
        return out

    def support(self, ndim):
        out = np.empty((ndim, 2))
        for gen, idx, args, kwds in self.groups:
            lo, hi = gen.support(*args, **kwds)
            out[idx, 0], out[idx, 1] = lo, hi
        return out


def class_index(points, values):
    """Index of each value among sorted class ``points``, and whether it is one of them.

    A value matches a class within a relative 1e-9 (values that went through
    float arithmetic still find their class); ``idx`` is only meaningful where
    ``on`` is True.
    """
    values = np.asarray(values, dtype=float)
    idx = np.clip(np.searchsorted(points, values), 0, len(points) - 1)
    # The nearer of the two neighbouring points.
    left = np.maximum(idx - 1, 0)
    idx = np.where(np.abs(points[left] - values) < np.abs(points[idx] - values), left, idx)
    on = np.abs(points[idx] - values) <= 1e-9 * np.maximum(1.0, np.abs(values))
    return idx, on


def _scalar(value, what):
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be a number to be serialized; got {value!r}.")
    return float(arr)


def distribution_to_dict(name, frozen):
    dist = frozen.dist
    args = [_scalar(a, f"prior parameter {name!r}: argument") for a in frozen.args]
    kwds = {k: _scalar(v, f"prior parameter {name!r}: {k}") for k, v in frozen.kwds.items()}
    if isinstance(dist, stats.rv_discrete) and getattr(dist, "xk", None) is not None:
        return {"distribution": "rv_discrete", "xk": np.asarray(dist.xk, float).tolist(),
                "pk": np.asarray(dist.pk, float).tolist(), "args": args, "kwds": kwds}
    if isinstance(dist, stats.rv_histogram):
        hist, edges = dist._histogram
        return {"distribution": "rv_histogram", "histogram": np.asarray(hist, float).tolist(),
                "bin_edges": np.asarray(edges, float).tolist(),
                "density": bool(getattr(dist, "_density", False)), "args": args, "kwds": kwds}
    named = getattr(stats, dist.name, None)
    if (not isinstance(named, stats.rv_continuous | stats.rv_discrete)
            or type(named) is not type(dist)):
        raise ValueError(
            f"prior parameter {name!r}: {type(dist).__name__} is not a named scipy.stats "
            "distribution, an rv_histogram nor an rv_discrete table, so it cannot be written "
            "as data; use one of "
            "scipy.stats' distributions (or pickle the estimator).")
    return {"distribution": dist.name, "args": args, "kwds": kwds}


def distribution_from_dict(name, spec):
    kind = spec.get("distribution")
    args, kwds = list(spec.get("args", [])), dict(spec.get("kwds", {}))
    if kind == "rv_histogram":
        generator = stats.rv_histogram((np.asarray(spec["histogram"], float),
                                        np.asarray(spec["bin_edges"], float)),
                                       density=bool(spec["density"]))
    elif kind == "rv_discrete":
        generator = stats.rv_discrete(values=(np.asarray(spec["xk"], float),
                                              np.asarray(spec["pk"], float)))
    else:
        generator = getattr(stats, str(kind), None)
        # Only scipy's own distribution objects are looked up: nothing else is called.
        if not isinstance(generator, stats.rv_continuous | stats.rv_discrete):
            raise ValueError(f"prior parameter {name!r} has distribution {kind!r}, which is "
                             "not a continuous scipy.stats distribution nor a discrete "
                             f"one in scipy {scipy.__version__}.")
    return generator(*args, **kwds)
