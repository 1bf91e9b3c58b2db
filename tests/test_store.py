import errno
import json
import multiprocessing
import os
import pickle
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

import sklearn_tmnre._store_commit as store_commit
import sklearn_tmnre._store_layout as store_layout
from sklearn_tmnre._durable import DurableLocalStore
from sklearn_tmnre.store import SimulationStore


def _batch(n, start=0.0, event_shape=(3,), dtype=np.float32):
    """theta = (k, -k) for k = start..start+n-1; every X entry of row k equals k."""
    k = start + np.arange(n, dtype=np.float64)
    theta = pd.DataFrame({"a": k, "b": -k})
    X = np.broadcast_to(k.reshape((n,) + (1,) * len(event_shape)), (n, *event_shape))
    return theta, np.ascontiguousarray(X, dtype=dtype)


def _assert_consistent(store):
    """Every committed row still satisfies the _batch construction."""
    theta, X = store.theta, store.X
    np.testing.assert_array_equal(theta["b"], -theta["a"])
    np.testing.assert_array_equal(X[store.ok], np.broadcast_to(
        theta["a"].to_numpy()[store.ok, None], X[store.ok].shape))


def test_round_trip(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    assert len(store) == 0 and store.names is None and store.event_shape is None
    theta, X = _batch(5, event_shape=(2, 3))
    X[1] = np.nan
    errors = [None, "simulator diverged", None, None, None]
    rows = store.append(theta, X, errors=errors, round=0)
    np.testing.assert_array_equal(rows, np.arange(5))
    assert store.names == ["a", "b"] and store.ndim == 2 and store.event_shape == (2, 3)
    assert (len(store), store.n_done, store.n_failed) == (5, 4, 1)
    pd.testing.assert_frame_equal(store.theta.reset_index(drop=True), theta)
    assert store.X.dtype == np.float32
    np.testing.assert_array_equal(store.X, X)
    np.testing.assert_array_equal(store.ok, [True, False, True, True, True])
    np.testing.assert_array_equal(store.rounds, np.zeros(5))
    np.testing.assert_array_equal(store.indices, np.arange(5))

    failures = store.failures()
    assert list(failures.columns) == ["row", "round", "index", "error", "a", "b"]
    assert failures.to_dict("records") == [
        {"row": 1, "round": 0, "index": 1, "error": "simulator diverged", "a": 1.0, "b": -1.0}]
    assert "rows=5, done=4, failed=1" in repr(store)


def test_reads_before_the_first_append(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    assert store.done_indices(0).shape == (0,) and store.theta.shape == (0, 0)
    theta, X, rows = store.select()
    assert (theta.shape, X.shape, rows.shape) == ((0, 0), (0,), (0,))
    assert store.failures().empty and store.X.shape == (0,)
    store.append(*_batch(3))
    np.testing.assert_array_equal(store.done_indices(0), [0, 1, 2])
    assert store.theta.shape == (3, 2)


def test_float64_dtype_kept_and_later_batches_cast(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(*_batch(2, dtype=np.float64))
    store.append(*_batch(2, start=2, dtype=np.float32))
    assert store.X.dtype == np.float64
    np.testing.assert_array_equal(store.X[:, 0], [0, 1, 2, 3])


def test_array_theta_and_integer_X(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1, 2], [3, 4]]))
    assert store.names == ["theta_0", "theta_1"] and store.X.dtype == np.float64
    store.append(np.array([[5.0, 6.0]]), np.array([[5.0, 6.0]]))
    np.testing.assert_array_equal(store.theta["theta_1"], [2, 4, 6])


