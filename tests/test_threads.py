import numpy as np
import pytest
import torch
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._threads import available_cores, resolve_n_threads, torch_threads


def test_explicit_count_is_used():
    assert resolve_n_threads(3) == 3


def test_auto_is_between_one_and_the_cores(monkeypatch):
    cores = available_cores()
    assert 1 <= resolve_n_threads(None) <= cores
    monkeypatch.setattr("os.getloadavg", lambda: (cores + 5.0, 0.0, 0.0))
    assert resolve_n_threads(None) == 1  # every core busy: one thread
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    assert resolve_n_threads(None) == cores  # idle: every core


def test_no_load_average_means_one_thread(monkeypatch):
    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr("os.getloadavg", unavailable)
    assert resolve_n_threads(None) == 1


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
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
