"""The common interface of the benchmark tasks.

A *task* bundles everything needed to measure a simulation-based inference
method against ground truth:

* a named product :class:`~sklearn_tmnre.Prior` ``p(theta)``;
* a stochastic simulator ``x ~ p(x | theta)``, both per row
  (:meth:`Task.simulator`, the signature :func:`sklearn_tmnre.simulate` expects)
  and vectorized over a batch (:meth:`Task.simulate_batch`, for speed); the two
  are written independently and agree in distribution;
* fixed observations ``x_o^(i)`` with the parameters ``theta^(i)`` that made them,
  numbered ``1 .. n_observations`` as in the SBI benchmark (Lueckmann et al.,
  "Benchmarking Simulation-Based Inference", AISTATS 2021);
* reference samples of the joint posterior ``p(theta | x_o^(i))``, exact where the
  posterior has a closed form and from long MCMC runs otherwise;
* the analytic log-likelihood ``log p(x | theta)`` where it exists.

Observation numbers are 1-based, like sbibm's ``num_observation``.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

__all__ = ["Task"]


def check_generator(random_state, argname="random_state"):
    """Turn ``random_state`` (None, int, SeedSequence, RandomState, Generator) into a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int64).max, dtype=np.int64))
    if random_state is None or isinstance(random_state, numbers.Integral | np.random.SeedSequence):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"{argname} must be None, an int, a SeedSequence, a RandomState or a Generator; "
        f"got {type(random_state).__name__}."
    )


