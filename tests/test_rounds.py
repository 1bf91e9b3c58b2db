"""Tests of TMNRE: rounds, simulation reuse, determinism, failures, resumption, Dask."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone

from sklearn_tmnre import Prior, SimulationError, TMNREEstimator
from sklearn_tmnre.rounds import TMNRE, _WarmStart, budget_schedule
from sklearn_tmnre.store import SimulationStore
from sklearn_tmnre.truncation import Truncator

NOISE = 0.2
# The box of epsilon = 1e-4 is about 1/5 of this prior per parameter (2 * 4.3 sigma of 10).
PRIOR = Prior({"a": stats.uniform(-5, 10), "b": stats.uniform(-5, 10)})
X_O = np.array([1.0, -2.0])
X_TEST = np.array([[1.0, -2.0], [1.2, -1.9], [0.8, -2.2]])


def shift(theta, rng):
    """x = theta + NOISE * standard normal."""
    return theta + NOISE * rng.standard_normal(theta.shape)


def fragile(theta, rng):
    """``shift``, but it raises for a > 2 (30 % of the prior)."""
    if theta[0] > 2:
        raise RuntimeError("unstable for a > 2")
    return shift(theta, rng)


def always_fails(theta, rng):
    raise RuntimeError("broken simulator")


def _estimator(**kwargs):
    return TMNREEstimator(hidden_features=16, embedding_dim=8, max_epochs=50, patience=10,
                          batch_size=32, lr=1e-2, **kwargs)


def _run(simulator=shift, **kwargs):
    params = dict(estimator=_estimator(), truncator=Truncator(epsilon=1e-4),
                  n_sims=[300, 300, 300], max_rounds=3, random_state=0)
    params.update(kwargs)
    return TMNRE(simulator, PRIOR, **params)


def _store_content(path):
    """Every committed row of a store, in (round, index) order."""
    store = SimulationStore(path, mode="r")
    order = np.lexsort((store.indices, store.rounds))
    return {"theta": store.theta.to_numpy()[order], "X": np.asarray(store.X)[order],
            "ok": store.ok[order], "round": store.rounds[order], "index": store.indices[order]}


def _assert_same_store(path_a, path_b):
    a, b = _store_content(path_a), _store_content(path_b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _comparable(rounds):
    return rounds.drop(columns=["seconds", "n_resumed"])


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    path = tmp_path_factory.mktemp("campaign") / "sims.zarr"
    return _run(store=str(path)).fit(X_O), path


def test_rounds_table(campaign):
    run, _ = campaign
    rounds = run.rounds_
    assert list(rounds.columns) == ["round", "n_simulated", "n_reused", "n_failed", "n_train",
                                    "n_resumed", "mass", "bounds", "val_loss", "seconds"]
    assert len(rounds) >= 2
    assert list(rounds["round"]) == list(range(len(rounds)))
    assert rounds["mass"].iloc[0] == 1.0
    # Boxes are nested (a final round after convergence may keep the same box).
    assert (np.diff(rounds["mass"]) <= 0).all()
    # The prior is 5x too wide per parameter: one truncation removes most of it.
    assert rounds["mass"].iloc[1] < 0.35
    for box in rounds["bounds"]:
        assert box["a"][0] < X_O[0] < box["a"][1] and box["b"][0] < X_O[1] < box["b"][1]
    # n_sims counts new simulations; reused ones come on top.
    np.testing.assert_array_equal(rounds["n_simulated"], 300)
    assert rounds["n_reused"].iloc[0] == 0
    assert (rounds["n_reused"].iloc[1:] > 0).all()
    assert (rounds["n_failed"] == 0).all() and (rounds["n_resumed"] == 0).all()
    np.testing.assert_array_equal(rounds["n_train"], rounds["n_reused"] + rounds["n_simulated"])
    assert np.isfinite(rounds["val_loss"]).all() and (rounds["seconds"] > 0).all()


def test_reused_draws_are_the_stored_ones_inside_the_box(campaign):
    run, path = campaign
    store = SimulationStore(path, mode="r")
    assert len(store) == run.rounds_["n_simulated"].sum()
    theta = store.theta
    for k, row in run.rounds_.iterrows():
        box = Prior(PRIOR.distributions, bounds=row["bounds"])
        inside = box.contains(theta)
        assert inside[store.rounds == k].all()
        assert (inside & (store.rounds < k) & store.ok).sum() == row["n_reused"]


def test_stopping_rule_and_nested_boxes(campaign):
    run, _ = campaign
    rounds = run.rounds_
    ratios = [t.mass_ / m for t, m in zip(run.truncators_, rounds["mass"])]
    # Rounds go on while the box shrinks; once it converges, one final round gets the
    # unspent budget, and the run ends after it.
    # Round 0's box never ends the truncation.
    converged = [k > 0 and r > 0.8 for k, r in enumerate(ratios)]
    first = converged.index(True) if any(converged) else len(ratios)
    assert len(rounds) == min(first + 2, 3)
    np.testing.assert_allclose(rounds["mass"].iloc[1:], [t.mass_ for t in run.truncators_[:-1]],
                               rtol=1e-12)
    for outer, inner in zip(rounds["bounds"], rounds["bounds"].iloc[1:]):
        for name in PRIOR.names:
            assert outer[name][0] <= inner[name][0] < inner[name][1] <= outer[name][1]


def test_fitted_attributes(campaign):
    run, _ = campaign
    n = len(run.rounds_)
    assert len(run.estimators_) == len(run.truncators_) == n
    assert run.estimator_ is run.estimators_[-1] and run.truncator_ is run.truncators_[-1]
    for est, box in zip(run.estimators_, run.rounds_["bounds"]):
        assert est.prior_ == Prior(PRIOR.distributions, bounds=box)
    assert run.prior_ == run.truncator_.prior_
    assert run.store_.path == SimulationStore(campaign[1]).path
    # Posterior of x = theta + 0.2 noise under a flat prior: N(x_o, 0.2^2) per parameter.
    summary = run.posterior_.summary()
    np.testing.assert_allclose(summary["mean"], X_O, atol=0.15)
    assert ((summary["std"] > 0.1) & (summary["std"] < 0.4)).all()


def test_same_random_state_same_result(campaign):
    run, _ = campaign
    again = _run().fit(X_O)  # in a temporary store this time
    assert again.store_ is None
    pd.testing.assert_frame_equal(_comparable(run.rounds_), _comparable(again.rounds_))
    np.testing.assert_array_equal(run.estimator_.predict(X_TEST),
                                  again.estimator_.predict(X_TEST))
    pd.testing.assert_frame_equal(run.truncator_.bounds_, again.truncator_.bounds_)


def test_other_random_state_other_draws(campaign):
    run, _ = campaign
    other = _run(random_state=1, max_rounds=1).fit(X_O)
    assert not np.array_equal(run.estimators_[0].predict(X_TEST),
                              other.estimators_[0].predict(X_TEST))


def test_rerun_on_the_store_simulates_nothing(campaign):
    run, path = campaign
    n_rows = len(SimulationStore(path, mode="r"))
    # random_state=None continues the store's campaign.
    rerun = _run(store=str(path), random_state=None).fit(X_O)
    assert len(SimulationStore(path, mode="r")) == n_rows
    np.testing.assert_array_equal(rerun.rounds_["n_resumed"], rerun.rounds_["n_simulated"])
    pd.testing.assert_frame_equal(_comparable(run.rounds_), _comparable(rerun.rounds_))
    np.testing.assert_array_equal(run.estimator_.predict(X_TEST),
                                  rerun.estimator_.predict(X_TEST))


def test_store_of_another_campaign_is_refused(campaign):
    _, path = campaign
    with pytest.raises(ValueError, match="random_state"):
        _run(store=str(path), random_state=1).fit(X_O)
    narrower = Prior({"a": stats.uniform(-4, 8), "b": stats.uniform(-5, 10)})
    with pytest.raises(ValueError, match="another prior"):
        TMNRE(shift, narrower, store=str(path), random_state=0).fit(X_O)


class RecordingEstimator(TMNREEstimator):
    """A TMNREEstimator that keeps the data it was fitted on."""

    def fit(self, X, y):
        self.seen_X_, self.seen_theta_ = np.array(X), pd.DataFrame(y).copy()
        return super().fit(X, y)


def test_failed_simulations_are_counted_and_never_trained_on(tmp_path):
    est = RecordingEstimator(hidden_features=16, embedding_dim=8, max_epochs=50, patience=10,
                             batch_size=32, lr=1e-2)
    run = _run(fragile, estimator=est, n_sims=[200, 200], max_rounds=2, convergence_ratio=1.0,
               store=str(tmp_path / "sims.zarr")).fit(X_O)
    store = SimulationStore(tmp_path / "sims.zarr", mode="r")
    rounds = run.rounds_
    # Round 0 draws a uniformly on [-5, 5]: 30 % above 2, within 4 binomial sd of 200 * 0.3.
    assert abs(rounds["n_failed"].iloc[0] - 60) < 4 * np.sqrt(200 * 0.3 * 0.7)
    expected = [((store.theta["a"] > 2) & (store.rounds == k)).sum() for k in rounds["round"]]
    np.testing.assert_array_equal(rounds["n_failed"], expected)
    failures = store.failures()
    assert len(failures) == rounds["n_failed"].sum() == store.n_failed
    assert failures["error"].str.contains("unstable for a > 2").all()
    np.testing.assert_array_equal(rounds["n_train"],
                                  rounds["n_reused"] + rounds["n_simulated"] - rounds["n_failed"])
    for est_k, n_train in zip(run.estimators_, rounds["n_train"]):
        assert len(est_k.seen_theta_) == n_train
        assert (est_k.seen_theta_["a"] <= 2).all()
        assert np.isfinite(est_k.seen_X_).all()


def test_on_error_raise_stops_after_storing_the_batch(tmp_path):
    path = tmp_path / "sims.zarr"
    with pytest.raises(SimulationError, match="unstable for a > 2"):
        _run(fragile, n_sims=[50], on_error="raise", simulate_batch_size=25,
             store=str(path)).fit(X_O)
    store = SimulationStore(path, mode="r")
    assert len(store) == 25 and store.n_failed > 0


def test_a_round_where_everything_fails_is_an_error(tmp_path):
    path = tmp_path / "sims.zarr"
    with pytest.raises(SimulationError, match="every simulation of round 0 failed"):
        _run(always_fails, n_sims=20, store=str(path)).fit(X_O)
    assert len(SimulationStore(path)) == 0



def test_a_prior_with_a_field_is_refused_before_any_simulation(tmp_path):
    calls = []

    def counted(theta, rng):
        calls.append(1)
        return np.zeros((4, 4))

    prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occupancy", (4, 4, 1))
    path = tmp_path / "sims.zarr"
    with pytest.raises(ValueError, match="field parameters \\['occupancy'\\].*fit\\(X, theta"):
        TMNRE(counted, prior, n_sims=20, store=str(path)).fit(np.zeros((4, 4)))
    assert not calls and not path.exists()

def test_budget_list_warm_start_and_progress_lines(capsys):
    run = _run(n_sims=[200, 100], max_rounds=5, convergence_ratio=1.0, warm_start=True,
               verbose=1).fit(X_O)
    rounds = run.rounds_
    assert list(rounds["round"]) == [0, 1]
    np.testing.assert_array_equal(rounds["n_simulated"], [200, 100])
    assert rounds["n_train"].iloc[1] == 100 + rounds["n_reused"].iloc[1]
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("TMNRE round")]
    assert len(lines) == 2 and "reused" in lines[1] and "box mass" in lines[1]


def test_warm_start_callback_copies_the_parameters():
    theta = PRIOR.sample(100, random_state=0)
    X = shift(theta.to_numpy(), np.random.default_rng(0))
    source = _estimator(prior=PRIOR, random_state=0).fit(X, theta)
    params = {n: p.detach().clone() for n, p in source.net_.module_.named_parameters()}
    # A learning rate of 1e-12 leaves the copied parameters as they start.
    warm = clone(source).set_params(random_state=1, lr=1e-12, max_epochs=1,
                                    callbacks=[("warm_start", _WarmStart(params))])
    warm.fit(X, theta)
    for name, value in warm.net_.module_.named_parameters():
        np.testing.assert_allclose(value.detach().numpy(), params[name].numpy(), atol=1e-9)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_sims": []}, ValueError, "empty"),
    ({"n_sims": 1}, ValueError, "n_sims"),
    ({"n_sims": [100, 1.5]}, ValueError, "entry 1"),
    ({"max_rounds": 0}, ValueError, "max_rounds"),
    ({"convergence_ratio": 0}, ValueError, "convergence_ratio"),
    ({"on_error": "ignore"}, ValueError, "on_error"),
    ({"timeout": -1}, ValueError, "timeout"),
    ({"simulate_batch_size": 0}, ValueError, "simulate_batch_size"),
    ({"estimator": object()}, TypeError, "estimator"),
    ({"truncator": object()}, TypeError, "truncator"),
    ({"store": 3}, TypeError, "store"),
    ({"random_state": -1}, ValueError, "random_state"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _run(**kwargs).fit(X_O)


def test_bad_simulator_prior_and_observation(tmp_path):
    with pytest.raises(TypeError, match="simulator"):
        TMNRE("shift", PRIOR).fit(X_O)
    with pytest.raises(TypeError, match="prior"):
        TMNRE(shift, {"a": stats.uniform(0, 1)}).fit(X_O)
    with pytest.raises(ValueError, match="finite"):
        _run().fit(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="x_o has shape"):
        _run(n_sims=20, store=str(tmp_path / "sims.zarr")).fit(np.zeros(3))


KILL_SCRIPT = """
import sys
import time