def test_reordered_columns_are_matched_by_name(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(*_batch(2))
    theta, X = _batch(2, start=2)
    store.append(theta[["b", "a"]], X)
    _assert_consistent(store)
    np.testing.assert_array_equal(store.theta["a"], [0, 1, 2, 3])


def test_schema_mismatch_errors(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(*_batch(2))
    theta, X = _batch(2)
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        store.append(theta.rename(columns={"b": "c"}), X)
    with pytest.raises(ValueError, match=r"event shape \(4,\) differs .* \(3,\)"):
        store.append(theta, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="3 columns but the store holds 2"):
        store.append(np.zeros((2, 3)), X)
    with pytest.raises(ValueError, match="one row per theta row"):
        store.append(theta, X[:1])
    with pytest.raises(ValueError, match="ok must be a boolean array"):
        store.append(theta, X, ok=[1, 0])
    with pytest.raises(ValueError, match="error text for a row whose ok is True"):
        store.append(theta, X, ok=np.array([True, False]), errors=["x", None])
    with pytest.raises(ValueError, match="round must be a non-negative integer"):
        store.append(theta, X, round=-1)
    with pytest.raises(ValueError, match="index has repeated values"):
        store.append(theta, X, index=[3, 3])
    assert len(store) == 2


def test_select_by_box_and_round(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    theta, X = _batch(10)
    ok = np.ones(10, bool)
    ok[4] = False
    store.append(theta, X, ok=ok, round=0)
    store.append(*_batch(10, start=10), round=1)

    support = pd.DataFrame({"low": [3.0, -np.inf], "high": [12.0, np.inf]}, index=["a", "b"])
    sel_theta, sel_X, rows = store.select(support)
    # Limits are inclusive; the failed row 4 is never returned.
    np.testing.assert_array_equal(rows, [3, 5, 6, 7, 8, 9, 10, 11, 12])
    np.testing.assert_array_equal(sel_theta.index, rows)
    np.testing.assert_array_equal(sel_X[:, 0], rows)

    _, _, rows = store.select({"a": (3.0, 12.0)}, rounds=1)
    np.testing.assert_array_equal(rows, [10, 11, 12])
    _, _, rows = store.select(np.array([[0.0, 2.5], [-5.0, 5.0]]), rounds=[0, 1])
    np.testing.assert_array_equal(rows, [0, 1, 2])
    _, X_all, rows = store.select()
    assert len(rows) == 19 and X_all.shape == (19, 3)
    _, X_none, rows = store.select({"a": (100.0, 200.0)})
    assert rows.shape == (0,) and X_none.shape == (0, 3)

    with pytest.raises(ValueError, match=r"unknown parameters \['c'\]"):
        store.select({"c": (0, 1)})
    with pytest.raises(ValueError, match="low=2 > high=1"):
        store.select({"a": (2, 1)})


def test_select_reads_only_the_chunks_of_selected_rows(tmp_path, monkeypatch):
    # 8-row X chunks (3 float32 per row = 12 bytes; 96 bytes per chunk).
    monkeypatch.setattr(store_layout, "CHUNK_BYTES", 96)
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(*_batch(64))
    read = []
    original = DurableLocalStore.get

    async def spy(self, key, *args, **kwargs):
        read.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(DurableLocalStore, "get", spy)
    store = SimulationStore(tmp_path / "s.zarr", mode="r")
    _, X, rows = store.select({"a": (17.0, 20.0)})
    np.testing.assert_array_equal(X[:, 0], [17, 18, 19, 20])
    assert sorted(k for k in read if k.startswith("X/c/")) == ["X/c/2/0"]


def test_done_indices_and_duplicate_draws(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    theta, X = _batch(3)
    store.append(theta, X, ok=np.array([True, False, True]), round=2, index=[7, 1, 4])
    np.testing.assert_array_equal(store.done_indices(2), [1, 4, 7])
    assert store.done_indices(0).shape == (0,)
    # Default indices continue after the largest one of the round.
    rows = store.append(*_batch(2, start=3), round=2)
    np.testing.assert_array_equal(store.indices[rows], [8, 9])
    with pytest.raises(ValueError, match=r"round 2 already holds draws with index \[4\]"):
        store.append(*_batch(2, start=5), round=2, index=[4, 5])
    assert len(store) == 5


def test_reopen_resumes_and_pickles(tmp_path):
    path = tmp_path / "s.zarr"
    store = SimulationStore(path, mode="w")
    store.append(*_batch(4), round=0)
    store.attrs["settings"] = {"n_sims": 4, "bounds": np.array([[0.0, 1.0]])}
    again = SimulationStore(str(path))
    assert (len(again), again.names, again.event_shape) == (4, ["a", "b"], (3,))
    np.testing.assert_array_equal(again.append(*_batch(2, start=4), round=1), [4, 5])
    # The first handle sees the other handle's rows.
    assert len(store) == 6
    _assert_consistent(store)

    clone = pickle.loads(pickle.dumps(store))  # mode "w" must not wipe on unpickling
    assert len(clone) == 6 and clone.attrs["settings"] == {"n_sims": 4, "bounds": [[0.0, 1.0]]}
    read_only = pickle.loads(pickle.dumps(SimulationStore(path, mode="r")))
    with pytest.raises(PermissionError):
        read_only.append(*_batch(1))

    assert len(SimulationStore(path, mode="w")) == 0


def test_attrs(tmp_path):
    store = SimulationStore(tmp_path / "s.zarr")
    store.attrs.update(a=1, b=np.float32(0.5))
    store.attrs["c"] = [1, 2]
    del store.attrs["a"]
    assert dict(SimulationStore(tmp_path / "s.zarr").attrs) == {"b": 0.5, "c": [1, 2]}
    with pytest.raises(TypeError, match="JSON serialisable"):
        store.attrs["d"] = object()
    assert "d" not in store.attrs
    with pytest.raises(PermissionError, match="read-only"):
        SimulationStore(tmp_path / "s.zarr", mode="r").attrs["e"] = 1


def test_read_only_mode(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(FileNotFoundError, match="no store to open read-only"):
        SimulationStore(path, mode="r")
    SimulationStore(path).append(*_batch(3))
    store = SimulationStore(path, mode="r")
    assert len(store) == 3
    with pytest.raises(PermissionError, match=r"opened read-only \(mode='r'\)"):
        store.append(*_batch(1))
    with pytest.raises(PermissionError, match="read-only"):
        store.check_writable()
    assert len(store) == 3


def test_bad_paths_and_modes(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a SimulationStore"):
        SimulationStore(tmp_path / "data")
    with pytest.raises(ValueError, match="would delete"):
        SimulationStore(tmp_path / "data", mode="w")
    assert (tmp_path / "data" / "thesis.tex").exists()
    with pytest.raises(ValueError, match="mode must be"):
        SimulationStore(tmp_path / "s.zarr", mode="x")


@pytest.mark.parametrize("lookalike", ["attrs.json", "zarr.json", ".lock", "commit.json"])
def test_a_folder_that_only_looks_like_a_store_is_never_touched(tmp_path, lookalike):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / lookalike).write_text("{}")
    (folder / "thesis.tex").write_text("precious")
    for mode in ("w", "a", "r"):
        with pytest.raises((ValueError, FileNotFoundError), match="not a SimulationStore|no store"):
            SimulationStore(folder, mode=mode)
    assert sorted(p.name for p in folder.iterdir()) == sorted([lookalike, "thesis.tex"])
    assert (folder / "thesis.tex").read_text() == "precious"


def test_a_foreign_zarr_group_is_refused_and_kept(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "theirs.zarr"), mode="w")
    group.create_array("X", shape=(3,), dtype="f8")[:] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="not a SimulationStore"):
        SimulationStore(tmp_path / "theirs.zarr").append(*_batch(2), round=0)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "theirs.zarr"))["X"][:],
                                  [1.0, 2.0, 3.0])


