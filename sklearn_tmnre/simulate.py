"""Run a simulator over many parameter draws: seeded, parallel, failure-aware.

Every row ``i`` gets its own random generator, built from one
:class:`numpy.random.SeedSequence` as ``SeedSequence(entropy, spawn_key=(row_id,))``.
A row's output therefore depends only on ``random_state`` and its row id, never
on ``n_jobs``, ``batch_size``, the joblib backend or which worker ran it: the
same ``random_state`` gives bit-identical data on a laptop or a Dask cluster.

Work is fanned out with :class:`sklearn.utils.parallel.Parallel` and no backend
is hard-coded, so ``with joblib.parallel_config(backend="dask"):`` sends the
batches to a ``dask.distributed`` cluster.
"""

from __future__ import annotations

import inspect
import math
import numbers
import signal
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from sklearn.utils.parallel import Parallel, delayed

from ._checks import seed_entropy
from .sets import check_padding

__all__ = ["simulate", "SimulationResult", "SimulationError", "SimulationWarning"]


class SimulationError(ValueError):
    """A simulation failed (raised, timed out, returned non-finite or misshapen data)."""


class SimulationWarning(UserWarning):
    """Some simulations failed and were dropped (``on_error="skip"``)."""


@dataclass
class SimulationResult:
    """Everything :func:`simulate` learned, failed rows included.

    Attributes
    ----------
    X : ndarray of shape (n, *event_shape)
        Outputs; rows that failed are filled with NaN.
    ok : ndarray of bool, shape (n,)
        Which rows succeeded.
    errors : list of (str or None)
        The error text of each failed row (None where it succeeded).
    """

    X: np.ndarray
    ok: np.ndarray
    errors: list

    @property
    def failed_rows(self):
        """ndarray of int: indices of the failed rows."""
        return np.flatnonzero(~self.ok)


def _accepts_rng(simulator):
    try:
        params = inspect.signature(simulator).parameters
    except (TypeError, ValueError):
        return False
    return "rng" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _generator(entropy, key):
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=tuple(key)))


class _Timeout(BaseException):
    # A BaseException, as KeyboardInterrupt: a simulator's ``except Exception`` must not
    # swallow its own timeout.
    pass


#: Seconds between the repeated alarms after a timeout, until the simulator gives up.
_RETRY_SECONDS = 0.05


def check_timeout(timeout, owner):
    """Refuse a ``timeout`` that is not None or finite positive seconds (a bool is not seconds)."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                or not 0 < timeout < float("inf")):
        raise ValueError(f"{owner}: timeout must be finite positive seconds, or None for no "
                         f"limit; got {timeout!r}.")


def _call_with_timeout(fn, timeout):
    """Call ``fn()``; give up after ``timeout`` seconds (None: wait forever).

    In the main thread (this process, loky and multiprocessing workers) SIGALRM
    interrupts the call, and keeps interrupting it every ``_RETRY_SECONDS``
    until it ends, so a simulator that catches the interruption, or waits on
    threads of its own, is still stopped; a result that arrives after the
    deadline counts as timed out too. Elsewhere the call is abandoned.
    """
    if timeout is None:
        return fn()
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _call_with_alarm(fn, timeout)
    # Not in a main thread (threads, dask workers): run in a helper thread and
    # abandon it when it overruns; its result is never used.
    box = {}

    def _target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the caller
            box["error"] = exc

    worker = threading.Thread(target=_target, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _Timeout
    if "error" in box:
        raise box["error"]
    return box["value"]


def _call_with_alarm(fn, timeout):
    armed = [True]
    deadline = time.monotonic() + timeout

    def _alarm(signum, frame):
        if armed[0]:
            raise _Timeout

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout, _RETRY_SECONDS)
    try:
        value = fn()
    finally:
        while True:  # an alarm landing here must not skip the disarming
            try:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
                break
            except _Timeout:
                continue
    if time.monotonic() > deadline:  # the simulator swallowed the alarms and returned late
        raise _Timeout
    return value


def _describe(exc):
    if isinstance(exc, _Timeout):
        return "timed out"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last


def _run_batch(simulator, theta, row_ids, entropy, pass_rng, vectorized, timeout):
    """Simulate one batch in a worker; returns a list of (output or None, error or None)."""
    if vectorized:
        kwargs = {"rng": _generator(entropy, (int(row_ids[0]), len(row_ids)))} if pass_rng else {}
        try:
            out = np.asarray(_call_with_timeout(partial(simulator, theta, **kwargs), timeout))
        except (Exception, _Timeout) as exc:  # every failure is reported per row
            return [(None, _describe(exc))] * len(row_ids)
        if out.ndim == 0 or out.shape[0] != len(row_ids):
            msg = f"vectorized simulator returned shape {out.shape} for {len(row_ids)} rows"
            return [(None, msg)] * len(row_ids)
        return [(row, None) for row in out]
    results = []
    for th, rid in zip(theta, row_ids):
        kwargs = {"rng": _generator(entropy, (int(rid),))} if pass_rng else {}
        try:
            out = _call_with_timeout(partial(simulator, th, **kwargs), timeout)
            results.append((np.asarray(out), None))
        except (Exception, _Timeout) as exc:  # every failure is reported per row
            results.append((None, _describe(exc)))
    return results


#: Serial seconds below which simulating in this process beats starting workers (the
#: start-up of a joblib/loky pool, measured at several seconds on 2 cores).
_PARALLEL_MIN_SECONDS = 10.0
#: How long :func:`_probe` simulates leading rows in this process before deciding.
_PROBE_SECONDS = 0.25


def _local_backend():
    """Whether joblib's active backend runs on this machine (loky, processes, threads)."""
    from joblib import _parallel_backends as backends
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    return isinstance(backend, (backends.LokyBackend, backends.MultiprocessingBackend,
                                backends.ThreadingBackend, backends.SequentialBackend))


