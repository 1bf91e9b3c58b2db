"""The write lock of a :class:`~sklearn_tmnre.store.SimulationStore`.

Writers (appends, attrs writes, repair) are serialised by an exclusive
``fcntl.flock`` on ``path/.lock``; within one process a handle's threads are
serialised by a re-entrant thread lock, and a handle already holding the lock
re-enters it without locking again. Without ``fcntl`` (Windows) only the
thread lock is taken: one writing process at a time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading

from ._durable import durable_mkdir
from ._store_layout import LOCK

try:
    import fcntl
except ImportError:  # Windows: no flock; one writing process at a time (see SimulationStore).
    fcntl = None

__all__ = ["WriteLock", "unless_locked"]


class WriteLock:
    """The write lock of one store handle (re-entrant).

    Parameters
    ----------
    path : Path
        The store directory.
    read_only : bool
        Whether the handle was opened read-only: it may not take the lock.
    on_take : callable
        Called with ``path`` each time the lock is taken (not when re-entered).
    """

    def __init__(self, path, read_only, on_take):
        self._path = path
        self._read_only = read_only
        self._on_take = on_take
        self._thread_lock = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def hold(self, action):
        """Hold the lock to ``action``, creating the store directory if needed."""
        if self._read_only:
            raise PermissionError(
                errno.EACCES, f"SimulationStore: cannot {action}, the store was opened read-only "
                "(mode='r'); open it with mode='a' to write", str(self._path))
        with self._thread_lock:
            if self._depth:  # already held by this handle: re-entered, not re-locked
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            durable_mkdir(self._path)
            fd = os.open(self._path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                self._on_take(self._path)
                yield
            finally:
                self._depth = 0
                os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def unless_locked(path):
    """Hold the lock of the store at ``path`` only if no writer holds it; never wait.

    Yields whether it is held: False when a writer holds it, when nothing was
    ever written (no lock file), and always without ``fcntl`` (Windows), where
    another process's writes cannot be seen.
    """
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except OSError:  # no lock file: nothing was ever written here
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked by a live writer
            held = False
        else:
            held = True
        yield held
    finally:
        os.close(fd)