class Task(ABC):
    """A benchmark problem: prior, simulator, observations and reference posteriors.

    Subclasses implement ``_simulate_one``, ``_simulate_batch``, ``_log_likelihood``
    and ``_reference``; this class validates arguments and shapes.

    Parameters
    ----------
    name : str
        Short identifier, as in sbibm (``"two_moons"``, ``"slcp"``, ...).
    prior : Prior
        The prior; its names are ``theta_0, theta_1, ...``.
    event_shape : tuple of int
        Shape of one simulation output.
    true_parameters : array-like of shape (n_observations, n_params)
        The parameters that generated each observation.
    observations : array-like of shape (n_observations, *event_shape)
        The fixed observations ``x_o``.

    Attributes
    ----------
    name : str
    prior : Prior
    event_shape : tuple of int
    n_observations : int
    set_size : int or None
        Number of exchangeable (independent, identically distributed) draws
        one observation is made of, element after element; None when the data
        have no such structure. ``embedding="deepset"`` with
        ``embedding__set_size=task.set_size`` uses it.
    """

    set_size = None

    def __init__(self, name, prior, event_shape, true_parameters, observations):
        self.name = name
        self.prior = prior
        self.event_shape = tuple(event_shape)
        self._true_parameters = np.asarray(true_parameters, dtype=float)
        self._observations = np.asarray(observations, dtype=float)
        n = len(self._true_parameters)
        if self._true_parameters.shape != (n, prior.ndim):
            raise ValueError(
                f"true_parameters must have shape (n_observations, {prior.ndim}); "
                f"got {self._true_parameters.shape}."
            )
        if self._observations.shape != (n, *self.event_shape):
            raise ValueError(
                f"observations must have shape ({n}, *{self.event_shape}); "
                f"got {self._observations.shape}."
            )

    # ------------------------------------------------------------ validation
    @property
    def n_observations(self):
        """int: number of fixed observations (numbered from 1)."""
        return len(self._observations)

    def _check_index(self, i):
        if not isinstance(i, numbers.Integral) or not 1 <= i <= self.n_observations:
            raise ValueError(
                f"{self.name}: the observation number i must be an integer in "
                f"1..{self.n_observations} (1-based, as in sbibm); got {i!r}."
            )
        return int(i)

    def _check_theta(self, theta, argname="theta"):
        """Return ``theta`` as a float array (n, n_params); a 1-d input is one row."""
        if isinstance(theta, pd.DataFrame):
            missing = [n for n in self.prior.names if n not in theta.columns]
            if missing:
                raise ValueError(
                    f"{argname}: missing columns {missing}; expected {self.prior.names}."
                )
            theta = theta[self.prior.names].to_numpy()
        arr = np.asarray(theta)
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{argname}: expected numeric values; got dtype {arr.dtype}.")
        arr = np.atleast_2d(arr.astype(float))
        if arr.ndim != 2 or arr.shape[1] != self.prior.ndim:
            raise ValueError(
                f"{argname}: expected shape (n, {self.prior.ndim}) or ({self.prior.ndim},) "
                f"for {self.name}; got {np.shape(theta)}."
            )
        return arr

    def _check_x(self, x, n):
        """Return ``x`` broadcast to (n, *event_shape)."""
        arr = np.asarray(x, dtype=float)
        if arr.shape == self.event_shape:
            return np.broadcast_to(arr, (n, *self.event_shape))
        if arr.shape == (n, *self.event_shape):
            return arr
        raise ValueError(
            f"x: expected one observation of shape {self.event_shape} or one per row of "
            f"theta, shape ({n}, *{self.event_shape}); got {arr.shape}."
        )

    # ------------------------------------------------------------- interface
    def simulator(self, theta_row, rng=None):
        """Simulate one data set for one parameter vector.

        Parameters
        ----------
        theta_row : array-like of shape (n_params,)
        rng : Generator, int or None
            Source of randomness; None uses a fresh generator.

        Returns
        -------
        x : ndarray of shape ``event_shape``
        """
        theta = self._check_theta(theta_row, "theta_row")
        if len(theta) != 1:
            raise ValueError(
                f"theta_row: the per-row simulator takes one parameter vector; got {len(theta)} "
                "rows (use simulate_batch for a batch)."
            )
        return np.asarray(self._simulate_one(theta[0], check_generator(rng, "rng")), dtype=float)

    def simulate_batch(self, theta, rng=None):
        """Simulate one data set per row of ``theta`` (vectorized).

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params)
        rng : Generator, int or None
            Source of randomness; None uses a fresh generator.

        Returns
        -------
        X : ndarray of shape (n, *event_shape)
        """
        theta = self._check_theta(theta)
        return self._simulate_batch(theta, check_generator(rng, "rng"))

    def sample(self, n, random_state=None):
        """Draw ``n`` pairs ``theta ~ p(theta)``, ``x ~ p(x | theta)``.

        Parameters
        ----------
        n : int
        random_state : int, Generator, RandomState or None

        Returns
        -------
        theta : DataFrame of shape (n, n_params)
        X : ndarray of shape (n, *event_shape)
        """
        rng = check_generator(random_state)
        theta = self.prior.sample(n, random_state=rng)
        return theta, self._simulate_batch(theta.to_numpy(), rng)

    def observation(self, i):
        """The fixed observation number ``i`` (1-based), shape ``event_shape``."""
        return self._observations[self._check_index(i) - 1].copy()

    def true_parameters(self, i):
        """The parameters that generated observation ``i`` (1-based), shape (n_params,)."""
        return self._true_parameters[self._check_index(i) - 1].copy()

    def log_likelihood(self, theta, x):
        """Analytic ``log p(x | theta)``.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params) or (n_params,)
        x : array-like of shape ``event_shape`` or (n, *event_shape)
            One observation for all rows, or one per row.

        Returns
        -------
        log_likelihood : ndarray of shape (n,)
        """
        theta = self._check_theta(theta)
        return self._log_likelihood(theta, self._check_x(x, len(theta)))

    def reference_samples(self, i, n=10_000, random_state=None):
        """Samples of the reference posterior ``p(theta | x_o^(i))``.

        Parameters
        ----------
        i : int
            Observation number, 1-based.
        n : int, default=10_000
            Number of samples.
        random_state : int, Generator, RandomState or None

        Returns
        -------
        samples : DataFrame of shape (n, n_params), columns = prior names
        """
        i = self._check_index(i)
        if not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        samples = self._reference(i, int(n), check_generator(random_state))
        return pd.DataFrame(np.asarray(samples, dtype=float), columns=self.prior.names)

    def __repr__(self):
        return (
            f"{type(self).__name__}(name={self.name!r}, n_params={self.prior.ndim}, "
            f"event_shape={self.event_shape}, n_observations={self.n_observations})"
        )

    # ---------------------------------------------------- subclass contract
    @abstractmethod
    def _simulate_one(self, theta, rng):
        """One draw for one parameter vector ``theta`` (n_params,)."""

    @abstractmethod
    def _simulate_batch(self, theta, rng):
        """One draw per row of ``theta`` (n, n_params) -> (n, *event_shape)."""

    @abstractmethod
    def _log_likelihood(self, theta, x):
        """``log p(x_k | theta_k)`` for aligned rows, shape (n,)."""

    @abstractmethod
    def _reference(self, i, n, rng):
        """``n`` reference posterior samples for observation ``i``, shape (n, n_params)."""


def rejection_sample(propose, accept, n, rng, max_proposals=10**9):
    """Collect ``n`` accepted draws from ``propose(m, rng)`` filtered by ``accept(draws)``.

    Batches grow with the running acceptance rate, so few rounds are needed.
    """
    out, have, tried, batch = [], 0, 0, max(2 * n, 1000)
    while have < n:
        if tried >= max_proposals:
            raise RuntimeError(
                f"rejection sampling accepted only {have} of {tried} proposals; the "
                "observation is too far outside the prior."
            )
        draws = propose(batch, rng)
        kept = draws[accept(draws)]
        out.append(kept)
        have += len(kept)
        tried += batch
        rate = max(have / tried, 1e-4)
        batch = int(min(max(1.2 * (n - have) / rate, 1000), 1_000_000))
    return np.concatenate(out)[:n]