def _probe(run, theta, ids):
    """Simulate leading rows in this process for about ``_PROBE_SECONDS``.

    Rows run in doubling chunks (1, 2, 4, ...), so a cheap simulator is timed on
    many rows and an expensive one costs at most one row here. Each row's output
    depends only on its id, so the rows done here are the ones a worker would give.

    Returns
    -------
    outputs : list of (output or None, error or None)
    seconds_per_row : float
    """
    outputs, chunk = [], 1
    start = time.perf_counter()
    while len(outputs) < len(theta) and (
            not outputs or time.perf_counter() - start < _PROBE_SECONDS):
        s = len(outputs)
        outputs += run(theta[s : s + chunk], ids[s : s + chunk])
        chunk *= 2
    return outputs, (time.perf_counter() - start) / len(outputs)


def _validate_theta(theta):
    if isinstance(theta, pd.DataFrame):
        theta = theta.to_numpy()
    arr = np.asarray(theta)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"simulate: theta must be numeric; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"simulate: theta must have shape (n, n_params); got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("simulate: theta contains NaN or infinite values.")
    return arr.astype(float)


def _assemble(outputs, n, event_shape=None, nan_padding=False):
    """Stack outputs; misshapen or non-finite ones become failures.

    Without a declared ``event_shape``, the most common shape of the
    successful outputs is taken for it. With ``nan_padding``, NaN that fills
    whole elements along the first axis (a set of varying size, padded) is data.
    """
    errors = [err for _, err in outputs]
    shapes = {}
    for out, err in outputs:
        if err is None:
            shapes[out.shape] = shapes.get(out.shape, 0) + 1
    if event_shape is None and not shapes:
        return SimulationResult(np.full((n,), np.nan), np.zeros(n, bool), errors)
    if event_shape is None:
        event_shape = max(shapes, key=shapes.get)
    dtype = np.result_type(np.float32, *[o.dtype for o, e in outputs if e is None][:1])
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    X = np.full((n, *event_shape), np.nan, dtype=dtype)
    ok = np.zeros(n, dtype=bool)
    for i, (out, err) in enumerate(outputs):
        if err is not None:
            continue
        if out.shape != event_shape:
            errors[i] = f"returned shape {out.shape}, expected {event_shape}"
            continue
        if out.dtype.kind not in "biuf":
            errors[i] = f"returned non-real dtype {out.dtype}"
            continue
        if not np.all(np.isfinite(out)):
            error = _non_finite_error(out, nan_padding)
            if error:
                errors[i] = error
                continue
        X[i] = out
        ok[i] = True
    return SimulationResult(X, ok, errors)


