"""Checks of the arguments of a :class:`~sklearn_tmnre.store.SimulationStore`.

How a store is opened, and each batch appended to it. Every error names the
argument, what it got and what it needs, before anything is written, so a
rejected batch leaves the store untouched.
"""

from __future__ import annotations

import numbers
import os

import numpy as np
import pandas as pd

__all__ = ["check_open", "check_schema", "draw_indices", "validate_batch"]


def check_open(path, mode):
    """Check the ``path`` and ``mode`` a store is opened with."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"SimulationStore: path must be a str or Path; got "
                        f"{type(path).__name__}.")
    if mode not in ("a", "r", "w"):
        raise ValueError(f"SimulationStore: mode must be 'a' (read/write), 'r' (read-only) "
                         f"or 'w' (overwrite); got {mode!r}.")


def validate_batch(theta, X, ok, errors, round, index):
    """Check one :meth:`SimulationStore.append` batch and normalize it.

    Returns
    -------
    names : list of str or None
        theta's column names (None for an array).
    theta_arr : ndarray of shape (n, n_params), float64
    X : ndarray of shape (n, *event_shape)
    ok : ndarray of shape (n,), bool
    errors : list of (str or None) or None
    round : int
    index : ndarray of shape (n,), int64, or None
    """
    if isinstance(theta, pd.DataFrame):
        names = [str(c) for c in theta.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"SimulationStore.append: theta has duplicate column names "
                             f"{names}.")
        theta_arr = theta.to_numpy(dtype=np.float64)
    else:
        names = None
        theta_arr = np.asarray(theta, dtype=np.float64)
        if theta_arr.ndim == 1:
            theta_arr = theta_arr[:, None]
    if theta_arr.ndim != 2:
        raise ValueError(f"SimulationStore.append: theta must be a DataFrame or an array of "
                         f"shape (n, n_params); got shape {theta_arr.shape}.")
    n = len(theta_arr)
    X = np.asarray(X)
    if X.ndim < 1 or len(X) != n:
        raise ValueError(f"SimulationStore.append: X must have one row per theta row "
                         f"({n}); got shape {X.shape}.")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)
            or X.dtype == bool):
        raise TypeError(f"SimulationStore.append: X must be numeric (real); got dtype "
                        f"{X.dtype}.")
    if errors is not None:
        errors = list(errors)
        if len(errors) != n or not all(e is None or isinstance(e, str) for e in errors):
            raise ValueError(f"SimulationStore.append: errors must be a list of {n} "
                             "strings or None (one per row).")
    if ok is None:
        ok = np.ones(n, bool) if errors is None else np.array([e is None for e in errors])
    ok = np.asarray(ok)
    if ok.dtype != bool or ok.shape != (n,):
        raise ValueError(f"SimulationStore.append: ok must be a boolean array of shape "
                         f"({n},); got dtype {ok.dtype}, shape {ok.shape}.")
    if errors is not None and any(e is not None and k for e, k in zip(errors, ok)):
        raise ValueError("SimulationStore.append: errors gives an error text for a row "
                         "whose ok is True; use None for rows that succeeded.")
    if not isinstance(round, numbers.Integral) or isinstance(round, bool) or round < 0:
        raise ValueError(f"SimulationStore.append: round must be a non-negative integer; "
                         f"got {round!r}.")
    if index is not None:
        index = np.asarray(index)
        if (index.shape != (n,) or not np.issubdtype(index.dtype, np.integer)
                or (index < 0).any()):
            raise ValueError(f"SimulationStore.append: index must be {n} non-negative "
                             "integers (the draws' indices within their round).")
        if len(np.unique(index)) != n:
            raise ValueError("SimulationStore.append: index has repeated values; each "
                             "(round, index) is one planned draw.")
        index = index.astype(np.int64)
    return names, theta_arr, X, ok, errors, int(round), index


def check_schema(commit, names, theta_arr, X):
    """Match a batch to the store's committed parameter names and event shape.

    Returns the store's names and theta with its columns in the store's order
    (the batch's names, or ``theta_0, ...``, for the first batch).
    """
    if commit["names"] is None:
        return names or [f"theta_{i}" for i in range(theta_arr.shape[1])], theta_arr
    stored = commit["names"]
    if names is None:
        if theta_arr.shape[1] != len(stored):
            raise ValueError(f"SimulationStore.append: theta has {theta_arr.shape[1]} "
                             f"columns but the store holds {len(stored)} parameters "
                             f"{stored}.")
    elif names != stored:
        if sorted(names) != sorted(stored):
            missing = [s for s in stored if s not in names]
            extra = [s for s in names if s not in stored]
            raise ValueError(f"SimulationStore.append: theta's parameter names differ from "
                             f"the store's {stored}: missing {missing}, unexpected {extra}.")
        theta_arr = theta_arr[:, [names.index(s) for s in stored]]
    if tuple(X.shape[1:]) != tuple(commit["event_shape"]):
        raise ValueError(f"SimulationStore.append: X's event shape {X.shape[1:]} differs "
                         f"from the store's event shape {tuple(commit['event_shape'])}.")
    return stored, theta_arr


def draw_indices(done, round, index, n):
    """The batch's draw indices, refusing any already stored for ``round``.

    ``done`` holds the indices of ``round`` already stored; ``index`` None
    gives the ``n`` consecutive indices after the largest of them.
    """
    if index is None:
        first = int(done.max()) + 1 if len(done) else 0
        return np.arange(first, first + n, dtype=np.int64)
    clash = np.intersect1d(index, done)
    if len(clash):
        raise ValueError(
            f"SimulationStore.append: round {round} already holds draws with index "
            f"{clash[:10].tolist()}{' ...' if len(clash) > 10 else ''}; skip the "
            "indices listed by done_indices(round).")
    return index
