"""The user metadata of a :class:`~sklearn_tmnre.store.SimulationStore` (``store.attrs``).

A JSON file beside the arrays; every change re-reads it under the store's
lock and replaces it atomically, so concurrent writers never lose a key.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping

import numpy as np

from ._durable import durable_write

__all__ = ["StoreAttrs", "read_json"]


def _json_default(obj):
    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(
        f"SimulationStore.attrs: values must be JSON serialisable (numbers, strings, lists, "
        f"dicts, numpy arrays); got {type(obj).__name__}."
    )


def read_json(path):
    """The parsed JSON file at ``path``, or None if there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return json.loads(data)
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"SimulationStore: {str(path)!r} is damaged ({err}); the store cannot "
                         "be read safely. Restore the file from a backup, or copy the store "
                         "elsewhere before changing anything.") from err


class StoreAttrs(MutableMapping):
    """JSON metadata of a store; every write re-reads, modifies and atomically replaces it."""

    def __init__(self, path, lock):
        self._path = path
        self._lock = lock  # the store's WriteLock

    def _read(self):
        return read_json(self._path) or {}

    def __getitem__(self, key):
        return self._read()[key]

    def __iter__(self):
        return iter(self._read())

    def __len__(self):
        return len(self._read())

    def __setitem__(self, key, value):
        self.update({key: value})

    def __delitem__(self, key):
        with self._lock.hold("set attrs"):
            attrs = self._read()
            del attrs[key]
            self._write(attrs)

    def update(self, other=(), /, **kwargs):
        """Set several keys in one atomic write."""
        new = dict(other, **kwargs)
        if not all(isinstance(k, str) for k in new):
            raise TypeError("SimulationStore.attrs: keys must be strings (JSON object keys).")
        payload = json.dumps(new, default=_json_default)  # fail before taking the lock
        with self._lock.hold("set attrs"):
            attrs = self._read()
            attrs.update(json.loads(payload))
            self._write(attrs)

    def _write(self, attrs):
        durable_write(self._path,
                       json.dumps(attrs, default=_json_default, indent=1).encode())

    def __repr__(self):
        return f"SimulationStore.attrs({self._read()!r})"
