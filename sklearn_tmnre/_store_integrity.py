"""Integrity of a :class:`~sklearn_tmnre.store.SimulationStore`: checksums, verify, repair.

A flipped bit, a torn copy or a deleted file must never read as data. The store
defends its rows in three ways:

* **Checksums.** Every chunk of a store created by this version ends in a
  CRC32C of its encoded bytes (zarr's standard ``crc32c`` codec, so zarr, dask
  and xarray check it too). A chunk whose bytes changed fails to decode and the
  read raises, naming the file, instead of returning other numbers. Stores
  written before checksums existed still open; their chunks cannot be checked.
* **No silent fill values.** zarr reads a missing chunk as the fill value (NaN
  for ``theta`` and ``X``). Every chunk holding committed rows is therefore
  written, even one equal to the fill value, and a read needs the chunks of
  the rows it returns: ``theta``, ``round`` and ``index`` always, ``X`` for the
  rows marked ok. The ``ok`` array is checked against the commit record's count
  of failed rows (a lost ``ok`` chunk would turn successes into failures).
* **Verify and repair.** :func:`verify` reads every committed chunk once and
  lists each problem with its file; :func:`repair_commit` rebuilds a lost commit
  record from the longest run of rows that were completely written.

Scans read one chunk at a time, so their memory is one chunk of ``X`` plus the
small columns (``theta``, ``ok``, ``round``, ``index``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

__all__ = ["StoreReport", "check_failed_count", "compressors", "has_checksums", "read_rows",
           "repair_commit", "verify"]

_COLUMNS = ("theta", "ok", "round", "index")
_RESTORE = ("run SimulationStore.verify() to list every damaged file and restore those files "
            "from a backup (copy the store elsewhere before changing anything)")


@dataclass(frozen=True)
class StoreReport:
    """What :meth:`SimulationStore.verify` or :meth:`SimulationStore.repair` found.

    Attributes
    ----------
    path : str
        The store directory.
    n_rows : int
        Rows checked (verify) or kept in the rebuilt commit record (repair).
    n_dropped : int
        Rows on disk past ``n_rows`` that repair left out of the commit record
        (always 0 for verify). Their files stay on disk until the next append
        overwrites them: copy the store first to keep them.
    checksums : bool
        Whether the chunks carry CRC32C checksums. Stores written before
        checksums existed do not, and a changed bit in them cannot be detected.
    problems : tuple of str
        One line per problem, naming the file (relative to ``path``).
    """

    path: str
    n_rows: int
    n_dropped: int
    checksums: bool
    problems: tuple

    @property
    def ok(self):
        """bool: whether no problem was found."""
        return not self.problems

    def __str__(self):
        lines = [f"SimulationStore {self.path}: {self.n_rows} rows"
                 + (f", {self.n_dropped} dropped" if self.n_dropped else "")
                 + ("" if self.checksums else " (chunks without checksums)")
                 + (", no problems" if self.ok else f", {len(self.problems)} problems:")]
        return "\n".join(lines + [f"  {p}" for p in self.problems])


def compressors(dtype):
    """The bytes-to-bytes codecs of a new array of ``dtype``: compression, then a CRC32C."""
    if np.dtype(dtype).kind == "f":
        packer = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    else:
        packer = ZstdCodec(level=0)  # zarr's default compressor for the other dtypes
    return [packer, Crc32cCodec()]


def has_checksums(arr):
    """Whether the chunks of zarr array ``arr`` end in a CRC32C."""
    return any(isinstance(codec, Crc32cCodec) for codec in arr.metadata.codecs)


def _chunk_file(name, arr, i):
    """The chunk file holding chunk ``i`` along the row axis, relative to the store."""
    # Chunks span whole rows, so every other chunk coordinate is 0.
    return f"{name}/{arr.metadata.encode_chunk_key((int(i),) + (0,) * (arr.ndim - 1))}"


def _chunk_rows(arr, i, n):
    step = arr.chunks[0]
    return int(i) * step, min((int(i) + 1) * step, n)


def _decode_error(root, name, arr, ids):
    """The first chunk among ``ids`` that fails to decode, with the reason (or None)."""
    for i in ids:
        lo, hi = _chunk_rows(arr, i, arr.shape[0])
        try:
            arr[lo:hi]
        except OSError:
            raise  # the disk or the permissions, not the bytes: the caller's error stands
        except Exception as err:  # noqa: BLE001 - any decode failure is damage
            return _chunk_file(name, arr, i), lo, hi, _reason(err)
    return None


def _reason(err):
    text = str(err)
    if "checksum" in text.lower():
        return "its checksum does not match its bytes (the file was changed)"
    return f"it cannot be decoded ({type(err).__name__}: {text[:200]})"


def read_rows(root, name, arr, rows, required):
    """Rows of array ``name``, refusing a missing or damaged chunk.

    Parameters
    ----------
    root : Path
        The store directory.
    name : str
        The array's name in the store.
    arr : zarr.Array
    rows : slice or ndarray of int
        A slice, or sorted row numbers (read with an orthogonal selection).
    required : ndarray of int
        The rows whose chunks must exist (a missing chunk reads as its fill value).

    Raises
    ------
    ValueError
        Naming the missing or damaged chunk file and the rows it holds.
    """
    step = arr.chunks[0]
    for i in np.unique(np.asarray(required, dtype=np.int64) // step):
        rel = _chunk_file(name, arr, i)
        if not (root / rel).exists():
            lo, hi = _chunk_rows(arr, i, arr.shape[0])
            raise ValueError(f"SimulationStore: {str(root / rel)!r} is missing, but it holds "
                             f"committed rows {lo}-{hi - 1} of {name!r}, which would read as "
                             f"fill values; the store is damaged: {_RESTORE}.")
    try:
        if isinstance(rows, slice):
            return arr[rows]
        return arr.get_orthogonal_selection((rows,) + (slice(None),) * (arr.ndim - 1))
    except Exception as err:
        index = np.arange(arr.shape[0])[rows] if isinstance(rows, slice) else rows
        found = _decode_error(root, name, arr, np.unique(index // step))
        if found is None:
            raise
        rel, lo, hi, why = found
        raise ValueError(f"SimulationStore: {str(root / rel)!r} (rows {lo}-{hi - 1} of "
                         f"{name!r}) is damaged: {why}; {_RESTORE}.") from err


def check_failed_count(root, arr, ok, n_failed):
    """Refuse an ``ok`` column whose failures disagree with the commit record's count."""
    marked = int((~ok).sum())
    if marked == n_failed:
        return
    step = arr.chunks[0]
    missing = [rel for rel in (_chunk_file("ok", arr, i) for i in range(-(-len(ok) // step)))
               if not (root / rel).exists()]
    raise ValueError(
        f"SimulationStore: the ok array of {str(root)!r} marks {marked} rows failed but the "
        f"commit record counts {n_failed}"
        + (f"; missing chunk files: {', '.join(missing[:5])}" if missing else "")
        + f". The store is damaged: {_RESTORE}.")


# ---------------------------------------------------------------------- scans
@dataclass
class _Scan:
    values: dict       # theta, ok, round, index of rows < n (fill values where unreadable)
    unreadable: dict   # name -> bool (n,): the row's chunk is missing or damaged
    x_empty: np.ndarray  # X row all fill values (NaN) or unreadable
    chunks: list       # (name, rel, lo, hi, "missing" or a reason it is damaged)


def _scan(root, arrays, n):
    """Read rows ``< n`` of every array, one chunk at a time."""
    values, unreadable, chunks = {}, {}, []
    x_empty = np.ones(n, bool)
    for name in (*_COLUMNS, "X"):
        arr = arrays[name]
        if name != "X":
            values[name] = np.full((n, *arr.shape[1:]), arr.fill_value, arr.dtype)
        unreadable[name] = np.zeros(n, bool)
        for i in range(-(-n // arr.chunks[0])):
            lo, hi = _chunk_rows(arr, i, n)
            rel = _chunk_file(name, arr, i)
            if not (root / rel).exists():
                chunks.append((name, rel, lo, hi, "missing"))
                # A missing ok chunk reads as failures, which errors.jsonl then contradicts
                # unless they are failures (an old store skipped chunks of fill values).
                unreadable[name][lo:hi] = name != "ok"
                continue
            try:
                block = arr[lo:hi]
            except OSError:
                raise
            except Exception as err:  # noqa: BLE001 - any decode failure is damage
                chunks.append((name, rel, lo, hi, _reason(err)))
                unreadable[name][lo:hi] = True
                continue
            if name == "X":
                x_empty[lo:hi] = np.isnan(block.reshape(hi - lo, -1)).all(axis=1)
            else:
                values[name][lo:hi] = block
    return _Scan(values, unreadable, x_empty, chunks)


def _error_lines(data):
    """(row, end offset) of each complete line of ``errors.jsonl``, up to a torn one."""
    lines, offset = [], 0
    for line in data.splitlines(keepends=True):
        try:
            row = int(json.loads(line)["row"])
        except (ValueError, KeyError, TypeError):
            break
        if not line.endswith(b"\n"):
            break
        offset += len(line)
        lines.append((row, offset))
    return lines


def _array_problems(commit, arrays):
    """Arrays whose shape or dtype disagree with the commit record."""
    n = commit["n_rows"]
    trailing = {"theta": (len(commit["names"]),), "X": tuple(commit["event_shape"]),
                "ok": (), "round": (), "index": ()}
    problems = []
    for name, arr in arrays.items():
        if arr.shape[0] < n or arr.shape[1:] != trailing[name]:
            problems.append(f"{name}/zarr.json: shape {arr.shape}, but commit.json records "
                            f"{n} rows of shape {trailing[name]}")
    if np.dtype(arrays["X"].dtype).name != commit["x_dtype"]:
        problems.append(f"X/zarr.json: dtype {arrays['X'].dtype}, but commit.json records "
                        f"{commit['x_dtype']}")
    return problems


def verify(root, commit, arrays, errors):
    """Check every committed row of a store; see :meth:`SimulationStore.verify`.

    Parameters
    ----------
    root : Path
    commit : dict
        The commit record.
    arrays : dict of zarr.Array
        The store's arrays by name (empty before the first append).
    errors : bytes or None
        The content of ``errors.jsonl`` (None if there is none).

    Returns
    -------
    StoreReport
    """
    n = commit["n_rows"]
    if not arrays:
        return StoreReport(str(root), 0, 0, True, ())
    checksums = all(has_checksums(arr) for arr in arrays.values())
    problems = _array_problems(commit, arrays)
    if problems:
        return StoreReport(str(root), n, 0, checksums, tuple(problems))
    scan = _scan(root, arrays, n)
    ok = scan.values["ok"]
    logged, errors_ok = _committed_error_rows(errors or b"", commit["errors_bytes"])
    if not errors_ok:
        problems.append(f"errors.jsonl: shorter than the {commit['errors_bytes']} bytes "
                        "commit.json records, or not one JSON line per failed row")
    for name, rel, lo, hi, why in scan.chunks:
        if why != "missing":
            problems.append(f"{rel}: damaged, {why} (rows {lo}-{hi - 1})")
        elif name == "X" and ok[lo:hi].any():
            problems.append(f"{rel}: missing, but rows {lo}-{hi - 1} include rows marked ok "
                            "(they would read as NaN)")
        elif name == "ok" and not np.isin(np.arange(lo, hi), logged).all():
            problems.append(f"{rel}: missing, but rows {lo}-{hi - 1} include successful rows "
                            "(they would read as failed)")
        elif name in ("theta", "round", "index"):
            problems.append(f"{rel}: missing (rows {lo}-{hi - 1} are committed)")
    ok_readable = ~scan.unreadable["ok"]
    if ok_readable.all() and int((~ok).sum()) != commit["n_failed"]:
        problems.append(f"commit.json: counts {commit['n_failed']} failed rows, but the ok "
                        f"array marks {int((~ok).sum())}")
    unlogged = np.setdiff1d(np.flatnonzero(~ok & ok_readable), logged)
    if errors_ok and len(unlogged):
        problems.append(f"errors.jsonl: no line for the failed rows {unlogged[:10].tolist()}")
    problems += _draw_problems(scan.values, ~np.any([scan.unreadable[c] for c in _COLUMNS],
                                                    axis=0))
    return StoreReport(str(root), n, 0, checksums, tuple(problems))


def _committed_error_rows(data, errors_bytes):
    """The rows listed in the committed part of errors.jsonl, and whether it is intact."""
    lines = _error_lines(data[:errors_bytes])
    intact = len(data) >= errors_bytes and (lines[-1][1] if lines else 0) == errors_bytes
    return np.array([row for row, _ in lines], dtype=np.int64), intact


def _draw_problems(values, readable):
    """Rows without a (round, index), and draws stored twice."""
    rows = np.flatnonzero(readable)
    rounds, indices = values["round"][rows], values["index"][rows]
    problems = []
    unset = rows[(rounds < 0) | (indices < 0)]
    if len(unset):
        problems.append(f"round, index: rows {unset[:10].tolist()} hold no draw (-1)")
    pairs = np.stack([rounds, indices], axis=1)
    _, first, counts = np.unique(pairs, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        twice = [tuple(int(v) for v in pairs[f]) for f in first[counts > 1][:10]]
        problems.append(f"round, index: the draws (round, index) {twice} are stored twice")
    return problems


def repair_commit(root, arrays, errors, names):
    """The commit record of the rows on disk that were completely written.

    Rows are kept from row 0 up to the first row that is not intact: one whose
    chunks of ``theta``, ``ok``, ``round`` or ``index`` are missing or damaged,
    that holds no draw (``round`` or ``index`` -1) or no ``theta`` (all NaN),
    a draw already kept, a successful row whose ``X`` chunk is missing or
    damaged or whose ``X`` is all NaN, or a failed row without its line in
    ``errors.jsonl`` (how the rows of an append killed midway look).

    Parameters
    ----------
    root : Path
    arrays : dict of zarr.Array
    errors : bytes or None
        The content of ``errors.jsonl``.
    names : list of str
        The parameter names.

    Returns
    -------
    commit : dict
        The rebuilt record's counts: ``n_rows``, ``n_failed``, ``errors_bytes``,
        ``event_shape`` and ``x_dtype``.
    report : StoreReport
    """
    n_max = min(arr.shape[0] for arr in arrays.values())
    scan = _scan(root, arrays, n_max)
    lines = _error_lines(errors or b"")
    logged = np.zeros(n_max, bool)
    logged[[row for row, _ in lines if 0 <= row < n_max]] = True
    v = scan.values
    unreadable = np.any([scan.unreadable[c] for c in _COLUMNS], axis=0)
    reasons = {
        "its theta, ok, round or index chunk is missing or damaged": unreadable,
        "it holds no draw (round or index is -1)": (v["round"] < 0) | (v["index"] < 0),
        "its theta is NaN (never written)": np.isnan(v["theta"]).all(axis=1),
        "it is marked ok but its X is missing, damaged or all NaN": v["ok"] & scan.x_empty,
        "it is marked failed but errors.jsonl has no line for it": ~v["ok"] & ~logged,
        "its draw (round, index) is stored in an earlier row": _repeated(v["round"], v["index"]),
    }
    bad = np.any(list(reasons.values()), axis=0)
    n = int(np.argmax(bad)) if bad.any() else n_max
    problems = []
    if n < n_max:
        why = [text for text, mask in reasons.items() if mask[n]]
        problems.append(f"row {n}: {'; '.join(why)}; rows {n}-{n_max - 1} were left out")
        problems += [f"{rel}: damaged, {why} (rows {lo}-{hi - 1})"
                     for _, rel, lo, hi, why in scan.chunks if why != "missing" and lo < n_max]
    errors_bytes = max([end for row, end in lines if row < n], default=0)
    commit = {"n_rows": n, "n_failed": int((~v["ok"][:n]).sum()), "errors_bytes": errors_bytes,
              "names": list(names), "event_shape": list(arrays["X"].shape[1:]),
              "x_dtype": np.dtype(arrays["X"].dtype).name}
    checksums = all(has_checksums(arr) for arr in arrays.values())
    return commit, StoreReport(str(root), n, n_max - n, checksums, tuple(problems))


def _repeated(rounds, indices):
    """Rows whose (round, index) pair appeared in an earlier row."""
    pairs = np.stack([rounds, indices], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    repeated = np.ones(len(pairs), bool)
    repeated[first] = False
    return repeated
