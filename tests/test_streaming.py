"""Training from a SimulationStore without loading it (sklearn_tmnre._streaming)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from skorch.callbacks import Callback

from sklearn_tmnre import Prior, TMNREEstimator, _store_layout
from sklearn_tmnre._build import data_standardization
from sklearn_tmnre._streaming import streamed_standardization
from sklearn_tmnre.store import SimulationStore

PRIOR = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
SIGMA = 0.1


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # Chunks of 64 rows of 16 float32 numbers: a small store already spans many chunks.
    monkeypatch.setattr(_store_layout, "CHUNK_BYTES", 64 * 16 * 4)


def toy(n, seed=0, features=16):
    """x = (a, b) repeated over the features, plus Gaussian noise of scale SIGMA."""
    theta = PRIOR.sample(n, random_state=seed)
    rng = np.random.default_rng(seed)
    X = np.tile(theta.to_numpy(), features // 2) + SIGMA * rng.standard_normal((n, features))
    return X.astype(np.float32), theta


def make_store(path, n, seed=0, per_append=1000, **kwargs):
    X, theta = toy(n, seed, **kwargs)
    store = SimulationStore(path)
    for i in range(0, n, per_append):
        store.append(theta.iloc[i:i + per_append], X[i:i + per_append], round=0)
    return store, X, theta


def test_batches_cover_every_row_once_per_pass(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 1000)
    assert store._rows.array("X").chunks[0] == 64
    batches = store.batches(100, random_state=0)
    passes = []
    for _ in range(2):
        seen = []
        for th, x, rows in batches:
            np.testing.assert_array_equal(x, X[rows])
            np.testing.assert_array_equal(th, theta.to_numpy()[rows])
            seen.append(rows)
        assert [len(r) for r in seen] == [100] * 10 and len(batches) == 10
        passes.append(np.concatenate(seen))
        np.testing.assert_array_equal(np.sort(passes[-1]), np.arange(1000))
    # Shuffled: neither the stored order nor the order of the pass before.
    assert not np.array_equal(passes[0], np.arange(1000))
    assert not np.array_equal(passes[0], passes[1])
    # A batch mixes rows of several chunks (a window of 4 chunks is shuffled together).
    first = next(iter(batches))[2]
    assert len(np.unique(first // 64)) >= 3
    in_order = np.concatenate([r for _, _, r in store.batches(100, shuffle=False)])
    np.testing.assert_array_equal(in_order, np.arange(1000))


def test_batches_last_single_row_joins_the_batch_before(tmp_path):
    store, _, _ = make_store(tmp_path / "s.zarr", 201)
    sizes = [len(r) for _, _, r in store.batches(50, random_state=1)]
    assert sizes == [50, 50, 50, 51] and len(store.batches(50)) == 4
    sizes = [len(r) for _, _, r in store.batches(40, random_state=1)]
    assert sizes == [40] * 5 + [1] or sizes == [40, 40, 40, 40, 41]
    assert sum(sizes) == 201 and len(store.batches(40)) == len(sizes)


def test_batches_keep_region_rounds_and_rows(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 600)
    store.append(theta.iloc[:50], np.full((50, 16), np.nan), round=1,
                 errors=["boom"] * 50)
    store.append(theta.iloc[50:150], X[50:150], round=1)
    rows = lambda b: np.sort(np.concatenate([r for _, _, r in b]))  # noqa: E731
    a = store.theta["a"].to_numpy()
    in_box = np.flatnonzero(store.ok & (a >= 0) & (a <= 0.5))
    np.testing.assert_array_equal(rows(store.batches(32, bounds={"a": (0, 0.5)})), in_box)
    np.testing.assert_array_equal(rows(store.batches(32, rounds=1)), np.arange(650, 750))
    np.testing.assert_array_equal(rows(store.batches(32)), np.r_[0:600, 650:750])
    np.testing.assert_array_equal(rows(store.batches(32, rows=[5, 3, 700])), [3, 5, 700])
    with pytest.raises(ValueError, match="rows .*610.* hold failed simulations"):
        store.batches(32, rows=[1, 610])
    with pytest.raises(ValueError, match="not committed rows"):
        store.batches(32, rows=[10_000])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        store.batches(0)
    assert list(SimulationStore(tmp_path / "empty.zarr").batches(8)) == []


def test_rows_held_do_not_grow_with_the_store(tmp_path):
    peaks = []
    for n in (1000, 4000):
        store, _, _ = make_store(tmp_path / f"s{n}.zarr", n)
        batches = store.batches(50, random_state=0)
        assert sum(len(r) for _, _, r in batches) == n
        peaks.append(batches.peak_rows)
    # The window in use (4 chunks of 64 rows and fewer than a batch of leftovers) and the
    # 4 chunks being read: the same bound whatever the store's size.
    assert all(4 * 64 < peak <= 2 * 4 * 64 + 49 for peak in peaks)


@pytest.mark.parametrize("embedding, shape, params", [
    ("mlp", (16,), {}),
    ("cnn1d", (16,), {}),
    ("deepset", (4, 4), {}),
    ("set", (4, 4), {}),
])
def test_streamed_standardization_is_that_of_the_loaded_data(tmp_path, embedding, shape,
                                                             params):
    X, theta = toy(700, seed=3)
    X = (X * np.arange(1, 17) + 5.0).reshape(-1, *shape)
    if embedding == "set":
        X[::3, -1] = np.nan  # padding: a third of the sets have one element less
    store = SimulationStore(tmp_path / "s.zarr")
    store.append(theta, X)
    store.append(theta.iloc[:5], np.full((5, *shape), np.nan), errors=["failed"] * 5)
    est = TMNREEstimator(embedding=embedding, **params)
    rows = np.arange(700)
    got = streamed_standardization(est, store, rows)
    want = data_standardization(est, X)
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-9)


class Recorder(Callback):
    """The theta of every batch, by phase and epoch."""

    def initialize(self):
        self.seen = []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        self.seen.append((len(net.history), training, batch[0]["theta"].numpy().copy()))


def test_validation_rows_never_train_and_training_rows_come_once_per_epoch(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 500)
    store.append(theta.iloc[:20], np.full((20, 16), np.nan), errors=["boom"] * 20)
    recorder = Recorder()
    TMNREEstimator(prior=PRIOR, max_epochs=2, batch_size=64, embedding_dim=4,
                   hidden_features=8, num_blocks=1, validation_fraction=0.2,
                   random_state=0, callbacks=[recorder]).fit(store)
    # theta rows are distinct floats: they name the store rows.
    row_of = {tuple(t): i for i, t in enumerate(theta.to_numpy().astype(np.float32))}
    phases = {}
    for epoch, training, th in recorder.seen:
        phases.setdefault((epoch, training), []).extend(row_of[tuple(t)] for t in th)
    valid = set(phases[(1, False)])
    assert len(valid) == len(phases[(1, False)]) == 100
    for epoch in (1, 2):
        train = phases[(epoch, True)]
        assert len(train) == len(set(train)) == 400  # every training row once per epoch
        assert not valid & set(train)
        assert set(phases[(epoch, False)]) == valid
    assert phases[(1, True)] != phases[(2, True)]  # reshuffled


def test_streamed_fit_is_as_good_as_in_memory(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 2000)
    X_test, theta_test = toy(300, seed=99)
    kwargs = dict(prior=PRIOR, max_epochs=8, batch_size=128, embedding_dim=16,
                  hidden_features=32, random_state=0)
    streamed = TMNREEstimator(**kwargs).fit(store)
    in_memory = TMNREEstimator(**kwargs).fit(X, theta)
    assert streamed.event_shape_ == (16,) and streamed.n_features_in_ == 16
    assert streamed.names_ == ["a", "b"]
    # Exact Gaussian posteriors of scale SIGMA / 2**1.5 would score about 1.9 nats; a
    # model that learned nothing scores log(1/2) = -0.69.
    s_streamed, s_memory = streamed.score(X_test, theta_test), in_memory.score(X_test, theta_test)
    assert s_streamed > 1.5 and s_memory > 1.5
    assert abs(s_streamed - s_memory) < 0.25
    # Same seed, same streamed model.
    again = TMNREEstimator(**kwargs).fit(store)
    np.testing.assert_allclose(again.predict(X_test[:20]), streamed.predict(X_test[:20]))


def test_fit_store_bad_input(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 100)
    other = Prior({"a": stats.uniform(-1, 2), "c": stats.uniform(-1, 2)})
    with pytest.raises(ValueError, match=r"prior's parameters \['a', 'c'\] do not match the "
                                         r"store's theta columns \['a', 'b'\]"):
        TMNREEstimator(prior=other).fit(store)
    with pytest.raises(ValueError, match="leave y out"):
        TMNREEstimator(prior=PRIOR).fit(store, theta)
    with pytest.raises(ValueError, match="holds 0 successful simulation"):
        TMNREEstimator(prior=PRIOR).fit(SimulationStore(tmp_path / "empty.zarr"))
    failed = SimulationStore(tmp_path / "failed.zarr")
    failed.append(theta.iloc[:3], np.full((3, 16), np.nan), errors=["boom"] * 3)
    with pytest.raises(ValueError, match=r"holds 0 successful simulation\(s\) \(3 failed\)"):
        TMNREEstimator(prior=PRIOR).fit(failed)
    broken = SimulationStore(tmp_path / "nan.zarr")
    X_nan = X.copy()
    X_nan[42, 3] = np.inf
    broken.append(theta, X_nan)
    with pytest.raises(ValueError, match="X of row 42 holds NaN or infinite values"):
        TMNREEstimator(prior=PRIOR).fit(broken)
    outside = SimulationStore(tmp_path / "outside.zarr")
    outside.append(pd.DataFrame({"a": [0.0, 3.0], "b": [0.0, 0.0]}), X[:2])
    with pytest.raises(ValueError, match="support"):
        TMNREEstimator(prior=PRIOR).fit(outside)


def test_fit_store_without_prior_uses_the_store_theta(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 300)
    est = TMNREEstimator(max_epochs=1, embedding_dim=4, hidden_features=8,
                         random_state=0).fit(store)
    assert est.names_ == ["a", "b"] and est.prior_.names == ["a", "b"]
    assert est.predict(X[:3]).shape == (3, 2)


def test_prior_names_in_another_order_than_the_store_columns(tmp_path):
    store, X, theta = make_store(tmp_path / "s.zarr", 1000)
    # x holds a in its even features, b in its odd ones: swapped columns would show.
    swapped = Prior({"b": stats.uniform(-1, 2), "a": stats.uniform(-1, 2)})
    est = TMNREEstimator(prior=swapped, max_epochs=4, batch_size=64, embedding_dim=8,
                         hidden_features=16, random_state=0).fit(store)
    assert est.names_ == ["b", "a"]
    X_test, theta_test = toy(200, seed=7)
    predicted = est.predict(X_test)
    for j, name in enumerate(est.names_):
        assert np.corrcoef(predicted[:, j], theta_test[name])[0, 1] > 0.9
