"""A crash-safe, append-only, on-disk store of a TMNRE campaign's simulations.

Every simulation of a campaign is one *row*: its parameters ``theta`` (one
column per parameter name), its output ``X`` (an array of the event shape),
whether it succeeded (``ok``), the error text of a failure, the ``round`` that
planned the draw and the draw's ``index`` within that round.  The pair
``(round, index)`` identifies a planned draw, so a round that was interrupted
resumes by simulating only the indices that :meth:`SimulationStore.done_indices`
does not list.  Truncation reuses earlier rounds: rows whose ``theta`` lie in
the new box Γ are draws of the prior restricted to Γ, and
:meth:`SimulationStore.select` returns exactly those.

Layout (a plain zarr v3 group, readable by ``zarr``, ``dask.array.from_zarr``
and ``xarray.open_zarr``)::

    path/
      zarr.json                 root group
      theta/  (n, n_params)     float64, dims (row, param); attribute "names"
      X/      (n, *event_shape) float32 or float64, dims (row, event_0, ...)
      ok/     (n,)              bool
      round/  (n,)              int64
      index/  (n,)              int64
      commit.json               the commit record: committed row count, names, ...
      errors.jsonl              one JSON line per failed row with its error text
      attrs.json                user metadata (SimulationStore.attrs)
      .lock                     inter-process append lock
      sklearn_tmnre.json        the marker: this directory is a SimulationStore

A directory is taken for a store only with its marker (or, for stores written
before the marker existed, a commit record of this format): the store never
writes into, nor deletes, a folder it did not create, and ``mode="w"`` refuses
to delete one that holds anything the store did not write.

Atomicity.  An append holds an exclusive ``flock`` on ``.lock``, resizes the
arrays and writes the new rows, appends the error lines, and only then commits
by atomically replacing ``commit.json`` (write a temporary file, ``fsync``,
``os.replace``, ``fsync`` the directory).  Readers see rows ``< n_rows`` of the
commit record only, so a process killed at any point leaves either the old or
the new commit and never a half-written batch; the next writer overwrites the
uncommitted leftovers.  Every zarr file is itself written to a temporary file,
fsync'd and renamed into place, so a chunk that holds committed rows and is
rewritten to add new ones is always either its old or its new version.  Other
tools reading the arrays directly (dask, xarray) should use the first
``n_rows`` rows of ``commit.json`` for the same guarantee. A writer killed
between writing a temporary file and renaming it leaves that file behind; the
next handle opened for writing removes it (when no other writer holds the lock).

Integrity (:mod:`sklearn_tmnre._store_integrity`).  Every chunk ends in a CRC32C
checksum and every chunk of committed rows is on disk, so a changed or missing
chunk is an error naming its file, never other numbers or NaN;
:meth:`SimulationStore.verify` checks every committed row and
:meth:`SimulationStore.repair` rebuilds a lost commit record from the rows on
disk. Stores written before checksums existed open and read as before.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from . import _store_integrity as _integrity
from ._durable import DurableLocalStore, durable_mkdir, durable_write
from ._store_attrs import StoreAttrs, read_json
from ._store_checks import check_schema, validate_batch

try:
    import fcntl
except ImportError:  # Windows: no flock; one writing process at a time (see SimulationStore).
    fcntl = None

__all__ = ["SimulationStore", "StoreReport"]

StoreReport = _integrity.StoreReport

_FORMAT = "sklearn_tmnre.SimulationStore"
_VERSION = 1
_COMMIT = "commit.json"
_ERRORS = "errors.jsonl"
_ATTRS = "attrs.json"
_LOCK = ".lock"
_MARKER = "sklearn_tmnre.json"
_ARRAYS = ("theta", "X", "ok", "round", "index")
# Every entry a store writes at its top level.
_OWN = frozenset({_COMMIT, _ERRORS, _ATTRS, _LOCK, _MARKER, "zarr.json", *_ARRAYS})


def _own_entry(name):
    """Whether a top-level name is one the store writes (temporary files included)."""
    return (name in _OWN or name.startswith(".probe-")
            or (name.startswith(".") and name.endswith(".tmp")))
# Chunks of about 2 MiB keep a rewrite of the last, partly filled chunk cheap while
# keeping the file count of a large store low; the row cap bounds that rewrite for
# arrays with tiny rows (ok, round, index).
_CHUNK_BYTES = 2 << 20
_MAX_CHUNK_ROWS = 16384


def _chunk_rows(row_bytes):
    rows = max(1, _CHUNK_BYTES // max(1, row_bytes))
    return int(min(_MAX_CHUNK_ROWS, 1 << (rows.bit_length() - 1)))


class SimulationStore:
    """On-disk, crash-safe, append-only store of simulations (a zarr group).

    Parameters
    ----------
    path : str or Path
        Directory of the store (conventionally ending in ``.zarr``). It is created
        on the first write, not when the store is opened.
    mode : {"a", "r", "w"}, default="a"
        ``"a"``: open an existing store or start a new one; ``"r"``: open an
        existing store read-only; ``"w"``: delete an existing store at ``path``
        and start a new one.

    Attributes
    ----------
    path : Path
        The store directory.
    names : list of str or None
        Parameter names, fixed by the first append (None before).
    event_shape : tuple of int or None
        Shape of one simulation output, fixed by the first append (None before).
    ndim : int or None
        Number of parameters.
    n_done, n_failed : int
        Committed rows that succeeded / failed; ``len(store) == n_done + n_failed``.
    attrs : MutableMapping
        JSON metadata (e.g. the campaign settings, per-round bounds); each write is
        atomic and serialised with appends.

    Notes
    -----
    Appends from several processes on one machine or a shared POSIX filesystem
    are serialised by ``fcntl.flock`` on ``path/.lock`` (NFS needs working
    locks, as on NFSv4). Without ``fcntl`` (Windows) only one process may
    append at a time. Each append returns only after its rows are fsync'd and
    committed; a process killed mid-append leaves the store as it was before
    that append. Committed rows are never modified.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from sklearn_tmnre.store import SimulationStore
    >>> store = SimulationStore(tempfile.mkdtemp() + "/sims.zarr")
    >>> theta = pd.DataFrame({"a": [0.1, 0.5, 0.9], "b": [1.0, 2.0, 3.0]})
    >>> store.append(theta, np.ones((3, 4), dtype=np.float32), round=0)
    array([0, 1, 2])
    >>> theta_in, X_in, rows = store.select({"a": (0.0, 0.6)})
    >>> rows, X_in.shape, str(X_in.dtype)
    (array([0, 1]), (2, 4), 'float32')
    >>> store.done_indices(0)
    array([0, 1, 2])
    """

    def __init__(self, path, mode="a"):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"SimulationStore: path must be a str or Path; got "
                            f"{type(path).__name__}.")
        if mode not in ("a", "r", "w"):
            raise ValueError(f"SimulationStore: mode must be 'a' (read/write), 'r' (read-only) "
                             f"or 'w' (overwrite); got {mode!r}.")
        self._setup(path, read_only=mode == "r")
        if mode == "w" and self.path.exists():
            self._remove_existing()
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"SimulationStore: path {str(self.path)!r} exists and is not a "
                             "directory; give a directory path such as 'sims.zarr'.")
        if self.path.is_dir() and not self._is_store_dir():
            raise ValueError(
                f"SimulationStore: {str(self.path)!r} is a non-empty directory that is not a "
                "SimulationStore; give a new or empty directory."
            )
        if self._read_only and not (self.path.is_dir() and self._is_store_dir(empty=False)):
            raise FileNotFoundError(
                errno.ENOENT, "SimulationStore: no store to open read-only (mode='r'); use "
                "mode='a' to create one", str(self.path))
        self._refresh()
        if not self._read_only:
            self._remove_temporaries()

    def _setup(self, path, read_only):
        self.path = Path(path).absolute()
        self._read_only = read_only
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._commit = None
        self._arrays = {}
        self._cache = None

    # ------------------------------------------------------------------ opening
    def _is_store_dir(self, empty=True):
        """Whether the existing directory holds a store (or is empty, with ``empty``)."""
        # A probe left by a check_writable that was killed does not make a directory foreign.
        entries = {p.name for p in self.path.iterdir() if not p.name.startswith(".probe-")}
        if not entries:
            return empty
        if all(name == _LOCK or _own_entry(name) and name.startswith(".") for name in entries):
            return True  # a first write killed before its marker: a lock and temporary files
        marker = read_json(self.path / _MARKER)
        if marker is not None:
            return isinstance(marker, dict) and marker.get("format") == _FORMAT
        # A store written before the marker existed: its commit record says what it is.
        commit = read_json(self.path / _COMMIT)
        return isinstance(commit, dict) and commit.get("format") == _FORMAT

    def _remove_existing(self):
        if not (self.path.is_dir() and self._is_store_dir()):
            raise ValueError(
                f"SimulationStore: mode='w' would delete {str(self.path)!r}, which is not a "
                "SimulationStore; remove it yourself or choose another path."
            )
        foreign = sorted(p.name for p in self.path.iterdir() if not _own_entry(p.name))
        if foreign:
            raise ValueError(
                f"SimulationStore: mode='w' would delete {str(self.path)!r}, which also holds "
                f"files the store did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); move them or choose another path."
            )
        shutil.rmtree(self.path)

    def _mark(self, committed=False):
        """Write the marker that makes this directory a store (under the lock).

        ``committed`` records that a commit record was written: from then on a
        missing one is damage, never an empty store to start afresh.
        """
        # A store written before the marker existed has committed rows already.
        committed = committed or (self.path / _COMMIT).exists()
        marker = read_json(self.path / _MARKER)
        if marker is None or (committed and not marker.get("committed")):
            marker = {"format": _FORMAT, "version": _VERSION, "id": uuid.uuid4().hex,
                      **(marker or {}), "committed": committed}
            durable_write(self.path / _MARKER, json.dumps(marker).encode())

    def __getstate__(self):
        # A pickled store reopens its path; "w" must not wipe the data again.
        return {"path": str(self.path), "mode": "r" if self._read_only else "a"}

    def __setstate__(self, state):
        self.__init__(state["path"], mode=state["mode"])

    def __repr__(self):
        self._refresh()
        return (f"SimulationStore({str(self.path)!r}, rows={len(self)}, done={self.n_done}, "
                f"failed={self.n_failed})")

    def _remove_temporaries(self):
        """Delete the temporary files left by a writer killed mid-write."""
        # Only while no writer holds the lock (their temporary files are live), and never
        # without flock (Windows), where another process's writes cannot be seen.
        if fcntl is None:
            return
        try:
            fd = os.open(self.path / _LOCK, os.O_RDWR)
        except OSError:  # no lock file: nothing was ever written here
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _integrity.remove_temporaries(self.path, _ARRAYS)
        except OSError:  # locked by a live writer, or not ours to delete: leave them
            pass
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ commit record
    def _read_commit(self):
        """The commit record (None if there is none), refusing a lost or garbled one."""
        fix = (f"rebuild it from the rows on disk with SimulationStore.repair(path), which keeps "
               f"every intact row and reports what it drops, or restore {_COMMIT} from a backup")
        try:
            commit = read_json(self.path / _COMMIT)
        except ValueError as err:
            raise ValueError(f"SimulationStore: {str(self.path / _COMMIT)!r} is damaged "
                             f"({err.__cause__}); {fix}.") from err
        if commit is None and (read_json(self.path / _MARKER) or {}).get("committed"):
            raise ValueError(
                f"SimulationStore: {str(self.path)!r} has lost its commit record "
                f"({_COMMIT}) although rows were committed, and was left as it is; {fix}.")
        return commit

    def _refresh(self):
        """Re-read the commit record; drop caches if the store was recreated meanwhile."""
        commit = self._read_commit()
        if commit is None:
            commit = {"n_rows": 0, "n_failed": 0, "errors_bytes": 0, "names": None,
                      "event_shape": None, "x_dtype": None, "uid": None}
        elif commit.get("format") != _FORMAT or commit.get("version", 0) > _VERSION:
            raise ValueError(f"SimulationStore: {str(self.path / _COMMIT)!r} was not written by "
                             f"this version of {_FORMAT}.")
        if self._commit is None or commit["uid"] != self._commit["uid"]:
            self._arrays = {}
            self._cache = None
        self._commit = commit
        return commit

    def _zarr_store(self):
        return DurableLocalStore(self.path, read_only=self._read_only)

    def _array(self, name):
        """The zarr array ``name``, reopened when another process has grown it."""
        arr = self._arrays.get(name)
        if arr is None or arr.shape[0] < self._commit["n_rows"]:
            arr = zarr.open_array(store=self._zarr_store(), path=name,
                                  mode="r" if self._read_only else "r+")
            self._arrays[name] = arr
        return arr

    def _columns(self, refresh=True):
        """Cached theta, ok, round and index of the committed rows (committed rows never change)."""
        commit = self._refresh() if refresh else self._commit
        n = commit["n_rows"]
        if self._cache is None:
            self._cache = {"n": 0, "theta": np.empty((0, len(commit["names"] or ()))),
                           "ok": np.empty(0, bool), "round": np.empty(0, np.int64),
                           "index": np.empty(0, np.int64)}
        old = self._cache["n"]
        if n > old:
            for name in ("theta", "ok", "round", "index"):
                # A missing ok chunk reads as failures: the count below catches it.
                required = np.arange(old, n) if name != "ok" else ()
                self._cache[name] = np.concatenate([self._cache[name],
                                                    self._read(name, slice(old, n), required)])
            self._cache["n"] = n
            _integrity.check_failed_count(self.path, self._array("ok"), self._cache["ok"],
                                          commit["n_failed"])
        return self._cache

    def _read(self, name, rows, required):
        """Rows of ``name``; a damaged chunk, or a missing one of ``required`` rows, raises."""
        return _integrity.read_rows(self.path, name, self._array(name), rows, required)

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _locked(self, action):
        if self._read_only:
            raise PermissionError(
                errno.EACCES, f"SimulationStore: cannot {action}, the store was opened read-only "
                "(mode='r'); open it with mode='a' to write", str(self.path))
        with self._thread_lock:
            if self._lock_depth:  # already held by this handle: re-entered, not re-locked
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            durable_mkdir(self.path)
            fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_depth = 1
                self._mark()
                yield
            finally:
                self._lock_depth = 0
                os.close(fd)  # closing the descriptor releases the flock

    def lock(self):
        """Hold the store's write lock: other processes' appends and attrs writes wait.

        A context manager, for a read-then-write of several steps that must not
        interleave with another process's (as :class:`~sklearn_tmnre.TMNRE`
        starting a campaign). Appends and attrs writes inside it proceed.

        Examples
        --------
        >>> with store.lock():                                    # doctest: +SKIP
        ...     if "campaign" not in store.attrs:
        ...         store.attrs["campaign"] = {"started": True}
        """
        return self._locked("lock")

    def check_writable(self, nbytes=1 << 20):
        """Raise a clear ``OSError`` now if the store cannot be written.

        Creates the directory if needed, then writes, fsyncs and deletes a probe
        file of ``nbytes`` bytes. Call it before simulating anything, so a
        campaign does not spend hours on simulations it cannot save.

        Parameters
        ----------
        nbytes : int, default=1 MiB
            Size of the probe file.

        Raises
        ------
        OSError
            ``PermissionError`` for a read-only store or directory, another
            ``OSError`` subclass (e.g. ``NotADirectoryError``, ``ENOSPC``) otherwise;
            the message names the path.
        """
        if self._read_only:
            raise PermissionError(errno.EACCES, "SimulationStore: the store was opened "
                                  "read-only (mode='r'); open it with mode='a' to write",
                                  str(self.path))
        probe = self.path / f".probe-{uuid.uuid4().hex}"
        try:
            durable_mkdir(self.path)
            with open(probe, "wb") as f:
                f.write(bytes(int(nbytes)))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise OSError(
                e.errno or errno.EIO,
                f"SimulationStore: cannot write simulations to this path ({e.strerror or e}); "
                "make sure the directory is writable and the disk has free space",
                str(self.path)) from e
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    # ------------------------------------------------------------------ metadata
    @property
    def names(self):
        """list of str or None: the parameter names."""
        names = self._refresh()["names"]
        return None if names is None else list(names)

    @property
    def event_shape(self):
        """tuple of int or None: the shape of one simulation output."""
        shape = self._refresh()["event_shape"]
        return None if shape is None else tuple(shape)

    @property
    def ndim(self):
        """int or None: the number of parameters."""
        names = self.names
        return None if names is None else len(names)

    def __len__(self):
        return self._refresh()["n_rows"]

    @property
    def n_failed(self):
        """int: committed rows whose simulation failed."""
        return self._refresh()["n_failed"]

    @property
    def n_done(self):
        """int: committed rows whose simulation succeeded."""
        commit = self._refresh()
        return commit["n_rows"] - commit["n_failed"]

    @property
    def attrs(self):
        """MutableMapping: JSON metadata stored next to the simulations."""
        return StoreAttrs(self, _ATTRS)

    # ------------------------------------------------------------------ append
    def _create_arrays(self, zstore, names, event_shape, x_dtype):
        zarr.open_group(store=zstore, mode="a")
        specs = {
            "theta": ((len(names),), np.float64, np.nan, ("param",)),
            "X": (event_shape, x_dtype, np.nan, tuple(f"event_{i}"
                                                       for i in range(len(event_shape)))),
            "ok": ((), bool, False, ()),
            "round": ((), np.int64, -1, ()),
            "index": ((), np.int64, -1, ()),
        }
        self._arrays = {}
        for name, (shape, dtype, fill, dims) in specs.items():
            row_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            self._arrays[name] = zarr.create_array(
                store=zstore, name=name, shape=(0, *shape), dtype=dtype,
                chunks=(_chunk_rows(row_bytes), *shape), fill_value=fill,
                compressors=_integrity.compressors(dtype), dimension_names=("row", *dims),
                # The names also live here, so repair() can rebuild a lost commit record.
                attributes={"names": list(names)} if name == "theta" else None,
                overwrite=True,
            )

    def append(self, theta, X, ok=None, errors=None, round=0, index=None):
        """Append a batch of simulations; return once it is durably committed.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params)
            Parameters; DataFrame columns are the parameter names (in any order
            once the store has names). An array gets the store's names, or
            ``theta_0, theta_1, ...`` on the first append.
        X : array-like of shape (n, *event_shape)
            Simulation outputs; rows where ``ok`` is False may be NaN. The first
            append fixes the dtype: float32 stays float32, anything else is float64.
        ok : array-like of bool, shape (n,), optional
            Which simulations succeeded. Default: the rows whose ``errors`` entry
            is None, or all rows.
        errors : list of (str or None), optional
            Error text of each failed row (None for rows that succeeded).
        round : int, default=0
            The TMNRE round that planned these draws.
        index : array-like of int, shape (n,), optional
            Each draw's index within its round. Default: consecutive indices after
            the largest index already stored for ``round``.

        Returns
        -------
        rows : ndarray of int64, shape (n,)
            The row numbers of the appended simulations.

        Raises
        ------
        ValueError
            If the names or event shape differ from the store's, or a
            ``(round, index)`` pair is already stored.
        PermissionError
            If the store was opened read-only.
        """
        names, theta_arr, X, ok, errors, round, index = validate_batch(
            theta, X, ok, errors, round, index)
        n = len(theta_arr)
        with self._locked("append"), ThreadPoolExecutor(len(_ARRAYS)) as pool:
            commit = self._refresh()
            names, theta_arr = check_schema(self._commit, names, theta_arr, X)
            zstore = DurableLocalStore(self.path)
            if commit["names"] is None:
                x_dtype = np.float32 if X.dtype == np.float32 else np.float64
                self._create_arrays(zstore, names, X.shape[1:], x_dtype)
                self._cache = None  # a read before the first append cached zero columns
                commit = {"format": _FORMAT, "version": _VERSION, "uid": uuid.uuid4().hex,
                          "n_rows": 0, "n_failed": 0, "errors_bytes": 0, "names": names,
                          "event_shape": list(X.shape[1:]),
                          "x_dtype": np.dtype(x_dtype).name}
                self._commit = commit
            cols = self._columns(refresh=False)
            done = cols["index"][cols["round"] == round]
            if index is None:
                first = int(done.max()) + 1 if len(done) else 0
                index = np.arange(first, first + n, dtype=np.int64)
            else:
                clash = np.intersect1d(index, done)
                if len(clash):
                    raise ValueError(
                        f"SimulationStore.append: round {round} already holds draws with index "
                        f"{clash[:10].tolist()}{' ...' if len(clash) > 10 else ''}; skip the "
                        "indices listed by done_indices(round).")
            start = commit["n_rows"]
            stop = start + n
            batch = {"theta": theta_arr, "X": X.astype(commit["x_dtype"], copy=False),
                     "ok": ok, "round": np.full(n, round, np.int64), "index": index}

            def write(name):
                # Every chunk is written, even one of fill values: a missing chunk file
                # is then damage, never rows that read as NaN.
                arr = zarr.open_array(store=zstore, path=name, mode="r+").with_config(
                    {"write_empty_chunks": True})
                # Resizing to ``stop`` also discards rows a killed writer left uncommitted.
                arr.resize((stop, *arr.shape[1:]))
                if n:
                    arr[start:stop] = batch[name]
                return arr

            # The arrays are written concurrently so that their fsyncs overlap.
            self._arrays = dict(zip(_ARRAYS, pool.map(write, _ARRAYS)))
            errors_bytes = self._write_errors(commit["errors_bytes"], start, ok, errors,
                                              zstore.unsynced_dirs)
            zstore.sync_dirs(pool)
            new = dict(commit, n_rows=stop, n_failed=commit["n_failed"] + int((~ok).sum()),
                       errors_bytes=errors_bytes)
            durable_write(self.path / _COMMIT, json.dumps(new, indent=1).encode())
            self._commit = new
            if start == 0:
                self._mark(committed=True)
            if cols["n"] == start:
                for name in ("theta", "ok", "round", "index"):
                    cols[name] = np.concatenate([cols[name], batch[name]])
                cols["n"] = stop
        return np.arange(start, stop, dtype=np.int64)

    def _write_errors(self, offset, start, ok, errors, unsynced_dirs):
        lines = b"".join(
            json.dumps({"row": start + int(i), "error": None if errors is None else errors[i]})
            .encode() + b"\n" for i in np.flatnonzero(~ok))
        path = self.path / _ERRORS
        if not lines and not path.exists():
            return offset
        existed = path.exists()
        with open(path, "r+b" if existed else "wb") as f:
            # Bytes past the committed offset are a killed writer's leftovers.
            f.truncate(offset)
            f.seek(offset)
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        if not existed:
            unsynced_dirs.add(self.path)
        return offset + len(lines)

    # ------------------------------------------------------------------ reading
    @property
    def theta(self):
        """DataFrame: the parameters of all committed rows (index = row number)."""
        cols = self._columns()
        return self._frame(cols["theta"], np.arange(cols["n"]))

    @property
    def X(self):
        """ndarray: the outputs of all committed rows (NaN rows where failed)."""
        n = self._refresh()["n_rows"]
        if self._commit["names"] is None:
            return np.empty((0,))
        return self._read("X", slice(0, n), np.flatnonzero(self._columns(refresh=False)["ok"]))

    @property
    def ok(self):
        """ndarray of bool: which committed rows succeeded."""
        return self._columns()["ok"].copy()

    @property
    def rounds(self):
        """ndarray of int64: the round of each committed row."""
        return self._columns()["round"].copy()

    @property
    def indices(self):
        """ndarray of int64: each committed row's draw index within its round."""
        return self._columns()["index"].copy()

    def _frame(self, values, rows):
        return pd.DataFrame(values, columns=self.names or [],
                            index=pd.Index(rows, name="row"))

    def _box_mask(self, theta, bounds):
        names = self.names or []
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

    def select(self, bounds=None, rounds=None):
        """The successful simulations whose theta lie in a box, optionally of some rounds.

        Only ``theta`` and ``ok`` (small, cached) decide the selection; ``X`` is
        read for the selected rows only.

        Parameters
        ----------
        bounds : DataFrame, dict or ndarray, optional
            The box: a DataFrame indexed by name with columns ``low``, ``high`` (as
            :attr:`Prior.support` or ``Truncator.bounds_``), a dict
            ``name -> (low, high)`` (names left out are unbounded) or an array of
            shape (n_params, 2). Limits are inclusive. None: no restriction.
        rounds : int or list of int, optional
            Keep only rows of these rounds.

        Returns
        -------
        theta : DataFrame of shape (n_selected, n_params)
            Index = row numbers.
        X : ndarray of shape (n_selected, *event_shape)
        rows : ndarray of int64
        """
        cols = self._columns()
        mask = cols["ok"].copy()
        if bounds is not None:
            mask &= self._box_mask(cols["theta"], bounds)
        if rounds is not None:
            wanted = np.atleast_1d(np.asarray(rounds))
            if not np.issubdtype(wanted.dtype, np.integer) or wanted.ndim != 1:
                raise ValueError(f"SimulationStore.select: rounds must be an int or a list of "
                                 f"ints; got {rounds!r}.")
            mask &= np.isin(cols["round"], wanted)
        rows = np.flatnonzero(mask).astype(np.int64)
        return self._frame(cols["theta"][rows], rows), self._read_x(rows), rows

    def _read_x(self, rows):
        if self._commit["names"] is None:
            return np.empty((0,))
        arr = self._array("X")
        if len(rows) == 0:
            return np.empty((0, *arr.shape[1:]), arr.dtype)
        if rows[-1] - rows[0] + 1 == len(rows):
            return self._read("X", slice(rows[0], rows[-1] + 1), rows)
        return self._read("X", rows, rows)

    def done_indices(self, round):
        """Indices of the draws of ``round`` already committed (succeeded or failed).

        Parameters
        ----------
        round : int

        Returns
        -------
        ndarray of int64, sorted
        """
        cols = self._columns()
        return np.sort(cols["index"][cols["round"] == round])

    def failures(self):
        """The failed simulations with their error texts.

        Returns
        -------
        DataFrame
            Columns ``row``, ``round``, ``index``, ``error`` and one per parameter.
        """
        cols = self._columns()
        rows = np.flatnonzero(~cols["ok"])
        texts = {}
        if len(rows):
            with open(self.path / _ERRORS, "rb") as f:
                data = f.read(self._commit["errors_bytes"])
            for line in data.splitlines():
                entry = json.loads(line)
                texts[entry["row"]] = entry["error"]
        frame = pd.DataFrame({
            "row": rows, "round": cols["round"][rows], "index": cols["index"][rows],
            "error": pd.Series([texts.get(int(r)) for r in rows], dtype=object),
        })
        params = pd.DataFrame(cols["theta"][rows], columns=self.names or [])
        return pd.concat([frame, params], axis=1)

    # ------------------------------------------------------------------ integrity
    def _errors_data(self):
        try:
            return (self.path / _ERRORS).read_bytes()
        except FileNotFoundError:
            return None

    def verify(self) -> StoreReport:
        """Check every committed row on disk: present, undamaged and consistent.

        Reads each chunk of the committed rows once (one chunk of ``X`` at a
        time) and checks that the chunk files the rows need exist (``theta``,
        ``round`` and ``index`` always, ``X`` for the rows marked ok), that each
        decodes and matches its CRC32C checksum (a store written before
        checksums existed can only be decoded), that the arrays' shapes and
        dtype match the commit record, that the ``ok`` array agrees with the
        commit record's count of failed rows and with ``errors.jsonl``, and that
        every row holds one draw ``(round, index)``, none stored twice.
        Nothing on disk is changed.

        Returns
        -------
        report : StoreReport
            ``report.ok`` is True when nothing was found; ``report.problems``
            names the file of each problem. Damaged chunk files must be restored
            from a backup; a lost or garbled commit record can be rebuilt with
            :meth:`repair`.

        See Also
        --------
        repair : Rebuild a lost or garbled commit record.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> from sklearn_tmnre.store import SimulationStore
        >>> store = SimulationStore(tempfile.mkdtemp() + "/sims.zarr")
        >>> _ = store.append(np.zeros((3, 2)), np.ones((3, 4)))
        >>> report = store.verify()
        >>> report.ok, report.n_rows, report.checksums
        (True, 3, True)
        """
        commit = self._refresh()
        arrays = {} if commit["names"] is None else {name: self._array(name) for name in _ARRAYS}
        return _integrity.verify(self.path, commit, arrays, self._errors_data())

    @classmethod
    def repair(cls, path, names=None) -> StoreReport:
        """Rebuild a lost or garbled commit record from the rows on disk.

        A store whose ``commit.json`` is lost or garbled refuses to open. This
        rewrites the commit record (atomically and durably, under the store's
        lock) for the rows on disk that were completely written, from row 0 up
        to the first one that is not; the report says which rows were left out
        and why. Nothing else is written and no file is deleted: rows left out
        stay on disk until the next append overwrites them, so copy the store
        first if you mean to recover them by hand.

        Parameters
        ----------
        path : str or Path
            The store directory.
        names : list of str, optional
            The parameter names, needed only for a store written before they
            were kept beside ``theta``; they must have one name per column.

        Returns
        -------
        report : StoreReport
            ``n_rows`` kept, ``n_dropped`` left out, and the reasons in ``problems``.

        Raises
        ------
        ValueError
            If ``path`` is not a store, its commit record is intact (nothing to
            repair: see :meth:`verify`), no rows were ever written, or the
            parameter names are unknown or do not fit.

        See Also
        --------
        verify : Check every committed row.

        Examples
        --------
        >>> report = SimulationStore.repair("sims.zarr")        # doctest: +SKIP
        >>> report.n_rows, report.n_dropped                     # doctest: +SKIP
        (1200, 0)
        """
        store = cls.__new__(cls)
        store._setup(path, read_only=False)
        if not (store.path.is_dir() and store._is_store_dir(empty=False)):
            raise ValueError(f"SimulationStore.repair: {str(store.path)!r} is not a "
                             "SimulationStore (no marker file); nothing was changed.")
        with store._locked("repair"):
            try:
                store._read_commit()
            except ValueError:  # lost or garbled: what repair is for
                pass
            else:  # intact, or nothing was ever committed (rows on disk are leftovers)
                raise ValueError(
                    f"SimulationStore.repair: the commit record of {str(store.path)!r} is "
                    "intact (or no row was ever committed); there is nothing to repair. "
                    "SimulationStore(path).verify() checks the rows; damaged chunk files "
                    "must be restored from a backup.")
            arrays = store._arrays_on_disk()
            names = store._names_on_disk(arrays["theta"], names)
            counts, report = _integrity.repair_commit(store.path, arrays, store._errors_data(),
                                                      names)
            commit = {"format": _FORMAT, "version": _VERSION, "uid": uuid.uuid4().hex, **counts}
            durable_write(store.path / _COMMIT, json.dumps(commit, indent=1).encode())
            store._mark(committed=True)
        return report

    def _arrays_on_disk(self):
        """The store's arrays, opened for a repair (a damaged array definition raises)."""
        arrays = {}
        for name in _ARRAYS:
            try:
                arrays[name] = zarr.open_array(store=self._zarr_store(), path=name, mode="r")
            except Exception as err:  # noqa: BLE001 - missing or garbled zarr.json alike
                raise ValueError(
                    f"SimulationStore.repair: cannot open the array {name!r} of "
                    f"{str(self.path)!r} ({type(err).__name__}: {err}); its definition "
                    f"{name}/zarr.json is missing or damaged, so the rows cannot be rebuilt. "
                    "Restore it from a backup; nothing was changed.") from err
        return arrays

    def _names_on_disk(self, theta, names):
        """The parameter names: kept beside theta, or given by the caller."""
        kept = theta.attrs.get("names")
        if names is None and kept is None:
            raise ValueError(
                f"SimulationStore.repair: {str(self.path)!r} was written before the parameter "
                f"names were kept beside theta; pass them, e.g. repair(path, names=[...]), one "
                f"per column of theta ({theta.shape[1]}).")
        if names is not None:
            names = [str(n) for n in names]
            if kept is not None and names != list(kept):
                raise ValueError(f"SimulationStore.repair: names {names} differ from the names "
                                 f"kept beside theta {list(kept)}; leave names out.")
            if len(names) != theta.shape[1] or len(set(names)) != len(names):
                raise ValueError(f"SimulationStore.repair: names must be {theta.shape[1]} "
                                 f"distinct names (one per column of theta); got {names}.")
        return list(kept if names is None else names)
