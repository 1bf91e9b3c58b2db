"""The skorch side of training: fast batches, the ratio loss, and the net.

The losses and their maths live in :mod:`sklearn_tmnre.loss`; the net gives
them, per batch, the logits of each row's joint pair and of its K marginal pairs
:math:`(x_i, \\theta_{\\pi_k(i)})`, each :math:`\\pi_k` a fresh random derangement of the
batch at every step. The embedding of each ``x`` is computed once and shared by all pairs.

Per-object parameters learned by shared object heads (:mod:`sklearn_tmnre.objects`)
get their own negatives: column :math:`j` of the marginal pairs is
:math:`\\theta_{\\pi_j(i), j}` with an independent derangement :math:`\\pi_j` per
object column (:func:`derangements`), so one row's objects are contrasted with
parameters of different rows.

Field parameters (one binary value per pixel and bin, :mod:`sklearn_tmnre.fields`)
add one term per cell, weighted :math:`1/P` (P pixels) so that each bin of a
field counts as one marginal. Their marginal term is exact rather than sampled:
the mean over the cell's prior of its two values, weighted :math:`1 - p_k` and
:math:`p_k` (``negative_weight`` of :class:`~sklearn_tmnre.loss.RatioLoss`; see
:mod:`sklearn_tmnre.fields` for why).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback

from .fields import cell_frequencies, cell_weights, field_pair_logits
from .loss import FIELD_LOSSES

__all__ = ["EpochProgress", "PairData", "RatioNet", "StopWhenDiverged",
           "TimeBudget", "ValidationSplit", "check_training", "derangement", "derangements"]


class PairData:
    """In-memory (x, theta) tensors, and field values (n, n_cells) if any; batches are
    slices, never per-item calls.

    ``index`` (optional) selects the rows this dataset holds; a :meth:`subset` is such
    a view, sharing the tensors: the train/validation split of a large image set
    would otherwise hold every image twice.
    """

    def __init__(self, x, theta, field=None, index=None):
        self.x, self.theta, self.field, self.index = x, theta, field, index

    def __len__(self):
        return len(self.x) if self.index is None else len(self.index)

    def subset(self, idx):
        """The rows at positions ``idx``, as a view on the same tensors."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return PairData(self.x, self.theta, self.field,
                        idx if self.index is None else self.index[idx])

    def take(self, rows):
        """``(x, theta, field or None)`` of the rows at positions ``rows`` (copies)."""
        if self.index is not None:
            rows = self.index[rows]
        return (self.x[rows], self.theta[rows],
                None if self.field is None else self.field[rows])


def derangement(n, generator, device=None):
    """A random permutation of ``range(n)`` with no fixed point (n >= 2).

    A uniformly random n-cycle: ``sigma[i] -> sigma[i + 1]`` for a random
    ordering ``sigma``. Every row is paired with a uniformly random other row.
    """
    sigma = torch.randperm(n, generator=generator)
    perm = torch.empty_like(sigma)
    perm[sigma] = torch.roll(sigma, -1)
    return perm.to(device) if device is not None else perm


def derangements(n, count, generator):
    """``count`` independent random derangements of ``range(n)``, shape (count, n).

    Vectorized :func:`derangement`: each row is a uniformly random n-cycle,
    from one ``argsort`` of uniform numbers (thousands of object columns cost
    one call, not thousands).
    """
    sigma = torch.rand(count, n, generator=generator).argsort(dim=1)
    perm = torch.empty_like(sigma)
    perm.scatter_(1, sigma, torch.roll(sigma, -1, dims=1))
    return perm


class _Batches:
    """Yields ``({"x", "theta", "perm"}, None)`` batches of a :class:`PairData`.

    Training iterators reshuffle rows and redraw negatives at every pass;
    validation iterators replay the same negatives each epoch so the
    validation loss measures the model, not the draw.
    """

    def __init__(self, data, batch_size, shuffle, seed, n_negatives=1, n_object_columns=0):
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.n_negatives = n_negatives
        self.n_object_columns = n_object_columns
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return max(1, int(np.ceil(len(self.data) / self.batch_size)))

    def __iter__(self):
        n = len(self.data)
        if not self.shuffle:
            self.generator.manual_seed(self.seed)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        # Balanced batch sizes: no trailing batch of one row (it has no negative).
        for idx in np.array_split(np.arange(n), len(self)):
            if len(idx) < 2:
                continue
            rows = order[idx] if order is not None else torch.from_numpy(idx)
            x, theta, field = self.data.take(rows)
            batch = {
                "x": x,
                "theta": theta,
                "perm": torch.stack([derangement(len(idx), self.generator)
                                     for _ in range(self.n_negatives)], dim=1),
            }
            if field is not None:
                batch["field"] = field
            if self.n_object_columns:
                # (B, K, C): negative k of object column c of row i is row object_perm[i, k, c].
                perms = derangements(len(idx), self.n_negatives * self.n_object_columns,
                                     self.generator)
                batch["object_perm"] = perms.reshape(
                    self.n_negatives, self.n_object_columns, len(idx)).permute(2, 0, 1)
            yield batch, None


