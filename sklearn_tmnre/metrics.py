"""Calibration and accuracy metrics: expected coverage, a coverage scorer, C2ST.

**Credibility and expected coverage.**  For a test pair
:math:`(\\theta^*, x) \\sim p(\\theta, x)` and an estimated marginal posterior
:math:`\\hat p(\\theta_m \\mid x)`, the credibility level of the true value is
the mass of the highest-density region (HDR) whose boundary passes through it,

.. math:: c_m(\\theta^*, x) = \\int \\hat p(\\theta_m \\mid x)\\,
          \\mathbf 1\\big[\\hat p(\\theta_m \\mid x) > \\hat p(\\theta^*_m \\mid x)\\big]\\,
          d\\theta_m ,

computed on the grids of :meth:`TMNREEstimator.posterior <sklearn_tmnre.TMNREEstimator.posterior>`
(zoomed onto each test observation's posterior, so a posterior far narrower
than the prior still spans many cells), with the density linear inside each
cell, so that the level moves continuously with the true value rather than in
steps of one cell's mass (:func:`~sklearn_tmnre.posterior.hpd_level`).  The empirical
coverage at nominal level :math:`1 - \\alpha` is the fraction of pairs with
:math:`c_m \\le 1 - \\alpha`.  If the estimate is exact, :math:`c_m` is uniform
on (0, 1) and the coverage equals the nominal level (Hermans et al. 2022, "A
trust crisis in simulation-based inference?"); coverage below the diagonal
means overconfident posteriors, above it conservative ones.  With ``n`` pairs
and ``k`` covered, the uncertainty of the empirical coverage is the Jeffreys
interval: quantiles of :math:`\\mathrm{Beta}(k + 1/2, n - k + 1/2)` (Brown, Cai
& DasGupta 2001).

For a discrete parameter the region is a highest-probability set of classes,
and the level is randomized: the mass of the classes more probable than the
true one plus a uniform fraction of the mass of those as probable
(:func:`~sklearn_tmnre.posterior.class_level`), which is uniform on (0, 1) for
an exact estimate, so the coverage is again exactly nominal.

**C2ST.**  The classifier two-sample test of the SBI benchmark (Lopez-Paz &
Oquab 2017; Lueckmann et al. 2021): the cross-validated accuracy of a
classifier that tells two samples apart; 0.5 means indistinguishable, 1.0
fully separable.

**Calibration and scores of per-pixel probabilities** (:func:`expected_calibration_error`,
:func:`reliability_curve`, :func:`block_brier_score`): see
:mod:`sklearn_tmnre._calibration`.
"""

from __future__ import annotations

import numbers
import time

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._calibration import block_brier_score, expected_calibration_error, reliability_curve
from ._checks import marginal_label, validate_theta
from .posterior import class_level, hpd_level

__all__ = [
    "CoverageScorer",
    "block_brier_score",
    "c2st",
    "coverage_scorer",
    "credibility",
    "expected_calibration_error",
    "expected_coverage",
    "jeffreys_interval",
    "marginal_c2st",
    "reliability_curve",
]

# Bytes of grid masses held per ``_grid_masses`` call: evaluations run in row
# blocks so that 2-d grids (rows x G x G per marginal, plus about ten
# temporaries of that size in hpd_level) never fill the memory.
_MASS_BYTES_PER_CALL = 2**24
# Rows of the first block, before the cost of one row is known.
_FIRST_BLOCK = 64
# Projected seconds of a credibility call above which it shows a progress bar.
_PROGRESS_SECONDS = 5.0
# Default nominal levels of coverage_scorer: 0.05, 0.10, ..., 0.95.
_SCORER_LEVELS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))


