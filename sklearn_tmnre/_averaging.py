"""Exponential moving average of the weights: what is validated, kept and restored.

A ratio network trained with a one-cycle schedule is often early-stopped while
the learning rate is still high (the ten-parameter Gaussian tasks stop at about
a third of their epoch budget): the weights of that epoch carry the noise of the
last steps. An exponential moving average of the weights over the steps,

.. math:: \\bar w_t = \\beta\\, \\bar w_{t-1} + (1 - \\beta)\\, w_t,

averages that noise away (Polyak and Juditsky, 1992; the "EMA" of modern
training recipes) at the cost of one in-place update per step. The averaged
weights are the ones that are validated, that early stopping keeps and restores,
and that the fitted estimator ends with; the raw weights go on training.

:class:`WeightAveraging` does this as a skorch callback, so the fit loop, the
early stopping and the schedule stay skorch's: it swaps the averaged weights
into the network after the training phase of each epoch (before the first
validation batch, or at the end of the epoch when there is no validation set)
and swaps the raw ones back when the next epoch begins. Only parameters are
averaged; buffers (standardization constants, Fourier frequencies) are fixed.
"""

from __future__ import annotations

import torch
from skorch.callbacks import Callback

__all__ = ["AUTO_WINDOW_FRACTION", "WeightAveraging", "resolve_ema_decay"]

#: ``ema_decay="auto"``: the average's time constant as a fraction of the step budget
#: (100 steps, 0.99 per step, at 10^4 simulations and batch 256). Chosen on the
#: time-to-accuracy benchmark (see docs/benchmarks.md, "Weight averaging").
AUTO_WINDOW_FRACTION = 1 / 30


def resolve_ema_decay(ema_decay: float | str, total_steps: int) -> float:
    """The per-step decay :math:`\\beta` of ``ema_decay`` for a budget of ``total_steps``.

    Parameters
    ----------
    ema_decay : float in [0, 1) or "auto"
        A decay, or ``"auto"``: a time constant :math:`1 / (1 - \\beta)` of
        ``AUTO_WINDOW_FRACTION * total_steps`` steps (no averaging when that
        is under two steps).
    total_steps : int
        Training steps of the epoch budget.

    Returns
    -------
    float
        The decay; 0 means no averaging.
    """
    if ema_decay != "auto":
        return float(ema_decay)
    window = AUTO_WINDOW_FRACTION * total_steps
    return 1.0 - 1.0 / window if window >= 2 else 0.0


class WeightAveraging(Callback):
    """Validate, keep and restore an exponential moving average of the weights.

    Parameters
    ----------
    decay : float in [0, 1)
        Per-step decay :math:`\\beta` (0: the callback does nothing).

    Notes
    -----
    Must come before early stopping in the callback list, so that the weights
    early stopping sees at the end of an epoch are the averaged ones.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def initialize(self):
        self._average = None  # the averaged weights while training, the raw ones while swapped
        self._swapped = False
        return self

    def on_train_begin(self, net, **kwargs):
        self.initialize()

    def _parameters(self, net):
        return [p for p in net.module_.parameters() if p.requires_grad]

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training or self.decay <= 0:
            return
        with torch.no_grad():
            weights = [p.detach() for p in self._parameters(net)]
            if self._average is None:
                self._average = [w.clone() for w in weights]
            else:
                torch._foreach_lerp_(self._average, weights, 1.0 - self.decay)

    def _swap(self, net):
        with torch.no_grad():
            for p, a in zip(self._parameters(net), self._average):
                held = p.detach().clone()
                p.copy_(a)
                a.copy_(held)
        self._swapped = not self._swapped

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training and not self._swapped and self._average is not None:
            self._swap(net)

    def on_epoch_end(self, net, **kwargs):
        if not self._swapped and self._average is not None:
            self._swap(net)

    def on_epoch_begin(self, net, **kwargs):
        if self._swapped:
            self._swap(net)