class ValidationSplit:
    """Random train/validation split of a :class:`PairData` by fraction (skorch ``train_split``)."""

    def __init__(self, fraction, seed):
        self.fraction, self.seed = fraction, seed

    def n_valid(self, n):
        """Validation rows for ``n`` rows (0 when too few to split)."""
        n_valid = int(round(self.fraction * n))
        return 0 if (self.fraction <= 0 or n_valid < 2 or n - n_valid < 2) else n_valid

    def __call__(self, dataset, y=None, **fit_params):
        n = len(dataset)
        n_valid = self.n_valid(n)
        if not n_valid:
            return dataset, None
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        return dataset.subset(order[n_valid:]), dataset.subset(order[:n_valid])


class RatioNet(NeuralNet):
    """skorch net training a :class:`~sklearn_tmnre.networks.RatioNetwork` on (x, theta) pairs.

    Only skorch's extension points are replaced: ``get_dataset``,
    ``get_iterator`` and the two step functions; skorch's fit loop,
    callbacks (early stopping, LR schedules, progress bars) and history stay.
    """

    def __init__(self, *args, iterator_seed=0, n_negatives=1, field_loss="posterior", **kwargs):
        super().__init__(*args, **kwargs)
        self.iterator_seed = iterator_seed
        self.n_negatives = n_negatives
        self.field_loss = field_loss

    def get_dataset(self, X, y=None):
        from ._streaming import StoreData  # imports this module

        if not isinstance(X, (PairData, StoreData)):
            raise TypeError("RatioNet trains on PairData or StoreData; use TMNREEstimator.fit.")
        return X

    def get_iterator(self, dataset, training=False):
        from ._streaming import StoreData, StoreIterator  # imports this module

        seed = self.iterator_seed if training else self.iterator_seed + 1
        columns = getattr(self.module_, "object_columns", None)
        # Rows of a store stream a few chunks at a time (fit(store), sklearn_tmnre._streaming).
        batches = StoreIterator if isinstance(dataset, StoreData) else _Batches
        return batches(dataset, self.batch_size, shuffle=training, seed=seed,
                       n_negatives=self.n_negatives,
                       n_object_columns=0 if columns is None else len(columns))

    def _loss_terms(self, batch, members=False):
        """The loss's terms, ``(loss, arguments)``: the criterion's of the global marginals
        (``f_joint, f_marginal, weight, negative_weight``) and, with fields, the field
        cells' (``field_loss``; see :mod:`sklearn_tmnre.loss`)."""
        x = batch["x"].to(self.device, non_blocking=True)
        theta = batch["theta"].to(self.device, non_blocking=True)
        perm = batch["perm"].to(self.device)
        net = self.module_
        s = net.embed(x)
        # P = 1 + K candidates per observation: its own theta and K other rows'.
        negatives = theta[perm]
        if "object_perm" in batch:
            # Object columns: each from its own derangement (see the module docstring).
            columns = net.object_columns
            object_perm = batch["object_perm"].to(self.device)
            own = theta[:, columns][:, None].expand(-1, object_perm.shape[1], -1)
            negatives[:, :, columns] = torch.gather(own, 0, object_perm)
        both = torch.cat([theta[:, None], negatives], dim=1)
        logits = net.logits_from_embedding(s, both, members=members)
        terms = [(self.criterion_, (logits[:, 0], logits[:, 1:], None, None))]
        if "field" in batch:
            # Field cells: columns of weight 1 / pixels (each bin counts as one marginal).
            frequency = cell_frequencies(net.field_heads, net.fields).to(s.device)
            values = batch["field"].to(self.device)
            weight = cell_weights(net.fields, device=s.device)
            if self.field_loss == "ratio":  # both values as exact negatives
                f_joint, f_marginal, negative_weight = field_pair_logits(
                    net.field_logits(s), values, frequency)
                terms.append((self.criterion_, (f_joint, f_marginal, weight, negative_weight)))
            else:
                terms.append((FIELD_LOSSES[self.field_loss](),
                              (net.field_logits(s), values, frequency, weight)))
        return terms

    def _loss(self, batch, members=False):
        """The loss of a batch (all terms), and the global joint logits."""
        terms = self._loss_terms(batch, members=members)
        return sum(loss(*arguments) for loss, arguments in terms), terms[0][1][0]

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, _ = batch
        # An ensemble trains every member on its own loss; their mean is reported.
        loss, f_joint = self._loss(Xi, members=True)
        loss = loss / self.module_.n_members
        loss.backward()
        return {"loss": loss, "y_pred": f_joint}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, _ = batch
        with torch.no_grad():
            loss, f_joint = self._loss(Xi)
        return {"loss": loss, "y_pred": f_joint}


