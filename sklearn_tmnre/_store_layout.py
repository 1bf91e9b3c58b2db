"""The on-disk layout of a :class:`~sklearn_tmnre.store.SimulationStore`.

Owns the names of the files and arrays a store writes, the format it records,
and the zarr arrays themselves: their shapes, dtypes, fill values, dimension
names, chunking and codecs (the codecs, with their checksums, come from
:mod:`sklearn_tmnre._store_integrity`). The layout is described in
:mod:`sklearn_tmnre.store`.

Chunks of about 2 MiB keep a rewrite of the last, partly filled chunk cheap
while keeping the file count of a large store low; the row cap bounds that
rewrite for arrays with tiny rows (``ok``, ``round``, ``index``).
"""

from __future__ import annotations

import numpy as np
import zarr

from . import _store_integrity as _integrity
from ._durable import DurableLocalStore

__all__ = ["ARRAYS", "ATTRS", "COMMIT", "ERRORS", "FORMAT", "LOCK", "MARKER", "VERSION",
           "chunk_rows", "create_arrays", "open_array"]

FORMAT = "sklearn_tmnre.SimulationStore"
VERSION = 1
COMMIT = "commit.json"
ERRORS = "errors.jsonl"
ATTRS = "attrs.json"
LOCK = ".lock"
MARKER = "sklearn_tmnre.json"
ARRAYS = ("theta", "X", "ok", "round", "index")
CHUNK_BYTES = 2 << 20
MAX_CHUNK_ROWS = 16384


def chunk_rows(row_bytes):
    """Rows per chunk of an array whose rows take ``row_bytes``: a power of two."""
    rows = max(1, CHUNK_BYTES // max(1, row_bytes))
    return int(min(MAX_CHUNK_ROWS, 1 << (rows.bit_length() - 1)))


def create_arrays(zstore, names, event_shape, x_dtype):
    """Create the group and its empty arrays (replacing any); return them by name."""
    zarr.open_group(store=zstore, mode="a")
    specs = {
        "theta": ((len(names),), np.float64, np.nan, ("param",)),
        "X": (event_shape, x_dtype, np.nan, tuple(f"event_{i}"
                                                   for i in range(len(event_shape)))),
        "ok": ((), bool, False, ()),
        "round": ((), np.int64, -1, ()),
        "index": ((), np.int64, -1, ()),
    }
    arrays = {}
    for name, (shape, dtype, fill, dims) in specs.items():
        row_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        arrays[name] = zarr.create_array(
            store=zstore, name=name, shape=(0, *shape), dtype=dtype,
            chunks=(chunk_rows(row_bytes), *shape), fill_value=fill,
            compressors=_integrity.compressors(dtype), dimension_names=("row", *dims),
            # The names also live here, so repair() can rebuild a lost commit record.
            attributes={"names": list(names)} if name == "theta" else None,
            overwrite=True,
        )
    return arrays


def open_array(path, name, read_only):
    """The array ``name`` of the store at ``path``, read-only or for writing."""
    return zarr.open_array(store=DurableLocalStore(path, read_only=read_only), path=name,
                           mode="r" if read_only else "r+")
