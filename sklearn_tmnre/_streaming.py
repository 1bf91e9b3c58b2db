"""Training from a :class:`~sklearn_tmnre.SimulationStore` without loading it.

A campaign larger than memory trains from its store:
``TMNREEstimator(prior).fit(store)``. Only a few chunks of ``X`` are in memory
at a time, whatever the campaign's size; ``theta`` (small, and cached by the
store anyway) stays in memory.

Shuffling by chunk.  ``X`` is stored in chunks of about 2 MiB
(:mod:`sklearn_tmnre._store_layout`) and reading one row costs decoding its
whole chunk, so a pass does not read rows in a random order: it visits the
chunks that hold the wanted rows in a random order, reads ``chunks`` of them
at a time (a *window*), shuffles the window's rows together with the rows
left over from the window before (fewer than a batch) and cuts batches of
exactly ``batch_size`` rows. Every row comes exactly once per pass. The rows
of a store are independent draws in the order they were simulated, so rows of
one chunk are exchangeable; the random chunk order mixes rounds and regions.

Prefetching.  One background thread reads the next window while the current
one is consumed, so decoding overlaps training. The iterator holds at most the
current window, its leftovers and the window being read: ``peak_rows`` counts
them, and it does not grow with the store. What grows with the number of rows
is ``theta`` and the row numbers: a few copies of n x (n_params + 1) numbers
while ``fit`` starts, next to the store's own cache of its small columns.

Streamed standardization.  One pass in the stored order accumulates per
feature the count, mean and centred sum of squares of each window and merges
them (Chan et al. 1979), pooling features exactly as
:func:`sklearn_tmnre._build.data_standardization` does for in-memory data
(per number, globally for CNNs, per element feature for sets, per object
feature for object data); the same pass checks ``X`` as ``fit`` checks arrays.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ._build import finish_standardization, float_tensor
from ._checks import FLOAT32_MAX, int_seed, validate_theta
from ._training import PairData, _Batches
from .networks import set_layout
from .objects import check_object_data
from .sets import _SPATIAL_ELEMENTS, check_padding, is_set_embedding

__all__ = ["StoreData", "StoreIterator", "StreamedBatches", "check_rows",
           "store_training_data", "streamed_standardization"]


def check_rows(rows, ok):
    """Sorted committed, successful row numbers of ``rows`` (``ok``: the store's ok column)."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"SimulationStore.batches: rows must be a 1-d array of row numbers "
                         f"(as select returns); got shape {arr.shape}, dtype {arr.dtype}.")
    arr = np.unique(arr.astype(np.int64))
    outside = arr[(arr < 0) | (arr >= len(ok))]
    if outside.size:
        raise ValueError(f"SimulationStore.batches: rows {outside[:5].tolist()} are not "
                         f"committed rows (the store has {len(ok)}).")
    failed = arr[~ok[arr]]
    if failed.size:
        raise ValueError(f"SimulationStore.batches: rows {failed[:5].tolist()} hold failed "
                         "simulations (no X); leave them out (see SimulationStore.failures).")
    return arr