class StopWhenDiverged(Callback):
    """Stop training at the end of the first epoch whose loss is not finite.

    The epoch is marked ``diverged`` in the history; early stopping then
    restores the best weights of the finite epochs before it, if any, and
    :meth:`TMNREEstimator.fit` decides whether that is a model or an error.
    """

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        if not all(np.isfinite(row[k]) for k in ("train_loss", "valid_loss") if k in row):
            net.history.record("diverged", True)
            raise KeyboardInterrupt  # skorch's way to end fit early (on_train_end still runs)


class TimeBudget(Callback):
    """Stop training at the end of the last epoch that fits in ``max_time`` seconds.

    At the end of each epoch training stops if another epoch as long as the mean
    epoch so far would end past the budget (or the budget is spent already): the
    training stays within ``max_time`` unless one epoch alone is longer, or the
    epochs grow longer as it goes.

    Placed after early stopping, so that epoch's weights are considered for
    the best ones, which early stopping restores as at any other stop. The
    epoch is marked ``time_budget`` in the history.

    Parameters
    ----------
    max_time : float
        Wall-clock seconds.
    """

    def __init__(self, max_time):
        self.max_time = max_time

    def on_train_begin(self, net, **kwargs):
        self.start_ = time.monotonic()
        self.epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        self.epochs_ += 1
        elapsed = time.monotonic() - self.start_
        if elapsed * (self.epochs_ + 1) / self.epochs_ > self.max_time:
            net.history.record("time_budget", True)
            raise KeyboardInterrupt


def check_training(history):
    """Raise if training diverged before any finite epoch; warn if it diverged later.

    Parameters
    ----------
    history : skorch History
        The history of a finished fit.
    """
    if not len(history) or not history[-1].get("diverged"):
        return
    monitor = "valid_loss" if "valid_loss" in history[-1] else "train_loss"
    finite = [row for row in history[:-1] if np.isfinite(row[monitor])]
    advice = ("lower the learning rate (lr), and check that X and theta hold no extreme "
              "values (rescale data spanning many orders of magnitude, e.g. take logs)")
    if not finite:
        raise ValueError(f"Training diverged: the loss was not finite from epoch "
                         f"{history[-1]['epoch']} on, and no epoch before it gave a usable "
                         f"model; {advice}.")
    best = min(finite, key=lambda row: row[monitor])
    warnings.warn(f"Training diverged at epoch {history[-1]['epoch']} (loss not finite) and "
                  f"stopped; the weights of epoch {best['epoch']} ({monitor} "
                  f"{best[monitor]:.4g}) were restored. To train longer, {advice}.",
                  UserWarning, stacklevel=3)


class EpochProgress(Callback):
    """Print one line of training progress every ``every`` seconds, and one at the end.

    A quieter alternative to skorch's per-epoch table (``verbose=1`` of the
    estimator): a long fit shows it is alive without a line per epoch.

    Parameters
    ----------
    max_epochs : int
        The epoch budget, shown as the denominator.
    every : float, default=5.0
        Seconds between lines.
    sink : callable, default=print
    """

    def __init__(self, max_epochs, every=5.0, sink=print):
        self.max_epochs, self.every, self.sink = max_epochs, every, sink

    def on_train_begin(self, net, **kwargs):
        self.start_ = self.last_ = time.perf_counter()

    def _line(self, net):
        row = net.history[-1]
        losses = ", ".join(f"{k.replace('_', ' ')} {row[k]:.4f}"
                           for k in ("train_loss", "valid_loss") if k in row)
        return (f"epoch {row['epoch']}/{self.max_epochs}: {losses} "
                f"({time.perf_counter() - self.start_:.0f} s)")

    def on_epoch_end(self, net, **kwargs):
        now = time.perf_counter()
        if now - self.last_ >= self.every:
            self.last_ = now
            self.sink(self._line(net), flush=True)

    def on_train_end(self, net, **kwargs):
        if len(net.history):
            self.sink("trained: " + self._line(net), flush=True)
