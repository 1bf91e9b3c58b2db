"""Region queries of a :class:`~sklearn_tmnre.store.SimulationStore`: rows in a box, of some rounds.

Truncation reuses earlier rounds: rows whose ``theta`` lie in the new box Γ
are draws of the prior restricted to Γ. A box is given as a DataFrame
indexed by name with columns ``low`` and ``high`` (as ``Prior.support``), a
dict ``name -> (low, high)`` (names left out are unbounded) or an array of
shape (n_params, 2); limits are inclusive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["box_mask", "round_mask"]


def box_mask(theta, names, bounds):
    """Which rows of ``theta`` (columns ``names``) lie in the box ``bounds``."""
    if isinstance(bounds, pd.DataFrame):
        if not {"low", "high"} <= set(bounds.columns):
            raise ValueError("SimulationStore.select: a bounds DataFrame needs columns "
                             "'low' and 'high' (as Prior.support).")
        bounds = {str(k): (lo, hi) for k, lo, hi in
                  zip(bounds.index, bounds["low"], bounds["high"])}
    elif isinstance(bounds, np.ndarray):
        if bounds.shape != (len(names), 2):
            raise ValueError(f"SimulationStore.select: bounds array must have shape "
                             f"({len(names)}, 2); got {bounds.shape}.")
        bounds = dict(zip(names, bounds))
    elif not isinstance(bounds, dict):
        raise TypeError("SimulationStore.select: bounds must be a DataFrame with columns "
                        "low/high, a dict name -> (low, high), an array (n_params, 2) or "
                        f"None; got {type(bounds).__name__}.")
    unknown = [k for k in bounds if k not in names]
    if unknown:
        raise ValueError(f"SimulationStore.select: bounds name unknown parameters "
                         f"{unknown}; the store holds {names}.")
    mask = np.ones(len(theta), bool)
    for name, (lo, hi) in bounds.items():
        if not lo <= hi:
            raise ValueError(f"SimulationStore.select: bounds for {name!r} have "
                             f"low={lo} > high={hi}.")
        col = theta[:, names.index(name)]
        mask &= (col >= lo) & (col <= hi)
    return mask


def round_mask(round_col, rounds):
    """Which rows (their rounds ``round_col``) belong to one of ``rounds`` (int or list)."""
    wanted = np.atleast_1d(np.asarray(rounds))
    if not np.issubdtype(wanted.dtype, np.integer) or wanted.ndim != 1:
        raise ValueError(f"SimulationStore.select: rounds must be an int or a list of "
                         f"ints; got {rounds!r}.")
    return np.isin(round_col, wanted)
