"""TMNRE: the multi-round loop of truncated marginal neural ratio estimation.

Round :math:`k` trains a ratio estimator on draws of the prior restricted to a
box :math:`\\Gamma_k` (:math:`\\Gamma_0` is the prior's own support), then fits a
:class:`~sklearn_tmnre.truncation.Truncator` for the observation :math:`x_o`,
which gives the next box :math:`\\Gamma_{k+1} \\subseteq \\Gamma_k` (Miller et al.
2021, "Truncated marginal neural ratio estimation"). The loop stops when

.. math:: \\frac{P(\\Gamma_{k+1})}{P(\\Gamma_k)} > \\text{convergence\\_ratio}

(:math:`P` the original prior; for :math:`k \\ge 1`) or after ``max_rounds`` rounds.

**Budget and reuse.** ``n_sims`` counts new simulations. Boxes are nested, so
an earlier draw from :math:`p_{\\Gamma_j}` that falls inside :math:`\\Gamma_k
\\subseteq \\Gamma_j` is a draw from :math:`p_{\\Gamma_k}`: round :math:`k`
simulates its :math:`n_k` new draws and trains on them together with every
successful stored simulation of rounds :math:`< k` inside :math:`\\Gamma_k`
(reused ones are free). When the box stops shrinking before the budget is
spent, one final round in the last box gets all that is left of it, so the
final estimator trains on at least as many simulations inside its box as one
round of the whole budget would have put there.

**Reproducibility and resumption.** A campaign has one entropy (from
``random_state``, or drawn once and kept in the store). The new draws of round
:math:`k` are planned with a generator seeded by (entropy, k); draw
:math:`(k, i)` is simulated with the seed key :math:`k \\cdot 2^{32} + i` by
:func:`~sklearn_tmnre.simulate`; the round's estimator is seeded by (entropy, k).
Simulations are appended to a :class:`~sklearn_tmnre.store.SimulationStore`
batch by batch, each batch committed atomically before the next starts. A run
restarted on the same store replays the finished rounds from stored
simulations, skips the draws :meth:`SimulationStore.done_indices` lists and
simulates only the missing ones, so a run killed at any point and restarted
gives the data, estimators and boxes of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Literal

import joblib
import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback

from ._checks import check_observation, seed_entropy, validate_params
from .estimator import TMNREEstimator
from .prior import Prior
from .sets import is_set_embedding
from .simulate import SimulationError, simulate
from .store import SimulationStore
from .truncation import Truncator

__all__ = ["TMNRE", "budget_schedule"]

# Seed-key purposes: one independent stream each, all from the campaign entropy.
_SIMULATE, _PLAN, _TRAIN = 0, 1, 2
# Draw (round, index) is simulated with seed key round * _ROUND_STRIDE + index.
_ROUND_STRIDE = 2**32
# Key of the campaign record in SimulationStore.attrs.
_ATTRS_KEY = "sklearn_tmnre.TMNRE"
# Store appends per round when simulate_batch_size is None.
_APPENDS_PER_ROUND = 20
# Share of a total budget simulated in round 0, from the whole prior (Miller et al.
# 2021 spend about a third there); the rest is split evenly over the later rounds.
_FIRST_ROUND_SHARE = 0.3


def budget_schedule(n_sims: int, max_rounds: int) -> list[int]:
    """New simulations per round for a total budget: 30 % first, the rest evenly.

    Parameters
    ----------
    n_sims : int
        The total number of new simulations.
    max_rounds : int
        The number of rounds to spread them over (fewer when the budget is too
        small to give every round at least two).

    Returns
    -------
    list of int
        One entry per round, summing to ``n_sims``.
    """
    n_sims = int(n_sims)
    first = max(2, int(round(_FIRST_ROUND_SHARE * n_sims)))
    rest = n_sims - first
    rounds = min(int(max_rounds), 1 + rest // 2)
    if rounds <= 1:
        return [n_sims]
    later = [rest // (rounds - 1)] * (rounds - 1)
    later[-1] += rest - sum(later)
    return [first, *later]


def _campaign_entropy(random_state):
    """The campaign's SeedSequence entropy from its (validated) ``random_state``."""
    return seed_entropy(random_state, "TMNRE")