def test_overwrite_deletes_only_a_store_of_its_own_files(tmp_path):
    path = tmp_path / "sims.zarr"
    SimulationStore(path).append(*_batch(4), round=0)
    assert json.loads((path / "sklearn_tmnre.json").read_text())["format"] == \
        "sklearn_tmnre.SimulationStore"
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write.*notes.txt"):
        SimulationStore(path, mode="w")
    assert len(SimulationStore(path, mode="r")) == 4 and (path / "notes.txt").exists()
    (path / "notes.txt").unlink()
    assert len(SimulationStore(path, mode="w")) == 0


def test_a_store_from_before_the_marker_still_opens(tmp_path):
    path = tmp_path / "sims.zarr"
    SimulationStore(path).append(*_batch(4), round=0)
    (path / "sklearn_tmnre.json").unlink()  # as 0.1 wrote it
    store = SimulationStore(path)
    assert len(store) == 4
    store.append(*_batch(2, start=4), round=0)
    assert (path / "sklearn_tmnre.json").exists() and len(SimulationStore(path, mode="r")) == 6


def test_a_first_write_killed_before_its_marker_is_still_a_store(tmp_path):
    path = tmp_path / "sims.zarr"
    path.mkdir()
    (path / ".lock").touch()
    assert len(SimulationStore(path)) == 0


