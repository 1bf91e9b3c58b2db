"""Weight averaging: validated, kept and restored weights are the moving average (_averaging)."""

import numpy as np
import pytest
import torch
from scipy import stats
from skorch.callbacks import Callback

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._averaging import resolve_ema_decay


class _Recorder(Callback):
    """Records the weights after every training step and at the end of every epoch."""

    def initialize(self):
        self.steps, self.epochs = [], []
        return self

    def _weights(self, net):
        return [p.detach().clone() for p in net.module_.parameters()]

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.steps.append(self._weights(net))

    def on_epoch_end(self, net, **kwargs):
        self.epochs.append((len(self.steps), self._weights(net)))


def _fit(ema_decay, **params):
    rng = np.random.default_rng(0)
    prior = Prior({"a": stats.norm(0, 1)})
    theta = prior.sample(300, random_state=rng)
    X = theta.to_numpy() + 0.3 * rng.standard_normal((300, 1))
    recorder = _Recorder()
    est = TMNREEstimator(prior=prior, max_epochs=3, batch_size=64, embedding_dim=4,
                         hidden_features=8, ema_decay=ema_decay, random_state=0,
                         callbacks=[("recorder", recorder)], **params).fit(X, theta)
    return est, recorder


def test_auto_decay_follows_the_step_budget():
    assert resolve_ema_decay("auto", 3000) == pytest.approx(0.99)
    assert resolve_ema_decay("auto", 30_000) == pytest.approx(0.999)
    assert resolve_ema_decay("auto", 40) == 0.0  # a budget too short to average over
    assert resolve_ema_decay(0.5, 10) == 0.5


def test_epoch_end_weights_are_the_moving_average_of_the_steps():
    decay = 0.8
    _, rec = _fit(decay)
    average = [w.clone() for w in rec.steps[0]]
    checked = 0
    for i, step in enumerate(rec.steps[1:], start=2):
        average = [decay * a + (1 - decay) * w for a, w in zip(average, step)]
        for n_steps, weights in rec.epochs:
            if n_steps == i:
                for a, w in zip(average, weights):
                    torch.testing.assert_close(w, a, rtol=1e-5, atol=1e-6)
                # Training went on from the raw weights, not from the average.
                assert not all(torch.equal(a, w) for a, w in zip(step, weights))
                checked += 1
    assert checked == len(rec.epochs) == 3


def test_no_averaging_keeps_the_last_steps_weights():
    _, rec = _fit(0.0)
    for n_steps, weights in rec.epochs:
        for a, w in zip(rec.steps[n_steps - 1], weights):
            assert torch.equal(a, w)


def test_fitted_model_holds_averaged_weights_of_the_best_epoch():
    est, rec = _fit(0.8)
    best = int(np.argmin(est.net_.history[:, "valid_loss"]))
    final = list(est.net_.module_.parameters())
    for a, w in zip(rec.epochs[best][1], final):
        assert torch.equal(a, w.detach())


@pytest.mark.parametrize("value", [1.0, -0.1, "fast", True])
def test_bad_decay_is_refused(value):
    with pytest.raises(ValueError, match="ema_decay"):
        _fit(value)
