"""The inference methods the benchmark compares, and how each cell is measured.

A *cell* is one (task, observation, budget, method, seed). For each task,
budget and seed the training pairs ``theta, X = task.sample(budget, seed)``
are drawn once and every **amortized** method trains on exactly those pairs,
once, then answers every observation:

* ``tmnre_amortized``: one round of :class:`~sklearn_tmnre.TMNREEstimator`
  (``marginals="1d+2d"``); posteriors read off its grids.
* ``tmnre_balanced``: the same with the balancing penalty on (balanced NRE,
  Delaunoy et al. 2022), for calibration.
* ``tmnre_ensemble``: the same with ``n_ensemble=5``: five networks trained
  side by side, their logits averaged (deep ensembles, Lakshminarayanan et al.
  2017).
* ``tmnre_deepset``: the same with ``embedding="deepset"``, a
  permutation-invariant embedding of the observation's exchangeable draws
  (domain knowledge, as embeddings are meant to carry); only for tasks whose
  data are such draws (``task.set_size``: slcp's four 2-d points).
* ``tmnre_truncated_deepset``: ``tmnre_truncated`` (below) with that embedding.
* ``sbi_nre_a``, ``sbi_nre_c``, ``sbi_bnre``: ``sbi``'s ratio estimators
  (Hermans et al. 2020; Miller et al. 2022; Delaunoy et al. 2022) with their
  default networks and training; posterior samples by sbi's default MCMC, then
  marginalized by taking columns.

``tmnre_truncated`` (:class:`~sklearn_tmnre.rounds.TMNRE` with its defaults)
is not amortized: it simulates its own draws from the truncated priors with
``task.simulator``, spending the budget per observation (30 % in the first
round, the rest evenly over the later rounds; when the box stops shrinking,
what is left of the budget goes to a final round in the last box).

Accuracy is the SBI-benchmark C2ST (:func:`sklearn_tmnre.metrics.c2st`) of
every 1-d and 2-d marginal against the task's reference posterior, with ``n``
draws of each; calibration is the expected coverage of every 1-d marginal at
levels 0.05 ... 0.95 on fresh test pairs: for our estimators from their grids,
for sbi's on two-parameter tasks from the network's joint ratio on a grid
(:class:`RatioOnGrid`; sbi's MCMC costs seconds per test observation, so a
thousand of them are out of reach), and not at all for sbi on larger tasks.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sklearn_tmnre import TMNREEstimator, __version__
from sklearn_tmnre.metrics import c2st, expected_coverage
from sklearn_tmnre.posterior import grid_axes
from sklearn_tmnre.rounds import TMNRE

__all__ = [
    "AMORTIZED",
    "COVERAGE_LEVELS",
    "METHODS",
    "OUR_METHOD_PARAMS",
    "OUR_PARAMS",
    "SBI_METHODS",
    "TRUNCATED_PARAMS",
    "applies",
    "method_params",
    "PeakMemory",
    "RatioOnGrid",
    "Settings",
    "coverage_summary",
    "fit_amortized",
    "grid_marginals",
    "grid_samples",
    "marginal_c2st_of",
    "observation_result",
    "sbi_available",
    "torch_prior",
    "truncated_result",
]

COVERAGE_LEVELS = np.round(np.linspace(0.05, 0.95, 19), 2)
#: sbi trainer class name of each sbi method.
SBI_METHODS = {"sbi_nre_a": "NRE_A", "sbi_nre_c": "NRE_C", "sbi_bnre": "BNRE"}
#: TMNREEstimator hyperparameters of each of our amortized methods. The balancing
#: weight is sbi's BNRE default.
OUR_PARAMS = {"tmnre_amortized": {}, "tmnre_balanced": {"balance": 100.0},
              "tmnre_ensemble": {"n_ensemble": 5}, "tmnre_deepset": {"embedding": "deepset"}}
#: TMNREEstimator hyperparameters of each round of our truncated (per-observation) methods.
TRUNCATED_PARAMS = {"tmnre_truncated": {}, "tmnre_truncated_deepset": {"embedding": "deepset"}}
#: Both: the hyperparameters of every one of our methods.
OUR_METHOD_PARAMS = {**OUR_PARAMS, **TRUNCATED_PARAMS}
AMORTIZED = (*OUR_PARAMS, *SBI_METHODS)
METHODS = (*OUR_PARAMS, *TRUNCATED_PARAMS, *SBI_METHODS)


@dataclass(frozen=True)
class Settings:
    """How hard each cell works.

    Parameters
    ----------
    name : str
        ``"full"``, ``"quick"`` or ``"tiny"``; part of the key of every result row.
    max_epochs : int or None
        Upper bound on training epochs of our estimators (early stopping decides);
        None keeps the estimator's own default.
    sbi_max_epochs : int or None
        Upper bound for sbi's training (None: sbi's default, unbounded).
    n_c2st : int
        Posterior draws and reference draws per C2ST.
    n_coverage : int
        Fresh test pairs for expected coverage (0 skips it).
    truncated_rounds : int
        Most rounds of ``tmnre_truncated``.
    c2st_max_iter : int
        Epoch cap of the C2ST classifier (the benchmark's is 10,000; far-apart
        samples keep it training for minutes, so the CI setting lowers it).
    max_2d : int or None
        Most 2-d marginals scored per cell (see :func:`grid_marginals`); tasks
        with fewer pairs score them all.
    params : tuple of (str, value)
        Extra :class:`~sklearn_tmnre.TMNREEstimator` hyperparameters of our methods.
    """

    name: str
    max_epochs: int | None
    sbi_max_epochs: int | None
    n_c2st: int
    n_coverage: int
    truncated_rounds: int
    c2st_max_iter: int = 10_000
    max_2d: int | None = 10
    params: tuple = ()

    def estimator(self, **kwargs):
        """An unfitted TMNREEstimator with these settings (``kwargs`` win).

        It trains on the harness's torch threads (``torch.get_num_threads()``, set by
        ``--threads``), as sbi's methods do, not on the free cores it would choose alone.
        """
        cap = {} if self.max_epochs is None else {"max_epochs": self.max_epochs}
        return TMNREEstimator(marginals="1d+2d", n_threads=torch.get_num_threads(),
                              **{**cap, **dict(self.params), **kwargs})


class PeakMemory:
    """Context manager: peak resident memory above the level at entry, in MiB.

    A background thread samples the process's resident set size every few
    milliseconds (``/proc/self/statm``; torch's allocations are invisible to
    ``tracemalloc``). Where ``/proc`` is missing the growth of the maximum RSS
    (``getrusage``) is reported instead, which is 0 when an earlier peak was higher.
    """

    _INTERVAL = 0.005

    def __init__(self):
        self.peak_mb = float("nan")

    @staticmethod
    def _rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    @staticmethod
    def _maxrss_mb():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def __enter__(self):
        self._proc = os.path.exists("/proc/self/statm")
        self._start = self._rss_mb() if self._proc else self._maxrss_mb()
        self._peak = self._start
        self._stop = threading.Event()
        if self._proc:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(self._INTERVAL):
            self._peak = max(self._peak, self._rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        if self._proc:
            self._thread.join()
            self._peak = max(self._peak, self._rss_mb())
        else:
            self._peak = self._maxrss_mb()
        self.peak_mb = self._peak - self._start
        return False


def sbi_available():
    """Whether ``sbi`` can be imported (the ``bench`` extra)."""
    try:
        import sbi  # noqa: F401
    except ImportError:
        return False
    return True


def torch_prior(prior):
    """The torch distribution sbi needs for a product prior of uniforms and normals.

    Parameters
    ----------
    prior : Prior

    Returns
    -------
    torch.distributions.Distribution
        ``BoxUniform`` when every component is uniform, else sbi's
        ``MultipleIndependent`` of 1-d uniforms and normals.
    """
    from sbi.utils import BoxUniform, MultipleIndependent

    comps = []
    for name, dist in prior.distributions.items():
        kind = dist.dist.name
        if kind == "uniform":
            low, high = dist.support()
            comps.append(("uniform", float(low), float(high)))
        elif kind == "norm":
            comps.append(("norm", float(dist.mean()), float(dist.std())))
        else:
            raise ValueError(f"torch_prior: parameter {name!r} has a {kind!r} prior; the sbi "
                             "comparison supports uniform and normal components only.")
    if prior.is_truncated:
        raise ValueError("torch_prior: the prior is truncated; sbi methods need the original "
                         "prior (prior.untruncated()).")
    if all(kind == "uniform" for kind, _, _ in comps):
        return BoxUniform(torch.tensor([c[1] for c in comps]), torch.tensor([c[2] for c in comps]))
    parts = []
    for kind, a, b in comps:
        cls = torch.distributions.Uniform if kind == "uniform" else torch.distributions.Normal
        parts.append(torch.distributions.Independent(cls(torch.tensor([a]), torch.tensor([b])),
                                                     1))
    return MultipleIndependent(parts, validate_args=False)


def grid_marginals(names, max_2d=None):
    """Every 1-d marginal of ``names``, then the 2-d marginals that are scored.

    Parameters
    ----------
    names : sequence of str
    max_2d : int, optional
        Score at most this many 2-d marginals: a fixed subset, seeded by the
        parameter names only, so every method and cell of a task is scored on
        the same pairs. A 10-parameter task has 45 pairs, and each C2ST costs
        seconds; the subset's mean estimates the mean over all pairs without bias.
    """
    pairs = list(itertools.combinations(names, 2))
    if max_2d is not None and len(pairs) > max_2d:
        seed = np.frombuffer("|".join(names).encode(), dtype=np.uint8).astype(np.uint32)
        keep = np.random.default_rng(seed).choice(len(pairs), size=max_2d, replace=False)
        pairs = [pairs[i] for i in sorted(keep)]
    return [(n,) for n in names] + pairs


def marginal_c2st_of(samples, reference, seed, max_iter=10_000):
    """Mean C2ST of the 1-d and of the 2-d marginals.

    Parameters
    ----------
    samples : dict
        ``{marginal: DataFrame}``: draws of each 1-d and 2-d marginal (columns
        named after its parameters), as many as ``reference`` has rows.
    reference : DataFrame
        Reference posterior samples of all parameters.
    seed : int
        Seeds the classifiers and folds.
    max_iter : int, default=10_000
        Epoch cap of the benchmark's MLP classifier.

    Returns
    -------
    c2st_1d, c2st_2d : float
    """
    rng = np.random.default_rng(seed)
    scores = {1: [], 2: []}
    for m, draws in samples.items():
        cols, state = list(m), int(rng.integers(2**31 - 1))
        clf = MLPClassifier(hidden_layer_sizes=(10 * len(m), 10 * len(m)), activation="relu",
                            solver="adam", max_iter=max_iter, random_state=state)
        with warnings.catch_warnings():
            # A capped classifier may stop before converging; that is the point of the cap.
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores[len(m)].append(c2st(reference[cols], draws[cols], random_state=state,
                                       classifier=clf))
    return tuple(float(np.mean(scores[k])) if scores[k] else float("nan") for k in (1, 2))


def grid_samples(posterior, names, n, seed, max_2d=None):
    """``n`` draws of every scored 1-d and 2-d marginal of a MarginalPosterior."""
    rng = np.random.default_rng(seed)
    return {m: posterior.sample(n, marginal=m, random_state=int(rng.integers(2**31 - 1)))
            for m in grid_marginals(names, max_2d)}


class _OneDimensional:
    """The 1-d grid marginals of a fitted estimator, for the coverage functions.

    :func:`sklearn_tmnre.metrics.expected_coverage` evaluates every grid
    marginal; the 2-d grids cost ``n_grid_2d`` times more, so the benchmark
    measures the 1-d ones only.
    """

    def __init__(self, estimator):
        self.estimator = estimator
        self.names_ = estimator.names_
        self.marginals_ = [m for m in estimator.marginals_ if len(m) == 1]

    def _grid_masses(self, X):
        return self.estimator._grid_masses(X, dims=(1,))


class RatioOnGrid:
    """An sbi ratio network's 1-d marginal posteriors on a grid, for the coverage functions.

    sbi's posteriors are sampled by MCMC, seconds per observation, so a
    thousand test observations are out of reach that way. For a task with two
    parameters the network's joint log ratio plus the log prior is instead
    evaluated on an ``n_grid`` x ``n_grid`` grid (the grid our estimator uses
    for its 2-d marginals) and summed over the other parameter: the same
    posterior the MCMC samples, without sampling noise.

    Parameters
    ----------
    net : sbi RatioEstimator
        The trained classifier (``net(theta, x)`` -> log ratio up to a constant).
    prior : Prior
        The task's prior (two parameters).
    n_grid : int, default=128
    """

    def __init__(self, net, prior, n_grid=128):
        if prior.ndim != 2:
            raise ValueError(f"RatioOnGrid needs a 2-parameter prior; got {prior.ndim}.")
        self.net = net
        self.prior = prior
        self.n_grid = n_grid
        self.names_ = list(prior.names)
        self.marginals_ = [(n,) for n in self.names_]
        self._axes = grid_axes(prior, self.names_, n_grid)
        # The prior-range grid is the same for every block of observations: built once.
        self._grid = self._points_and_log_prior(self._axes)

    def _points_and_log_prior(self, axes):
        mesh = np.meshgrid(axes[0][0], axes[1][0], indexing="ij")
        points = np.column_stack([g.ravel() for g in mesh])
        return points, self.prior.log_prob(points)

    @torch.no_grad()
    def joint_masses(self, X, axes=None):
        """The network's joint posterior masses of each observation on a 2-d grid.

        Parameters
        ----------
        X : ndarray of shape (n, ...)
        axes : list of two (centres, width), optional
            The grid's axes, each of ``n_grid`` cells; default: over the prior's range.

        Returns
        -------
        ndarray of shape (n, n_grid, n_grid), each observation's masses summing to one
        """
        points, log_prior = self._grid if axes is None else self._points_and_log_prior(axes)
        theta = _as_float32(points)[:, None, :]
        joint = np.empty((len(X), len(points)))
        for i in range(0, len(X), 16):
            x = _as_float32(X[i:i + 16])
            # sbi does not broadcast: x repeated for every grid point.
            logr = self.net(theta.expand(-1, len(x), -1),
                            x[None].expand(len(points), -1, -1)).T.double().numpy()
            joint[i:i + 16] = logr + log_prior
        joint = np.exp(joint - joint.max(axis=1, keepdims=True))
        return (joint / joint.sum(axis=1, keepdims=True)).reshape(len(X), self.n_grid,
                                                                 self.n_grid)

    def _grid_masses(self, X, dims=(1,)):
        joint = self.joint_masses(X)
        masses = {(self.names_[0],): joint.sum(axis=2), (self.names_[1],): joint.sum(axis=1)}
        return {m: [self._axes[j]] for j, m in enumerate(masses)}, masses


def coverage_summary(estimator, X, theta):
    """Expected coverage of every 1-d marginal at levels 0.05 ... 0.95, summarized.

    Returns
    -------
    dict
        ``coverage_mae``: mean |coverage - level|; ``coverage_max_shortfall``:
        the largest ``level - coverage`` (0 if coverage is never below nominal);
        ``coverage_n_below``: (marginal, level) pairs whose Jeffreys 95 %
        interval lies wholly below the level; ``n_coverage``: test pairs.
    """
    table = expected_coverage(_OneDimensional(estimator), X, theta, levels=COVERAGE_LEVELS)
    gap = table["coverage"] - table["level"]
    return {
        "coverage_mae": float(gap.abs().mean()),
        "coverage_max_shortfall": float(max(0.0, (-gap).max())),
        "coverage_n_below": int((table["upper"] < table["level"]).sum()),
        "n_coverage": len(X),
    }


def _no_coverage():
    return {"coverage_mae": np.nan, "coverage_max_shortfall": np.nan,
            "coverage_n_below": np.nan, "n_coverage": 0}


def _as_float32(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


@dataclass
class Fitted:
    """An amortized method trained on one task, budget and seed."""

    method: str
    model: object
    names: list
    n_sims: int
    train_seconds: float
    train_cpu_seconds: float
    train_peak_mb: float
    epochs: int
    version: str
    coverage: dict

    def posterior(self, x_o, n, seed, max_2d=None):
        """``n`` draws of every scored marginal for ``x_o``, and the seconds they took."""
        start = time.perf_counter()
        if self.method.startswith("tmnre"):
            samples = grid_samples(self.model.posterior(x_o), self.names, n, seed, max_2d)
        else:
            torch.manual_seed(seed)
            np.random.seed(seed)
            draws = self.model.sample((n,), x=_as_float32(x_o)[None], show_progress_bars=False)
            joint = pd.DataFrame(draws.numpy().astype(np.float64), columns=self.names)
            samples = {m: joint[list(m)] for m in grid_marginals(self.names, max_2d)}
        return samples, time.perf_counter() - start


def _fit_sbi(method, task, theta, X, seed, settings):
    from sbi import inference as sbi_inference

    torch.manual_seed(seed)
    np.random.seed(seed)
    trainer = getattr(sbi_inference, SBI_METHODS[method])(prior=torch_prior(task.prior),
                                                          show_progress_bars=False)
    trainer.append_simulations(_as_float32(theta.to_numpy()), _as_float32(X))
    kwargs = {}
    if settings.sbi_max_epochs is not None:
        kwargs["max_num_epochs"] = settings.sbi_max_epochs
    with contextlib.redirect_stdout(io.StringIO()):  # sbi prints a "converged" line
        net = trainer.train(**kwargs)
    epochs = int(trainer._summary["epochs_trained"][-1])
    return trainer.build_posterior(), net, epochs


def _needs_draws(method):
    """Whether ``method`` embeds the data as a set of exchangeable draws."""
    return OUR_METHOD_PARAMS.get(method, {}).get("embedding") == "deepset"


def applies(method, task):
    """Whether ``method`` can run on ``task`` (a deepset embedding needs exchangeable draws)."""
    return not _needs_draws(method) or task.set_size is not None


def method_params(method, task):
    """The TMNREEstimator hyperparameters of one of our methods on ``task``."""
    params = dict(OUR_METHOD_PARAMS[method])
    if _needs_draws(method):
        if task.set_size is None:
            raise ValueError(f"{method} needs a task made of exchangeable draws; "
                             f"{task.name} has no set_size.")
        params["embedding__set_size"] = task.set_size
    return params


def fit_amortized(method, task, theta, X, seed, settings):
    """Train an amortized method on ``(theta, X)`` and measure it.

    Parameters
    ----------
    method : str
        One of :data:`AMORTIZED`.
    task : sklearn_tmnre.tasks.Task
    theta : DataFrame
    X : ndarray
    seed : int
    settings : Settings

    Returns
    -------
    Fitted
    """
    if method not in AMORTIZED:
        raise ValueError(f"method must be one of {AMORTIZED}; got {method!r}.")
    with PeakMemory() as mem:
        start, cpu_start = time.perf_counter(), time.process_time()
        if method.startswith("tmnre"):
            model = settings.estimator(prior=task.prior, random_state=seed,
                                       **method_params(method, task)).fit(X, theta)
            epochs, version = len(model.net_.history), __version__
        else:
            import sbi

            model, net, epochs = _fit_sbi(method, task, theta, X, seed, settings)
            version = sbi.__version__
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    coverage = _no_coverage()
    # sbi's ratio networks are calibrated on a grid where the task has two parameters.
    graded = model if method.startswith("tmnre") else (
        RatioOnGrid(net.eval(), task.prior) if task.prior.ndim == 2 else None)
    if graded is not None and settings.n_coverage:
        test_theta, test_X = task.sample(settings.n_coverage,
                                         random_state=np.random.SeedSequence([seed, len(X), 1]))
        coverage = coverage_summary(graded, test_X, test_theta)
    return Fitted(method, model, list(task.prior.names), len(X), seconds, cpu_seconds,
                  mem.peak_mb, epochs, version, coverage)


def observation_result(fitted, task, observation, reference, seed, settings):
    """One amortized cell: the observation's posterior, its C2STs and costs."""
    with PeakMemory() as mem:
        samples, seconds = fitted.posterior(task.observation(observation), len(reference), seed,
                                            settings.max_2d)
    c1, c2 = marginal_c2st_of(samples, reference, seed, settings.c2st_max_iter)
    return {
        "c2st_1d": c1, "c2st_2d": c2, "n_2d": sum(len(m) == 2 for m in samples),
        **fitted.coverage,
        "n_sims_used": fitted.n_sims, "epochs": fitted.epochs, "rounds": 1,
        "train_seconds": fitted.train_seconds, "train_cpu_seconds": fitted.train_cpu_seconds,
        "posterior_seconds": seconds,
        "seconds": fitted.train_seconds + seconds,
        "peak_mb": max(fitted.train_peak_mb, mem.peak_mb), "version": fitted.version,
    }


