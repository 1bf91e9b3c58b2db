"""Input checks: hyperparameters of every estimator, targets, marginals, seeds.

Plain functions of the values they check, so the estimator modules keep to
fitting and inference; each error says what is wrong and what to pass instead.
Every estimator's hyperparameters are declared as scikit-learn
``_parameter_constraints`` and checked once in ``fit`` by :func:`validate_params`.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

from .networks import EMBEDDINGS
from .prior import Prior
from .sets import check_padding

__all__ = ["FLOAT32_MAX", "PARAMETER_CONSTRAINTS", "check_hyperparameters", "check_observation",
           "check_support",
           "int_seed", "marginal_label", "parameter_names", "resolve_marginals",
           "seed_entropy", "validate_params", "validate_theta"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


def marginal_label(marginal: Sequence[str]) -> str:
    """Column label of a marginal: its parameter names joined by ``|``."""
    return "|".join(marginal)


# Upper bounds that keep a typo from allocating the machine's memory (n_negatives=10**9
# did): far above any useful value.
MAX_NEGATIVES = 1024
MAX_GRID_1D = 1 << 16
MAX_GRID_2D = 4096
# Network widths: a head of width w costs w**2 weights per layer, so 2**14 is already
# gigabytes; a larger value is a typo (and a crafted model file must not allocate it).
MAX_WIDTH = 1 << 14


def _integers(low, high=None):
    return Interval(numbers.Integral, low, high, closed="both" if high else "left")


#: The declared constraints of every TMNREEstimator hyperparameter, checked by
#: scikit-learn's validation in ``fit`` (``_validate_params``).
PARAMETER_CONSTRAINTS = {
    "prior": [Prior, None],
    "marginals": [StrOptions({"1d", "2d", "1d+2d"}), list, tuple],
    "embedding": [StrOptions(set(EMBEDDINGS)), type, torch.nn.Module],
    "embedding_dim": [_integers(1, MAX_WIDTH)],
    "hidden_features": [_integers(1, MAX_WIDTH), StrOptions({"auto"})],
    "num_blocks": [_integers(0)],
    "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    "balance": [Interval(numbers.Real, 0, None, closed="left")],
    "loss": [StrOptions({"bce", "contrastive"})],
    "field_loss": [StrOptions({"posterior", "ratio"})],
    "lr": [Interval(numbers.Real, 0, None, closed="neither")],
    "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
    "batch_size": [_integers(2)],
    "max_epochs": [_integers(1), StrOptions({"auto"})],
    "patience": [_integers(1)],
    "max_time": [Interval(numbers.Real, 0, None, closed="neither"), None],
    "lr_schedule": [StrOptions({"cosine", "plateau"})],
    "ema_decay": [Interval(numbers.Real, 0, 1, closed="left"), StrOptions({"auto"})],
    "n_threads": [_integers(1), None],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
    "n_negatives": [_integers(1, MAX_NEGATIVES)],
    "n_ensemble": [_integers(1)],
    "fourier_features": [_integers(0, MAX_WIDTH)],
    "fourier_scale": [Interval(numbers.Real, 0, None, closed="neither")],
    "n_grid_1d": [_integers(2, MAX_GRID_1D)],
    "n_grid_2d": [_integers(2, MAX_GRID_2D)],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "callbacks": [list, None],
}


def _means_a_number(constraints):
    """Whether a parameter's constraints describe a number (and none accepts a boolean)."""
    if isinstance(constraints, str):  # "no_validation"
        return False
    if any(c is bool or c in ("boolean", "verbose") for c in constraints):
        return False
    return any(isinstance(c, Interval) or c == "random_state"
               or (isinstance(c, type) and issubclass(c, numbers.Number))
               for c in constraints)