class StreamedBatches:
    """Batches ``(theta, X, rows)`` of some rows of a store, read a few chunks at a time.

    Made by :meth:`SimulationStore.batches <sklearn_tmnre.SimulationStore.batches>`;
    each iteration is one pass (a new order when shuffling).

    Parameters
    ----------
    read_x : callable
        ``read_x(sorted_rows)`` returns ``X`` of those committed rows.
    theta : ndarray of shape (n_rows, n_params)
        The parameters of every committed row.
    rows : ndarray of int64
        The sorted rows to stream.
    chunk_rows : int
        Rows per stored chunk of ``X``.
    batch_size : int
    shuffle : bool
    random_state : int, RandomState or None
    chunks : int
        Chunks read (and shuffled together) at a time.

    Attributes
    ----------
    peak_rows : int
        The most rows of ``X`` this object has held at once (the window in
        use with its leftovers, and the window being read).
    """

    def __init__(self, read_x, theta, rows, chunk_rows, batch_size, shuffle, random_state,
                 chunks):
        for name, value in (("batch_size", batch_size), ("chunks", chunks)):
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"SimulationStore.batches: {name} must be a positive "
                                 f"integer; got {value!r}.")
        self.read_x, self.theta, self.rows = read_x, theta, rows
        self.chunk_rows, self.batch_size = int(chunk_rows), int(batch_size)
        self.shuffle, self.chunks = bool(shuffle), int(chunks)
        self.rng = np.random.default_rng(int_seed(random_state))
        self.peak_rows = self.in_flight = 0

    def __len__(self):
        # A last batch of a single row joins the batch before it (see __iter__).
        n, b = len(self.rows), self.batch_size
        return max(int(n > 0), n // b + (n % b >= 2))

    def _plan(self):
        """The windows of one pass: sorted rows of ``chunks`` chunks each, in pass order."""
        chunk_of = self.rows // self.chunk_rows
        groups = np.split(self.rows, np.flatnonzero(np.diff(chunk_of)) + 1)
        order = self.rng.permutation(len(groups)) if self.shuffle else np.arange(len(groups))
        return [np.sort(np.concatenate([groups[i] for i in order[k:k + self.chunks]]))
                for k in range(0, len(order) if len(self.rows) else 0, self.chunks)]

    def _read(self, rows):
        return self.theta[rows], self.read_x(rows), rows

    def windows(self):
        """Yield ``(theta, X, rows)`` window by window, reading the next one meanwhile."""
        plan = self._plan()
        if not plan:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="store-prefetch") as pool:
            pending = pool.submit(self._read, plan[0])
            for k in range(len(plan)):
                window = pending.result()
                if k + 1 < len(plan):
                    pending = pool.submit(self._read, plan[k + 1])
                self.in_flight = len(plan[k + 1]) if k + 1 < len(plan) else 0
                yield window

    def __iter__(self):
        b, last, carry = self.batch_size, None, None
        for window in self.windows():
            theta, X, rows = window if carry is None else (
                np.concatenate([c, w]) for c, w in zip(carry, window))
            self.peak_rows = max(self.peak_rows, len(rows) + self.in_flight)
            if self.shuffle:
                perm = self.rng.permutation(len(rows))
                theta, X, rows = theta[perm], X[perm], rows[perm]
            full = len(rows) // b * b
            for s in range(0, full, b):
                if last is not None:
                    yield last
                last = (theta[s:s + b], X[s:s + b], rows[s:s + b])
            carry = (theta[full:], X[full:], rows[full:])
        if carry is not None and len(carry[2]) == 1 and last is not None:
            # A single leftover row joins the batch before it: a batch needs two rows
            # for negatives, and the count stays within len(self).
            last, carry = tuple(np.concatenate([a, c]) for a, c in zip(last, carry)), None
        if last is not None:
            yield last
        if carry is not None and len(carry[2]):
            yield carry


class StoreData:
    """The rows of a store that training reads (skorch's dataset for ``fit(store)``).

    Parameters
    ----------
    store : SimulationStore
    rows : ndarray of int64
        Sorted committed, successful rows.
    columns : ndarray of int
        The store's theta column of each of the estimator's parameters.
    """

    def __init__(self, store, rows, columns):
        self.store, self.rows, self.columns = store, rows, columns

    def __len__(self):
        return len(self.rows)

    def subset(self, idx):
        """The rows at positions ``idx`` (as :class:`~sklearn_tmnre._training.PairData`)."""
        return StoreData(self.store, np.sort(self.rows[np.asarray(idx, dtype=np.int64)]),
                         self.columns)


