"""Prior truncation for one observation: the box Γ where its posterior lives.

For an observation :math:`x_o` and each parameter :math:`\\theta_i` with a 1-d
marginal, the estimated ratio :math:`f_i(\\theta_i) = \\log p(\\theta_i \\mid x_o)
/ p(\\theta_i)` is evaluated on ``n_samples`` points of the current prior. Two
rules turn it into an interval:

* **Tail mass** (the default): drop the longest run of points at each end of
  the range whose estimated posterior mass is at most ``tail_mass``. The box
  then leaves out at most ``2 * tail_mass`` of each estimated 1-d marginal
  posterior, whatever the shape of the learned ratio's tails.
* **Ratio threshold** (Miller et al. 2021, "Truncated marginal neural ratio
  estimation"; ``epsilon`` given): keep every point with

  .. math:: f_i(\\theta_i) > \\max_{\\theta_i'} f_i(\\theta_i') + \\log \\varepsilon.

  A learned log ratio falls off far more slowly in its tails than the true
  one, so which ε shrinks a box depends on the problem and the training.

The kept points span an interval, which is widened by one grid step on each
side and clipped to the current support; parameters without a 1-d marginal,
and discrete parameters (whose classes all stay), keep their bounds. The prior
restricted to the box is exact for product priors (inverse CDF between
:math:`F(l_i)` and :math:`F(h_i)`), so draws of earlier rounds that fall inside
a new, nested box are draws of the new truncated prior.

The points form an *equal-probability grid*: :math:`\\theta_{ij} = F_i^{-1}(u_j)`
with :math:`u_j = (j + 1/2) / n` in the unit space of the current prior. Three
reasons over random prior draws: the box is deterministic (no seed, so a rerun
or a resumed campaign finds the same box); the largest gap between points is
exactly one cell (random draws leave gaps of about :math:`\\log n / n`); and every
cell holds the same prior mass, so the posterior mass of a cell is proportional
to :math:`e^{f_i}`: both rules are rules on posterior mass per cell, and
"one grid step" is :math:`1/n` of the current prior mass. The region kept ends
somewhere between the last kept and the first dropped point, which the
one-step widening covers.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._checks import MAX_GRID_1D, check_observation, validate_params
from ._grids import candidate_logits, tail_cells
from .estimator import TMNREEstimator
from .prior import Prior
from .sets import is_set_embedding

__all__ = ["Truncator"]

def _kept_cells(f, tail_mass, epsilon):
    """First and last kept cell of one parameter's log ratio ``f`` on its grid.

    ``epsilon`` None: the tail-mass rule, else the ratio threshold (see the
    module docstring).
    """
    if epsilon is not None:
        kept = np.flatnonzero(f > f.max() + np.log(epsilon))
        return int(kept[0]), int(kept[-1])
    # Posterior mass of each cell (equal prior mass per cell), in float64 so that a
    # 1e-6 tail of a peaked posterior survives the normalization.
    mass = np.exp(f - f.max())
    first, last = tail_cells(mass[None], tail_mass)
    return int(first[0]), int(max(first[0], last[0]))


class Truncator(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Shrink the prior to the box where one observation's marginal posteriors live.

    A transformer over *parameter* space: :meth:`fit` takes the observation and
    a fitted :class:`~sklearn_tmnre.TMNREEstimator`; :meth:`transform` maps
    parameters to the unit cube of the truncated prior.

    Parameters
    ----------
    prior : Prior, optional
        The current prior (possibly already truncated by an earlier round). None:
        the estimator's ``prior_``.
    tail_mass : float, default=1e-5
        The tail-mass rule: at each end of every parameter's range, drop the
        points whose estimated marginal posterior mass, together with all
        points beyond them, is at most ``tail_mass``. Measured after a first
        round of 3,000 simulations on the five benchmark tasks (3 seeds x 3
        observations, ``benchmarks/bench_truncation_rule.py``): at 1e-5 the
        true posterior mass left outside the box averaged 0 to 3e-4 per task
        (at most 1.7e-3), and the box kept 19-94 % of the prior where
        ``epsilon=1e-6`` kept 31-100 %; on the CMB toy with a prior 20
        standard deviations wide, 35 % against 64 %. At 1e-4 the boxes were
        smaller (11-79 %) and cut up to 7e-3. After 300 simulations the
        estimate is rougher: at 1e-5 slcp's box cut up to 6.6e-3.
    epsilon : float, optional
        The ratio threshold of Miller et al. (2021) instead: keep the points
        whose ratio exceeds ``epsilon`` times its maximum (``tail_mass`` is then
        unused). Learned log ratios fall off far more slowly in their tails
        than the true ones, so the ε that shrinks a box depends on the problem:
        at 1e-6 a box often stays 10-15 posterior standard deviations wide (on
        the strong-lensing example, after round 0: +-15, +-8, +-5 and +-3 at
        1e-6, 1e-4, 1e-3 and 1e-2).
    n_samples : int, default=10_000
        Points of the equal-probability grid per parameter; one grid step holds
        ``1 / n_samples`` of the current prior mass.

    Attributes
    ----------
    bounds_ : DataFrame
        The box: index = parameter names, columns ``low``, ``high``.
    prior_ : Prior
        The prior restricted to ``bounds_``.
    mass_ : float
        Prior mass of the box under the original, untruncated prior.
    n_features_in_ : int
        Number of parameters (the features of :meth:`transform`).
    feature_names_in_ : ndarray of str
        Parameter names.

    See Also
    --------
    TMNRE : the multi-round loop that samples, trains and truncates.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from sklearn_tmnre import Prior, TMNREEstimator
    >>> from sklearn_tmnre.truncation import Truncator
    >>> prior = Prior({"mu": stats.uniform(-10, 20)})
    >>> theta = prior.sample(500, random_state=0)
    >>> X = theta.to_numpy() + 0.5 * np.random.default_rng(0).standard_normal((500, 1))
    >>> est = TMNREEstimator(prior=prior, max_epochs=30, random_state=0).fit(X, theta)
    >>> trunc = Truncator(epsilon=1e-3).fit(np.array([1.0]), estimator=est)
    >>> bool(trunc.mass_ < 1.0), bool(trunc.contains(np.array([[1.0]]))[0])
    (True, True)
    """

    def __init__(self, prior=None, tail_mass=1e-5, epsilon=None, n_samples=10_000):
        self.prior = prior
        self.tail_mass = tail_mass
        self.epsilon = epsilon
        self.n_samples = n_samples

    _parameter_constraints: dict = {
        "prior": [Prior, None],
        "tail_mass": [Interval(Real, 0, 0.5, closed="left")],
        "epsilon": [Interval(Real, 0, 1, closed="neither"), None],
        # The grid is n_samples x (1-d marginals) numbers: bounded like the estimator's grids.
        "n_samples": [Interval(Integral, 2, MAX_GRID_1D * 16, closed="both")],
    }

    def _check_params(self):
        """Check the declared ``_parameter_constraints`` (called by ``fit``)."""
        validate_params(self, hints={
            "prior": "Pass None to use the estimator's prior.",
            "tail_mass": "It is the posterior mass each end of the box may leave out, "
                         "e.g. 1e-5.",
            "epsilon": "Pass None for the tail-mass rule, or a ratio threshold such as 1e-6.",
            "n_samples": "It is the number of grid points per parameter, e.g. 10_000.",
        })

    @staticmethod
    def _check_estimator(estimator):
        if estimator is None:
            raise TypeError("Truncator.fit: pass the fitted ratio estimator as "
                            "fit(x_o, estimator=est).")
        if not isinstance(estimator, TMNREEstimator):
            raise TypeError(f"Truncator.fit: estimator must be a fitted TMNREEstimator; got "
                            f"{type(estimator).__name__}.")
        check_is_fitted(estimator)
        if not any(len(m) == 1 for m in estimator.marginals_):
            raise ValueError(
                f"Truncator.fit: the estimator has no 1-d marginals (its marginals are "
                f"{estimator.marginals_}); truncation needs them. Fit it with marginals='1d' "
                "or '1d+2d'.")

    @staticmethod
    def _check_observation(x_o, estimator):
        arr = np.asarray(x_o)
        shape = estimator.event_shape_
        if arr.shape == (1, *shape):
            arr = arr[0]
        if arr.shape != shape:
            raise ValueError(
                f"Truncator.fit: x_o has shape {arr.shape} but the estimator was trained on "
                f"observations of shape {shape}; pass one observation of shape {shape} or "
                f"(1, *{shape}).")
        padded = is_set_embedding(estimator.embedding)
        return check_observation(arr, "Truncator.fit", padded=padded).astype(np.float32)

    def fit(self, x_o, y=None, *, estimator=None):
        """Find the box of ``x_o``'s marginal posteriors.

        Parameters
        ----------
        x_o : array-like of shape event_shape or (1, *event_shape)
            The observation.
        y : None
            Ignored (scikit-learn signature).
        estimator : TMNREEstimator
            Fitted, with 1-d marginals, on simulations from ``prior``.

        Returns
        -------
        self : Truncator

        Warns
        -----
        UserWarning
            When all kept points of a parameter lie in one grid cell: the ratio
            is unresolved (too few ``n_samples``, or an overconfident
            estimator); the box is then the ±1 grid-step minimum.
        """
        self._check_params()
        self._check_estimator(estimator)
        x_o = self._check_observation(x_o, estimator)
        prior = estimator.prior_ if self.prior is None else self.prior
        if sorted(prior.names) != sorted(estimator.names_):
            raise ValueError(f"Truncator: the prior's parameters {prior.names} differ from the "
                             f"estimator's {estimator.names_}.")

        one_d = [m[0] for m in estimator.marginals_ if len(m) == 1]
        n = int(self.n_samples)
        u = (np.arange(n) + 0.5) / n
        values = np.column_stack([
            prior.marginal([name]).from_unit(u[:, None]).to_numpy()[:, 0] for name in one_d])
        # One observation, each 1-d head at its own parameter's points.
        logits = candidate_logits(estimator, x_o[None], 1, values.shape,
                                  values[None, :, :, None])[0].astype(np.float64)

        if not np.isfinite(logits).all():
            raise ValueError("Truncator.fit: the estimator's log ratio is not finite on the "
                             "prior's range (a diverged training?); refit it before truncating.")
        bounds = prior.bounds
        for c, name in enumerate(one_d):
            if prior.is_discrete(name):  # never truncated: all its classes stay
                continue
            lo_cell, hi_cell = _kept_cells(logits[:, c], self.tail_mass, self.epsilon)
            if lo_cell == hi_cell:
                warnings.warn(
                    f"Truncator: every point of {name!r} above the threshold lies in one grid "
                    f"cell of {n}; the box was widened to one grid step on each side. The "
                    "ratio is unresolved: increase n_samples, or check the estimator for "
                    "overconfidence (e.g. with expected_coverage).", UserWarning, stacklevel=2)
            i = prior.names.index(name)
            marginal = prior.marginal([name])
            # Kept points are cell centres; one step beyond them reaches past the
            # threshold crossing, which lies before the next (rejected) centre.
            u_lo, u_hi = (lo_cell - 0.5) / n, (hi_cell + 1.5) / n
            if u_lo > 0:
                bounds[i, 0] = marginal.from_unit(np.array([[u_lo]])).iloc[0, 0]
            if u_hi < 1:
                bounds[i, 1] = marginal.from_unit(np.array([[u_hi]])).iloc[0, 0]

        self.prior_ = prior.truncate(bounds)
        self.bounds_ = self.prior_.support
        self.mass_ = prior.untruncated().mass(self.bounds_)
        self.n_features_in_ = prior.ndim
        self.feature_names_in_ = np.asarray(prior.names, dtype=object)
        return self

    def fit_transform(self, x_o, y=None, **fit_params):
        """Not available: ``fit`` takes an observation, ``transform`` takes parameters.

        Raises
        ------
        TypeError
            Always; call ``fit(x_o, estimator=est)`` then ``transform(theta)``.
        """
        self._check_params()  # an invalid parameter is reported first, as by fit
        raise TypeError("Truncator.fit_transform: fit takes an observation x_o and transform "
                        "takes parameters theta, so they cannot share one input; call "
                        "fit(x_o, estimator=est) and then transform(theta).")

    def transform(self, theta):
        """Map parameters to the unit cube of the truncated prior (probability integral transform).

        Values outside the box map to 0 or 1; no row is dropped (see :meth:`contains`).

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params)

        Returns
        -------
        u : ndarray of shape (n, n_params)
            A DataFrame after ``set_output(transform="pandas")``.
        """
        check_is_fitted(self)
        th = self.prior_._as_array(theta, "Truncator.transform: theta")
        if len(th) == 0:
            raise ValueError("Truncator.transform: theta has 0 rows; pass at least one.")
        impossible = ~self.prior_.untruncated().contains(th)
        if impossible.any():
            raise ValueError(f"Truncator.transform: {int(impossible.sum())} row(s) of theta lie "
                             "outside the prior's support.")
        return self.prior_.to_unit(th).to_numpy()

    def inverse_transform(self, u):
        """Map points of the unit cube back to parameters of the truncated prior.

        Parameters
        ----------
        u : DataFrame or array-like of shape (n, n_params), values in [0, 1]

        Returns
        -------
        theta : ndarray of shape (n, n_params)
        """
        check_is_fitted(self)
        if len(np.atleast_1d(np.asarray(u))) == 0:
            raise ValueError("Truncator.inverse_transform: u has 0 rows; pass at least one.")
        return self.prior_.from_unit(u).to_numpy()

    def contains(self, theta):
        """Boolean mask (n,): which rows of ``theta`` lie inside the box (bounds included)."""
        check_is_fitted(self)
        return self.prior_.contains(theta)

    def sample(self, n, random_state=None):
        """Draw ``n`` parameters from the truncated prior.

        Parameters
        ----------
        n : int
        random_state : int, RandomState, Generator or None

        Returns
        -------
        theta : DataFrame of shape (n, n_params)
        """
        check_is_fitted(self)
        return self.prior_.sample(n, random_state=random_state)