def truncated_result(task, observation, budget, reference, seed, settings,
                     method="tmnre_truncated"):
    """One truncated cell: the rounds of ``method`` for one observation, measured.

    ``method`` is one of :data:`TRUNCATED_PARAMS`, which gives the hyperparameters of
    every round's estimator. :class:`~sklearn_tmnre.rounds.TMNRE` runs as a user
    would: ``n_sims=budget`` new simulations (its default schedule and stopping
    rule, which spend the whole budget) over at most ``settings.truncated_rounds``
    rounds, with the default :class:`~sklearn_tmnre.Truncator`.
    """
    x_o = task.observation(observation)
    params = method_params(method, task)
    campaign = int(np.random.SeedSequence([seed, budget, observation]).generate_state(1)[0])
    with tempfile.TemporaryDirectory(prefix="sklearn_tmnre-bench-") as tmp:
        run = TMNRE(task.simulator, task.prior, estimator=settings.estimator(**params),
                    n_sims=int(budget), max_rounds=settings.truncated_rounds,
                    store=os.path.join(tmp, "sims.zarr"), random_state=campaign)
        with PeakMemory() as mem:
            start, cpu_start = time.perf_counter(), time.process_time()
            run.fit(x_o)
            estimator, n_used = run.estimator_, int(run.rounds_["n_simulated"].sum())
            epochs = sum(len(est.net_.history) for est in run.estimators_)
            samples = grid_samples(run.posterior_, list(task.prior.names),
                                   len(reference), seed, settings.max_2d)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    c1, c2 = marginal_c2st_of(samples, reference, seed, settings.c2st_max_iter)
    n_2d = sum(len(m) == 2 for m in samples)
    coverage = _no_coverage()
    if settings.n_coverage:
        # Calibration inside the box the last estimator was trained on.
        rng = np.random.default_rng([seed, budget, observation, 1])
        test_theta = estimator.prior_.sample(settings.n_coverage, random_state=rng)
        coverage = coverage_summary(estimator, task.simulate_batch(test_theta, rng), test_theta)
    return {
        "c2st_1d": c1, "c2st_2d": c2, "n_2d": n_2d, **coverage,
        "n_sims_used": n_used, "epochs": epochs, "rounds": len(run.rounds_),
        "train_seconds": seconds, "train_cpu_seconds": cpu_seconds, "posterior_seconds": 0.0,
        "seconds": seconds,
        "peak_mb": mem.peak_mb, "version": __version__,
    }