class StoreIterator:
    """Training batches of a :class:`StoreData`, as :class:`~sklearn_tmnre._training._Batches`.

    The rows come from :meth:`SimulationStore.batches`; the negatives of each
    batch are drawn by ``_Batches`` itself, so they are those of in-memory
    training. Training iterators reshuffle and redraw at every pass;
    validation iterators read in the stored order and replay the same
    negatives each epoch.
    """

    def __init__(self, data, batch_size, shuffle, seed, n_negatives=1, n_object_columns=0):
        self.batches = data.store.batches(batch_size, rows=data.rows, shuffle=shuffle,
                                          random_state=seed)
        self.shuffle, self.seed, self.columns = shuffle, seed, data.columns
        self.n_negatives, self.n_object_columns = n_negatives, n_object_columns
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for k, (theta, X, _) in enumerate(self.batches):
            seed = (int(torch.randint(2**31 - 1, (1,), generator=self.generator))
                    if self.shuffle else self.seed + k)
            # One batch: _Batches keeps the rows' order and draws this batch's negatives.
            theta = theta[:, self.columns]  # the store's column order to the estimator's
            yield from _Batches(PairData(float_tensor(X), float_tensor(theta)), len(X),
                                shuffle=False, seed=seed, n_negatives=self.n_negatives,
                                n_object_columns=self.n_object_columns)