def test_a_lost_commit_record_is_refused_never_wiped(tmp_path):
    path = tmp_path / "sims.zarr"
    SimulationStore(path).append(*_batch(5), round=0)
    (path / "commit.json").unlink()
    for mode in ("a", "r"):
        with pytest.raises(ValueError, match="lost its commit record"):
            SimulationStore(path, mode=mode)
    # The rows are still on disk for a restore.
    assert (path / "theta").is_dir() and (path / "X").is_dir()


@pytest.mark.parametrize("damaged", ["commit.json", "attrs.json", "sklearn_tmnre.json"])
def test_a_garbled_record_is_a_clear_error_naming_the_file(tmp_path, damaged):
    path = tmp_path / "sims.zarr"
    store = SimulationStore(path)
    store.append(*_batch(4), round=0)
    store.attrs["campaign"] = {"k": 1}
    (path / damaged).write_bytes(b"{not json")
    with pytest.raises(ValueError, match=f"{damaged}.*damaged"):
        reopened = SimulationStore(path)
        dict(reopened.attrs)


def test_check_writable(tmp_path, monkeypatch):
    store = SimulationStore(tmp_path / "new" / "s.zarr")
    store.check_writable()
    assert os.listdir(tmp_path / "new" / "s.zarr") == []  # the probe is removed

    (tmp_path / "afile").write_text("")
    blocked = SimulationStore(tmp_path / "afile" / "store")
    with pytest.raises(OSError, match="cannot write simulations") as info:
        blocked.check_writable()
    assert str(tmp_path / "afile" / "store") in str(info.value)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left on device") as info:
        store.check_writable()
    assert info.value.errno == errno.ENOSPC and "s.zarr" in str(info.value)


