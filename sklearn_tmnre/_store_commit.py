"""The commit record of a :class:`~sklearn_tmnre.store.SimulationStore` and the write path.

``commit.json`` says which rows exist: readers see rows ``< n_rows`` only. It
also records the parameter names, the event shape, the dtype of ``X``, the
count of failed rows and the committed length of ``errors.jsonl`` (one JSON
line per failed row with its error text).

An append, under the store's lock, resizes the arrays and writes the new rows
(:func:`write_rows`), appends the error lines, and only then commits by
atomically replacing ``commit.json`` (:func:`commit_rows`: write a temporary
file, ``fsync``, ``os.replace``, ``fsync`` the directory). A process killed at
any point leaves either the old or the new commit and never a half-written
batch; the next writer overwrites the uncommitted leftovers.

A lost or garbled commit record is refused, never taken for an empty store;
:func:`rebuild` writes a new one from the rows on disk
(:meth:`SimulationStore.repair`).
"""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import zarr

from . import _store_integrity as _integrity
from ._durable import durable_write
from ._store_attrs import read_json
from ._store_layout import ARRAYS, COMMIT, ERRORS, FORMAT, MARKER, VERSION, open_array
from ._store_ownership import mark

__all__ = ["commit_rows", "error_texts", "errors_data", "load_commit", "new_commit",
           "read_commit", "rebuild", "write_rows"]

_EMPTY = {"n_rows": 0, "n_failed": 0, "errors_bytes": 0, "names": None,
          "event_shape": None, "x_dtype": None, "uid": None}


def read_commit(path):
    """The commit record (None if there is none), refusing a lost or garbled one."""
    fix = (f"rebuild it from the rows on disk with SimulationStore.repair(path), which keeps "
           f"every intact row and reports what it drops, or restore {COMMIT} from a backup")
    try:
        commit = read_json(path / COMMIT)
    except ValueError as err:
        raise ValueError(f"SimulationStore: {str(path / COMMIT)!r} is damaged "
                         f"({err.__cause__}); {fix}.") from err
    if commit is None and (read_json(path / MARKER) or {}).get("committed"):
        raise ValueError(
            f"SimulationStore: {str(path)!r} has lost its commit record "
            f"({COMMIT}) although rows were committed, and was left as it is; {fix}.")
    return commit


def load_commit(path):
    """The commit record, or that of an empty store; refuse one of another format."""
    commit = read_commit(path)
    if commit is None:
        return dict(_EMPTY)
    if commit.get("format") != FORMAT or commit.get("version", 0) > VERSION:
        raise ValueError(f"SimulationStore: {str(path / COMMIT)!r} was not written by "
                         f"this version of {FORMAT}.")
    return commit


def new_commit(**fields):
    """A commit record of this format with a new ``uid`` (one per created store)."""
    return {"format": FORMAT, "version": VERSION, "uid": uuid.uuid4().hex, **fields}


def _write(path, commit):
    durable_write(path / COMMIT, json.dumps(commit, indent=1).encode())


def write_rows(zstore, start, batch, pool):
    """Write ``batch`` (arrays by name) from row ``start``; return the written arrays."""
    n = len(batch["ok"])
    stop = start + n

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
    return dict(zip(ARRAYS, pool.map(write, ARRAYS)))


def commit_rows(path, zstore, commit, ok, errors, pool):
    """Append the error lines of written rows, then commit them; return the new record."""
    start = commit["n_rows"]
    errors_bytes = _write_errors(path, commit["errors_bytes"], start, ok, errors,
                                 zstore.unsynced_dirs)
    zstore.sync_dirs(pool)
    new = dict(commit, n_rows=start + len(ok), n_failed=commit["n_failed"] + int((~ok).sum()),
               errors_bytes=errors_bytes)
    _write(path, new)
    if start == 0:
        mark(path, committed=True)
    return new


def _write_errors(path, offset, start, ok, errors, unsynced_dirs):
    lines = b"".join(
        json.dumps({"row": start + int(i), "error": None if errors is None else errors[i]})
        .encode() + b"\n" for i in np.flatnonzero(~ok))
    file = path / ERRORS
    if not lines and not file.exists():
        return offset
    existed = file.exists()
    with open(file, "r+b" if existed else "wb") as f:
        # Bytes past the committed offset are a killed writer's leftovers.
        f.truncate(offset)
        f.seek(offset)
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())
    if not existed:
        unsynced_dirs.add(path)
    return offset + len(lines)


def errors_data(path):
    """The content of ``errors.jsonl`` (None if there is none)."""
    try:
        return (path / ERRORS).read_bytes()
    except FileNotFoundError:
        return None


def error_texts(path, errors_bytes):
    """The error text of each failed row in the committed part of ``errors.jsonl``."""
    with open(path / ERRORS, "rb") as f:
        data = f.read(errors_bytes)
    texts = {}
    for line in data.splitlines():
        entry = json.loads(line)
        texts[entry["row"]] = entry["error"]
    return texts


# ---------------------------------------------------------------------- repair
def rebuild(path, names):
    """Rebuild a lost or garbled commit record (under the lock); return the report."""
    try:
        read_commit(path)
    except ValueError:  # lost or garbled: what repair is for
        pass
    else:  # intact, or nothing was ever committed (rows on disk are leftovers)
        raise ValueError(
            f"SimulationStore.repair: the commit record of {str(path)!r} is "
            "intact (or no row was ever committed); there is nothing to repair. "
            "SimulationStore(path).verify() checks the rows; damaged chunk files "
            "must be restored from a backup.")
    arrays = _arrays_on_disk(path)
    names = _names_on_disk(path, arrays["theta"], names)
    counts, report = _integrity.repair_commit(path, arrays, errors_data(path), names)
    _write(path, new_commit(**counts))
    mark(path, committed=True)
    return report


def _arrays_on_disk(path):
    """The store's arrays, opened for a repair (a damaged array definition raises)."""
    arrays = {}
    for name in ARRAYS:
        try:
            arrays[name] = open_array(path, name, read_only=True)
        except Exception as err:  # noqa: BLE001 - missing or garbled zarr.json alike
            raise ValueError(
                f"SimulationStore.repair: cannot open the array {name!r} of "
                f"{str(path)!r} ({type(err).__name__}: {err}); its definition "
                f"{name}/zarr.json is missing or damaged, so the rows cannot be rebuilt. "
                "Restore it from a backup; nothing was changed.") from err
    return arrays


def _names_on_disk(path, theta, names):
    """The parameter names: kept beside theta, or given by the caller."""
    kept = theta.attrs.get("names")
    if names is None and kept is None:
        raise ValueError(
            f"SimulationStore.repair: {str(path)!r} was written before the parameter "
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
