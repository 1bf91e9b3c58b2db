"""Building an estimator's network and its skorch trainer from its hyperparameters.

Used by :meth:`TMNREEstimator.fit <sklearn_tmnre.TMNREEstimator.fit>` and by
model loading (:mod:`sklearn_tmnre.persistence`), so a loaded model has the
architecture it was trained with.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar

from ._averaging import WeightAveraging, resolve_ema_decay
from ._training import EpochProgress, RatioNet, StopWhenDiverged, TimeBudget, ValidationSplit
from .fields import field_layout, set_field_frequencies
from .loss import LOSSES
from .networks import RatioEnsemble, RatioNetwork, make_embedding, set_layout
from .objects import object_layout, pooled_theta_standardization
from .sets import is_set_embedding, set_standardization

__all__ = ["build_ratio_network", "data_standardization", "finish_standardization",
           "float_tensor", "make_ratio_net",
           "network_shapes", "ratio_net", "resolve_hidden_features", "resolve_max_epochs"]

#: Training steps of ``max_epochs="auto"`` at 10^4 training pairs (more for more data).
#: Chosen on the time-to-accuracy benchmark: two moons needs about this many steps for
#: its sharp 2-d posterior, and more steps overfit the ten-parameter Gaussian tasks
#: (early stopping then restores an early epoch).
AUTO_STEPS = 3_000


def _fast_update(device):
    """AdamW's fastest update for ``device``: fused on CPU and CUDA, else multi-tensor."""
    kind = torch.device(device).type
    if kind in ("cpu", "cuda"):
        return {"optimizer__fused": True}
    return {"optimizer__foreach": True}


def make_ratio_net(est, X, theta, seed, fields=None, x_stats=None):
    """The skorch :class:`~sklearn_tmnre._training.RatioNet` that fits ``est``'s network.

    Standardization comes from the training data; early stopping and the
    learning-rate schedule watch the validation loss (the training loss when
    the data are too few to split).

    Parameters
    ----------
    est : TMNREEstimator
        Validated hyperparameters and ``names_``, ``marginals_``, ``event_shape_``.
    X : ndarray of shape (n, *event_shape) or StoreData
        The training data (:class:`~sklearn_tmnre._streaming.StoreData`: rows
        of a store, streamed).
    theta : ndarray of shape (n, D)
    seed : int
        Seeds the validation split and the batch order.
    fields : ndarray of shape (n, n_cells), optional
        Values of the prior's field parameters
        (:func:`sklearn_tmnre.fields.check_field_values`): their per-bin
        frequencies become the network's field prior.
    x_stats : tuple of ndarray, optional
        The mean and scale of ``X`` (computed from ``X`` when left out).

    Returns
    -------
    RatioNet
    """
    x_mean, x_std = data_standardization(est, X) if x_stats is None else x_stats
    t_mean, t_std = theta.mean(axis=0), theta.std(axis=0)
    t_std = np.where(t_std > 0, t_std, 1.0)
    t_mean, t_std = pooled_theta_standardization(est.prior, t_mean, t_std, theta)
    column = {n: i for i, n in enumerate(est.names_)}
    indices = [tuple(column[n] for n in m) for m in est.marginals_]
    module, _ = build_ratio_network(est, est.event_shape_, indices, x_mean, x_std,
                                    t_mean, t_std)
    if fields is not None:
        set_field_frequencies(module.field_heads, module.fields, fields)
    split = ValidationSplit(est.validation_fraction, seed)
    # Tiny data sets get no validation split; then the training loss is watched.
    monitor = "valid_loss" if split.n_valid(len(X)) else "train_loss"
    n_train = len(X) - split.n_valid(len(X))
    max_epochs = resolve_max_epochs(est.max_epochs, n_train, est.batch_size)
    total_steps = max_epochs * n_batches(n_train, est.batch_size)
    callbacks = [
        # Before early stopping: the weights it keeps are the averaged ones.
        ("weight_averaging", WeightAveraging(resolve_ema_decay(est.ema_decay, total_steps))),
        ("stop_when_diverged", StopWhenDiverged()),
        ("early_stopping", EarlyStopping(monitor=monitor, patience=est.patience,
                                         load_best=True,
                                         sink=print if est.verbose else silent)),
        ("lr_schedule", lr_schedule(est, monitor, total_steps)),
    ]
    if est.max_time is not None:
        # After early stopping: the last epoch counts for the best weights it restores.
        callbacks.append(("time_budget", TimeBudget(est.max_time)))
    if est.verbose == 1:
        callbacks.append(("progress", EpochProgress(max_epochs)))
    elif est.verbose > 1:
        callbacks.append(("progress_bar", ProgressBar()))
    callbacks += list(est.callbacks or [])
    return ratio_net(
        est, module,
        max_epochs=max_epochs,
        train_split=split,
        callbacks=callbacks,
        # skorch's per-epoch table only at verbose >= 2; verbose=1 prints EpochProgress lines.
        verbose=int(est.verbose > 1),
        iterator_seed=seed,
    )