import numpy as np
import torch
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.rounds import TMNRE
from sklearn_tmnre.truncation import Truncator
from skorch.callbacks import Callback

torch.set_num_threads(1)


def slow_shift(theta, rng):
    time.sleep(0.02)
    return theta + 0.2 * rng.standard_normal(theta.shape)


class Marker(Callback):
    # Appends a line to a file when a training starts; slows epochs so a kill can land.

    def __init__(self, path):
        self.path = path

    def on_train_begin(self, net, **kwargs):
        with open(self.path, "a") as f:
            f.write("train\\n")

    def on_epoch_end(self, net, **kwargs):
        time.sleep(0.02)


prior = Prior({"a": stats.uniform(-5, 10), "b": stats.uniform(-5, 10)})
estimator = TMNREEstimator(hidden_features=16, embedding_dim=8, max_epochs=50, patience=10,
                           batch_size=32, lr=1e-2,
                           callbacks=[("marker", Marker(sys.argv[2] + "-trainings.txt"))])
run = TMNRE(slow_shift, prior, estimator=estimator, truncator=Truncator(epsilon=1e-4),
            n_sims=[100, 150], convergence_ratio=1.0, store=sys.argv[1],
            simulate_batch_size=10, random_state=7).fit(np.array([1.0, -2.0]))
