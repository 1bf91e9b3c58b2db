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

Streaming (:mod:`sklearn_tmnre._streaming`).  :meth:`SimulationStore.batches`
reads the rows a few chunks at a time, shuffled by chunk and prefetched by a
background thread, so ``TMNREEstimator.fit(store)`` trains on a campaign larger
than memory.

Integrity (:mod:`sklearn_tmnre._store_integrity`).  Every chunk ends in a CRC32C
checksum and every chunk of committed rows is on disk, so a changed or missing
chunk is an error naming its file, never other numbers or NaN;
:meth:`SimulationStore.verify` checks every committed row and
:meth:`SimulationStore.repair` rebuilds a lost commit record from the rows on
disk. Stores written before checksums existed open and read as before.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pandas as pd

from . import _store_commit as _commit
from . import _store_integrity as _integrity
from . import _store_ownership as _own
from ._store_attrs import StoreAttrs
from ._store_checks import check_open, validate_batch
from ._store_layout import ATTRS
from ._store_lock import WriteLock
from ._store_rows import CommittedRows
from ._store_select import box_mask, round_mask
from ._streaming import StreamedBatches, check_rows

__all__ = ["SimulationStore", "StoreReport"]

StoreReport = _integrity.StoreReport


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
        check_open(path, mode)
        self.path = Path(path).absolute()
        self._read_only = mode == "r"
        self._lock = WriteLock(self.path, self._read_only, on_take=_own.mark)
        self._rows = CommittedRows(self.path, self._read_only)
        if mode == "w" and self.path.exists():
            _own.remove_existing(self.path)
        _own.check_openable(self.path, self._read_only)
        self._refresh()
        if not self._read_only:
            _own.remove_leftovers(self.path)

    def __getstate__(self):
        # A pickled store reopens its path; "w" must not wipe the data again.
        return {"path": str(self.path), "mode": "r" if self._read_only else "a"}

    def __setstate__(self, state):
        self.__init__(state["path"], mode=state["mode"])

    def __repr__(self):
        self._refresh()
        return (f"SimulationStore({str(self.path)!r}, rows={len(self)}, done={self.n_done}, "
                f"failed={self.n_failed})")

    def _refresh(self):
        return self._rows.refresh()

    def _frame(self, values, rows):
        return pd.DataFrame(values, columns=self.names or [],
                            index=pd.Index(rows, name="row"))

    # ------------------------------------------------------------------ locking
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
        return self._lock.hold("lock")

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
        _own.probe_writable(self.path, nbytes)

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
        return StoreAttrs(self.path / ATTRS, self._lock)

    # ------------------------------------------------------------------ append
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
        with self._lock.hold("append"):
            return self._rows.append(names, theta_arr, X, ok, errors, round, index)

    # ------------------------------------------------------------------ reading
    @property
    def theta(self):
        """DataFrame: the parameters of all committed rows (index = row number)."""
        cols = self._rows.columns()
        return self._frame(cols["theta"], np.arange(cols["n"]))

    @property
    def X(self):
        """ndarray: the outputs of all committed rows (NaN rows where failed)."""
        return self._rows.x()

    @property
    def ok(self):
        """ndarray of bool: which committed rows succeeded."""
        return self._rows.columns()["ok"].copy()

    @property
    def rounds(self):
        """ndarray of int64: the round of each committed row."""
        return self._rows.columns()["round"].copy()

    @property
    def indices(self):
        """ndarray of int64: each committed row's draw index within its round."""
        return self._rows.columns()["index"].copy()

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
        cols = self._rows.columns()
        rows = self._selected(cols, bounds, rounds)
        return self._frame(cols["theta"][rows], rows), self._rows.read_x(rows), rows

    def _selected(self, cols, bounds, rounds):
        """The successful rows in the box ``bounds`` and of ``rounds`` (None: any)."""
        mask = cols["ok"].copy()
        if bounds is not None:
            mask &= box_mask(cols["theta"], self.names or [], bounds)
        if rounds is not None:
            mask &= round_mask(cols["round"], rounds)
        return np.flatnonzero(mask).astype(np.int64)

    def batches(self, batch_size, bounds=None, rounds=None, rows=None, shuffle=True,
                random_state=None, chunks=4):
        """Stream the successful simulations in batches, a few chunks in memory at a time.

        For campaigns larger than memory (``TMNREEstimator.fit(store)`` trains
        this way). Each pass visits the stored chunks of ``X`` that hold the
        wanted rows in a random order, reads ``chunks`` of them at a time,
        shuffles their rows and cuts batches; a background thread reads the
        next chunks meanwhile. Every row comes once per pass. The rows are
        those committed when this is called.

        Parameters
        ----------
        batch_size : int
            Rows per batch (a last single row joins the batch before it).
        bounds, rounds : optional
            Keep only rows in this box and of these rounds, as :meth:`select`.
        rows : array-like of int, optional
            Keep only these rows (e.g. a split of the rows ``select`` returns);
            they must be committed successful rows.
        shuffle : bool, default=True
            Random chunk order and row order within the chunks read together;
            False: the stored order.
        random_state : int, RandomState or None
            Seeds the order of the passes (each pass draws a new one).
        chunks : int, default=4
            Chunks read and shuffled together (about 2 MiB each).

        Returns
        -------
        iterable of (theta, X, rows)
            Each pass (``for theta, X, rows in batches``) yields ``theta`` (an
            ndarray (b, n_params), columns in :attr:`names` order), ``X``
            (b, *event_shape) and the ``rows``. ``len()`` counts the batches of
            a pass; its ``peak_rows`` attribute counts the most rows of ``X``
            held at once.

        Examples
        --------
        >>> for theta, X, rows in store.batches(256, random_state=0):  # doctest: +SKIP
        ...     model.partial_fit(X, theta)
        """
        cols = self._rows.columns()
        wanted = self._selected(cols, bounds, rounds)
        if rows is not None:
            wanted = np.intersect1d(wanted, check_rows(rows, cols["ok"]))
        chunk_rows = self._rows.array("X").chunks[0] if len(wanted) else 1
        return StreamedBatches(self._rows.read_x, cols["theta"], wanted, chunk_rows,
                               batch_size, shuffle, random_state, chunks)

    def done_indices(self, round):
        """Indices of the draws of ``round`` already committed (succeeded or failed).

        Parameters
        ----------
        round : int

        Returns
        -------
        ndarray of int64, sorted
        """
        cols = self._rows.columns()
        return np.sort(cols["index"][cols["round"] == round])

    def failures(self):
        """The failed simulations with their error texts.

        Returns
        -------
        DataFrame
            Columns ``row``, ``round``, ``index``, ``error`` and one per parameter.
        """
        return self._rows.failures()

    # ------------------------------------------------------------------ integrity
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
        return self._rows.verify()

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
        path = Path(path).absolute()
        if not (path.is_dir() and _own.is_store_dir(path, empty=False)):
            raise ValueError(f"SimulationStore.repair: {str(path)!r} is not a "
                             "SimulationStore (no marker file); nothing was changed.")
        with WriteLock(path, read_only=False, on_take=_own.mark).hold("repair"):
            return _commit.rebuild(path, names)