def ratio_net(est, module, **kwargs):
    """The skorch :class:`~sklearn_tmnre._training.RatioNet` of ``est``'s optimizer settings.

    The one place where the loss, optimizer, learning rate, batch size, device
    and negatives of a net are read from the hyperparameters: used for fitting
    (:func:`make_ratio_net`) and for a loaded model (:mod:`sklearn_tmnre.persistence`).

    Parameters
    ----------
    est : TMNREEstimator
        Validated hyperparameters.
    module : torch.nn.Module
        The ratio network (:func:`build_ratio_network`).
    **kwargs
        Further :class:`~sklearn_tmnre._training.RatioNet` arguments (epochs,
        split, callbacks, verbosity, seed).

    Returns
    -------
    RatioNet
    """
    return RatioNet(
        module,
        criterion=LOSSES[est.loss],
        **({"criterion__balance": est.balance} if est.loss == "bce" else {}),
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=est.weight_decay,
        # One fused kernel per update instead of a Python loop over the parameters: a
        # multi-tensor (foreach) update took 20-25 % off a step of the small default
        # networks on a CPU, the fused one 4-9 % more (torch picks neither on a CPU).
        **_fast_update(est.device),
        lr=est.lr,
        batch_size=est.batch_size,
        device=est.device,
        n_negatives=est.n_negatives,
        field_loss=est.field_loss,
        **kwargs,
    )


# Relative spread below which a float32 feature keeps only a few distinct values.
_FLOAT32_RESOLUTION = 1e-5


def data_standardization(est, x):
    """Mean and scale that standardize the data, of the event's shape.

    Per number for plain vectors; one global pair for images and spectra,
    which keep their spatial structure; per feature pooled over the elements
    for ``embedding="deepset"``, so that permuting the elements permutes the
    standardized data too (per-position statistics would differ by sampling
    noise and break the invariance). For ``embedding="set"``, the same over the
    present elements only: padding (all-NaN elements) is skipped
    (:func:`sklearn_tmnre.sets.set_standardization`). With a prior of
    per-object parameters (data (n, N, k)), per feature pooled over the objects,
    whatever the embedding, so the shared object heads see every object on one scale.
    """
    # Statistics in float64: squares of float32 data beyond about 1e19 overflow.
    prior = getattr(est, "prior", None)
    if prior is not None and prior.object_blocks:
        # Object data (n, N, k): per feature, pooled over the objects, so the shared
        # object heads see every object's data on the same scale.
        features = x.reshape(len(x), x.shape[1], -1)
        x_mean, x_std = (np.broadcast_to(stat(features, axis=(0, 1), dtype=np.float64),
                                         features.shape[1:]).reshape(x.shape[1:]).copy()
                         for stat in (np.mean, np.std))
    elif est.embedding in ("cnn1d", "cnn2d", "unet"):
        x_mean, x_std = _global_mean_std(x)
    elif is_set_embedding(est.embedding):
        x_mean, x_std = set_standardization(x, est._embedding_params().get("element", "mlp"))
    elif est.embedding == "deepset":
        size, features = set_layout(x.shape[1:], est._embedding_params().get("set_size"))
        elements = x.reshape(len(x), size, features)
        x_mean, x_std = (np.tile(stat(elements, axis=(0, 1), dtype=np.float64), (size, 1))
                         .reshape(x.shape[1:]) for stat in (np.mean, np.std))
    else:
        x_mean, x_std = x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64)
    return finish_standardization(x_mean, x_std, len(x))