run.rounds_.to_pickle(sys.argv[2] + "-rounds.pkl")
np.save(sys.argv[2] + "-predict.npy",
        run.estimator_.predict(np.array([[1.0, -2.0], [1.2, -1.9], [0.8, -2.2]])))
"""


def _committed(path, k):
    try:
        return len(SimulationStore(path, mode="r").done_indices(k))
    except FileNotFoundError:  # nothing committed yet
        return 0


def _trainings(prefix):
    try:
        with open(f"{prefix}-trainings.txt") as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("phase", ["simulation", "training"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, phase):
    script = tmp_path / "campaign.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    killed_store, reference_store = tmp_path / "killed.zarr", tmp_path / "reference.zarr"
    killed = subprocess.Popen([sys.executable, str(script), str(killed_store),
                               str(tmp_path / "killed")])
    reference = subprocess.Popen([sys.executable, str(script), str(reference_store),
                                  str(tmp_path / "reference")])
    try:
        deadline = time.monotonic() + 300
        # Kill during round 1's simulations, after its first batch is committed, or
        # while round 1's network trains (every round-1 simulation is committed).
        def ready():
            if phase == "simulation":
                return _committed(killed_store, 1) > 0
            return _trainings(tmp_path / "killed") >= 2

        while not ready():
            assert killed.poll() is None, "the campaign finished before it could be killed"
            assert time.monotonic() < deadline, "round 1 never started"
            time.sleep(0.01)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        at_kill = _committed(killed_store, 1)
        assert reference.wait(timeout=300) == 0
    finally:
        for proc in (killed, reference):
            if proc.poll() is None:
                proc.kill()
    resumed = subprocess.run([sys.executable, str(script), str(killed_store),
                              str(tmp_path / "killed")], timeout=300)
    assert resumed.returncode == 0

    _assert_same_store(killed_store, reference_store)
    rounds_killed = pd.read_pickle(tmp_path / "killed-rounds.pkl")
    rounds_reference = pd.read_pickle(tmp_path / "reference-rounds.pkl")
    n_round_1 = rounds_reference["n_simulated"].iloc[1]
    if phase == "simulation":
        # Round 1 asks for 150 draws and at most 100 are reused: at least 50 are simulated.
        # The kill hit the middle of round 1; the rerun found those draws and added the rest.
        assert 0 < at_kill < n_round_1
    else:
        # Killed while training: every simulation of round 1 was already safe on disk.
        assert at_kill == n_round_1
    assert list(rounds_killed["n_resumed"]) == [rounds_reference["n_simulated"].iloc[0], at_kill]
    pd.testing.assert_frame_equal(_comparable(rounds_killed), _comparable(rounds_reference))
    np.testing.assert_array_equal(np.load(tmp_path / "killed-predict.npy"),
                                  np.load(tmp_path / "reference-predict.npy"))


class PidLoggingShift:
    """``shift`` that leaves a file named after the process that ran it."""

    def __init__(self, log_dir):
        self.log_dir = str(log_dir)

    def __call__(self, theta, rng):
        open(os.path.join(self.log_dir, str(os.getpid())), "a").close()
        return shift(theta, rng)


@pytest.mark.dask
def test_dask_cluster_gives_the_local_store(tmp_path):
    distributed = pytest.importorskip("distributed")
    import joblib

    log_dir = tmp_path / "pids"
    log_dir.mkdir()
    simulator = PidLoggingShift(log_dir)
    kwargs = dict(n_sims=60, max_rounds=1, simulate_batch_size=20, random_state=5)
    local = _run(simulator, store=str(tmp_path / "local.zarr"), **kwargs).fit(X_O)
    assert {p.name for p in log_dir.iterdir()} == {str(os.getpid())}
    for p in log_dir.iterdir():
        p.unlink()
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            # n_jobs=None: the active joblib backend (here every Dask worker) decides.
            remote = _run(simulator, store=str(tmp_path / "dask.zarr"), **kwargs).fit(X_O)
    workers = {p.name for p in log_dir.iterdir()}
    assert workers and str(os.getpid()) not in workers
    _assert_same_store(tmp_path / "local.zarr", tmp_path / "dask.zarr")
    pd.testing.assert_frame_equal(_comparable(local.rounds_), _comparable(remote.rounds_))


class KillsItsWorkerOnce:
    """``shift`` that kills the Dask worker process running it, the first time only.

    The first call with ``a`` above ``threshold`` leaves a marker file and
    SIGKILLs its own process (a worker lost mid-round); later calls, including
    the retry the scheduler sends to a fresh worker, simulate normally.
    """

    def __init__(self, marker, threshold=0.0):
        self.marker = str(marker)
        self.threshold = threshold

    def __call__(self, theta, rng):
        if theta[0] > self.threshold and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return shift(theta, rng)


@pytest.mark.dask
def test_a_killed_dask_worker_loses_and_duplicates_nothing(tmp_path):
    distributed = pytest.importorskip("distributed")
    import joblib

    kwargs = dict(n_sims=60, max_rounds=1, simulate_batch_size=20, random_state=5)
    local = _run(shift, store=str(tmp_path / "local.zarr"), **kwargs).fit(X_O)
    simulator = KillsItsWorkerOnce(tmp_path / "killed-once")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            remote = _run(simulator, store=str(tmp_path / "dask.zarr"), **kwargs).fit(X_O)
    assert (tmp_path / "killed-once").exists(), "no worker was killed"
    # The lost task was retried elsewhere: every row once, the same rows as a local run.
    _assert_same_store(tmp_path / "local.zarr", tmp_path / "dask.zarr")
    assert remote.rounds_["n_failed"].sum() == 0
    pd.testing.assert_frame_equal(_comparable(local.rounds_), _comparable(remote.rounds_))


def uninformative(theta, rng):
    """Data that carry no information: the box never shrinks."""
    return rng.standard_normal(2)


def test_converged_box_gets_the_unspent_budget_in_a_final_round():
    spend = _run(uninformative, n_sims=[100, 100, 100, 100], max_rounds=4).fit(X_O)
    # The box never shrinks; round 0's box does not end the truncation, round 1's does,
    # and the final round simulates the 200 unspent draws and trains on every draw.
    np.testing.assert_array_equal(spend.rounds_["n_simulated"], [100, 100, 200])
    np.testing.assert_array_equal(spend.rounds_["n_train"], [100, 200, 400])
    stop = _run(uninformative, n_sims=[100, 100, 100, 100], max_rounds=4,
                spend_budget=False).fit(X_O)
    assert len(stop.rounds_) == 2  # converged after round 1: the loop stops


def test_a_total_budget_is_spread_over_the_rounds_and_spent():
    assert budget_schedule(10_000, 5) == [3_000, 1_750, 1_750, 1_750, 1_750]
    assert budget_schedule(10_000, 1) == [10_000]
    for n, rounds in [(2, 5), (5, 5), (10, 5), (1_001, 4)]:
        schedule = budget_schedule(n, rounds)
        assert sum(schedule) == n and min(schedule) >= 2 and len(schedule) <= rounds
    run = _run(uninformative, n_sims=300, max_rounds=4).fit(X_O)
    # [90, 70, 70, 70] planned; the box converged after round 1, so round 2 got the rest.
    np.testing.assert_array_equal(run.rounds_["n_simulated"], [90, 70, 140])
    run = _run(n_sims=400, max_rounds=2, convergence_ratio=1.0).fit(X_O)
    np.testing.assert_array_equal(run.rounds_["n_simulated"], [120, 280])


def test_a_nuisance_parameter_without_marginal_runs_to_the_end():
    prior = Prior({"a": stats.uniform(-5, 10), "b": stats.uniform(-5, 10),
                   "nuisance": stats.uniform(0, 1)})

    def simulator(theta, rng):
        return theta[:2] + theta[2] * 0.01 + NOISE * rng.standard_normal(2)

    run = TMNRE(simulator, prior, estimator=_estimator(marginals=[("a",), ("b",)]),
                truncator=Truncator(epsilon=1e-4), n_sims=[200, 200], random_state=0).fit(X_O)
    assert list(run.posterior_.summary().index) == ["a", "b"]
    # Truncated where it has a 1-d marginal; the nuisance keeps its prior bounds.
    assert run.prior_.support.loc["nuisance"].tolist() == [0.0, 1.0]
    assert run.truncator_.mass_ < 0.5


START_SCRIPT = """
import sys
import time