def _derived_seed(entropy, *key):
    """A 32-bit seed of the independent stream ``key`` of the campaign."""
    return int(np.random.SeedSequence(entropy, spawn_key=key).generate_state(1)[0])


def _prior_record(prior):
    """How a campaign record names its prior: :meth:`Prior.to_dict`, the one serialized form.

    A prior of custom ``rv_continuous`` subclasses has no such form; it, and the
    records of stores written before 0.2 (without ``prior_format``), use the
    older description of :func:`_describe_prior`.
    """
    try:
        return {"prior_format": 2, "prior": json.loads(json.dumps(prior.to_dict()))}
    except (TypeError, ValueError):
        return {"prior": _describe_prior(prior)}


def _same_prior(meta, prior):
    """Whether a campaign record ``meta`` names ``prior``."""
    if meta.get("prior_format") == 2:
        return meta == {**meta, **_prior_record(prior)}
    return meta["prior"] == _describe_prior(prior)


def _describe_prior(prior):
    """The campaign records' description of a prior before 0.2 (names, scipy arguments, box).

    It cannot tell two histogram priors apart; :func:`_prior_record` uses it only
    for stores written before 0.2 and for custom distributions.
    """
    desc = {
        "names": prior.names,
        "distributions": [[d.dist.name, np.asarray(d.args, dtype=float).tolist(),
                           {k: np.asarray(v, dtype=float).tolist() for k, v in d.kwds.items()}]
                          for d in prior.distributions.values()],
        "bounds": prior.bounds.tolist(),
    }
    return json.loads(json.dumps(desc))


def _box(prior):
    """The box of a prior as ``{name: (low, high)}``."""
    return {n: (float(lo), float(hi)) for n, (lo, hi) in zip(prior.names, prior.bounds)}


def _best_valid_loss(estimator):
    try:
        losses = estimator.net_.history[:, "valid_loss"]
    except KeyError:  # validation_fraction=0: no validation loss recorded
        return np.nan
    return float(np.min(losses)) if len(losses) else np.nan


class _WarmStart(Callback):
    """skorch callback: start training from another network's parameters.

    Parameters keep their shapes between rounds; the standardization buffers
    of the new network (computed from the new round's data) are left alone.
    """

    def __init__(self, parameters):
        self.parameters = parameters

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        own = dict(net.module_.named_parameters())
        with torch.no_grad():
            for name, value in self.parameters.items():
                if name in own and own[name].shape == value.shape:
                    own[name].copy_(value)