def _global_mean_std(x, chunk_numbers=2**22):
    """Mean and standard deviation of all of ``x``'s numbers, in float64, by chunks of rows.

    ``x.std(dtype=np.float64)`` makes a temporary as large as the array (measured: 312
    MB more peak memory for 20,000 images of 64 x 64). Two passes over chunks of about
    ``chunk_numbers`` numbers give the same values up to rounding, with no such peak.
    """
    rows = max(1, chunk_numbers // max(1, math.prod(x.shape[1:])))
    chunks = [slice(i, i + rows) for i in range(0, len(x), rows)]
    mean = sum(float(x[c].sum(dtype=np.float64)) for c in chunks) / x.size
    m2 = sum(float(np.square(x[c].astype(np.float64) - mean).sum()) for c in chunks)
    return np.float64(mean), np.float64(np.sqrt(m2 / x.size))


def finish_standardization(x_mean, x_std, n_rows):
    """Warn about features float32 cannot resolve or that never vary; scale 1 for those.

    The end of :func:`data_standardization`, shared with the statistics
    streamed from a store (:mod:`sklearn_tmnre._streaming`).
    """
    unresolved = np.count_nonzero((x_std > 0) & (x_std < _FLOAT32_RESOLUTION * np.abs(x_mean)))
    if unresolved:
        warnings.warn(
            f"{unresolved} feature(s) of X vary by less than {_FLOAT32_RESOLUTION:g} of their "
            "mean: the network computes in float32 and cannot resolve that variation. Subtract "
            "a reference (e.g. the mean) from X in float64 before fitting.", UserWarning,
            stacklevel=5)
    _warn_constant(x_std, n_rows, stacklevel=5)
    return x_mean, np.where(x_std > 0, x_std, 1.0)


def _warn_constant(x_std, n_rows, stacklevel=4):
    """Warn when features of X do not vary over the training data (they carry no information)."""
    constant = np.count_nonzero(np.asarray(x_std) == 0)
    if not constant or n_rows < 2:
        return
    if constant == np.size(x_std):
        message = (f"X is the same in all {n_rows} training rows: the network cannot learn "
                   "anything from it. Check that the simulator's output depends on its "
                   "parameters (and that X is not a constant placeholder).")
    else:
        message = (f"{constant} of the {np.size(x_std)} numbers of X are constant over the "
                   f"{n_rows} training rows; they carry no information and are left "
                   "unscaled. Check the simulator if they should vary.")
    warnings.warn(message, UserWarning, stacklevel=stacklevel)


def float_tensor(a):
    """A float32 tensor of ``a``, sharing memory where it can.

    A read-only array (a memory-mapped file, a broadcast view) is copied first:
    torch cannot share memory with it without warning that writes would be
    undefined behaviour.
    """
    a = np.asarray(a, dtype=np.float32)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(np.ascontiguousarray(a))


def silent(*args, **kwargs):
    """A print sink that prints nothing (skorch callbacks' ``sink``)."""


def build_ratio_network(estimator, event_shape, indices, x_mean, x_std, theta_mean, theta_std):
    """The (untrained) network of an estimator's hyperparameters.

    One :class:`~sklearn_tmnre.networks.RatioNetwork`, or a
    :class:`~sklearn_tmnre.networks.RatioEnsemble` of ``n_ensemble`` of them,
    each with its own embedding. Used by ``fit`` and by model loading.

    Parameters
    ----------
    estimator : TMNREEstimator
        Its hyperparameters (embedding, heads, ``n_ensemble``) shape the network.
    event_shape : tuple of int
        Shape of one observation.
    indices : list of tuple of int
        Parameter columns of each marginal, in output order.
    x_mean, x_std, theta_mean, theta_std : array-like
        Standardization of data and parameters.

    Returns
    -------
    module : torch.nn.Module
    embedding_features : int
        Width of one member's embedding.
    """
    objects = object_layout(estimator.prior, event_shape, indices)
    # "auto" widths count every marginal, object ones included: a shared head costs per
    # object what a dense head costs (its activations grow as N x width^2), only its
    # weights are shared; the width keeps the cost of evaluating all heads about constant.
    members = []
    for _ in range(estimator.n_ensemble):
        embedding, n_features = make_embedding(estimator.embedding, event_shape,
                                               estimator.embedding_dim,
                                               **estimator._embedding_params())
        fields = field_layout(estimator.prior, embedding, event_shape)
        if fields and estimator.n_ensemble > 1:
            raise ValueError("field parameters need n_ensemble=1 (ensembles of field heads "
                             f"are not supported); got n_ensemble={estimator.n_ensemble}.")
        members.append(RatioNetwork(
            embedding, n_features, indices, x_mean, x_std, theta_mean, theta_std,
            hidden_features=resolve_hidden_features(estimator.hidden_features, len(indices)),
            num_blocks=estimator.num_blocks,
            dropout=estimator.dropout, fourier_features=estimator.fourier_features,
            fourier_scale=estimator.fourier_scale, objects=objects, fields=fields))
    module = members[0] if len(members) == 1 else RatioEnsemble(members)
    return module, n_features


def network_shapes(estimator, event_shape, indices, buffer_shapes):
    """Shapes of the network's state and its embedding width, allocating nothing.

    The network is built on PyTorch's ``meta`` device (tensors with a shape and
    no storage), so a model file's claims of any size are checked against the
    hyperparameters before a byte is allocated.

    Parameters
    ----------
    estimator, event_shape, indices
        As for :func:`build_ratio_network`.
    buffer_shapes : sequence of 4 tuples of int
        Shapes of ``x_mean``, ``x_std``, ``theta_mean``, ``theta_std``.

    Returns
    -------
    shapes : dict of str to tuple of int
        Every parameter's and buffer's shape, by ``state_dict`` name.
    embedding_features : int
    """
    with torch.device("meta"):
        module, n_features = build_ratio_network(
            estimator, event_shape, indices, *(torch.empty(s) for s in buffer_shapes))
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}, n_features