def test_failure_between_data_and_commit_leaves_no_trace(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    store = SimulationStore(path)
    store.append(*_batch(5))
    original = store_commit.durable_write

    def crash_at_commit(target, data, synced=None):
        if target.name == store_layout.COMMIT:
            raise KeyboardInterrupt("killed before the commit")
        original(target, data, synced)

    monkeypatch.setattr(store_commit, "durable_write", crash_at_commit)
    theta, X = _batch(300, start=5)
    with pytest.raises(KeyboardInterrupt):
        store.append(theta, X, ok=np.arange(300) % 2 == 0,
                     errors=[None if i % 2 == 0 else "bad" for i in range(300)], round=1)
    monkeypatch.setattr(store_commit, "durable_write", original)

    reopened = SimulationStore(path)
    assert (len(reopened), reopened.n_failed) == (5, 0)
    assert reopened.X.shape == (5, 3) and reopened.failures().empty
    assert reopened.done_indices(1).shape == (0,)
    assert len(reopened.select()[2]) == 5
    # The leftover rows are overwritten by the next append, error texts included.
    theta, X = _batch(2, start=5)
    reopened.append(theta, X, ok=np.array([True, False]), errors=[None, "late"], round=1)
    assert len(store) == 7
    _assert_consistent(store)
    assert store.failures()[["row", "index", "error"]].to_dict("records") == [
        {"row": 6, "index": 1, "error": "late"}]


def test_failed_first_append_leaves_an_empty_store(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    original = store_commit.durable_write

    def crash_at_commit(target, data, synced=None):
        if target.name == store_layout.COMMIT:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(target, data, synced)

    monkeypatch.setattr(store_commit, "durable_write", crash_at_commit)
    with pytest.raises(OSError):
        SimulationStore(path).append(*_batch(3))
    monkeypatch.setattr(store_commit, "durable_write", original)
    store = SimulationStore(path)
    assert len(store) == 0 and store.names is None
    store.append(pd.DataFrame({"c": [1.0]}), np.zeros((1, 5)))
    assert store.names == ["c"] and store.event_shape == (5,)


# Forked children start at once (a spawned one re-imports the library, seconds on a busy
# machine); zarr resets its event loop in forked children.
_CTX = multiprocessing.get_context(
    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _endless_writer(path, conn):
    store = SimulationStore(path)
    n = 400
    for i in range(10**6):
        k = len(store) + np.arange(n, dtype=float)
        X = np.repeat(k[:, None], 2000, axis=1).astype(np.float32)
        store.append(pd.DataFrame({"a": k, "b": -k}), X, round=0)
        conn.send(i)


def test_sigkill_during_appends(tmp_path):
    path = str(tmp_path / "s.zarr")
    receiver, sender = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_endless_writer, args=(path, sender))
    proc.start()
    try:
        for _ in range(3):
            assert receiver.poll(60), "the writer stopped before it was killed"
            receiver.recv()
        # Part of an append's duration, so the kill most likely lands mid-append.
        time.sleep(0.013)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.join()
    assert proc.exitcode == -signal.SIGKILL
    store = SimulationStore(path)
    n = len(store)
    assert n >= 3 * 400 and n % 400 == 0
    _assert_consistent(store)
    np.testing.assert_array_equal(store.done_indices(0), np.arange(n))
    rows = store.append(*_batch(10, start=n, event_shape=(2000,)))
    np.testing.assert_array_equal(rows, np.arange(n, n + 10))
    _assert_consistent(store)
    assert store.X.shape == (n + 10, 2000) and store.ok.all()


def _append_worker(path, worker, barrier):
    store = SimulationStore(path)
    barrier.wait()
    for i in range(20):
        theta = pd.DataFrame({"a": [worker] * 3, "b": [i] * 3})
        store.append(theta, np.full((3, 2), worker * 100 + i, np.float32), round=0)


def test_two_processes_append_concurrently(tmp_path):
    path = str(tmp_path / "s.zarr")
    barrier = _CTX.Barrier(2)
    procs = [_CTX.Process(target=_append_worker, args=(path, w, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    store = SimulationStore(path)
    assert len(store) == 120
    theta = store.theta
    counts = theta.value_counts().to_dict()
    assert counts == {(w, i): 3 for w in (1.0, 2.0) for i in map(float, range(20))}
    np.testing.assert_array_equal(store.X[:, 0], theta["a"] * 100 + theta["b"])
    # Default indices were allotted under the lock: 0..119, each once.
    np.testing.assert_array_equal(np.sort(store.indices), np.arange(120))


def test_threads_with_separate_handles(tmp_path):
    path = tmp_path / "s.zarr"

    def work(start):
        store = SimulationStore(path)
        for j in range(5):
            store.append(*_batch(4, start=start + 4 * j))

    threads = [threading.Thread(target=work, args=(s,)) for s in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = SimulationStore(path)
    assert len(store) == 40 and len(np.unique(store.indices)) == 40
    _assert_consistent(store)


def test_readable_by_dask(tmp_path):
    da = pytest.importorskip("dask.array")
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(*_batch(7, event_shape=(2, 2)))
    np.testing.assert_array_equal(da.from_zarr(str(store.path), component="X").compute(),
                                  store.X)
    np.testing.assert_array_equal(
        da.from_zarr(str(store.path), component="theta").compute(), store.theta.to_numpy())
    commit = json.loads((store.path / "commit.json").read_text())
    assert commit["n_rows"] == 7 and commit["names"] == ["a", "b"]
