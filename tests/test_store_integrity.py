"""Checksums, verify, repair and leftover temporary files of SimulationStore."""

import json
import multiprocessing
import os
import signal

import numpy as np
import pandas as pd
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

import sklearn_tmnre._durable as durable_module
import sklearn_tmnre._store_layout as store_layout
import sklearn_tmnre.store as store_module
from sklearn_tmnre.store import SimulationStore, StoreReport

_CTX = multiprocessing.get_context(
    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
_HEX = "0123456789abcdef" * 2


def _batch(n, start=0.0):
    """theta = (k, -k) for k = start..start+n-1; every X entry of row k equals k."""
    k = start + np.arange(n, dtype=np.float64)
    return pd.DataFrame({"a": k, "b": -k}), np.repeat(k[:, None], 3, axis=1).astype(np.float32)


@pytest.fixture
def small_chunks(monkeypatch):
    # 96-byte chunks: X 8 rows (3 float32), theta 4 rows, round/index 8 rows, ok 64 rows.
    monkeypatch.setattr(store_layout, "CHUNK_BYTES", 96)


def _campaign(path):
    """40 rows in three appends; rows 8-15 all failed (NaN X), row 21 failed too."""
    store = SimulationStore(path)
    store.append(*_batch(8), round=0)
    theta, X = _batch(8, start=8)
    store.append(theta, np.full_like(X, np.nan), errors=["diverged"] * 8, round=0)
    theta, X = _batch(24, start=16)
    errors = [None] * 24
    errors[5] = "timed out"
    X[5] = np.nan
    store.append(theta, X, errors=errors, round=1)
    return store


def _snapshot(store):
    return (store.theta, store.X, store.ok, store.rounds, store.indices,
            store.failures()[["row", "error"]])


def _assert_same(a, b):
    pd.testing.assert_frame_equal(a[0], b[0])
    for x, y in zip(a[1:5], b[1:5]):
        np.testing.assert_array_equal(x, y)
    pd.testing.assert_frame_equal(a[5], b[5])


def _flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------- checksums
def test_new_stores_checksum_every_chunk_and_keep_the_names(tmp_path):
    store = _campaign(tmp_path / "s.zarr")
    for name in ("theta", "X", "ok", "round", "index"):
        meta = json.loads((store.path / name / "zarr.json").read_text())
        assert meta["codecs"][-1]["name"] == "crc32c", name
    assert zarr.open_array(str(store.path / "theta")).attrs["names"] == ["a", "b"]
    report = store.verify()
    assert isinstance(report, StoreReport)
    assert (report.ok, report.n_rows, report.n_dropped, report.checksums) == (True, 40, 0, True)
    assert "40 rows, no problems" in str(report)


@pytest.mark.parametrize("name, read", [("X", lambda s: s.X), ("X", lambda s: s.select()),
                                        ("theta", lambda s: s.theta),
                                        ("index", lambda s: s.done_indices(0))])
def test_a_flipped_bit_is_an_error_naming_the_chunk_never_other_numbers(tmp_path, small_chunks,
                                                                        name, read):
    path = tmp_path / "s.zarr"
    _campaign(path)
    chunk = path / name / "c" / "2" / ("0" if name in ("X", "theta") else "")
    chunk = chunk if chunk.is_file() else chunk.parent
    _flip_bit(chunk)
    with pytest.raises(ValueError, match=rf"{name}/c/2.*damaged: its checksum does not match.*"
                                         r"verify\(\)"):
        read(SimulationStore(path, mode="r"))
    problems = SimulationStore(path, mode="r").verify().problems
    assert len(problems) == 1 and problems[0].startswith(f"{name}/c/2")


def test_rows_outside_a_damaged_chunk_still_read(tmp_path, small_chunks):
    path = tmp_path / "s.zarr"
    _campaign(path)
    _flip_bit(path / "X" / "c" / "3" / "0")  # rows 24-31
    _, X, rows = SimulationStore(path, mode="r").select({"a": (0, 7)})
    np.testing.assert_array_equal(X[:, 0], rows)
    with pytest.raises(ValueError, match="rows 24-31 of 'X'"):
        SimulationStore(path, mode="r").select({"a": (20, 30)})


# ---------------------------------------------------------------------- missing chunks
def test_a_deleted_X_chunk_of_rows_marked_ok_is_an_error_not_nan(tmp_path, small_chunks):
    path = tmp_path / "s.zarr"
    _campaign(path)
    (path / "X" / "c" / "3" / "0").unlink()
    store = SimulationStore(path, mode="r")
    for read in (lambda: store.X, lambda: store.select({"a": (25, 26)})):
        with pytest.raises(ValueError, match=r"X/c/3/0.* is missing.*rows 24-31 of 'X'"):
            read()
    np.testing.assert_array_equal(store.select({"a": (0, 3)})[1][:, 0], [0, 1, 2, 3])
    assert store.verify().problems == (
        "X/c/3/0: missing, but rows 24-31 include rows marked ok (they would read as NaN)",)


def test_chunks_of_failed_rows_are_written_too(tmp_path, small_chunks):
    path = tmp_path / "s.zarr"
    _campaign(path)
    # Rows 8-15 failed: their X chunk holds only NaN, zarr's fill value, yet is on disk.
    assert (path / "X" / "c" / "1" / "0").is_file()
    (path / "X" / "c" / "1" / "0").unlink()
    assert SimulationStore(path, mode="r").X.shape == (40, 3)  # NaN rows that failed anyway


@pytest.mark.parametrize("chunk, match", [
    ("theta/c/1/0", r"theta/c/1/0.* is missing.*rows 4-7 of 'theta'"),
    ("round/c/0", r"round/c/0.* is missing"),
    ("ok/c/0", r"marks 40 rows failed but the commit record counts 9.*ok/c/0"),
])
def test_a_deleted_column_chunk_is_an_error(tmp_path, small_chunks, chunk, match):
    path = tmp_path / "s.zarr"
    _campaign(path)
    (path / chunk).unlink()
    with pytest.raises(ValueError, match=match):
        SimulationStore(path).select()
    assert any(p.startswith(chunk) for p in SimulationStore(path, mode="r").verify().problems)


# ---------------------------------------------------------------------- verify
def test_verify_lists_every_problem_with_its_file(tmp_path, small_chunks):
    path = tmp_path / "s.zarr"
    _campaign(path)
    _flip_bit(path / "X" / "c" / "0" / "0")
    (path / "theta" / "c" / "5" / "0").unlink()
    commit = json.loads((path / "commit.json").read_text())
    (path / "commit.json").write_text(json.dumps(dict(commit, n_failed=3)))
    with open(path / "errors.jsonl", "r+b") as f:
        f.truncate(commit["errors_bytes"] - 5)
    report = SimulationStore(path, mode="r").verify()
    assert not report.ok and report.n_rows == 40
    text = "\n".join(report.problems)
    for expected in ("X/c/0/0: damaged, its checksum does not match its bytes",
                     "theta/c/5/0: missing (rows 20-23 are committed)",
                     "commit.json: counts 3 failed rows, but the ok array marks 9",
                     "errors.jsonl: shorter than"):
        assert expected in text, text
    assert str(report).count("\n") == len(report.problems)


def test_verify_finds_draws_stored_twice(tmp_path):
    path = tmp_path / "s.zarr"
    store = SimulationStore(path)
    store.append(*_batch(4), round=0)
    index = zarr.open_array(str(path / "index"), mode="r+")
    index[3] = 1
    assert store.verify().problems == (
        "round, index: the draws (round, index) [(0, 1)] are stored twice",)


def test_verify_of_an_empty_store(tmp_path):
    report = SimulationStore(tmp_path / "s.zarr").verify()
    assert report.ok and report.n_rows == 0


# ---------------------------------------------------------------------- old stores
def _write_old_store(path, monkeypatch):
    """A store as 0.1 wrote it: no checksums, no names beside theta, no chunks of fill values."""
    old = {"f": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")], "other": [ZstdCodec()]}
    with monkeypatch.context() as m:
        m.setattr(store_module._integrity, "compressors",
                  lambda dtype: old["f" if np.dtype(dtype).kind == "f" else "other"])
        store = _campaign(path)
    (path / "X" / "c" / "1" / "0").unlink()  # rows 8-15 failed: all NaN, never written
    (path / "sklearn_tmnre.json").unlink()
    meta = json.loads((path / "theta" / "zarr.json").read_text())
    meta["attributes"] = {}
    (path / "theta" / "zarr.json").write_text(json.dumps(meta))
    return store


def test_a_store_without_checksums_still_opens_reads_and_verifies(tmp_path, small_chunks,
                                                                  monkeypatch):
    path = tmp_path / "s.zarr"
    _write_old_store(path, monkeypatch)
    store = SimulationStore(path)
    assert (len(store), store.n_failed) == (40, 9)
    assert np.isnan(store.X[8:16]).all() and store.X[20, 0] == 20
    report = store.verify()
    assert report.ok and not report.checksums
    assert "chunks without checksums" in str(report)
    store.append(*_batch(2, start=40), round=1)
    assert SimulationStore(path, mode="r").verify().ok


def test_repair_of_an_old_store_needs_the_names(tmp_path, small_chunks, monkeypatch):
    path = tmp_path / "s.zarr"
    before = _snapshot(_write_old_store(path, monkeypatch))
    SimulationStore(path).attrs["note"] = "marked"  # as any write of this version marks it
    (path / "commit.json").unlink()
    with pytest.raises(ValueError, match="lost its commit record"):
        SimulationStore(path)  # never taken for an empty store
    with pytest.raises(ValueError, match=r"pass them, e.g. repair\(path, names=\[...\]\)"):
        SimulationStore.repair(path)
    with pytest.raises(ValueError, match="2 distinct names"):
        SimulationStore.repair(path, names=["a"])
    report = SimulationStore.repair(path, names=["a", "b"])
    assert (report.n_rows, report.n_dropped) == (40, 0)
    _assert_same(_snapshot(SimulationStore(path)), before)


# ---------------------------------------------------------------------- repair
@pytest.mark.parametrize("damage", ["lost", "garbled"])
def test_repair_rebuilds_a_lost_commit_record_keeping_every_row(tmp_path, small_chunks, damage):
    path = tmp_path / "s.zarr"
    before = _snapshot(_campaign(path))
    files = sorted(p.relative_to(path) for p in path.rglob("*") if p.name != "commit.json")
    if damage == "lost":
        (path / "commit.json").unlink()
    else:
        (path / "commit.json").write_text('{"n_rows": 4')
    with pytest.raises(ValueError, match=r"SimulationStore.repair\("):
        SimulationStore(path)
    report = SimulationStore.repair(path)
    assert (report.ok, report.n_rows, report.n_dropped, report.checksums) == (True, 40, 0, True)
    store = SimulationStore(path)
    _assert_same(_snapshot(store), before)
    assert (store.n_failed, store.names, store.event_shape) == (9, ["a", "b"], (3,))
    assert store.verify().ok
    # Nothing was deleted, and appends go on.
    assert files == sorted(p.relative_to(path) for p in path.rglob("*")
                           if p.name != "commit.json")
    store.append(*_batch(3, start=40), errors=[None, "late", None], round=1)
    assert store.failures()["error"].tolist()[-1] == "late" and store.verify().ok


def test_repair_leaves_out_an_append_killed_midway_and_says_why(tmp_path, small_chunks,
                                                               monkeypatch):
    path = tmp_path / "s.zarr"
    store = SimulationStore(path)
    store.append(*_batch(10), round=0)
    before = _snapshot(store)
    original = durable_module.durable_write

    def no_x(target, data, synced=None):
        # The append dies after writing theta, ok, round and index but not X.
        if "/X/c/" in str(target) or target.name == "commit.json":
            raise OSError(28, "No space left on device")
        original(target, data, synced)

    monkeypatch.setattr(durable_module, "durable_write", no_x)
    with pytest.raises(OSError):
        store.append(*_batch(30, start=10), round=1)
    monkeypatch.undo()
    (path / "commit.json").unlink()
    report = SimulationStore.repair(path)
    # Row 10's X chunk (rows 8-15) kept its old version: NaN for the new rows.
    assert (report.n_rows, report.n_dropped) == (10, 30)
    assert report.problems == ("row 10: it is marked ok but its X is missing, damaged or all "
                               "NaN; rows 10-39 were left out",)
    store = SimulationStore(path)
    _assert_same(_snapshot(store), before)
    np.testing.assert_array_equal(store.append(*_batch(2, start=10), round=1), [10, 11])
    assert store.verify().ok


def test_repair_keeps_the_rows_before_a_damaged_chunk(tmp_path, small_chunks):
    path = tmp_path / "s.zarr"
    _campaign(path)
    _flip_bit(path / "index" / "c" / "2")  # rows 16-23
    (path / "commit.json").unlink()
    report = SimulationStore.repair(path)
    assert (report.n_rows, report.n_dropped) == (16, 24)
    assert report.problems[0].startswith("row 16: its theta, ok, round or index chunk is "
                                         "missing or damaged")
    assert report.problems[1].startswith("index/c/2: damaged, its checksum does not match")
    store = SimulationStore(path, mode="r")
    assert (len(store), store.n_failed) == (16, 8) and store.verify().ok


def test_repair_refuses_what_it_cannot_or_need_not_repair(tmp_path):
    path = tmp_path / "s.zarr"
    SimulationStore(path).append(*_batch(4), round=0)
    with pytest.raises(ValueError, match=r"intact \(or no row was ever committed\)"):
        SimulationStore.repair(path)
    SimulationStore(tmp_path / "new.zarr").attrs["campaign"] = "planned"  # no row yet
    with pytest.raises(ValueError, match="nothing to repair"):
        SimulationStore.repair(tmp_path / "new.zarr")
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="is not a SimulationStore"):
        SimulationStore.repair(folder)
    assert os.listdir(folder) == ["thesis.tex"]
    (path / "commit.json").unlink()
    (path / "X" / "zarr.json").unlink()
    with pytest.raises(ValueError, match=r"X/zarr.json is missing or damaged"):
        SimulationStore.repair(path)
    assert not (path / "commit.json").exists()


# ---------------------------------------------------------------------- temporaries
def _leave_temporaries(path):
    left = [path / f".commit.json.{_HEX}.tmp", path / f".probe-{_HEX}",
            path / "X" / "c" / "0" / f".0.{_HEX}.tmp", path / "theta" / f".zarr.json.{_HEX}.tmp"]
    for p in left:
        p.write_bytes(b"half")
    kept = [path / "X" / "c" / ".0.notes.tmp", path / "X" / "c" / f"0.{_HEX}.tmp"]
    for p in kept:
        p.write_bytes(b"not ours")
    return left, kept


def test_temporaries_of_a_killed_writer_are_removed_on_open(tmp_path):
    path = tmp_path / "s.zarr"
    SimulationStore(path).append(*_batch(4), round=0)
    left, kept = _leave_temporaries(path)
    SimulationStore(path, mode="r")
    assert all(p.exists() for p in left)  # a reader writes nothing
    store = SimulationStore(path)
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
    assert len(store) == 4 and store.verify().ok


def test_temporaries_of_a_live_writer_are_kept(tmp_path):
    path = tmp_path / "s.zarr"
    writer = SimulationStore(path)
    writer.append(*_batch(4), round=0)
    left, _ = _leave_temporaries(path)
    with writer.lock():
        SimulationStore(path)
        assert all(p.exists() for p in left)
    SimulationStore(path)
    assert not any(p.exists() for p in left)


def _killed_at_a_rename(path):
    store = SimulationStore(path)
    store.append(*_batch(6), round=0)

    def die(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)

    durable_module.os.replace = die
    store.append(*_batch(6, start=6), round=0)


def test_a_writer_killed_mid_write_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "s.zarr"
    proc = _CTX.Process(target=_killed_at_a_rename, args=(path,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    assert any(p.name.endswith(".tmp") for p in path.rglob(".*"))
    store = SimulationStore(path)
    assert not any(p.name.endswith(".tmp") for p in path.rglob(".*"))
    assert len(store) == 6 and store.verify().ok
    store.append(*_batch(6, start=6), round=0)
    np.testing.assert_array_equal(store.X[:, 0], np.arange(12))