def _non_finite_error(out, nan_padding):
    """Why an output with NaN or infinite values is a failure; None if it is padding."""
    if not nan_padding or np.isinf(out).any() or out.ndim < 1:
        return "returned NaN or infinite values"
    try:
        check_padding(out[None], argname="the output")
    except ValueError as err:
        return f"returned NaN that is not padding of whole elements ({err})"
    return None


def simulate(
    simulator,
    theta,
    *,
    n_jobs=None,
    batch_size=None,
    random_state=None,
    vectorized=False,
    on_error="raise",
    progress=False,
    timeout=None,
    row_ids=None,
    return_result=False,
    event_shape=None,
    nan_padding=False,
):
    """Run ``simulator`` on every row of ``theta`` and stack the outputs.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta_row)`` or ``simulator(theta_row, rng=generator)`` returning
        an array of the event shape. With ``vectorized=True`` it receives a 2-d
        batch of rows and returns ``(n_batch, *event_shape)``. If it accepts ``rng``
        it gets a :class:`numpy.random.Generator`; use it for all randomness.
    theta : DataFrame or array-like of shape (n, n_params)
        Parameter draws, e.g. from :meth:`Prior.sample`.
    n_jobs : int, optional
        Parallel workers (joblib semantics; -1 = all cores). The active
        ``joblib.parallel_config`` chooses the backend (e.g. ``"dask"``).
    batch_size : int, optional
        Rows per task. Defaults to about four tasks per worker.
    random_state : int, Generator, RandomState or None
        Seeds every row's generator. The same value gives bit-identical output
        for any ``n_jobs``, ``batch_size`` and backend (for ``vectorized=True``,
        for the same ``batch_size``).
    vectorized : bool, default=False
        Pass whole batches to the simulator.
    on_error : {"raise", "skip"}, default="raise"
        What to do when a simulation raises, times out, or returns non-finite or
        misshapen output: raise :class:`SimulationError` naming the row, or drop
        the failed rows with a :class:`SimulationWarning` listing them.
    progress : bool, default=False
        Show a progress bar (tqdm).
    timeout : float, optional
        Seconds allowed per simulation (per batch when vectorized); an overrun
        counts as a failure. In a process's main thread (this one, loky or
        multiprocessing workers) the simulation is interrupted, and again every
        50 ms until it stops, so a simulator that catches the interruption or
        waits on threads of its own is still stopped. In other threads
        (joblib's threading backend, dask workers) the overrunning call is
        abandoned and keeps running in the background.
    row_ids : array-like of int, optional
        Seed keys of the rows (default ``0..n-1``). Giving the same ids to a
        subset of rows reproduces exactly their outputs of a larger run, which
        is how an interrupted campaign resumes.
    return_result : bool, default=False
        Return a :class:`SimulationResult` (all rows, NaN where failed, with the
        error texts) instead of an array; ``on_error`` is then not applied.
    event_shape : tuple of int, optional
        The shape every output must have; others are failures. Default: the
        most common shape among the outputs (a batch where most simulations
        return the wrong shape then fails the right ones: declare it when it
        is known, as :class:`TMNRE` does from its store).
    nan_padding : bool, default=False
        Accept NaN that fills whole elements along an output's first axis: a
        set of varying size padded to a common size, as ``embedding="set"``
        reads it (:mod:`sklearn_tmnre.sets`). Other NaN, and any infinite
        value, still fail the row. :class:`TMNRE` sets it for a set embedding.

    Returns
    -------
    X : ndarray of shape (n_ok, *event_shape) or SimulationResult

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_tmnre import simulate
    >>> def simulator(theta, rng):
    ...     return theta + 0.1 * rng.standard_normal(theta.shape)
    >>> X = simulate(simulator, np.zeros((4, 2)), random_state=0)
    >>> X.shape
    (4, 2)
    """
    if not callable(simulator):
        raise TypeError(f"simulate: simulator must be callable; got {type(simulator).__name__}.")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"simulate: on_error must be 'raise' or 'skip'; got {on_error!r}.")
    check_timeout(timeout, "simulate")
    if not isinstance(nan_padding, bool | np.bool_):
        raise TypeError(f"simulate: nan_padding must be True or False; got {nan_padding!r}.")
    if event_shape is not None:
        dims = np.atleast_1d(np.asarray(event_shape))
        if dims.ndim != 1 or dims.dtype.kind not in "iu" or (dims < 0).any():
            raise ValueError(f"simulate: event_shape must be a tuple of non-negative "
                             f"integers, e.g. (3,); got {event_shape!r}.")
        event_shape = tuple(int(d) for d in dims)
    theta_arr = _validate_theta(theta)
    n = len(theta_arr)
    if n == 0:
        raise ValueError("simulate: theta has no rows.")
    if row_ids is None:
        ids = np.arange(n)
    else:
        ids = np.asarray(row_ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"simulate: row_ids must be integers; got dtype {ids.dtype}.")
        ids = ids.astype(np.int64)
        if ids.shape != (n,) or (ids < 0).any():
            raise ValueError(f"simulate: row_ids must be {n} non-negative integers.")
        if len(np.unique(ids)) != n:
            raise ValueError("simulate: row_ids must be unique (equal ids give equal seeds, "
                             "i.e. identical noise).")
    entropy = seed_entropy(random_state, "simulate")
    pass_rng = _accepts_rng(simulator)

    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    n_workers = max(1, parallel.n_jobs if parallel.n_jobs and parallel.n_jobs > 0 else 1)
    if n_jobs is not None and n_jobs < 0:
        import joblib

        n_workers = joblib.cpu_count()
    if batch_size is None:
        single_batch = n_workers == 1 and vectorized
        batch_size = n if single_batch else max(1, math.ceil(n / (4 * n_workers)))
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(
            f"simulate: batch_size must be a positive integer; got {batch_size!r}.")
    run = partial(_run_batch, simulator, entropy=entropy, pass_rng=pass_rng,
                  vectorized=vectorized, timeout=timeout)
    done = []
    if n_workers > 1 and not vectorized and _local_backend():
        # Local workers cost seconds to start (more when they import torch): measure a few
        # rows here first, and finish here too when the whole job is cheaper than that.
        # A cluster backend (dask, ray) the user configured is always used.
        done, seconds_per_row = _probe(run, theta_arr, ids)
        if seconds_per_row * (n - len(done)) < _PARALLEL_MIN_SECONDS:
            parallel = None
    starts = range(len(done), n, int(batch_size))
    batches = ((theta_arr[s : s + batch_size], ids[s : s + batch_size]) for s in starts)
    if parallel is None:
        stream = (run(th, rid) for th, rid in batches)
    else:
        stream = parallel(delayed(_run_batch)(simulator, th, rid, entropy, pass_rng, vectorized,
                                              timeout) for th, rid in batches)
    if progress:
        from tqdm.auto import tqdm

        stream = tqdm(stream, total=len(starts), desc="simulate", unit="batch")
    outputs = done + [pair for batch in stream for pair in batch]
    result = _assemble(outputs, n, event_shape, nan_padding)
    if return_result:
        return result
    failed = result.failed_rows
    if len(failed) and on_error == "raise":
        i = int(failed[0])
        names = theta.columns if isinstance(theta, pd.DataFrame) else range(theta_arr.shape[1])
        params = ", ".join(f"{k}={v:.6g}" for k, v in zip(names, theta_arr[i]))
        raise SimulationError(
            f"simulate: the simulator failed on row {i} ({params}): {result.errors[i]}. "
            f"{len(failed)} of {n} rows failed. Pass on_error='skip' to drop failed rows."
        )
    if len(failed) == n:
        raise SimulationError(f"simulate: all {n} simulations failed; first error: "
                              f"{result.errors[0]}")
    if len(failed):
        shown = failed[:20].tolist()
        warnings.warn(
            f"simulate: {len(failed)} of {n} simulations failed and were dropped "
            f"(rows {shown}{' ...' if len(failed) > 20 else ''}; first error: "
            f"{result.errors[failed[0]]}). X no longer has a row per row of theta: pass "
            "return_result=True and use theta[result.ok] with result.X[result.ok].",
            SimulationWarning,
            stacklevel=2,
        )
        return result.X[result.ok]
    return result.X