def validate_params(est: BaseEstimator, hints: dict[str, str] | None = None) -> None:
    """Check ``est``'s hyperparameters against its declared ``_parameter_constraints``.

    scikit-learn's validation, plus one rule it lacks: a boolean is not a
    number (``True`` would pass as 1 or 1.0). Each error names the parameter,
    what it must be and what it got, followed by ``hints[name]`` where given.

    Parameters
    ----------
    est : BaseEstimator
        Declares ``_parameter_constraints``.
    hints : dict of str to str, optional
        A sentence per parameter on what it means, e.g. a typical value.

    Raises
    ------
    InvalidParameterError
        A ``ValueError`` and a ``TypeError``: the first invalid parameter.
    """
    hints = hints or {}
    owner = type(est).__name__
    params = est.get_params(deep=False)
    for name, constraints in est._parameter_constraints.items():
        value = params[name]
        hint = f" {hints[name]}" if name in hints else ""
        if isinstance(value, bool | np.bool_) and _means_a_number(constraints):
            raise InvalidParameterError(
                f"The {name!r} parameter of {owner} must be a number, not a boolean; "
                f"got {value!r}.{hint}")
        try:
            validate_parameter_constraints({name: constraints}, {name: value},
                                           caller_name=owner)
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"{exc}{hint}") from None


def check_hyperparameters(est: BaseEstimator) -> None:
    """Raise a clear error for an invalid hyperparameter of a TMNREEstimator (called by ``fit``).

    The declared constraints (:data:`PARAMETER_CONSTRAINTS`) are checked by
    :func:`validate_params`; keywords beyond the signature must be
    ``embedding__<arg>``.
    """
    unexpected = sorted(k for k in est._keyword_params() if not k.startswith("embedding__"))
    if unexpected:
        raise TypeError(f"TMNREEstimator got unexpected arguments {unexpected}; embedding "
                        "arguments are spelled embedding__<arg>.")
    validate_params(est)
    if est.loss == "contrastive" and est.balance > 0:
        raise ValueError(f"balance={est.balance} applies to loss='bce' only: balancing is "
                         "defined for the binary classifier. Use loss='bce' with balance, or "
                         "balance=0 with loss='contrastive'.")


def check_observation(x_o: object, owner: str, padded: bool = False) -> np.ndarray:
    """One observation as an array of real, finite numbers within float32's range.

    Parameters
    ----------
    x_o : array-like
    owner : str
        Named in the error messages (``"TMNRE.fit"``).
    padded : bool, default=False
        The estimator reads sets of varying size (``embedding="set"``): NaN
        that fills whole elements along the first axis is padding, not an error.

    Returns
    -------
    ndarray
    """
    arr = np.asarray(x_o)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: x_o must be real numbers; got dtype {arr.dtype}.")
    if padded and arr.ndim >= 1 and not np.isinf(arr).any():
        check_padding(arr[None] if arr.ndim else arr, argname="x_o")
    elif not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}: x_o must be finite and within float32's range.")
    if np.nanmax(np.abs(arr), initial=0) > FLOAT32_MAX:
        raise ValueError(f"{owner}: x_o must be finite and within float32's range.")
    return arr


def seed_entropy(random_state: object, owner: str) -> int:
    """``numpy.random.SeedSequence`` entropy from an sklearn-style ``random_state``.

    The one conversion of a ``random_state`` into the root of independent
    streams (``SeedSequence(entropy, spawn_key=...)``), used by campaigns and
    simulations, so equal ``random_state`` give equal streams everywhere.

    Parameters
    ----------
    random_state : None, int >= 0, SeedSequence, RandomState or Generator
        None draws fresh entropy from the operating system; an int is the
        entropy itself; a RandomState or Generator is advanced by one draw.
    owner : str
        Named in the error message.

    Returns
    -------
    int
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, np.random.SeedSequence):
        return random_state.entropy
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        # Two 31-bit draws: a 62-bit entropy from a legacy generator.
        return int(random_state.randint(2**31 - 1)) * 2**32 + int(random_state.randint(2**31 - 1))
    if (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
            and random_state >= 0):
        return int(random_state)
    raise ValueError(f"{owner}: random_state must be None, a non-negative int, a RandomState "
                     f"or a Generator; got {random_state!r}.")


def int_seed(random_state: int | np.random.RandomState | None) -> int:
    """One 31-bit seed from an sklearn-style ``random_state`` (``check_random_state``).

    For code that seeds a single consumer (torch's generator, one inner
    estimator) rather than independent streams (:func:`seed_entropy`).

    Parameters
    ----------
    random_state : None, int or RandomState

    Returns
    -------
    int
    """
    return int(check_random_state(random_state).randint(2**31 - 1))


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
                         f"{len(arr)}). If X came from simulate(..., on_error='skip'), "
                         "its failed rows were dropped: pass return_result=True and "
                         f"keep {argname}[result.ok] with result.X[result.ok].")
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
