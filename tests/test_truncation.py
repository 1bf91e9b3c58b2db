"""Tests of Truncator: the box of one observation's marginal posteriors."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.exceptions import NotFittedError

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._grids import candidate_logits
from sklearn_tmnre.truncation import Truncator

NOISE = 0.5  # x = mu + NOISE * standard normal


def _estimator(prior, marginals="1d", n=500, seed=0):
    """A tiny ratio estimator for x = theta + noise (one data column per parameter)."""
    theta = prior.sample(n, random_state=seed)
    X = theta.to_numpy() + NOISE * np.random.default_rng(seed).standard_normal(theta.shape)
    return TMNREEstimator(prior=prior, marginals=marginals, hidden_features=16, embedding_dim=8,
                          max_epochs=50, patience=10, batch_size=32, lr=1e-2,
                          random_state=seed).fit(X, theta)


@pytest.fixture(scope="module")
def wide():
    """A prior 20 wide for a posterior of standard deviation 0.5, and its estimator."""
    prior = Prior({"mu": stats.uniform(-10, 20)})
    return prior, _estimator(prior)


X_O = np.array([1.0])


def test_box_shrinks_around_the_posterior(wide):
    prior, est = wide
    trunc = Truncator(epsilon=1e-4).fit(X_O, estimator=est)
    low, high = trunc.bounds_.loc["mu"]
    # The exact ratio keeps |mu - 1| < 0.5 * sqrt(2 log 1e4) = 2.15; a box must keep the
    # central 6 sigma (a looser estimate only widens it) and drop most of the prior.
    assert low < 1 - 3 * NOISE and high > 1 + 3 * NOISE
    assert trunc.mass_ < 0.5
    # mass_ is the mass of the box under the original uniform prior: its width / 20.
    assert trunc.mass_ == pytest.approx((high - low) / 20, rel=1e-12)
    assert trunc.prior_.support.equals(trunc.bounds_)
    assert list(trunc.bounds_.columns) == ["low", "high"]
    assert list(trunc.bounds_.index) == ["mu"]
    assert trunc.n_features_in_ == 1
    assert list(trunc.feature_names_in_) == ["mu"]


@pytest.mark.parametrize("rule", ["epsilon", "tail_mass"])
def test_a_smaller_level_gives_a_larger_box(wide, rule):
    _, est = wide
    boxes = [Truncator(**{rule: level}).fit(X_O, estimator=est).bounds_.loc["mu"]
             for level in (1e-2, 1e-4, 1e-6)]
    for inner, outer in zip(boxes, boxes[1:]):
        assert outer["low"] <= inner["low"] and inner["high"] <= outer["high"]
    assert boxes[0]["high"] - boxes[0]["low"] < boxes[-1]["high"] - boxes[-1]["low"]


def test_box_matches_the_rule_on_the_equal_probability_grid(wide):
    prior, est = wide
    n, eps = 200, 1e-3
    trunc = Truncator(epsilon=eps, n_samples=n).fit(X_O, estimator=est)
    # The same rule, written out with the estimator's public log_ratio.
    u = (np.arange(n) + 0.5) / n
    grid = -10 + 20 * u
    f = est.log_ratio(np.repeat(X_O[None], n, axis=0), grid[:, None])["mu"].to_numpy()
    kept = np.flatnonzero(f > f.max() + np.log(eps))
    low = max(-10.0, -10 + 20 * (kept[0] - 0.5) / n)
    high = min(10.0, -10 + 20 * (kept[-1] + 1.5) / n)
    np.testing.assert_allclose(trunc.bounds_.loc["mu"].to_numpy(), [low, high], rtol=1e-9)


def test_tail_mass_rule_on_the_equal_probability_grid(wide):
    prior, est = wide
    n, tail = 200, 1e-3
    trunc = Truncator(tail_mass=tail, n_samples=n).fit(X_O, estimator=est)
    # The rule written out: equal prior mass per cell, so posterior mass ~ exp(f).
    u = (np.arange(n) + 0.5) / n
    f = est.log_ratio(np.repeat(X_O[None], n, axis=0), (-10 + 20 * u)[:, None])["mu"]
    mass = np.exp(f.to_numpy() - f.max())
    mass = mass / mass.sum()
    lo = int(np.sum(np.cumsum(mass) <= tail))  # cells dropped on the left
    hi = n - 1 - int(np.sum(np.cumsum(mass[::-1]) <= tail))
    assert mass[:lo].sum() <= tail < mass[:lo + 1].sum()
    assert mass[hi + 1:].sum() <= tail < mass[hi:].sum()
    low = max(-10.0, -10 + 20 * (lo - 0.5) / n)
    high = min(10.0, -10 + 20 * (hi + 1.5) / n)
    np.testing.assert_allclose(trunc.bounds_.loc["mu"].to_numpy(), [low, high], rtol=1e-9)


def test_the_default_rule_is_the_tail_mass_and_epsilon_replaces_it(wide):
    _, est = wide
    default = Truncator().fit(X_O, estimator=est).bounds_.loc["mu"]
    explicit = Truncator(tail_mass=1e-5).fit(X_O, estimator=est).bounds_.loc["mu"]
    assert default.equals(explicit)
    ratio = Truncator(epsilon=1e-2, tail_mass=0.4).fit(X_O, estimator=est).bounds_.loc["mu"]
    assert ratio.equals(Truncator(epsilon=1e-2).fit(X_O, estimator=est).bounds_.loc["mu"])


def test_a_diverged_estimator_is_refused(wide):
    prior, est = wide
    broken = _estimator(prior, n=100)
    with torch.no_grad():
        next(broken.net_.module_.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        Truncator().fit(X_O, estimator=broken)


def test_fast_head_evaluation_equals_log_ratio(wide):
    _, est = wide
    values = np.linspace(-10, 10, 57)[:, None]
    fast = candidate_logits(est, X_O.astype(np.float32)[None], 1, values.shape,
                            values[None, :, :, None])[0, :, 0]
    slow = est.log_ratio(np.repeat(X_O[None], len(values), axis=0), values)["mu"].to_numpy()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_truncating_a_truncated_prior_stays_inside_it(wide):
    _, est = wide
    first = Truncator(epsilon=1e-2).fit(X_O, estimator=est)
    second = Truncator(first.prior_, epsilon=1e-6).fit(X_O, estimator=est)
    lo1, hi1 = first.bounds_.loc["mu"]
    lo2, hi2 = second.bounds_.loc["mu"]
    assert lo1 <= lo2 < hi2 <= hi1
    # Mass relative to the ORIGINAL prior, not to the truncated one.
    assert second.mass_ == pytest.approx((hi2 - lo2) / 20, rel=1e-12)


def test_collapsed_box_warns_and_keeps_one_grid_step(wide):
    _, est = wide
    # Three grid points (mu = -20/3, 0, 20/3): only the middle one is within 1e6 of the peak.
    with pytest.warns(UserWarning, match="one grid cell"):
        trunc = Truncator(epsilon=1e-2, n_samples=3).fit(np.array([0.0]), estimator=est)
    # One step (a third of the prior mass) beyond the kept centre on each side.
    np.testing.assert_allclose(trunc.bounds_.loc["mu"].to_numpy(), [-20 / 3, 20 / 3])


def test_parameters_without_1d_marginal_keep_their_bounds():
    prior = Prior({"a": stats.uniform(-10, 20), "b": stats.uniform(-10, 20)})
    est = _estimator(prior, marginals=[("a",), ("a", "b")])
    trunc = Truncator(epsilon=1e-2).fit(np.array([1.0, 2.0]), estimator=est)
    assert tuple(trunc.bounds_.loc["b"]) == (-10.0, 10.0)
    assert trunc.bounds_.loc["a", "high"] - trunc.bounds_.loc["a", "low"] < 10
    assert trunc.mass_ == pytest.approx(
        (trunc.bounds_.loc["a", "high"] - trunc.bounds_.loc["a", "low"]) / 20, rel=1e-12)


def test_unbounded_prior_gets_a_finite_box():
    prior = Prior({"mu": stats.norm(0, 5)})
    est = _estimator(prior)
    trunc = Truncator(epsilon=1e-2).fit(X_O, estimator=est)
    low, high = trunc.bounds_.loc["mu"]
    assert np.isfinite([low, high]).all()
    assert low < 1 - 2 * NOISE and high > 1 + 2 * NOISE
    assert trunc.mass_ == pytest.approx(stats.norm(0, 5).cdf(high) - stats.norm(0, 5).cdf(low))


def test_transform_inverse_transform_round_trip(wide):
    _, est = wide
    trunc = Truncator(epsilon=1e-2).fit(X_O, estimator=est)
    low, high = trunc.bounds_.loc["mu"]
    theta = np.linspace(low, high, 7)[:, None]
    u = trunc.transform(theta)
    assert isinstance(u, np.ndarray) and u.shape == (7, 1)
    # Uniform prior: the unit-cube coordinate is linear in the box.
    np.testing.assert_allclose(u[:, 0], np.linspace(0, 1, 7), atol=1e-12)
    np.testing.assert_allclose(trunc.inverse_transform(u), theta, rtol=1e-12)


def test_transform_keeps_rows_outside_the_box(wide):
    _, est = wide
    trunc = Truncator(epsilon=1e-2).fit(X_O, estimator=est)
    theta = pd.DataFrame({"mu": [-9.0, 1.0, 9.0]})
    u = trunc.transform(theta)
    assert u.shape == (3, 1)
    np.testing.assert_array_equal(u[[0, 2], 0], [0.0, 1.0])
    np.testing.assert_array_equal(trunc.contains(theta), [False, True, False])


def test_set_output_pandas(wide):
    _, est = wide
    trunc = Truncator(epsilon=1e-2).fit(X_O, estimator=est).set_output(transform="pandas")
    theta = pd.DataFrame({"mu": [0.5, 1.0, 1.5]}, index=[10, 11, 12])
    u = trunc.transform(theta)
    assert isinstance(u, pd.DataFrame)
    assert list(u.columns) == ["mu"] and list(u.index) == [10, 11, 12]
    assert list(trunc.get_feature_names_out()) == ["mu"]


def test_sample_inside_the_box_and_reproducible(wide):
    _, est = wide
    trunc = Truncator(epsilon=1e-2).fit(X_O, estimator=est)
    draws = trunc.sample(1000, random_state=3)
    assert draws.shape == (1000, 1)
    assert trunc.contains(draws).all()
    pd.testing.assert_frame_equal(draws, trunc.sample(1000, random_state=3))
    # Uniform in the box: the mean sits at the centre within 4 standard errors.
    low, high = trunc.bounds_.loc["mu"]
    se = (high - low) / np.sqrt(12 * 1000)
    assert abs(draws["mu"].mean() - (low + high) / 2) < 4 * se


def test_box_is_deterministic(wide):
    _, est = wide
    a = Truncator().fit(X_O, estimator=est).bounds_
    b = Truncator().fit(X_O[None], estimator=est).bounds_
    pd.testing.assert_frame_equal(a, b)


def test_estimator_without_1d_marginals_is_an_error():
    prior = Prior({"a": stats.uniform(-10, 20), "b": stats.uniform(-10, 20)})
    est = _estimator(prior, marginals="2d", n=50)
    with pytest.raises(ValueError, match="no 1-d marginals"):
        Truncator().fit(np.array([0.0, 0.0]), estimator=est)


@pytest.mark.parametrize("x_o", [np.zeros(2), np.zeros((2, 1)), np.zeros((1, 1, 1))])
def test_observation_of_the_wrong_shape_is_an_error(wide, x_o):
    _, est = wide
    with pytest.raises(ValueError, match="x_o has shape"):
        Truncator().fit(x_o, estimator=est)


def test_bad_arguments(wide):
    prior, est = wide
    with pytest.raises(TypeError, match="estimator=est"):
        Truncator().fit(X_O)
    with pytest.raises(TypeError, match="TMNREEstimator"):
        Truncator().fit(X_O, estimator=object())
    with pytest.raises(NotFittedError):
        Truncator().fit(X_O, estimator=TMNREEstimator())
    with pytest.raises(ValueError, match="epsilon"):
        Truncator(epsilon=1.0).fit(X_O, estimator=est)
    for bad in (0.5, -1e-3, True, "1e-5", float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tail_mass"):
            Truncator(tail_mass=bad).fit(X_O, estimator=est)
    with pytest.raises(ValueError, match="epsilon"):
        Truncator(epsilon=True).fit(X_O, estimator=est)
    with pytest.raises(ValueError, match="n_samples"):
        Truncator(n_samples=1).fit(X_O, estimator=est)
    with pytest.raises(TypeError, match="prior"):
        Truncator(prior={"mu": (0, 1)}).fit(X_O, estimator=est)
    other = Prior({"nu": stats.uniform(-10, 20)})
    with pytest.raises(ValueError, match="parameters"):
        Truncator(prior=other).fit(X_O, estimator=est)
    with pytest.raises(ValueError, match="finite"):
        Truncator().fit(np.array([np.nan]), estimator=est)
    with pytest.raises(NotFittedError):
        Truncator().transform(np.zeros((1, 1)))
    with pytest.raises(TypeError, match="fit_transform"):
        Truncator().fit_transform(X_O, estimator=est)


def test_no_warning_for_a_resolved_box(wide):
    _, est = wide
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Truncator().fit(X_O, estimator=est)


# ------------------------------------------------------------ parameter validation
@pytest.mark.parametrize("param, value, match", [
    ("tail_mass", 0.5, r"'tail_mass' parameter of Truncator must be a float in the range "
                       r"\[0\.0, 0\.5\)\. Got 0\.5 instead\. It is the posterior mass"),
    ("tail_mass", float("nan"), "'tail_mass' parameter"),
    ("tail_mass", True, "'tail_mass' parameter of Truncator must be a number, not a boolean"),
    ("epsilon", 0.0, r"'epsilon' parameter .* range \(0\.0, 1\.0\).*Pass None for the "
                     "tail-mass rule"),
    ("epsilon", float("inf"), "'epsilon' parameter"),
    ("epsilon", np.bool_(True), "not a boolean"),
    ("n_samples", 2.5, "'n_samples' parameter .* int in the range"),
    ("n_samples", 10**9, r"'n_samples' parameter .* \[2, 1048576\]"),  # would fill the memory
    ("n_samples", False, "not a boolean"),
    ("prior", {"mu": (0, 1)}, "'prior' parameter .* 'sklearn_tmnre.prior.Prior' or None"),
])
def test_parameters_are_validated_before_anything_else(param, value, match):
    # No estimator is given: the parameter is reported first, by fit and by fit_transform.
    with pytest.raises(ValueError, match=match):
        Truncator(**{param: value}).fit(X_O)
    with pytest.raises(TypeError, match=match):
        Truncator(**{param: value}).fit_transform(X_O)


def test_valid_parameter_extremes_are_accepted(wide):
    _, est = wide
    for params in ({"tail_mass": 0.0}, {"epsilon": 0.999}, {"n_samples": 2},
                   {"tail_mass": 0.49, "n_samples": np.int64(50)}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a 2-point grid warns that it is unresolved
            assert Truncator(**params).fit(X_O, estimator=est).mass_ > 0