def _first_block(estimator, dims):
    """Rows of the first block: ``_FIRST_BLOCK``, fewer when the grids of a row are large.

    Later blocks are sized from the masses actually returned; the first comes
    from the grid sizes, so that 2-d grids of many marginals do not fill the
    memory before the first measurement.
    """
    try:
        per_row = 8 * sum(estimator.n_grid_1d if len(m) == 1 else estimator.n_grid_2d ** 2
                          for m in estimator.marginals_
                          if len(m) <= 2 and (dims is None or len(m) in dims))
    except (AttributeError, TypeError):  # a stand-in without grid sizes
        return _FIRST_BLOCK
    return max(1, min(_FIRST_BLOCK, int(_MASS_BYTES_PER_CALL // max(per_row, 1))))


def _marginal_order(names, masses):
    """1-d marginals in parameter order, then 2-d ones in parameter order."""
    return sorted(masses, key=lambda m: (len(m), [names.index(p) for p in m]))


def _block_levels(names, axes, masses, theta, discrete=(), rng=None):
    """Credibility of each row's true value in every grid marginal of one block.

    Marginals of a discrete parameter (names in ``discrete``) get the
    randomized level of :func:`~sklearn_tmnre.posterior.class_level`, with
    uniforms from ``rng``.
    """
    levels = {}
    for m, mass in masses.items():
        values = theta[:, [names.index(p) for p in m]]
        if len(m) == 1 and m[0] in discrete:
            classes = np.asarray(axes[m][0][0])
            classes = classes if classes.ndim == 1 else classes[0]  # the same for every row
            levels[m] = class_level(mass, classes, values[:, 0], rng.random_sample(len(mass)))
        else:
            levels[m] = hpd_level(mass, axes[m], values)
    return levels


def _check_dims(dims):
    if dims is None:
        return None
    out = tuple(sorted({int(d) for d in np.atleast_1d(dims)}))
    if not out or not set(out) <= {1, 2}:
        raise ValueError(f"dims must be None, (1,), (2,) or (1, 2); got {dims!r}.")
    return out


def credibility(estimator, X, theta, dims=None, random_state=0):
    """Credibility level of the true parameters in every estimated grid marginal.

    For each test pair the mass of the highest-density region of the
    estimated marginal posterior that contains the true value: 0 at the mode,
    approaching 1 far in the tails; values outside the grid get 1.  The
    posterior includes the prior (ratio x prior), so no extra weighting is
    needed.

    Parameters
    ----------
    estimator : TMNREEstimator
        A fitted estimator, or any object with ``names_`` and
        ``_grid_masses(X) -> (axes, masses)`` (``masses[marginal]`` of shape
        (n, G) or (n, G, G), ``axes[marginal]`` a list of (cell centres, cell
        width) per parameter).
    X : array-like of shape (n, *event_shape)
        Simulated data.
    theta : DataFrame or array-like of shape (n, D)
        The parameters each row was simulated from (columns ``names_``, or
        that order for an array).
    dims : {None, (1,), (2,), (1, 2)}, default=None
        Dimensions of the marginals to evaluate; None: every grid marginal.
        ``(1,)`` skips the 2-d grids, which cost ``n_grid_2d`` times more per
        observation (passed on as ``_grid_masses(X, dims=dims)``). The 2-d
        marginals of a 10-parameter model cost about 140 times the 1-d ones
        on the default 128 x 128 grids. A coarser grid
        (``est.set_params(n_grid_2d=32)``) costs about 9 times, and moved the
        expected coverage of a 10-d Gaussian task by under 0.005. It moved
        two moons' crescent by up to 0.035, so check it against the default
        grid first (``benchmarks/bench_coverage_cost.py``).
    random_state : int, RandomState or None, default=0
        Seeds the uniform draws of the randomized level of discrete
        parameters (the mass of the classes more probable than the true one,
        plus a uniform fraction of those as probable: see
        :func:`~sklearn_tmnre.posterior.class_level`), with which a calibrated
        estimator's coverage is exactly nominal. Continuous marginals do not
        use it.

    Returns
    -------
    DataFrame of shape (n, n_grid_marginals)
        Columns are marginal labels (``"a"``, ``"a|b"``): the 1-d marginals in
        parameter order, then the 2-d ones.  1-d marginals without a head of
        their own are read off a 2-d one, as the estimator does.

    Examples
    --------
    >>> credibility(est, X_test, theta_test).mean()       # doctest: +SKIP
    """
    if isinstance(estimator, BaseEstimator):
        check_is_fitted(estimator)
    if not hasattr(estimator, "_grid_masses") or not hasattr(estimator, "names_"):
        raise TypeError(f"estimator must be a fitted TMNREEstimator (with names_ and "
                        f"_grid_masses); got {type(estimator).__name__}.")
    if hasattr(estimator, "_observations"):
        # The estimator's own input checks: event shape, dtype, NaN, range.
        X = estimator._observations(X)
    else:
        X = np.asarray(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"X must hold at least one row; got shape {X.shape}.")
    dims = _check_dims(dims)
    names = list(estimator.names_)
    theta = validate_theta(theta, list(estimator.names_), len(X))
    prior = getattr(estimator, "prior_", None)
    discrete = [] if prior is None else [n for n in names if prior.is_discrete(n)]
    rng = check_random_state(random_state)
    columns, blocks, bar = None, [], None
    start, step = 0, _first_block(estimator, dims)
    began = time.perf_counter()
    while start < len(X):
        stop = min(start + step, len(X))
        if dims is None:
            axes, masses = estimator._grid_masses(X[start:stop])
        else:
            axes, masses = estimator._grid_masses(X[start:stop], dims=dims)
            # 2-d grids still come back when a parameter's 1-d marginal is derived from one.
            masses = {m: v for m, v in masses.items() if len(m) in dims}
        levels = _block_levels(names, axes, masses, theta[start:stop], discrete, rng)
        if columns is None:
            columns = _marginal_order(names, levels)
            if not columns:
                raise ValueError(f"the estimator has no grid marginal of dimension "
                                 f"{dims or (1, 2)} to compute credibility on.")
        blocks.append(np.column_stack([levels[m] for m in columns]))
        bytes_per_row = sum(v.nbytes for v in masses.values()) / (stop - start)
        start, step = stop, max(1, int(_MASS_BYTES_PER_CALL // max(bytes_per_row, 1)))
        # A progress bar once the whole call is projected to take more than a few seconds
        # (2-d marginals of many parameters cost far more than 1-d ones).
        elapsed = time.perf_counter() - began
        if bar is None and start < len(X) and elapsed * len(X) / start > _PROGRESS_SECONDS:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(X), initial=start, desc="credibility", unit="row")
        elif bar is not None:
            bar.update(stop - bar.n)
    if bar is not None:
        bar.close()
    return pd.DataFrame(np.concatenate(blocks), columns=[marginal_label(m) for m in columns])


def _check_levels(levels, argname="levels"):
    arr = np.atleast_1d(np.asarray(levels, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{argname} must be a number or a non-empty 1-d sequence of numbers; "
                         f"got {levels!r}.")
    if not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"{argname} must lie in [0, 1] (nominal credibility levels); "
                         f"got {levels!r}.")
    return arr


def jeffreys_interval(k, n, confidence=0.95):
    """Jeffreys interval of a binomial proportion.

    Parameters
    ----------
    k : int or array-like
        Successes.
    n : int or array-like
        Trials.
    confidence : float, default=0.95
        Probability inside the interval.

    Returns
    -------
    lower, upper : ndarray
        ``Beta(k + 1/2, n - k + 1/2)`` quantiles at ``(1 -/+ confidence) / 2``;
        the lower bound is 0 when ``k = 0`` and the upper one 1 when ``k = n``.

    Examples
    --------
    >>> lo, hi = jeffreys_interval(50, 100)
    >>> bool(0.39 < lo < 0.41 and 0.59 < hi < 0.61)
    True
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    tail = (1 - confidence) / 2
    lower = np.where(k > 0, stats.beta.ppf(tail, k + 0.5, n - k + 0.5), 0.0)
    upper = np.where(k < n, stats.beta.ppf(1 - tail, k + 0.5, n - k + 0.5), 1.0)
    return lower, upper


def expected_coverage(estimator, X, theta, levels=(0.68, 0.95), confidence=0.95, dims=None,
                      random_state=0):
    """Empirical coverage of the estimated marginal posteriors at nominal levels.

    Parameters
    ----------
    estimator : TMNREEstimator
        Fitted (see :func:`credibility` for the interface it needs).
    X : array-like of shape (n, *event_shape)
        Test data simulated from ``theta``, with ``theta`` drawn from the prior
        the estimator was trained on (a truncated prior gives coverage within
        the truncated region).
    theta : DataFrame or array-like of shape (n, D)
        True parameters.
    levels : float or sequence of float in [0, 1], default=(0.68, 0.95)
        Nominal credibility levels ``1 - alpha``; ``np.linspace(0.05, 0.95, 19)``
        traces the whole curve.
    confidence : float, default=0.95
        Probability inside the ``[lower, upper]`` band; raise it to account
        for many simultaneous comparisons.
    dims : {None, (1,), (2,), (1, 2)}, default=None
        Dimensions of the marginals to evaluate (None: all; ``(1,)`` is much
        cheaper, see :func:`credibility`).
    random_state : int, RandomState or None, default=0
        Seeds the randomized credibility levels of discrete parameters (see
        :func:`credibility`).

    Returns
    -------
    DataFrame
        One row per (marginal, level), columns ``marginal`` (label such as
        ``"a"`` or ``"a|b"``), ``level``, ``coverage`` (fraction of pairs whose
        credibility is <= level), ``lower``, ``upper`` (Jeffreys interval of
        that fraction).  A calibrated estimator has ``lower <= level <= upper``
        about ``confidence`` of the time.

    Examples
    --------
    >>> expected_coverage(est, X_test, theta_test, levels=[0.5, 0.9])  # doctest: +SKIP
    """
    levels = _check_levels(levels)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    cred = credibility(estimator, X, theta, dims=dims, random_state=random_state)
    return _coverage_table(cred, levels, confidence)


def _coverage_table(cred, levels, confidence=0.95):
    n = len(cred)
    values = cred.to_numpy()
    k = (values[:, :, None] <= levels[None, None, :]).sum(axis=0)  # (marginals, levels)
    lower, upper = jeffreys_interval(k, n, confidence)
    return pd.DataFrame({
        "marginal": np.repeat(cred.columns.to_numpy(dtype=object), len(levels)),
        "level": np.tile(levels, cred.shape[1]),
        "coverage": (k / n).ravel(),
        "lower": lower.ravel(),
        "upper": upper.ravel(),
    })


class CoverageScorer:
    """Scorer: how close empirical coverage is to nominal (higher is better, 0 is best).

    Made by :func:`coverage_scorer`; a plain module-level class so that it
    pickles for parallel cross-validation.

    Parameters
    ----------
    levels : sequence of float in [0, 1]
        Nominal levels at which coverage is measured.
    kind : {"absolute", "overconfidence"}
        ``"absolute"``: ``-mean |coverage - level|`` over marginals and levels
        (penalizes both over- and under-confidence); ``"overconfidence"``:
        ``-mean max(0, level - coverage)`` (only coverage below nominal is
        penalized, so conservative estimators score 0).
    dims : {None, (1,), (2,), (1, 2)}
        Dimensions of the marginals scored (None: all grid marginals).
    """

    def __init__(self, levels, kind="absolute", dims=None):
        self.levels = tuple(float(v) for v in _check_levels(levels))
        if kind not in ("absolute", "overconfidence"):
            raise ValueError(f"kind must be 'absolute' or 'overconfidence'; got {kind!r}.")
        self.kind = kind
        self.dims = _check_dims(dims)

    def __call__(self, estimator, X, y):
        """Score a fitted estimator on test pairs ``(X, y)``.

        Parameters
        ----------
        estimator : TMNREEstimator
        X : array-like of shape (n, *event_shape)
        y : DataFrame or array-like of shape (n, D)

        Returns
        -------
        float
        """
        levels = np.asarray(self.levels)
        table = _coverage_table(credibility(estimator, X, y, dims=self.dims), levels)
        gap = table["coverage"].to_numpy() - table["level"].to_numpy()
        penalty = np.abs(gap) if self.kind == "absolute" else np.maximum(0.0, -gap)
        return -float(np.mean(penalty))

    def __repr__(self):
        dims = "" if self.dims is None else f", dims={self.dims}"
        return f"coverage_scorer(levels={list(self.levels)}, kind={self.kind!r}{dims})"


def coverage_scorer(levels=_SCORER_LEVELS, kind="absolute", dims=None):
    """A scikit-learn scorer of posterior calibration (higher is better, 0 is best).

    Parameters
    ----------
    levels : sequence of float in [0, 1], default=(0.05, 0.10, ..., 0.95)
        Nominal levels at which coverage is measured.
    kind : {"absolute", "overconfidence"}, default="absolute"
        ``"absolute"``: minus the mean absolute gap between empirical and
        nominal coverage over marginals and levels. ``"overconfidence"``:
        minus the mean shortfall ``max(0, level - coverage)``, so conservative
        posteriors are not penalized.
    dims : {None, (1,), (2,), (1, 2)}, default=None
        Dimensions of the marginals scored (None: all grid marginals; ``(1,)``
        skips the costly 2-d grids).

    Returns
    -------
    CoverageScorer
        Callable ``scorer(estimator, X, y) -> float``, usable as ``scoring=``
        in ``cross_val_score``, ``cross_validate`` and ``GridSearchCV``.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> scorer = coverage_scorer(levels=[0.5, 0.9])
    >>> scorer
    coverage_scorer(levels=[0.5, 0.9], kind='absolute')
    >>> cross_val_score(est, X, theta, cv=5, scoring=scorer)     # doctest: +SKIP
    """
    return CoverageScorer(levels, kind, dims)


def _as_samples(data, argname):
    """Samples as a float array (n, dim) and their column names (None for arrays)."""
    columns = None
    if isinstance(data, pd.Series):
        data = data.to_frame()
    if isinstance(data, pd.DataFrame):
        columns = [str(c) for c in data.columns]
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{argname} must be numeric samples; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{argname} must have shape (n, dim) or (n,); got {arr.shape}.")
    if len(arr) < 2:
        raise ValueError(f"{argname} needs at least 2 samples; got {len(arr)}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{argname} contains NaN or infinite values.")
    return arr, columns


def c2st(a, b, random_state=0, n_folds=5, z_score=True, classifier=None, n_jobs=None):
    """Classifier two-sample test accuracy, as in the SBI benchmark.

    Follows ``sbibm.metrics.c2st``: both samples are z-scored with the mean
    and standard deviation of ``a`` (the reference); an ``MLPClassifier`` with
    two hidden layers of ``10 * dim`` ReLU units (adam, ``max_iter=10000``) is
    trained to tell them apart; the result is the mean accuracy over a
    shuffled ``n_folds``-fold ``KFold``.

    Parameters
    ----------
    a : DataFrame or array-like of shape (n_a, dim) or (n_a,)
        Reference samples.
    b : DataFrame or array-like of shape (n_b, dim) or (n_b,)
        Samples to compare. If both are DataFrames, ``b``'s columns are
        matched to ``a``'s by name.
    random_state : int or None, default=0
        Seed of the folds and the classifier.
    n_folds : int, default=5
        Cross-validation folds.
    z_score : bool, default=True
        Standardize with the statistics of ``a`` (dimensions where ``a`` is
        constant are left unscaled).
    classifier : sklearn classifier, optional
        Replaces the benchmark's MLP (cloned before use).
    n_jobs : int, optional
        Folds fitted in parallel (joblib).

    Returns
    -------
    float
        0.5 when the samples are indistinguishable (and equally many), 1.0 when
        fully separable. With unequal sizes chance level is
        ``max(n_a, n_b) / (n_a + n_b)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> same = c2st(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)))
    >>> bool(abs(same - 0.5) < 0.07)
    True
    """
    a_arr, a_cols = _as_samples(a, "a")
    b_arr, b_cols = _as_samples(b, "b")
    if a_cols is not None and b_cols is not None:
        if set(a_cols) != set(b_cols):
            raise ValueError(f"a and b have different columns: {a_cols} and {b_cols}.")
        b_arr = np.asarray(pd.DataFrame(b_arr, columns=b_cols)[a_cols], dtype=np.float64)
    if a_arr.shape[1] != b_arr.shape[1]:
        raise ValueError(f"a and b must have the same dimension; got {a_arr.shape[1]} and "
                         f"{b_arr.shape[1]}.")
    if not isinstance(n_folds, numbers.Integral) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2; got {n_folds!r}.")
    if min(len(a_arr), len(b_arr)) < n_folds:
        raise ValueError(f"each sample needs at least n_folds={n_folds} rows; got "
                         f"{len(a_arr)} and {len(b_arr)}.")
    if z_score:
        mean, std = a_arr.mean(axis=0), a_arr.std(axis=0, ddof=1)
        # A constant reference dimension would divide by zero; shifting it is enough.
        std = np.where(std > 0, std, 1.0)
        a_arr, b_arr = (a_arr - mean) / std, (b_arr - mean) / std
    dim = a_arr.shape[1]
    if classifier is None:
        clf = MLPClassifier(hidden_layer_sizes=(10 * dim, 10 * dim), activation="relu",
                            solver="adam", max_iter=10000, random_state=random_state)
    else:
        clf = clone(classifier)
    data = np.concatenate([a_arr, b_arr])
    target = np.concatenate([np.zeros(len(a_arr)), np.ones(len(b_arr))])
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    scores = cross_val_score(clf, data, target, cv=folds, scoring="accuracy", n_jobs=n_jobs)
    return float(np.mean(scores))


def marginal_c2st(posterior, reference_samples, n=None, random_state=0, n_jobs=None):
    """C2ST of every 1-d and 2-d marginal of a posterior against reference samples.

    Parameters
    ----------
    posterior : MarginalPosterior
        Estimated posterior of one observation.
    reference_samples : DataFrame or ndarray of shape (n_ref, D)
        Samples of the true posterior; an array's columns are in
        ``posterior.names`` order.
    n : int, optional
        Posterior draws per marginal (default: ``len(reference_samples)``).
        A smaller ``n`` also subsamples the reference to ``n`` rows so that
        chance level stays 0.5.
    random_state : int, RandomState or None, default=0
        Seeds the draws, the subsampling and each test.
    n_jobs : int, optional
        Folds fitted in parallel within each test.

    Returns
    -------
    DataFrame
        One row per marginal: ``marginal`` (label ``"a"`` or ``"a|b"``),
        ``dim`` (1 or 2), ``c2st``.  The benchmark figure is its mean.

    Examples
    --------
    >>> marginal_c2st(est.posterior(x_o), reference)["c2st"].mean()  # doctest: +SKIP
    """
    if not hasattr(posterior, "mass") or not hasattr(posterior, "sample"):
        raise TypeError(f"posterior must be a MarginalPosterior; got {type(posterior).__name__}.")
    names = list(posterior.names)
    ref, ref_cols = _as_samples(reference_samples, "reference_samples")
    if ref_cols is None:
        if ref.shape[1] != len(names):
            raise ValueError(f"reference_samples has {ref.shape[1]} columns but the posterior's "
                             f"parameters are {names}; pass a DataFrame with named columns.")
        ref_cols = names
    marginals = [m for m in posterior.mass if len(m) <= 2]
    marginals = sorted(marginals, key=lambda m: (len(m), [names.index(p) for p in m]))
    missing = sorted({p for m in marginals for p in m} - set(ref_cols))
    if missing:
        raise ValueError(f"reference_samples lacks columns {missing}; it has {ref_cols}.")
    ref = pd.DataFrame(ref, columns=ref_cols)
    n = len(ref) if n is None else n
    if not isinstance(n, numbers.Integral) or not 2 <= n <= len(ref):
        raise ValueError(f"n must be an integer in [2, len(reference_samples)={len(ref)}]; "
                         f"got {n!r}.")
    rng = check_random_state(random_state)
    if n < len(ref):
        ref = ref.iloc[rng.choice(len(ref), size=n, replace=False)]
    rows = []
    for m in marginals:
        draws = posterior.sample(n, marginal=m, random_state=rng)
        seed = int(rng.randint(2**31 - 1))
        rows.append({"marginal": marginal_label(m), "dim": len(m),
                     "c2st": c2st(ref[list(m)], draws[list(m)], random_state=seed,
                                  n_jobs=n_jobs)})
    return pd.DataFrame(rows, columns=["marginal", "dim", "c2st"])
