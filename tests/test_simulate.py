import importlib
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pandas as pd
import pytest

from sklearn_tmnre import SimulationError, SimulationWarning, simulate

simulate_module = importlib.import_module("sklearn_tmnre.simulate")


def noisy(theta, rng):
    return theta + rng.standard_normal(theta.shape)


def noisy_batch(theta, rng):
    return theta + rng.standard_normal(theta.shape)


def flaky(theta, rng):
    if theta[0] > 0.5:
        raise RuntimeError("boom")
    if theta[0] < -0.5:
        return np.full(theta.shape, np.nan)
    return theta + rng.standard_normal(theta.shape)


def deterministic(theta):
    return np.array([theta.sum(), theta.prod()])


def sleepy(theta):
    if theta[0] > 0:
        time.sleep(5)
    return theta


@pytest.fixture
def theta():
    return np.random.default_rng(0).uniform(-1, 1, size=(40, 2))


def test_shapes_and_rng_optional(theta):
    X = simulate(deterministic, theta)
    assert X.shape == (40, 2)
    np.testing.assert_allclose(X[:, 0], theta.sum(1))
    df = pd.DataFrame(theta, columns=["a", "b"])
    np.testing.assert_array_equal(simulate(deterministic, df), X)


@pytest.fixture
def always_parallel(monkeypatch):
    """Send even cheap simulations to the workers (the parallel path under test)."""
    monkeypatch.setattr(simulate_module, "_PARALLEL_MIN_SECONDS", 0.0)


def pid(theta):
    return np.array([float(os.getpid())])


def slow_pid(theta):
    time.sleep(0.02)
    return pid(theta)


def test_cheap_simulations_stay_in_the_process():
    """Starting workers costs seconds: a job cheaper than that runs here, probe included."""
    X = simulate(pid, np.zeros((500, 1)), n_jobs=2)
    assert set(X[:, 0]) == {os.getpid()}


def test_expensive_simulations_go_to_workers(monkeypatch):
    monkeypatch.setattr(simulate_module, "_PARALLEL_MIN_SECONDS", 0.1)
    monkeypatch.setattr(simulate_module, "_PROBE_SECONDS", 0.0)  # one probed row
    X = simulate(slow_pid, np.zeros((40, 1)), n_jobs=2)
    # The probed row ran here (0.02 s x 39 rows left > 0.1 s), the rest in workers.
    assert X[0, 0] == os.getpid()
    assert (X[1:, 0] != os.getpid()).all()


def test_probe_then_workers_is_bit_identical(theta, monkeypatch):
    ref = simulate(noisy, theta, random_state=5)
    monkeypatch.setattr(simulate_module, "_PROBE_SECONDS", 0.0)  # one probed row
    monkeypatch.setattr(simulate_module, "_PARALLEL_MIN_SECONDS", 0.0)
    np.testing.assert_array_equal(simulate(noisy, theta, random_state=5, n_jobs=2), ref)


@pytest.mark.parametrize("n_jobs, batch_size", [(None, None), (2, 1), (2, 7), (1, 40)])
def test_bit_identical_for_any_n_jobs_and_batch_size(theta, n_jobs, batch_size, always_parallel):
    ref = simulate(noisy, theta, random_state=42)
    X = simulate(noisy, theta, random_state=42, n_jobs=n_jobs, batch_size=batch_size)
    np.testing.assert_array_equal(X, ref)
    assert not np.array_equal(simulate(noisy, theta, random_state=43), ref)


def test_threading_backend_identical(theta):
    ref = simulate(noisy, theta, random_state=1)
    with joblib.parallel_config(backend="threading"):
        X = simulate(noisy, theta, random_state=1, n_jobs=2, batch_size=3)
    np.testing.assert_array_equal(X, ref)


def test_row_ids_reproduce_a_subset(theta):
    full = simulate(noisy, theta, random_state=5)
    part = simulate(noisy, theta[10:20], random_state=5, row_ids=np.arange(10, 20))
    np.testing.assert_array_equal(part, full[10:20])


def test_vectorized(theta):
    X = simulate(noisy_batch, theta, vectorized=True, random_state=0, batch_size=10)
    assert X.shape == theta.shape
    X2 = simulate(noisy_batch, theta, vectorized=True, random_state=0, batch_size=10, n_jobs=2)
    np.testing.assert_array_equal(X, X2)
    # noise has unit variance (5 sigma bound for 80 values)
    resid = (X - theta).ravel()
    assert abs(resid.std() - 1) < 5 * np.sqrt(0.5 / resid.size)


def test_failure_raise_names_row(theta):
    with pytest.raises(SimulationError, match=r"row \d+ \(0=") as info:
        simulate(flaky, theta, random_state=0)
    assert "on_error='skip'" in str(info.value)


def test_failure_skip_reports(theta):
    with pytest.warns(SimulationWarning, match="failed and were dropped"):
        X = simulate(flaky, theta, random_state=0, on_error="skip")
    good = np.abs(theta[:, 0]) <= 0.5
    assert len(X) == good.sum()
    res = simulate(flaky, theta, random_state=0, return_result=True)
    np.testing.assert_array_equal(res.ok, good)
    np.testing.assert_array_equal(res.failed_rows, np.flatnonzero(~good))
    assert all("boom" in res.errors[i] for i in np.flatnonzero(theta[:, 0] > 0.5))
    assert all("NaN" in res.errors[i] for i in np.flatnonzero(theta[:, 0] < -0.5))
    assert np.isnan(res.X[~good]).all()
    np.testing.assert_array_equal(res.X[good], X)