from scipy import stats

import sklearn_tmnre.rounds as rounds
from sklearn_tmnre import Prior
from sklearn_tmnre.rounds import TMNRE
from sklearn_tmnre.store import SimulationStore

slow = rounds._campaign_entropy


def _slow_entropy(random_state):
    time.sleep(1.0)  # widen the window between reading the record and writing it
    return slow(random_state)


rounds._campaign_entropy = _slow_entropy
prior = Prior({"a": stats.uniform(-5, 10)})
run = TMNRE(lambda theta, rng: theta, prior, store=sys.argv[1])
print(run._start_campaign(SimulationStore(sys.argv[1])))
"""


def test_two_runs_starting_on_one_store_agree_on_one_campaign(tmp_path):
    path = str(tmp_path / "sims.zarr")
    procs = [subprocess.Popen([sys.executable, "-c", START_SCRIPT, path], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    entropies = {out.strip() for out, _ in outs}
    assert len(entropies) == 1
    stored = SimulationStore(path, mode="r").attrs["sklearn_tmnre.TMNRE"]["entropy"]
    assert entropies == {stored}


def shape_shifter(theta, rng):
    """``shift`` for a < 0.5; three numbers (the wrong shape) for a >= 0.5."""
    if theta[0] >= 0.5:
        return np.zeros(3)
    return shift(theta, rng)


def test_outputs_of_another_shape_than_the_stores_are_failures(tmp_path):
    # Round 0 fixes the event shape (2,) (most of the prior has a < 0.5); round 1's box
    # lies around a = 1, where most draws return the wrong shape: those fail, the right
    # ones are kept (the most common shape would have failed the right ones).
    prior = Prior({"a": stats.uniform(-5, 10), "b": stats.uniform(-5, 10)})
    run = TMNRE(shape_shifter, prior, estimator=_estimator(),
                truncator=Truncator(epsilon=1e-4), n_sims=[300, 200], convergence_ratio=1.0,
                store=str(tmp_path / "sims.zarr"), random_state=0).fit(X_O)
    store = SimulationStore(tmp_path / "sims.zarr", mode="r")
    assert store.event_shape == (2,)
    wrong = store.theta["a"].to_numpy() >= 0.5
    np.testing.assert_array_equal(store.ok, ~wrong)
    assert run.rounds_["n_failed"].sum() == wrong.sum() > 0


# ------------------------------------------------------------ parameter validation
def _never_called(theta, rng):
    raise AssertionError("validation must come before any simulation")


@pytest.mark.parametrize("kwargs, match", [
    ({"n_sims": True}, "'n_sims' parameter of TMNRE must be a number, not a boolean"),
    ({"n_sims": 2.5}, "'n_sims' parameter .* It is the total number of new simulations"),
    ({"max_rounds": True}, "'max_rounds' parameter .* not a boolean"),
    ({"convergence_ratio": 1.5}, r"'convergence_ratio' parameter .* \(0\.0, 1\.0\]"),
    ({"convergence_ratio": float("nan")}, "'convergence_ratio' parameter"),
    ({"warm_start": 1}, "'warm_start' parameter .* 'bool'"),
    ({"spend_budget": "yes"}, "'spend_budget' parameter"),
    ({"n_jobs": 2.0}, "'n_jobs' parameter"),
    ({"n_jobs": True}, "'n_jobs' parameter .* not a boolean"),
    ({"simulate_batch_size": True}, "'simulate_batch_size' parameter .* not a boolean"),
    ({"timeout": float("inf")}, "'timeout' parameter .* seconds allowed per simulation"),
    ({"timeout": True}, "'timeout' parameter .* not a boolean"),
    ({"random_state": "0"}, "'random_state' parameter"),
    ({"random_state": np.random.SeedSequence(0)}, "'random_state' parameter"),
    ({"verbose": -1}, "'verbose' parameter"),
    ({"on_error": "retry"}, r"'on_error' parameter .* among \{"),
    ({"estimator": Truncator()}, "'estimator' parameter .*TMNREEstimator' or None"),
])
def test_parameters_are_validated_before_any_simulation(tmp_path, kwargs, match):
    run = _run(_never_called, store=str(tmp_path / "sims.zarr"), **kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        run.fit(X_O)
    assert not (tmp_path / "sims.zarr").exists()


def test_any_non_negative_int_is_a_campaign_seed():
    # A campaign's entropy may exceed 2**32 (one drawn for random_state=None): passing it
    # back must stay possible, unlike an estimator's 32-bit random_state.
    for state in (2**40, np.random.default_rng(0), np.random.RandomState(0), None):
        TMNRE(shift, PRIOR, random_state=state)._check_params()


# The campaign of KILL_SCRIPT, in three rounds, each network starting from the last one's.
WARM_KILL_SCRIPT = KILL_SCRIPT.replace(
    "n_sims=[100, 150], convergence_ratio=1.0,",
    "n_sims=[60, 60, 60], max_rounds=3, convergence_ratio=1.0, warm_start=True,")


def _rows_at(path):
    """theta, round and index of every committed row (None before the first commit)."""
    try:
        store = SimulationStore(path, mode="r")
    except FileNotFoundError:
        return None
    return store.theta.to_numpy(), store.rounds, store.indices


def _kill_when(proc, ready, deadline):
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the campaign made no progress"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.parametrize("kills", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_killed_warm_started_run_loses_no_rows(tmp_path, kills):
    # One kill checks the store; three (slow) also compare with an uninterrupted campaign.
    assert "warm_start=True" in WARM_KILL_SCRIPT
    script = tmp_path / "campaign.py"
    script.write_text(textwrap.dedent(WARM_KILL_SCRIPT))
    killed_store, reference_store = tmp_path / "killed.zarr", tmp_path / "reference.zarr"
    reference = None
    if kills > 1:
        reference = subprocess.Popen([sys.executable, str(script), str(reference_store),
                                      str(tmp_path / "reference")])
    seen = []
    try:
        for k in range(kills):
            # Alternately between rounds (a training started: every simulation of the round
            # before is committed) and in the middle of a round's simulations (new rows).
            trainings, rows = _trainings(tmp_path / "killed"), _rows_at(killed_store)
            n_rows = 0 if rows is None else len(rows[0])
            if k % 2 == 0:
                def ready(t=trainings):
                    return _trainings(tmp_path / "killed") > t
            else:
                def ready(n=n_rows):
                    rows = _rows_at(killed_store)
                    return rows is not None and len(rows[0]) > n
            killed = subprocess.Popen([sys.executable, str(script), str(killed_store),
                                       str(tmp_path / "killed")])
            try:
                assert _kill_when(killed, ready, time.monotonic() + 300), \
                    "the campaign finished before it could be killed"
            finally:
                if killed.poll() is None:
                    killed.kill()
            seen.append(_rows_at(killed_store))
        assert reference is None or reference.wait(timeout=300) == 0
    finally:
        if reference is not None and reference.poll() is None:
            reference.kill()
    resumed = subprocess.run([sys.executable, str(script), str(killed_store),
                              str(tmp_path / "killed")], timeout=300)
    assert resumed.returncode == 0

    final = SimulationStore(killed_store, mode="r")
    assert final.verify().ok
    theta, rounds, indices = _rows_at(killed_store)
    assert seen[0] is not None  # the first kill came after round 0 was committed
    for at_kill in seen:  # every row committed before a kill is still there, unchanged
        n = len(at_kill[0])
        np.testing.assert_array_equal(theta[:n], at_kill[0])
        np.testing.assert_array_equal(rounds[:n], at_kill[1])
        np.testing.assert_array_equal(indices[:n], at_kill[2])
    for r in np.unique(rounds):  # each round's draws once each, none missing
        np.testing.assert_array_equal(final.done_indices(r), np.arange((rounds == r).sum()))
    assert len(pd.read_pickle(tmp_path / "killed-rounds.pkl")) == 3
    if reference is not None:
        _assert_same_store(killed_store, reference_store)
        np.testing.assert_array_equal(np.load(tmp_path / "killed-predict.npy"),
                                      np.load(tmp_path / "reference-predict.npy"))


def test_campaign_records_name_the_prior_by_its_serialized_form():
    from sklearn_tmnre.rounds import _describe_prior, _prior_record, _same_prior

    def histogram(seed):
        draws = np.random.default_rng(seed).normal(size=200)
        counts = np.histogram(draws, bins=8, range=(-4, 4))
        return Prior({"a": stats.rv_histogram(counts, density=True)()})

    first, second = histogram(0), histogram(1)
    record = {"entropy": "7", **_prior_record(first), "rounds": {}}
    assert record["prior_format"] == 2 and record["prior"] == first.to_dict()
    assert _same_prior(record, first) and not _same_prior(record, second)
    # A record written before 0.2 still resumes; its description cannot tell the two
    # histograms apart, which is why new records use Prior.to_dict.
    legacy = {"entropy": "7", "prior": _describe_prior(first), "rounds": {}}
    assert _same_prior(legacy, first) and _same_prior(legacy, second)


def test_a_store_of_a_campaign_with_another_histogram_prior_is_refused(tmp_path):
    def histogram(seed):
        draws = np.random.default_rng(seed).uniform(-3, 3, size=(400, 2))
        return Prior({n: stats.rv_histogram(np.histogram(draws[:, j], bins=6, range=(-3, 3)),
                                             density=True)()
                      for j, n in enumerate(["a", "b"])})

    path = str(tmp_path / "sims")
    est = TMNREEstimator(max_epochs=1, hidden_features=8, embedding_dim=4, num_blocks=1,
                         n_grid_1d=32, n_grid_2d=8)
    TMNRE(shift, histogram(0), estimator=est, n_sims=[60], store=path,
          random_state=0).fit(X_O)
    with pytest.raises(ValueError, match="another prior"):
        TMNRE(shift, histogram(1), estimator=est, n_sims=[60], store=path,
              random_state=0).fit(X_O)
