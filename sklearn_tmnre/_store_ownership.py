"""What a :class:`~sklearn_tmnre.store.SimulationStore` owns on disk.

A directory is taken for a store only with its marker (``sklearn_tmnre.json``)
or, for stores written before the marker existed, a commit record of this
format. The store never writes into, nor deletes, a folder it did not create:
``mode="w"`` refuses to delete one that holds anything the store did not
write, and only the store's own temporary files (those :mod:`sklearn_tmnre._durable` writes
and the probe of :meth:`SimulationStore.check_writable`) are ever removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

from ._durable import durable_mkdir, durable_write
from ._store_attrs import read_json
from ._store_layout import ARRAYS, ATTRS, COMMIT, ERRORS, FORMAT, LOCK, MARKER, VERSION
from ._store_lock import unless_locked

__all__ = ["check_openable", "is_store_dir", "mark", "probe_writable", "remove_existing",
           "remove_leftovers"]

# Every entry a store writes at its top level.
_OWN = frozenset({COMMIT, ERRORS, ATTRS, LOCK, MARKER, "zarr.json", *ARRAYS})
# The names _durable gives its temporary files (".<name>.<uuid4 hex>.tmp") and the probe
# of SimulationStore.check_writable (".probe-<uuid4 hex>"): nothing else is ever removed.
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp|\.probe-[0-9a-f]{32}")


def _own_entry(name):
    """Whether a top-level name is one the store writes (temporary files included)."""
    return (name in _OWN or name.startswith(".probe-")
            or (name.startswith(".") and name.endswith(".tmp")))


def is_store_dir(path, empty=True):
    """Whether the existing directory holds a store (or is empty, with ``empty``)."""
    # A probe left by a check_writable that was killed does not make a directory foreign.
    entries = {p.name for p in path.iterdir() if not p.name.startswith(".probe-")}
    if not entries:
        return empty
    if all(name == LOCK or _own_entry(name) and name.startswith(".") for name in entries):
        return True  # a first write killed before its marker: a lock and temporary files
    marker = read_json(path / MARKER)
    if marker is not None:
        return isinstance(marker, dict) and marker.get("format") == FORMAT
    # A store written before the marker existed: its commit record says what it is.
    commit = read_json(path / COMMIT)
    return isinstance(commit, dict) and commit.get("format") == FORMAT


def check_openable(path, read_only):
    """Refuse to open ``path``: a file, a foreign directory, or no store to read."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"SimulationStore: path {str(path)!r} exists and is not a "
                         "directory; give a directory path such as 'sims.zarr'.")
    if path.is_dir() and not is_store_dir(path):
        raise ValueError(
            f"SimulationStore: {str(path)!r} is a non-empty directory that is not a "
            "SimulationStore; give a new or empty directory."
        )
    if read_only and not (path.is_dir() and is_store_dir(path, empty=False)):
        raise FileNotFoundError(
            errno.ENOENT, "SimulationStore: no store to open read-only (mode='r'); use "
            "mode='a' to create one", str(path))


def remove_existing(path):
    """Delete the store at ``path`` (``mode="w"``), refusing anything it did not write."""
    if not (path.is_dir() and is_store_dir(path)):
        raise ValueError(
            f"SimulationStore: mode='w' would delete {str(path)!r}, which is not a "
            "SimulationStore; remove it yourself or choose another path."
        )
    foreign = sorted(p.name for p in path.iterdir() if not _own_entry(p.name))
    if foreign:
        raise ValueError(
            f"SimulationStore: mode='w' would delete {str(path)!r}, which also holds "
            f"files the store did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); move them or choose another path."
        )
    shutil.rmtree(path)


def mark(path, committed=False):
    """Write the marker that makes ``path`` a store (under the lock).

    ``committed`` records that a commit record was written: from then on a
    missing one is damage, never an empty store to start afresh.
    """
    # A store written before the marker existed has committed rows already.
    committed = committed or (path / COMMIT).exists()
    marker = read_json(path / MARKER)
    if marker is None or (committed and not marker.get("committed")):
        marker = {"format": FORMAT, "version": VERSION, "id": uuid.uuid4().hex,
                  **(marker or {}), "committed": committed}
        durable_write(path / MARKER, json.dumps(marker).encode())


def probe_writable(path, nbytes):
    """Create ``path`` if needed, then write, fsync and delete a probe of ``nbytes``."""
    probe = path / f".probe-{uuid.uuid4().hex}"
    try:
        durable_mkdir(path)
        with open(probe, "wb") as f:
            f.write(bytes(int(nbytes)))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OSError(
            e.errno or errno.EIO,
            f"SimulationStore: cannot write simulations to this path ({e.strerror or e}); "
            "make sure the directory is writable and the disk has free space",
            str(path)) from e
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def remove_leftovers(path):
    """Delete the temporary files left by a writer killed mid-write.

    Only while no writer holds the lock (their temporary files are live), and
    never without ``flock`` (Windows), where another process's writes cannot
    be seen. Only regular files whose name matches the store's own temporary
    names, at the top of ``path`` or inside its arrays' folders, are removed.
    """
    with unless_locked(path) as held:
        if not held:
            return
        with contextlib.suppress(OSError):  # not ours to delete: leave them
            for folder, name in _files(path, ARRAYS):
                entry = folder / name
                if _TEMPORARY.fullmatch(name) and stat.S_ISREG(os.lstat(entry).st_mode):
                    entry.unlink(missing_ok=True)


def _files(root, arrays):
    """(folder, name) of the entries at the top of ``root`` and of the files in its arrays."""
    yield from ((root, name) for name in os.listdir(root))
    for array in arrays:
        top = root / array
        if top.is_dir() and not top.is_symlink():
            for folder, _, files in os.walk(top):  # links to folders are not followed
                yield from ((Path(folder), name) for name in files)