def _pooling(est, event_shape):
    """How :func:`~sklearn_tmnre._build.data_standardization` pools ``X``'s numbers.

    Returns ``view`` (a window of X to an array (samples, features) whose
    column statistics are wanted) and ``expand`` (those statistics to the
    event's shape). Keep in step with ``data_standardization``.
    """
    size = math.prod(event_shape)
    prior = getattr(est, "prior", None)
    if prior is not None and prior.object_blocks:
        n_objects = event_shape[0]
        return (lambda x: x.reshape(-1, size // n_objects),
                lambda s: np.broadcast_to(s, (n_objects, size // n_objects))
                .reshape(event_shape).copy())
    if est.embedding in ("cnn1d", "cnn2d", "unet"):
        return lambda x: x.reshape(-1, 1), lambda s: s[0]
    if is_set_embedding(est.embedding):
        element = est._embedding_params().get("element", "mlp")
        if isinstance(element, str) and element in _SPATIAL_ELEMENTS:
            return (lambda x: x.reshape(-1, 1),
                    lambda s: np.broadcast_to(s[0], event_shape).copy())
        return (lambda x: x.reshape(-1, size // event_shape[0]),
                lambda s: np.broadcast_to(s.reshape(event_shape[1:]), event_shape).copy())
    if est.embedding == "deepset":
        n_elements, features = set_layout(event_shape, est._embedding_params().get("set_size"))
        return (lambda x: x.reshape(-1, features),
                lambda s: np.tile(s, (n_elements, 1)).reshape(event_shape))
    return lambda x: x.reshape(len(x), -1), lambda s: s.reshape(event_shape)


def _check_window(est, X, rows):
    """The checks ``fit`` makes on array data, on one window of the store's ``X``."""
    padded = is_set_embedding(est.embedding)
    bad = ~np.isfinite(X) if not padded else np.isinf(X)
    if bad.any():
        row = int(rows[np.flatnonzero(bad.reshape(len(X), -1).any(axis=1))[0]])
        raise ValueError(f"The store's X of row {row} holds "
                         f"{'infinite' if padded else 'NaN or infinite'} values, although "
                         "the row is marked as a successful simulation; the simulator "
                         "returned them: fix it, or train on other rows (store.batches).")
    if padded:
        try:
            check_padding(X)
        except ValueError as err:
            raise ValueError(f"The store's rows {rows[0]}-{rows[-1]}: {err} (row numbers "
                             "count the successful rows of that range from 0)") from None
    if np.nanmax(np.abs(X), initial=0.0) > FLOAT32_MAX:
        raise ValueError("The store's X has values beyond float32's range (the network "
                         "computes in float32); rescale the data.")


def streamed_standardization(est, store, rows):
    """Mean and scale of ``X`` over ``rows``, read one window at a time, as for arrays.

    Parameters
    ----------
    est : TMNREEstimator
        Its embedding and prior choose the pooling.
    store : SimulationStore
    rows : ndarray of int64
        Sorted committed, successful rows (at least one).

    Returns
    -------
    x_mean, x_std : ndarray of the event's shape (scalars for CNN embeddings)
        As :func:`~sklearn_tmnre._build.data_standardization` gives for the
        rows' ``X`` loaded in memory (up to rounding).
    """
    view, expand = _pooling(est, store.event_shape)
    count = mean = m2 = 0.0
    for _, X, window_rows in store.batches(len(rows), rows=rows, shuffle=False).windows():
        _check_window(est, X, window_rows)
        v = view(X)
        n_b = np.count_nonzero(~np.isnan(v), axis=0)
        mean_b = np.nansum(v, axis=0, dtype=np.float64) / np.maximum(n_b, 1)
        m2_b = np.nansum((v - mean_b) ** 2, axis=0, dtype=np.float64)
        # Chan et al.'s pairwise update: exact, and stable for windows of any size.
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * np.divide(n_b, total, out=np.zeros_like(mean_b),
                                        where=total > 0)
        m2 = m2 + m2_b + delta**2 * np.divide(count * n_b, total, out=np.zeros_like(mean_b),
                                              where=total > 0)
        count = total
    std = np.sqrt(m2 / np.maximum(count, 1))
    return finish_standardization(expand(mean), expand(std), len(rows))


def store_training_data(est, store, y, fields):
    """What ``fit(store)`` trains on: the store's successful rows, checked.

    Parameters
    ----------
    est : TMNREEstimator
        With validated hyperparameters.
    store : SimulationStore
    y : None
        ``fit(store)`` reads the parameters from the store.
    fields : dict
        ``fit``'s field keywords (none: a store holds no field values).

    Returns
    -------
    data : StoreData
    theta : ndarray of shape (n, D)
        The parameters of the rows, in ``names`` order.
    names : list of str
    event_shape : tuple of int
    x_stats : tuple of ndarray
        The streamed standardization of ``X`` (:func:`streamed_standardization`).
    """
    if y is not None:
        raise ValueError("fit(store) reads the parameters from the store's theta columns; "
                         "leave y out (fit(store)) or pass arrays (fit(X, theta)).")
    if fields or getattr(est.prior, "fields", None):
        raise ValueError("fit(store) cannot train field parameters (the store holds no "
                         "field values); load the rows (store.select()) and fit arrays: "
                         "fit(X, theta, field=values).")
    rows = np.flatnonzero(store.ok).astype(np.int64)
    if len(rows) < 2:
        raise ValueError(f"The store {str(store.path)!r} holds {len(rows)} successful "
                         f"simulation(s) ({store.n_failed} failed); training needs at least 2 "
                         "to form contrastive pairs. Simulate into it first (TMNRE, simulate).")
    prior = est.prior
    if prior is not None and sorted(prior.names) != sorted(store.names):
        raise ValueError(f"The prior's parameters {list(prior.names)} do not match the "
                         f"store's theta columns {store.names}: fit with the prior the "
                         "campaign was simulated from, whose parameters name the columns.")
    event_shape = store.event_shape
    if not event_shape:
        raise ValueError(f"The store's X has one number per row (event shape "
                         f"{event_shape}); the estimator needs X of shape (n, *event_shape) "
                         "with at least one axis per row.")
    # theta (n x D) stays in memory: no more copies of it than validation makes.
    names = list(prior.names) if prior is not None else store.names
    frame = store.theta
    theta = frame[names].to_numpy() if list(frame.columns) != names else frame.to_numpy()
    theta = validate_theta(theta if len(rows) == len(theta) else theta[rows], names,
                           len(rows), "the store's theta")
    if prior is not None and prior.object_blocks:
        check_object_data(prior, event_shape)  # before pooling over the objects
    data = StoreData(store, rows, np.array([store.names.index(n) for n in names]))
    return data, theta, names, event_shape, streamed_standardization(est, store, rows)
