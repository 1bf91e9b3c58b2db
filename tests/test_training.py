import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sklearn_tmnre import TMNREEstimator
from sklearn_tmnre._training import PairData, ValidationSplit, _Batches, derangement


def test_derangement_has_no_fixed_point():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 64, 257):
        for _ in range(50):
            perm = derangement(n, gen)
            assert sorted(perm.tolist()) == list(range(n))
            assert not (perm == torch.arange(n)).any()


def test_batches_cover_rows_and_redraw_negatives():
    data = PairData(torch.arange(10.0)[:, None], torch.arange(10.0)[:, None])
    it = _Batches(data, batch_size=4, shuffle=True, seed=0, n_negatives=2)
    epoch1 = list(it)
    epoch2 = list(it)
    rows = torch.cat([b["x"][:, 0] for b, _ in epoch1])
    assert sorted(rows.tolist()) == list(range(10))
    assert all(len(b["x"]) >= 2 for b, _ in epoch1)  # no batch of one row
    assert epoch1[0][0]["perm"].shape[1] == 2
    assert not all(torch.equal(a[0]["perm"], b[0]["perm"]) for a, b in zip(epoch1, epoch2))
    valid = _Batches(data, batch_size=4, shuffle=False, seed=1)
    v1, v2 = list(valid), list(valid)
    assert all(torch.equal(a[0]["perm"], b[0]["perm"]) for a, b in zip(v1, v2))


def test_validation_split_sizes():
    split = ValidationSplit(0.2, seed=0)
    train, valid = split(PairData(torch.zeros(50, 1), torch.zeros(50, 1)))
    assert (len(train), len(valid)) == (40, 10)
    assert split.n_valid(5) == 0


def test_validation_split_is_a_view_of_the_rows():
    """The split shares the tensors (a large image set is not held twice) and its two
    parts hold every row exactly once."""
    data = PairData(torch.arange(50.0)[:, None], torch.arange(50.0)[:, None],
                    torch.arange(50, dtype=torch.uint8)[:, None])
    train, valid = ValidationSplit(0.2, seed=0)(data)
    assert train.x is data.x and valid.field is data.field
    rows = torch.cat([part.take(torch.arange(len(part)))[0][:, 0] for part in (train, valid)])
    assert sorted(rows.tolist()) == list(range(50))
    x, theta, field = valid.subset([1, 0]).take(torch.tensor([0, 1]))
    assert torch.equal(x, theta) and torch.equal(x[:, 0].to(torch.uint8), field[:, 0])
    assert torch.equal(x[:, 0], valid.take(torch.tensor([1, 0]))[0][:, 0])


# ---------------------------------------------------------------- training health
def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, (n, 2))
    return theta + 0.1 * rng.standard_normal((n, 2)), theta


class _PoisonAt(Callback):
    """Sets the first weight to NaN during one epoch (1-based): that epoch diverges."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_batch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("nan"))


def test_a_training_that_diverges_at_once_is_an_error():
    X, theta = _data()
    est = TMNREEstimator(max_epochs=5, random_state=0, callbacks=[("poison", _PoisonAt(1))])
    with pytest.raises(ValueError, match="diverged.*lower the learning rate"):
        est.fit(X, theta)


def test_a_later_divergence_restores_the_best_finite_epoch_with_a_warning():
    X, theta = _data()
    est = TMNREEstimator(max_epochs=20, random_state=0, callbacks=[("poison", _PoisonAt(5))])
    with pytest.warns(UserWarning, match="diverged at epoch 5.*weights of epoch [1-4]"):
        est.fit(X, theta)
    assert len(est.net_.history) == 5
    assert np.isfinite(est.predict(X[:3])).all()


def test_a_time_budget_stops_before_an_epoch_that_would_overrun_it(monkeypatch):
    """Epochs of 10 s on a fake clock and a budget of 25 s: the second epoch ends at
    20 s, and a third would end at 30 s, so training stops there, within budget."""
    from sklearn_tmnre import _training

    clock = iter([0.0, 10.0, 20.0])
    monkeypatch.setattr(_training.time, "monotonic", lambda: next(clock))

    class History(list):
        def record(self, key, value):
            self.append((key, value))

    net = type("Net", (), {"history": History()})()
    budget = _training.TimeBudget(25.0)
    budget.on_train_begin(net)
    budget.on_epoch_end(net)  # 10 s in: a second epoch ends at 20 s, within budget
    with pytest.raises(KeyboardInterrupt):
        budget.on_epoch_end(net)
    assert net.history == [("time_budget", True)]


def test_a_time_budget_stops_after_the_epoch_that_crosses_it():
    X, theta = _data()
    est = TMNREEstimator(max_epochs=20, max_time=1e-9, random_state=0).fit(X, theta)
    assert len(est.net_.history) == 1
    assert est.net_.history[-1, "time_budget"]
    assert np.isfinite(est.predict(X[:3])).all()
    roomy = TMNREEstimator(max_epochs=3, patience=10, max_time=1e6, random_state=0)
    assert len(roomy.fit(X, theta).net_.history) == 3


@pytest.mark.parametrize("max_time", [0, -5.0, "1h"])
def test_a_time_budget_must_be_positive_seconds(max_time):
    X, theta = _data(n=50)
    with pytest.raises(ValueError, match="'max_time' parameter"):
        TMNREEstimator(max_time=max_time).fit(X, theta)


def test_data_far_from_unit_scale_trains_like_unit_data():
    X, theta = _data()
    est = TMNREEstimator(max_epochs=30, random_state=0).fit(X, theta)
    scaled = TMNREEstimator(max_epochs=30, random_state=0).fit(X * 1e30, theta)
    # Squares of 1e30 overflow float32: the statistics are taken in float64.
    rmse = [np.sqrt(np.mean((model.predict(data) - theta[:100]) ** 2))
            for model, data in ((est, X[:100]), (scaled, X[:100] * 1e30))]
    assert rmse[1] < 1.3 * rmse[0] + 0.01


def test_variation_float32_cannot_resolve_is_warned_about():
    X, theta = _data()
    with pytest.warns(UserWarning, match="cannot resolve"):
        TMNREEstimator(max_epochs=1, random_state=0).fit(1e9 + X, theta)


def test_constant_features_are_warned_about():
    X, theta = _data()
    some = np.column_stack([X, np.full(len(X), 3.0)])
    with pytest.warns(UserWarning, match="1 of the .* numbers of X are constant"):
        TMNREEstimator(max_epochs=1, random_state=0).fit(some, theta)
    with pytest.warns(UserWarning, match="X is the same in all"):
        TMNREEstimator(max_epochs=1, random_state=0).fit(np.ones_like(X), theta)
