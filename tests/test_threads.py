import numpy as np
import pytest
import torch
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._threads import available_cores, resolve_n_threads, torch_compute


def test_explicit_count_is_used():
    assert resolve_n_threads(3) == 3


def test_auto_is_one_thread_for_vector_embeddings(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    for embedding in ("identity", "linear", "mlp", "deepset"):
        assert resolve_n_threads(None, embedding) == 1


def test_auto_is_the_free_cores_for_other_embeddings(monkeypatch):
    cores = available_cores()
    assert 1 <= resolve_n_threads(None, "cnn2d") <= cores
    monkeypatch.setattr("os.getloadavg", lambda: (cores + 5.0, 0.0, 0.0))
    assert resolve_n_threads(None, "cnn2d") == 1  # every core busy: one thread
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    assert resolve_n_threads(None, "cnn1d") == cores  # idle: every core
    assert resolve_n_threads(None, torch.nn.Linear) == cores  # a custom module class


def test_no_load_average_means_one_thread(monkeypatch):
    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr("os.getloadavg", unavailable)
    assert resolve_n_threads(None, "cnn2d") == 1


def test_torch_compute_restores_the_count_and_flushes_denormals():
    before = torch.get_num_threads()
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal in float32
    with torch_compute(1):
        assert torch.get_num_threads() == 1
        if torch.set_flush_denormal(True):  # where the CPU supports flushing
            assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() > 0.0  # restored: subnormals kept
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_compute(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_fit_and_posterior_use_n_threads_and_leave_torch_as_it_was(monkeypatch):
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    prior = Prior({"a": stats.uniform(0, 1)})
    theta = prior.sample(64, random_state=0)
    X = theta.to_numpy() + 0.1 * np.random.default_rng(0).standard_normal((64, 1))
    before = torch.get_num_threads()
    est = TMNREEstimator(prior=prior, max_epochs=1, hidden_features=8, n_threads=1,
                         random_state=0).fit(X, theta)
    est.posterior(X[0])
    assert torch.get_num_threads() == before
    assert seen and seen[0] == 1 and set(seen) <= {1, before}  # set to 1, then restored
