"""Input checks of :class:`~sklearn_tmnre.TMNREEstimator`: hyperparameters, targets, marginals.

Plain functions of the values they check, so the estimator module keeps to
fitting and inference; each error says what is wrong and what to pass instead.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

from .networks import EMBEDDINGS
from .prior import Prior

__all__ = ["FLOAT32_MAX", "PARAMETER_CONSTRAINTS", "check_hyperparameters", "check_support",
           "marginal_label", "parameter_names", "resolve_marginals", "validate_theta"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


def marginal_label(marginal):
    """Column label of a marginal: its parameter names joined by ``|``."""
    return "|".join(marginal)


# Upper bounds that keep a typo from allocating the machine's memory (n_negatives=10**9
# did): far above any useful value.
MAX_NEGATIVES = 1024
MAX_GRID_1D = 1 << 16
MAX_GRID_2D = 4096


def _integers(low, high=None):
    return Interval(numbers.Integral, low, high, closed="both" if high else "left")


#: The declared constraints of every TMNREEstimator hyperparameter, checked by
#: scikit-learn's validation in ``fit`` (``_validate_params``).
PARAMETER_CONSTRAINTS = {
    "prior": [Prior, None],
    "marginals": [StrOptions({"1d", "2d", "1d+2d"}), list, tuple],
    "embedding": [StrOptions(set(EMBEDDINGS)), type, torch.nn.Module],
    "embedding_dim": [_integers(1)],
    "hidden_features": [_integers(1), StrOptions({"auto"})],
    "num_blocks": [_integers(0)],
    "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    "balance": [Interval(numbers.Real, 0, None, closed="left")],
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
    "batch_size": [_integers(2)],
    "max_epochs": [_integers(1), StrOptions({"auto"})],
    "patience": [_integers(1)],
    "lr_schedule": [StrOptions({"cosine", "plateau"})],
    "n_threads": [_integers(1), None],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
    "n_negatives": [_integers(1, MAX_NEGATIVES)],
    "n_ensemble": [_integers(1)],
    "fourier_features": [_integers(0)],
    "fourier_scale": [Interval(numbers.Real, 0, None, closed="neither")],
    "n_grid_1d": [_integers(2, MAX_GRID_1D)],
    "n_grid_2d": [_integers(2, MAX_GRID_2D)],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "callbacks": [list, None],
}


def check_hyperparameters(est):
    """Raise a clear error for an invalid hyperparameter of ``est`` (called by ``fit``).

    The declared constraints (:data:`PARAMETER_CONSTRAINTS`) are checked by
    scikit-learn; on top of them a boolean is not an integer (``True`` would
    pass as 1) and keywords must be ``embedding__<arg>``.
    """
    unexpected = sorted(k for k in est._keyword_params() if not k.startswith("embedding__"))
    if unexpected:
        raise TypeError(f"TMNREEstimator got unexpected arguments {unexpected}; embedding "
                        "arguments are spelled embedding__<arg>.")
    for name, constraints in PARAMETER_CONSTRAINTS.items():
        value = getattr(est, name)
        if isinstance(value, bool | np.bool_) and any(
                isinstance(c, Interval) for c in constraints):
            raise InvalidParameterError(
                f"The {name!r} parameter of TMNREEstimator must be a number, not a boolean; "
                f"got {value!r}.")
    est._validate_params()


def parameter_names(y, prior):
    """Names of the parameters in ``y``, and ``y`` with its columns in that order.

    A DataFrame names its columns (reordered to the prior's names when there is
    a prior); an array takes the prior's names, or ``theta_0, theta_1, ...``.
    """
    if isinstance(y, pd.Series):
        y = y.to_frame()
    if isinstance(y, pd.DataFrame):
        names = [str(c) for c in y.columns]
        y = y.set_axis(names, axis=1)
        if len(set(names)) != len(names):
            raise ValueError(f"y has duplicate column names {names}.")
        if prior is not None:
            unknown = sorted(set(names) - set(prior.names))
            missing = [n for n in prior.names if n not in names]
            if unknown:
                raise ValueError(f"y has columns {unknown} that are not in the prior's "
                                 f"parameters {prior.names}.")
            if missing:
                raise ValueError(f"y lacks the prior's parameters {missing}.")
            names = list(prior.names)
            y = y[names]
        return names, y
    if y is None:
        raise ValueError("TMNREEstimator requires y to be passed, but the target y is None: "
                         "pass the parameters theta the data were simulated from.")
    arr = np.asarray(y)
    if arr.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, D); got shape {arr.shape}.")
    n_params = 1 if arr.ndim == 1 else arr.shape[1]
    if prior is not None:
        if n_params != prior.ndim:
            raise ValueError(f"y has {n_params} parameter column(s) but the prior has "
                             f"{prior.ndim} ({prior.names}).")
        return list(prior.names), y
    return [f"theta_{i}" for i in range(max(n_params, 1))], y


def resolve_marginals(spec, names):
    """The marginals (tuples of parameter names) that ``marginals=spec`` asks for."""
    if isinstance(spec, str):
        table = {
            "1d": [(n,) for n in names],
            "2d": list(itertools.combinations(names, 2)),
            "1d+2d": [(n,) for n in names] + list(itertools.combinations(names, 2)),
        }
        if spec not in table:
            raise ValueError(f"marginals={spec!r} is unknown; use '1d', '2d', '1d+2d' or a "
                             "list of tuples of parameter names.")
        out = table[spec]
        if not out:
            raise ValueError(f"marginals={spec!r} needs at least two parameters; there is "
                             f"only {names}.")
        return out
    out = []
    for m in spec:
        m = (m,) if isinstance(m, str) else tuple(m)
        unknown = [n for n in m if n not in names]
        if unknown:
            raise ValueError(f"marginal {m} names unknown parameters {unknown}; the "
                             f"parameters are {names}.")
        if len(set(m)) != len(m) or not m:
            raise ValueError(f"marginal {m} must name distinct parameters.")
        if m in out:
            raise ValueError(f"marginal {m} is listed twice.")
        out.append(m)
    if not out:
        raise ValueError("marginals is an empty list.")
    return out


def validate_theta(theta, names, n, argname="theta"):
    """Parameters as a float array (n, D) in ``names`` order, finite and float32-safe."""
    if isinstance(theta, pd.Series):
        theta = theta.to_frame()
    if isinstance(theta, pd.DataFrame):
        theta = theta.set_axis([str(c) for c in theta.columns], axis=1)
        dups = sorted(set(theta.columns[theta.columns.duplicated()]))
        if dups:
            raise ValueError(f"{argname} has duplicate column names {dups}.")
        missing = [c for c in names if c not in theta.columns]
        if missing:
            raise ValueError(f"{argname} lacks columns {missing}; expected {names}.")
        theta = theta[names]
    arr = np.asarray(theta)
    try:
        if arr.dtype.kind not in "biuf" and arr.dtype != object:
            raise TypeError
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{argname} must hold numeric parameter values; got dtype "
                        f"{arr.dtype} (Unknown label type for a ratio estimator).") from None
    if arr.ndim == 1 and len(names) == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"{argname} must have shape (n, {len(names)}) for parameters "
                         f"{names}; got {arr.shape}.")
    if len(arr) != n:
        raise ValueError(f"X and {argname} have different numbers of rows ({n} and "
                         f"{len(arr)}).")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{argname} contains NaN or infinite values.")
    if np.abs(arr).max(initial=0.0) > FLOAT32_MAX:
        raise ValueError(f"{argname} has values beyond float32's range (the network "
                         "computes in float32); rescale the parameters.")
    return arr


def check_support(prior, theta, argname):
    """With a known prior, parameters outside its support are an error."""
    if prior is None:
        return
    outside = ~prior.contains(theta)
    if outside.any():
        raise ValueError(
            f"{argname} has {int(outside.sum())} row(s) outside the prior's support "
            f"(first: row {int(np.flatnonzero(outside)[0])}); the ratio is undefined there.")
