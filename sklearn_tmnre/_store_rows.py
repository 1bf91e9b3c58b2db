"""The committed rows of a :class:`~sklearn_tmnre.store.SimulationStore` as one handle sees them.

A handle re-reads the commit record before each read (another process may have
appended meanwhile) and drops what it cached when the store was recreated (a
new ``uid``). Committed rows never change, so the small columns (``theta``,
``ok``, ``round``, ``index``) are read once, extended as rows are committed,
and decide every selection; ``X`` is read for the rows asked for only. Every
read refuses a missing or damaged chunk (:mod:`sklearn_tmnre._store_integrity`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from . import _store_commit as _commit
from . import _store_integrity as _integrity
from ._durable import DurableLocalStore
from ._store_checks import check_schema, draw_indices
from ._store_layout import ARRAYS, create_arrays, open_array

__all__ = ["CommittedRows"]

_COLUMNS = ("theta", "ok", "round", "index")


class CommittedRows:
    """The commit record, the open arrays and the cached small columns of one handle."""

    def __init__(self, path, read_only):
        self.path = path
        self.read_only = read_only
        self.commit = None
        self.arrays = {}
        self._cache = None

    def refresh(self):
        """Re-read the commit record; drop caches if the store was recreated meanwhile."""
        commit = _commit.load_commit(self.path)
        if self.commit is None or commit["uid"] != self.commit["uid"]:
            self.arrays = {}
            self._cache = None
        self.commit = commit
        return commit

    def array(self, name):
        """The zarr array ``name``, reopened when another process has grown it."""
        arr = self.arrays.get(name)
        if arr is None or arr.shape[0] < self.commit["n_rows"]:
            arr = open_array(self.path, name, self.read_only)
            self.arrays[name] = arr
        return arr

    def columns(self, refresh=True):
        """Cached theta, ok, round and index of the committed rows (committed rows never change)."""
        commit = self.refresh() if refresh else self.commit
        n = commit["n_rows"]
        if self._cache is None:
            self._cache = {"n": 0, "theta": np.empty((0, len(commit["names"] or ()))),
                           "ok": np.empty(0, bool), "round": np.empty(0, np.int64),
                           "index": np.empty(0, np.int64)}
        old = self._cache["n"]
        if n > old:
            for name in _COLUMNS:
                # A missing ok chunk reads as failures: the count below catches it.
                required = np.arange(old, n) if name != "ok" else ()
                self._cache[name] = np.concatenate([self._cache[name],
                                                    self.read(name, slice(old, n), required)])
            self._cache["n"] = n
            _integrity.check_failed_count(self.path, self.array("ok"), self._cache["ok"],
                                          commit["n_failed"])
        return self._cache

    def read(self, name, rows, required):
        """Rows of ``name``; a damaged chunk, or a missing one of ``required`` rows, raises."""
        return _integrity.read_rows(self.path, name, self.array(name), rows, required)

    def x(self):
        """``X`` of every committed row (NaN rows where failed)."""
        commit = self.refresh()
        if commit["names"] is None:
            return np.empty((0,))
        return self.read("X", slice(0, commit["n_rows"]),
                         np.flatnonzero(self.columns(refresh=False)["ok"]))

    def read_x(self, rows):
        """``X`` of the sorted committed ``rows``."""
        if self.commit["names"] is None:
            return np.empty((0,))
        arr = self.array("X")
        if len(rows) == 0:
            return np.empty((0, *arr.shape[1:]), arr.dtype)
        if rows[-1] - rows[0] + 1 == len(rows):
            return self.read("X", slice(rows[0], rows[-1] + 1), rows)
        return self.read("X", rows, rows)

    def failures(self):
        """The failed rows with their error texts (see :meth:`SimulationStore.failures`)."""
        cols = self.columns()
        rows = np.flatnonzero(~cols["ok"])
        texts = _commit.error_texts(self.path, self.commit["errors_bytes"]) if len(rows) else {}
        frame = pd.DataFrame({
            "row": rows, "round": cols["round"][rows], "index": cols["index"][rows],
            "error": pd.Series([texts.get(int(r)) for r in rows], dtype=object),
        })
        params = pd.DataFrame(cols["theta"][rows], columns=self.commit["names"] or [])
        return pd.concat([frame, params], axis=1)

    def verify(self):
        """Check every committed row (see :meth:`SimulationStore.verify`)."""
        commit = self.refresh()
        arrays = {} if commit["names"] is None else {name: self.array(name) for name in ARRAYS}
        return _integrity.verify(self.path, commit, arrays, _commit.errors_data(self.path))

    # ------------------------------------------------------------------ appending
    def append(self, names, theta, X, ok, errors, round, index):
        """Append a validated batch and commit it durably; return its row numbers.

        The caller holds the store's write lock.
        """
        n = len(theta)
        with ThreadPoolExecutor(len(ARRAYS)) as pool:
            commit = self.refresh()
            names, theta = check_schema(commit, names, theta, X)
            zstore = DurableLocalStore(self.path)
            if commit["names"] is None:
                x_dtype = np.float32 if X.dtype == np.float32 else np.float64
                commit = self._create(zstore, names, X.shape[1:], x_dtype)
            cols = self.columns(refresh=False)
            index = draw_indices(cols["index"][cols["round"] == round], round, index, n)
            batch = {"theta": theta, "X": X.astype(commit["x_dtype"], copy=False),
                     "ok": ok, "round": np.full(n, round, np.int64), "index": index}
            start = commit["n_rows"]
            self.arrays = _commit.write_rows(zstore, start, batch, pool)
            self.commit = _commit.commit_rows(self.path, zstore, commit, ok, errors, pool)
        if cols["n"] == start:
            for name in _COLUMNS:
                cols[name] = np.concatenate([cols[name], batch[name]])
            cols["n"] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def _create(self, zstore, names, event_shape, x_dtype):
        """Create the arrays of a new store and its first commit record (not yet written)."""
        self.arrays = create_arrays(zstore, names, event_shape, x_dtype)
        self._cache = None  # a read before the first append cached zero columns
        self.commit = _commit.new_commit(
            n_rows=0, n_failed=0, errors_bytes=0, names=names,
            event_shape=list(event_shape), x_dtype=np.dtype(x_dtype).name)
        return self.commit