class TMNRE(BaseEstimator):
    """Truncated marginal neural ratio estimation for one observation, round by round.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta_row, rng=None)`` returning an array (see
        :func:`~sklearn_tmnre.simulate`). Must be picklable for parallel backends.
    prior : Prior
        The prior (round 0 samples it; later rounds sample it restricted to a box).
    estimator : TMNREEstimator, optional
        Cloned every round; its ``prior`` is set to the round's truncated prior and
        its ``random_state`` to a seed derived from the run's. It needs 1-d
        marginals. Default: ``TMNREEstimator(marginals="1d")``.
    truncator : Truncator, optional
        Cloned every round, with its ``prior`` set to the round's. Default:
        ``Truncator()``.
    n_sims : int or list of int, default=10_000
        The simulation budget: new simulations, failed ones included (stored
        simulations reused inside a later box are free). An int is the total,
        spread by :func:`budget_schedule` over ``max_rounds`` rounds (30 % in
        round 0, the rest evenly); a list gives each round's new simulations
        and caps the number of rounds at its length.
    max_rounds : int, default=5
        Upper bound on the number of rounds.
    convergence_ratio : float in (0, 1], default=0.8
        The box has converged after round ``k >= 1`` when the mass of the box
        it found, divided by the mass of the box it sampled, exceeds this (1
        never converges early). Round 0's box never ends the truncation: its
        estimator, trained on the smallest share of the budget, is the least
        certain (on the CMB toy, a first box keeping 82 % of the prior was
        followed by one keeping 45 % of that).
    warm_start : bool, default=False
        Start each round's network from the previous round's parameters instead
        of a fresh initialization.
    spend_budget : bool, default=True
        When the box converges with budget left, run one final round in the
        converged box with all of it (the final estimator then trains on every
        stored simulation inside the box plus the new ones). False stops at
        convergence and leaves the rest unspent.
    store : str, path or SimulationStore, optional
        Where simulations are appended, batch by batch; reopening a store resumes
        its campaign. None: a temporary store, deleted at the end of :meth:`fit`.
    n_jobs : int, optional
        Parallel simulation workers (joblib semantics). The active
        ``joblib.parallel_config`` picks the backend, e.g. ``"dask"``.
    simulate_batch_size : int, optional
        Draws simulated between two store commits (a crash loses at most one
        batch). Default: a twentieth of the round's new draws, at least four per
        worker.
    on_error : {"skip", "raise"}, default="skip"
        A failed simulation is stored as failed and never trained on; "raise"
        also raises :class:`~sklearn_tmnre.SimulationError` once its batch is
        stored (a rerun does not retry it; see ``store.failures()``).
    timeout : float, optional
        Seconds allowed per simulation; an overrun counts as a failure.
    random_state : int, RandomState, Generator or None
        Seeds the draws, the simulations and the training. With a store that
        already holds a campaign, None continues that campaign; an int must match
        the one it was started with.
    verbose : int, default=0
        1 prints a line per round; 2 also shows a simulation progress bar and
        announces each training.

    Attributes
    ----------
    estimator_ : TMNREEstimator
        The last round's estimator.
    estimators_ : list of TMNREEstimator
        Every round's estimator (for overlaying posteriors round by round).
    truncator_ : Truncator
        The last round's truncator.
    truncators_ : list of Truncator
        Every round's truncator.
    posterior_ : MarginalPosterior
        ``estimator_.posterior(x_o)``.
    prior_ : Prior
        The box found by the last round (``truncator_.prior_``); the last
        estimator was trained on ``estimator_.prior_``, the box before it.
    rounds_ : DataFrame
        One row per round: ``round``; ``n_simulated`` (the round's own draws in the
        store, failed included); ``n_reused`` (earlier rounds' successful draws
        inside the round's box); ``n_failed``; ``n_train`` (training rows:
        reused + successful new); ``n_resumed`` (own draws already stored when
        this ``fit`` began); ``mass`` (prior mass of the box the round sampled,
        relative to the original prior) and ``bounds`` (that box,
        ``{name: (low, high)}``); ``val_loss`` (best validation loss); ``seconds``.
    store_ : SimulationStore or None
        The store (None when ``store`` was None).

    See Also
    --------
    Truncator : one truncation step.
    sklearn_tmnre.store.SimulationStore : the on-disk simulation store.

    Notes
    -----
    To simulate on a cluster, start a ``dask.distributed`` scheduler and workers
    (``dask worker tcp://scheduler:8786 --nthreads 1``), put the store on storage
    the driving process can write (only that process writes to it), and fit
    inside ``with joblib.parallel_config(backend="dask")`` after creating a
    ``distributed.Client("tcp://scheduler:8786")``. The same ``random_state``
    gives the same simulations on a laptop or on the cluster.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from sklearn_tmnre import Prior, TMNREEstimator
    >>> from sklearn_tmnre.rounds import TMNRE
    >>> def simulator(theta, rng):
    ...     return theta + 0.2 * rng.standard_normal(1)
    >>> prior = Prior({"mu": stats.uniform(-5, 10)})
    >>> est = TMNREEstimator(hidden_features=16, embedding_dim=8, batch_size=32, lr=1e-2,
    ...                      max_epochs=30)
    >>> run = TMNRE(simulator, prior, estimator=est, n_sims=300, max_rounds=2,
    ...             convergence_ratio=1.0, random_state=0).fit(np.array([1.0]))
    >>> list(run.rounds_["round"])
    [0, 1]
    >>> bool(run.rounds_["mass"].iloc[1] < 0.8)  # round 1 sampled a smaller box
    True
    """

    def __init__(
        self,
        simulator: Callable[..., ArrayLike],
        prior: Prior,
        estimator: TMNREEstimator | None = None,
        truncator: Truncator | None = None,
        n_sims: int | Sequence[int] = 10_000,
        max_rounds: int = 5,
        convergence_ratio: float = 0.8,
        warm_start: bool = False,
        spend_budget: bool = True,
        store: str | os.PathLike | SimulationStore | None = None,
        n_jobs: int | None = None,
        simulate_batch_size: int | None = None,
        on_error: Literal["skip", "raise"] = "skip",
        timeout: float | None = None,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        verbose: int = 0,
    ) -> None:
        self.simulator = simulator
        self.prior = prior
        self.estimator = estimator
        self.truncator = truncator
        self.n_sims = n_sims
        self.max_rounds = max_rounds
        self.convergence_ratio = convergence_ratio
        self.warm_start = warm_start
        self.spend_budget = spend_budget
        self.store = store
        self.n_jobs = n_jobs
        self.simulate_batch_size = simulate_batch_size
        self.on_error = on_error
        self.timeout = timeout
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints: dict = {
        "simulator": [callable],
        "prior": [Prior],
        "estimator": [TMNREEstimator, None],
        "truncator": [Truncator, None],
        # A list's entries are checked by _budgets.
        "n_sims": [Interval(Integral, 2, None, closed="left"), list, tuple, np.ndarray],
        "max_rounds": [Interval(Integral, 1, None, closed="left")],
        "convergence_ratio": [Interval(Real, 0, 1, closed="right")],
        "warm_start": ["boolean"],
        "spend_budget": ["boolean"],
        "store": [str, os.PathLike, SimulationStore, None],
        "n_jobs": [Integral, None],
        "simulate_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "on_error": [StrOptions({"skip", "raise"})],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        # Any non-negative int is a campaign's entropy (a stored one may exceed 2**32).
        "random_state": [Interval(Integral, 0, None, closed="left"), np.random.RandomState,
                         np.random.Generator, None],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------ validation
    def _budgets(self):
        """The number of new simulations of each round (parameters already validated)."""
        if not isinstance(self.n_sims, list | tuple | np.ndarray):
            return budget_schedule(self.n_sims, self.max_rounds)
        if len(self.n_sims) == 0:
            raise ValueError("TMNRE: n_sims is an empty list; give one number per round.")
        for i, value in enumerate(self.n_sims):
            if (not isinstance(value, Integral) or isinstance(value, bool | np.bool_)
                    or value < 2):
                raise ValueError(f"TMNRE: n_sims must be an integer >= 2 or a list of them; "
                                 f"entry {i} is {value!r}.")
        return [int(v) for v in self.n_sims][:self.max_rounds]

    def _check_params(self):
        """Check the declared ``_parameter_constraints`` (called by ``fit``)."""
        validate_params(self, hints={
            "simulator": "Pass a function simulator(theta_row, rng=None) returning an array.",
            "estimator": "Pass None for TMNREEstimator(marginals='1d').",
            "truncator": "Pass None for Truncator().",
            "n_sims": "It is the total number of new simulations, or a list of them per "
                      "round.",
            "timeout": "It is the seconds allowed per simulation; None for no limit.",
            "random_state": "With a store that holds a campaign, None continues it.",
        })
        if getattr(self.prior, "fields", None):
            # Checked before any simulation: the rounds would otherwise spend a round's
            # budget and fail when the first estimator finds no field values.
            raise ValueError(
                f"TMNRE: the prior declares the field parameters {sorted(self.prior.fields)}; "
                "the rounds cannot train them (a field is an output of the simulator, and "
                "truncation applies to parameters drawn from the prior). Simulate the fields "
                "yourself and fit TMNREEstimator(...).fit(X, theta, <field>=values); see the "
                "user guide's segmentation page.")

    def _check_observation(self, x_o):
        return check_observation(x_o, "TMNRE.fit", padded=self._padded_sets())

    def _padded_sets(self):
        """Whether the estimator reads sets of varying size (NaN padding is data)."""
        return is_set_embedding(getattr(self.estimator, "embedding", None))

    @staticmethod
    def _check_observation_shape(x_o, event_shape):
        if x_o.shape not in (tuple(event_shape), (1, *event_shape)):
            raise ValueError(f"TMNRE.fit: x_o has shape {x_o.shape} but the simulator returns "
                             f"data of shape {tuple(event_shape)}; pass one observation of "
                             "that shape.")

    # -------------------------------------------------------------- campaign
    def _start_campaign(self, store):
        """Record a new campaign in the store, or check that the store holds this one.

        Under the store's lock: two runs starting on one store at once agree on
        one campaign (the second finds the first's record).
        """
        with store.lock():
            return self._start_campaign_locked(store)

    def _start_campaign_locked(self, store):
        meta = store.attrs.get(_ATTRS_KEY)
        if meta is None:
            if len(store):
                raise ValueError(f"TMNRE: the store {str(store.path)!r} holds simulations that "
                                 "TMNRE did not plan; give a new store path.")
            entropy = _campaign_entropy(self.random_state)
            store.attrs[_ATTRS_KEY] = {"entropy": str(entropy), **_prior_record(self.prior),
                                       "rounds": {}}
            return entropy
        if not _same_prior(meta, self.prior):
            raise ValueError(f"TMNRE: the store {str(store.path)!r} belongs to a campaign with "
                             f"another prior ({meta['prior']}); give a new store path to start "
                             "a new campaign.")
        stored = int(meta["entropy"])
        if self.random_state is None:
            return stored
        entropy = _campaign_entropy(self.random_state)
        if entropy != stored:
            raise ValueError(f"TMNRE: the store {str(store.path)!r} belongs to a campaign "
                             f"started with another random_state; pass the same random_state "
                             "(or None) to resume it, or give a new store path.")
        return entropy

    def _round_prior(self, store, k, prior_k, previous):
        """The box of round k: the computed one, unless stored draws were made in another.

        On one machine the boxes are reproduced exactly; elsewhere (other thread
        counts or library versions) training may differ in the last bits, and the
        stored draws of the round then keep their box, which they are valid for.
        """
        meta = store.attrs[_ATTRS_KEY]
        saved = meta["rounds"].get(str(k))
        if saved is not None and len(store.done_indices(k)):
            saved_bounds = np.asarray(saved["bounds"], dtype=float)
            if np.array_equal(saved_bounds, prior_k.bounds):
                return prior_k
            if not np.allclose(saved_bounds, prior_k.bounds, rtol=1e-6, atol=0):
                warnings.warn(
                    f"TMNRE: round {k}'s box differs from the one its stored simulations were "
                    f"drawn from ({_box(prior_k)} now, {saved['bounds']} stored); continuing "
                    "in the stored box. The estimator, truncator or training differ from the "
                    "run that wrote the store.", UserWarning, stacklevel=3)
            return previous.truncate(saved_bounds)
        if saved is None or saved["bounds"] != prior_k.bounds.tolist():
            meta["rounds"][str(k)] = {"bounds": prior_k.bounds.tolist()}
            store.attrs[_ATTRS_KEY] = meta
        return prior_k

    # ------------------------------------------------------------ simulation
    def _batch_size(self, n_new):
        if self.simulate_batch_size is not None:
            return int(self.simulate_batch_size)
        workers = joblib.effective_n_jobs(self.n_jobs)
        return max(1, math.ceil(n_new / _APPENDS_PER_ROUND), 4 * workers)

    def _simulate_round(self, store, k, prior_k, n_new, entropy, x_o):
        """Simulate round k's missing draws into the store; return the round's counts."""
        if len(store):
            inside = prior_k.contains(store.theta[self.prior.names])
            n_reused = int((store.ok & (store.rounds < k) & inside).sum())
        else:
            n_reused = 0
        done = store.done_indices(k)
        n_plan = max(n_new, int(done.max()) + 1 if len(done) else 0)
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(_PLAN, k)))
        plan = prior_k.sample(n_plan, random_state=rng)
        if len(done):
            self._check_plan(store, k, plan)
        missing = np.setdiff1d(np.arange(n_new), done)

        bar = None
        if self.verbose > 1 and len(missing):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(missing), desc=f"round {k} simulate", unit="sim")
        pending = []  # all-failed batches of a store that has no event shape yet
        step = self._batch_size(n_new)
        sim_seed = _derived_seed(entropy, _SIMULATE)
        try:
            for start in range(0, len(missing), step):
                index = missing[start:start + step]
                theta = plan.iloc[index].reset_index(drop=True)
                result = simulate(self.simulator, theta, n_jobs=self.n_jobs,
                                  random_state=sim_seed, timeout=self.timeout,
                                  row_ids=k * _ROUND_STRIDE + index, return_result=True,
                                  event_shape=store.event_shape,
                                  nan_padding=self._padded_sets())
                pending.append((theta, result, index))
                if result.ok.any() or store.event_shape is not None:
                    # A batch with a success first: it fixes the store's event shape.
                    for batch in sorted(pending, key=lambda b: not b[1].ok.any()):
                        self._append(store, k, *batch)
                    pending = []
                    # A misshapen observation costs one batch, not a round.
                    self._check_observation_shape(x_o, store.event_shape)
                if bar is not None:
                    bar.update(len(index))
        finally:
            if bar is not None:
                bar.close()
        if pending:
            first = pending[0][1]
            raise SimulationError(f"TMNRE: every simulation of round {k} failed; first error: "
                                  f"{first.errors[0]}")
        own = store.rounds == k
        return {"n_simulated": int(own.sum()), "n_reused": n_reused,
                "n_failed": int((own & ~store.ok).sum()), "n_resumed": len(done)}

    def _check_plan(self, store, k, plan):
        """Stored draws of round k must be the ones this campaign plans."""
        own = np.flatnonzero(store.rounds == k)
        stored = store.theta[self.prior.names].to_numpy()[own]
        planned = plan.to_numpy()[store.indices[own]]
        if not np.allclose(stored, planned, rtol=1e-9, atol=1e-12):
            raise ValueError(f"TMNRE: the draws of round {k} in the store {str(store.path)!r} "
                             "are not the ones this run plans (another random_state, prior, "
                             "estimator or n_sims wrote them); give a new store path.")

    def _append(self, store, k, theta, result, index):
        X = result.X
        if not result.ok.any():
            X = np.full((len(index), *store.event_shape), np.nan)
        store.append(theta, X, ok=result.ok, errors=result.errors, round=k, index=index)
        if self.on_error == "raise" and not result.ok.all():
            i = int(np.flatnonzero(~result.ok)[0])
            params = ", ".join(f"{n}={v:.6g}" for n, v in theta.iloc[i].items())
            raise SimulationError(
                f"TMNRE: the simulation of round {k}, index {int(index[i])} ({params}) failed: "
                f"{result.errors[i]}. {int((~result.ok).sum())} failure(s) of this batch are "
                "in the store (store.failures()); pass on_error='skip' to train without them.")

    def _training_data(self, store, k, prior_k):
        """Successful draws of rounds <= k inside the round's box, in (round, index) order."""
        theta, X, rows = store.select(prior_k.support, rounds=list(range(k + 1)))
        order = np.lexsort((store.indices[rows], store.rounds[rows]))
        return theta[self.prior.names].iloc[order].reset_index(drop=True), X[order]

    # ------------------------------------------------------------------- fit
    def fit(self, x_o: ArrayLike, y: None = None) -> TMNRE:
        """Run the rounds for the observation ``x_o``.

        Parameters
        ----------
        x_o : array-like of shape event_shape or (1, *event_shape)
            The observation.
        y : None
            Ignored (scikit-learn signature).

        Returns
        -------
        self : TMNRE
        """
        self._check_params()
        budgets = self._budgets()
        x_o = self._check_observation(x_o)
        tmpdir = None
        if self.store is None:
            tmpdir = tempfile.mkdtemp(prefix="sklearn_tmnre-")
            store = SimulationStore(os.path.join(tmpdir, "sims.zarr"))
        elif isinstance(self.store, SimulationStore):
            store = self.store
        else:
            store = SimulationStore(self.store)
        try:
            store.check_writable()
            self._run(store, x_o, budgets)
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
        self.store_ = None if tmpdir is not None else store
        return self

    def _run(self, store, x_o, budgets):
        if store.event_shape is not None:
            self._check_observation_shape(x_o, store.event_shape)
        entropy = self._start_campaign(store)
        estimator = TMNREEstimator(marginals="1d") if self.estimator is None else self.estimator
        truncator = Truncator() if self.truncator is None else self.truncator
        records, estimators, truncators = [], [], []
        previous = prior_k = self.prior
        k, final = 0, False
        while k < len(budgets):
            n_k = budgets[k]
            start = time.perf_counter()
            prior_k = self._round_prior(store, k, prior_k, previous)
            mass_k = self.prior.untruncated().mass(prior_k.support)
            counts = self._simulate_round(store, k, prior_k, n_k, entropy, x_o)
            theta, X = self._training_data(store, k, prior_k)
            self._check_observation_shape(x_o, X.shape[1:])
            if len(theta) < 2:
                raise SimulationError(f"TMNRE: round {k} has {len(theta)} successful "
                                      "simulation(s) to train on; at least 2 are needed.")
            if self.verbose > 1:
                print(f"TMNRE round {k}: training on {len(theta)} simulations", flush=True)
            est = clone(estimator).set_params(prior=prior_k,
                                              random_state=_derived_seed(entropy, _TRAIN, k))
            if self.warm_start and estimators:
                source = {n: p.detach().clone()
                          for n, p in estimators[-1].net_.module_.named_parameters()}
                est.set_params(callbacks=[*(est.callbacks or []),
                                          ("warm_start", _WarmStart(source))])
            est.fit(X, theta)
            trunc = clone(truncator).set_params(prior=prior_k).fit(x_o, estimator=est)
            estimators.append(est)
            truncators.append(trunc)
            records.append({"round": k, **counts, "n_train": len(theta), "mass": mass_k,
                            "bounds": _box(prior_k), "val_loss": _best_valid_loss(est),
                            "seconds": time.perf_counter() - start})
            ratio = trunc.mass_ / mass_k
            if self.verbose:
                rec = records[-1]
                print(f"TMNRE round {k}: {rec['n_reused']} reused + {rec['n_simulated']} "
                      f"simulated ({rec['n_failed']} failed, {rec['n_resumed']} from the store), "
                      f"best val_loss {rec['val_loss']:.4g}; box mass {mass_k:.4g} -> "
                      f"{trunc.mass_:.4g} (ratio {ratio:.3f}); {rec['seconds']:.1f} s",
                      flush=True)
            unspent = sum(budgets[k + 1:])
            # Round 0's estimator, trained on the smallest share of the budget, is the least
            # certain: its box alone never ends the truncation.
            if final or (k > 0 and ratio > self.convergence_ratio):
                if final or not (self.spend_budget and unspent):
                    break
                # Converged early: one last round gets every unspent simulation.
                final = True
                budgets = budgets[:k + 1] + [unspent]
            previous, prior_k = prior_k, prior_k.truncate(trunc.bounds_)
            k += 1

        columns = ["round", "n_simulated", "n_reused", "n_failed", "n_train", "n_resumed",
                   "mass", "bounds", "val_loss", "seconds"]
        self.rounds_ = pd.DataFrame(records, columns=columns)
        self.estimators_ = estimators
        self.truncators_ = truncators
        self.estimator_ = estimators[-1]
        self.truncator_ = truncators[-1]
        self.prior_ = self.truncator_.prior_
        self.posterior_ = self.estimator_.posterior(x_o)
