"""Atomic, durable file writes: the building blocks of the crash-safe store.

A file is replaced by writing a temporary file beside it, ``fsync``-ing it and
renaming it into place (``os.replace`` is atomic on POSIX and Windows), then
``fsync``-ing the directory so the rename itself survives a power cut. A reader
therefore sees either the old or the new file, never a torn one.
:class:`DurableLocalStore` applies this to every chunk zarr writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

from zarr.storage import LocalStore

__all__ = ["DurableLocalStore", "durable_mkdir", "durable_write", "fsync_dir"]


def fsync_dir(path):
    """Persist the entries of directory ``path`` (a no-op where directories cannot be synced)."""
    # Persists the directory entry of a file just created or renamed into ``path``;
    # directories cannot be opened for fsync on Windows.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_mkdir(path, synced=None):
    """Create directory ``path`` and its parents, syncing each new entry."""
    path = Path(path)
    if path.is_dir():
        return
    durable_mkdir(path.parent, synced)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    _sync_dir_later(path.parent, synced)


def _sync_dir_later(path, synced):
    # ``synced`` collects directories whose fsync is deferred to one pass before the
    # commit (fsync each directory once, not once per file); None: fsync now.
    if synced is None:
        fsync_dir(path)
    else:
        synced.add(path)


def durable_write(path, data, synced=None):
    """Replace ``path`` by ``data`` atomically and durably (temp file, fsync, rename)."""
    path = Path(path)
    durable_mkdir(path.parent, synced)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir_later(path.parent, synced)


class DurableLocalStore(LocalStore):
    """A zarr ``LocalStore`` whose every write is fsync'd before it is renamed into place.

    The directories of the renamed files are collected in ``unsynced_dirs``; the
    caller fsyncs them (:meth:`sync_dirs`) before it commits.
    """

    def __init__(self, root, *, read_only=False):
        super().__init__(root, read_only=read_only)
        self.unsynced_dirs = set()

    async def set(self, key, value):
        self._check_writable()
        await asyncio.to_thread(durable_write, self.root / key, value.as_buffer_like(),
                                self.unsynced_dirs)

    def set_sync(self, key, value):
        self._check_writable()
        durable_write(self.root / key, value.as_buffer_like(), self.unsynced_dirs)

    def sync_dirs(self, pool):
        list(pool.map(fsync_dir, self.unsynced_dirs))
        self.unsynced_dirs.clear()