def n_batches(n_train, batch_size):
    """Training steps per epoch (as :class:`~sklearn_tmnre._training.RatioNet` batches)."""
    return max(1, -(-int(n_train) // int(batch_size)))


def resolve_max_epochs(max_epochs, n_train, batch_size):
    """The epoch budget: ``max_epochs``, or for ``"auto"`` one derived from the data size."""
    if max_epochs != "auto":
        return int(max_epochs)
    steps = AUTO_STEPS * (n_train / 10_000) ** 0.5
    return int(np.clip(round(steps / n_batches(n_train, batch_size)), 10, 300))


def lr_schedule(est, monitor, total_steps):
    """The learning-rate schedule callback of ``est.lr_schedule``.

    ``"cosine"``: a one-cycle schedule over the whole epoch budget, stepped every
    batch: a linear warm-up from ``lr / 10`` over the first 5 % of the steps, then
    a cosine decay to ``lr / 1000``. ``"plateau"``: the learning rate is divided
    by 5 after ``patience // 3`` epochs without improvement of ``monitor``.
    """
    if est.lr_schedule == "plateau":
        return LRScheduler(policy="ReduceLROnPlateau", monitor=monitor, factor=0.2,
                           patience=max(1, est.patience // 3))
    return LRScheduler(policy=torch.optim.lr_scheduler.OneCycleLR, step_every="batch",
                       max_lr=est.lr, total_steps=int(total_steps) + 1, pct_start=0.05,
                       anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0,
                       cycle_momentum=False)


def resolve_hidden_features(hidden_features, n_marginals):
    """Width of each head: ``hidden_features``, or for ``"auto"`` one set by the marginals.

    The heads' cost grows as ``n_marginals * width**2``; ``"auto"`` keeps it
    about that of three 64-unit heads (two parameters, ``"1d+2d"``):
    ``64 * sqrt(3 / n_marginals)``, rounded to a multiple of 8, between 16 and 64.
    """
    if hidden_features != "auto":
        return int(hidden_features)
    width = 64 * (3 / max(1, n_marginals)) ** 0.5
    return int(np.clip(8 * round(width / 8), 16, 64))