def test_wrong_shape_is_a_failure():
    def sim(theta):
        return np.zeros(3) if theta[0] > 0 else np.zeros(2)

    res = simulate(sim, np.array([[1.0], [2.0], [-1.0]]), return_result=True)
    assert res.ok.tolist() == [True, True, False]
    assert "shape" in res.errors[2]


def test_timeout():
    theta = np.array([[-1.0], [1.0], [-2.0]])
    res = simulate(sleepy, theta, timeout=0.5, return_result=True)
    assert res.ok.tolist() == [True, False, True]
    assert "timed out" in res.errors[1]


def _catches_exception(theta):
    while theta[0] > 0:
        try:
            time.sleep(10)
        except Exception:  # noqa: BLE001 - a simulator that retries on any error
            pass
    return theta


def _swallows_once(theta):
    if theta[0] > 0:
        try:
            time.sleep(10)
        except BaseException:  # noqa: BLE001 - swallows the first interruption
            pass
        time.sleep(10)
    return theta


def _returns_late(theta):
    if theta[0] > 0:
        try:
            time.sleep(10)
        except BaseException:  # noqa: BLE001 - swallows it and returns an answer
            return theta
    return theta


def _waits_on_its_threads(theta):
    if theta[0] > 0:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(lambda: time.sleep(3) or theta).result()
    return theta


@pytest.mark.parametrize("simulator", [_catches_exception, _swallows_once, _returns_late,
                                       _waits_on_its_threads])
def test_a_timeout_is_not_swallowed_by_the_simulator(simulator):
    start = time.monotonic()
    res = simulate(simulator, np.array([[-1.0], [1.0]]), timeout=0.3, return_result=True)
    # Without the repeated alarm these take 10 s, forever, or 3 s.
    assert time.monotonic() - start < 2.5
    assert res.ok.tolist() == [True, False] and res.errors[1] == "timed out"


def test_a_timeout_outside_the_main_thread_abandons_the_call():
    box = {}
    thread = threading.Thread(target=lambda: box.update(res=simulate(
        _catches_exception, np.array([[1.0], [-1.0]]), timeout=0.3, return_result=True)))
    start = time.monotonic()
    thread.start()
    thread.join(10)
    assert time.monotonic() - start < 2.5
    assert box["res"].ok.tolist() == [False, True] and box["res"].errors[0] == "timed out"


@pytest.mark.parametrize("timeout", [True, False, 0, -1.0, float("nan"), float("inf"), "1",
                                     np.array([1.0])])
def test_bad_timeout_is_refused(theta, timeout):
    with pytest.raises(ValueError, match="timeout"):
        simulate(deterministic, theta, timeout=timeout)


def test_bad_inputs(theta):
    with pytest.raises(TypeError, match="callable"):
        simulate("sim", theta)
    with pytest.raises(ValueError, match="NaN"):
        simulate(deterministic, np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="no rows"):
        simulate(deterministic, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="on_error"):
        simulate(deterministic, theta, on_error="ignore")
    with pytest.raises(ValueError, match="random_state"):
        simulate(deterministic, theta, random_state=-3)
    with pytest.raises(TypeError, match="numeric"):
        simulate(deterministic, np.array([["a"]], dtype=object))
    with pytest.raises(ValueError, match="batch_size"):
        simulate(deterministic, theta, batch_size=0)


def test_all_failed_raises():
    with pytest.raises(SimulationError, match="all 2 simulations failed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulate(lambda t: np.array([np.inf]), np.zeros((2, 1)), on_error="skip")


def test_progress_bar(theta, capsys):
    simulate(deterministic, theta, progress=True)
    assert "simulate" in capsys.readouterr().err


@pytest.mark.dask
def test_dask_local_cluster_bit_identical(theta, always_parallel):
    distributed = pytest.importorskip("distributed")
    ref = simulate(noisy, theta, random_state=7)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            with joblib.parallel_config(backend="dask"):
                X = simulate(noisy, theta, random_state=7, n_jobs=2, batch_size=5)
    np.testing.assert_array_equal(X, ref)


def _mostly_wrong(theta, rng):
    """Returns 2 numbers for theta < 0.7 (most rows) and the right 3 otherwise."""
    return np.zeros(2) if theta[0] < 0.7 else np.ones(3)


def test_a_declared_event_shape_fails_the_misshapen_rows_whatever_their_number():
    theta = pd.DataFrame({"a": np.linspace(0, 1, 10)})
    # Undeclared, the most common shape wins and the right rows fail.
    majority = simulate(_mostly_wrong, theta, return_result=True)
    assert majority.X.shape == (10, 2) and majority.ok.sum() == 7
    result = simulate(_mostly_wrong, theta, return_result=True, event_shape=(3,))
    assert result.X.shape == (10, 3)
    np.testing.assert_array_equal(result.ok, theta["a"].to_numpy() >= 0.7)
    assert "returned shape (2,), expected (3,)" in result.errors[0]
    with pytest.raises(ValueError, match="event_shape"):
        simulate(_mostly_wrong, theta, event_shape=(-1,))


def test_skipped_rows_tell_how_to_keep_theta_paired(theta):
    from sklearn_tmnre import TMNREEstimator

    with pytest.warns(SimulationWarning, match=r"theta\[result.ok\]"):
        X = simulate(flaky, theta, random_state=0, on_error="skip")
    # Fitting the shortened X against the full theta cannot mispair the rows: it is an
    # error that says where the rows went and how to keep the pairs.
    with pytest.raises(ValueError, match=r"on_error='skip'.*y\[result.ok\]"):
        TMNREEstimator(max_epochs=1).fit(X, theta)
