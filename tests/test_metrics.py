import itertools
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate

from sklearn_tmnre import MarginalPosterior, Prior, TMNREEstimator
from sklearn_tmnre.metrics import (
    CoverageScorer,
    block_brier_score,
    c2st,
    coverage_scorer,
    credibility,
    expected_calibration_error,
    expected_coverage,
    jeffreys_interval,
    marginal_c2st,
    reliability_curve,
)
from sklearn_tmnre.posterior import grid_axes

NOISE = 0.5
# Conjugate Gaussian: theta ~ N(0, 1), x = theta + N(0, NOISE^2) per parameter.
POST_VAR = 1.0 / (1.0 + 1.0 / NOISE**2)


class GaussianStandIn:
    """The exact posterior of the conjugate Gaussian problem on the estimator's grids.

    Exposes the interface that the metrics read from a fitted TMNREEstimator.
    ``scale`` multiplies the posterior standard deviation: < 1 is overconfident,
    > 1 conservative.
    """

    def __init__(self, prior, scale=1.0, n_grid_1d=256, n_grid_2d=128):
        self.prior_ = prior
        self.names_ = list(prior.names)
        self.marginals_ = [(n,) for n in self.names_] + list(
            itertools.combinations(self.names_, 2))
        self.log_ratio_columns_ = ["|".join(m) for m in self.marginals_]
        self.scale = scale
        self.n_grid_1d, self.n_grid_2d = n_grid_1d, n_grid_2d

    def posterior_moments(self, X):
        X = np.asarray(X, dtype=float)
        return X * POST_VAR / NOISE**2, np.sqrt(POST_VAR) * self.scale

    def _cell_masses(self, X, n_grid):
        mean, std = self.posterior_moments(X)
        out = {}
        for j, (name, (centres, width)) in enumerate(
                zip(self.names_, grid_axes(self.prior_, self.names_, n_grid))):
            hi = stats.norm.cdf(centres[None] + width / 2, mean[:, j, None], std)
            lo = stats.norm.cdf(centres[None] - width / 2, mean[:, j, None], std)
            p = hi - lo
            out[name] = ((centres, width), p / p.sum(axis=1, keepdims=True))
        return out

    def _grid_masses(self, X, dims=(1, 2)):
        one, two = self._cell_masses(X, self.n_grid_1d), self._cell_masses(X, self.n_grid_2d)
        axes, masses = {}, {}
        for m in (m for m in self.marginals_ if len(m) in dims):
            cells = one if len(m) == 1 else two
            axes[m] = [cells[n][0] for n in m]
            if len(m) == 1:
                masses[m] = cells[m[0]][1]
            else:
                pa, pb = cells[m[0]][1], cells[m[1]][1]
                masses[m] = pa[:, :, None] * pb[:, None, :]
        return axes, masses


class NarrowStandIn(GaussianStandIn):
    """The conjugate posterior on grids zoomed onto each row, as the estimator's are.

    ``zoom=False`` puts every row on the prior's range instead.
    """

    def __init__(self, prior, noise, zoom=True, n_grid=64):
        super().__init__(prior, n_grid_1d=n_grid, n_grid_2d=n_grid)
        self.noise, self.zoom = noise, zoom

    def posterior_moments(self, X):
        # Flat prior on a box far wider than the posterior: N(x, noise^2).
        return np.asarray(X, dtype=float), self.noise

    def _cell_masses(self, X, n_grid):
        mean, std = self.posterior_moments(X)
        out = {}
        for j, name in enumerate(self.names_):
            if self.zoom:
                low = mean[:, j] - 6 * std
                width = np.full(len(X), 12 * std / n_grid)
            else:
                lo, hi = self.prior_.bounds[j]
                low, width = np.full(len(X), lo), np.full(len(X), (hi - lo) / n_grid)
            centres = low[:, None] + (np.arange(n_grid) + 0.5) * width[:, None]
            p = (stats.norm.cdf(centres + width[:, None] / 2, mean[:, j, None], std)
                 - stats.norm.cdf(centres - width[:, None] / 2, mean[:, j, None], std))
            out[name] = ((centres, width), p / p.sum(axis=1, keepdims=True))
        return out


def test_coverage_of_a_posterior_far_narrower_than_the_prior():
    """std = 1/200 of the prior's width: nominal coverage on zoomed grids, 1-d and 2-d."""
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
    noise, n = 0.01, 2_000
    rng = np.random.default_rng(3)
    theta = pd.DataFrame(rng.uniform(-0.9, 0.9, (n, 2)), columns=["a", "b"])
    X = theta.to_numpy() + noise * rng.standard_normal((n, 2))
    levels = (0.5, 0.68, 0.95)
    table = expected_coverage(NarrowStandIn(prior, noise), X, theta, levels=levels,
                              confidence=0.99)
    assert len(table) == 3 * len(levels)
    assert ((table["lower"] <= table["level"]) & (table["level"] <= table["upper"])).all()
    # The same posterior on the prior's range has about one cell: it reads as conservative.
    coarse = expected_coverage(NarrowStandIn(prior, noise, zoom=False), X, theta, levels=levels)
    assert (coarse["coverage"] - coarse["level"]).max() > 0.1


@pytest.fixture(scope="module")
def gaussian_prior():
    return Prior({"a": stats.norm(0, 1), "b": stats.norm(0, 1)})


def gaussian_pairs(prior, n, seed):
    theta = prior.sample(n, random_state=seed)
    X = theta.to_numpy() + NOISE * np.random.default_rng(seed + 1).standard_normal((n, 2))
    return X, theta


# ------------------------------------------------------------------ credibility
def test_credibility_matches_closed_form(gaussian_prior):
    """1-d: 2 Phi(|z|) - 1; 2-d (independent): chi2_2 cdf of |z|^2. Errors <= grid cells."""
    model = GaussianStandIn(gaussian_prior)
    X, theta = gaussian_pairs(gaussian_prior, 400, seed=0)
    cred = credibility(model, X, theta)
    assert list(cred.columns) == ["a", "b", "a|b"]
    assert cred.shape == (400, 3)
    mean, std = model.posterior_moments(X)
    z = (theta.to_numpy() - mean) / std
    axes, masses = model._grid_masses(X)
    for j, name in enumerate(["a", "b"]):
        # The region of denser cells is off by at most one boundary cell on each side.
        tol = 2 * masses[(name,)].max()
        np.testing.assert_allclose(cred[name], 2 * stats.norm.cdf(np.abs(z[:, j])) - 1, atol=tol)
    # 2-d: the grid region differs from the ellipse by the cells its boundary crosses:
    # a band one cell diagonal wide, whose mass is at most max_r r e^{-r^2/2} dr = e^{-1/2} dr.
    width = axes[("a", "b")][0][1]
    band = np.exp(-0.5) * np.sqrt(2) * width / std
    exact = stats.chi2(2).cdf((z**2).sum(axis=1))
    np.testing.assert_allclose(cred["a|b"], exact, atol=band)
    # The boundary errors mostly cancel: on average they are far below the band.
    assert np.mean(np.abs(cred["a|b"] - exact)) < band / 4


def test_credibility_accepts_arrays_and_reordered_frames(gaussian_prior):
    model = GaussianStandIn(gaussian_prior, n_grid_1d=64, n_grid_2d=32)
    X, theta = gaussian_pairs(gaussian_prior, 50, seed=3)
    ref = credibility(model, X, theta)
    pd.testing.assert_frame_equal(credibility(model, X, theta[["b", "a"]]), ref)
    pd.testing.assert_frame_equal(credibility(model, X, theta.to_numpy()), ref)


def test_credibility_dims_selects_marginals(gaussian_prior):
    model = GaussianStandIn(gaussian_prior, n_grid_1d=64, n_grid_2d=32)
    X, theta = gaussian_pairs(gaussian_prior, 20, seed=4)
    full = credibility(model, X, theta)
    pd.testing.assert_frame_equal(credibility(model, X, theta, dims=(1,)), full[["a", "b"]])
    pd.testing.assert_frame_equal(credibility(model, X, theta, dims=2), full[["a|b"]])
    table = expected_coverage(model, X, theta, levels=[0.5], dims=(1,))
    assert list(table["marginal"]) == ["a", "b"]
    # The default scorer levels are 0.05, 0.10, ..., 0.95.
    one_d = expected_coverage(model, X, theta, levels=np.arange(1, 20) / 20, dims=(1,))
    gap = (one_d["coverage"] - one_d["level"]).abs().mean()
    assert coverage_scorer(dims=(1,))(model, X, theta) == pytest.approx(-gap)
    with pytest.raises(ValueError, match="dims must be"):
        credibility(model, X, theta, dims=(3,))
    model.marginals_ = [("a",), ("b",)]
    with pytest.raises(ValueError, match=r"no grid marginal of dimension \(2,\)"):
        credibility(model, X, theta, dims=(2,))


def test_credibility_outside_grid_is_one(gaussian_prior):
    # Odd grids: x = 0 puts the posterior mode at the centre of the middle cell.
    model = GaussianStandIn(gaussian_prior, n_grid_1d=65, n_grid_2d=33)
    X = np.zeros((2, 2))
    theta = pd.DataFrame({"a": [0.0, 100.0], "b": [0.0, 0.0]})
    cred = credibility(model, X, theta)
    assert cred.loc[1, "a"] == 1.0 and cred.loc[1, "a|b"] == 1.0
    # At the mode no cell is denser: the level is half of the mode cell's mass.
    _, masses = model._grid_masses(X)
    half_mode = 0.5 * masses[("a",)][0].max()
    np.testing.assert_allclose(cred.loc[0, ["a", "b"]], half_mode)
    np.testing.assert_allclose(cred.loc[1, "b"], half_mode)
    np.testing.assert_allclose(cred.loc[0, "a|b"], 0.5 * masses[("a", "b")][0].max())


def test_credibility_errors(gaussian_prior):
    model = GaussianStandIn(gaussian_prior, n_grid_1d=16, n_grid_2d=8)
    X, theta = gaussian_pairs(gaussian_prior, 10, seed=0)
    with pytest.raises(ValueError, match="different numbers of rows"):
        credibility(model, X, theta[:5])
    with pytest.raises(ValueError, match=r"lacks columns \['b'\]"):
        credibility(model, X, theta[["a"]])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        credibility(model, X, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        credibility(model, X, np.full((10, 2), np.nan))
    with pytest.raises(TypeError, match="fitted TMNREEstimator"):
        credibility(object(), X, theta)
    with pytest.raises(NotFittedError):
        credibility(TMNREEstimator(prior=gaussian_prior), X, theta)


def test_credibility_blocks_do_not_change_results(gaussian_prior, monkeypatch):
    import sklearn_tmnre.metrics as metrics

    model = GaussianStandIn(gaussian_prior, n_grid_1d=32, n_grid_2d=16)
    X, theta = gaussian_pairs(gaussian_prior, 37, seed=5)
    whole = credibility(model, X, theta)
    monkeypatch.setattr(metrics, "_FIRST_BLOCK", 4)
    monkeypatch.setattr(metrics, "_MASS_BYTES_PER_CALL", 3 * 16 * 16 * 8)
    pd.testing.assert_frame_equal(credibility(model, X, theta), whole)


# ------------------------------------------------------------- expected coverage
LEVELS = [0.1, 0.3, 0.5, 0.68, 0.8, 0.9, 0.95]


@pytest.fixture(scope="module")
def coverage_pairs(gaussian_prior):
    return gaussian_pairs(gaussian_prior, 2000, seed=11)


def test_exact_posterior_is_calibrated(gaussian_prior, coverage_pairs):
    X, theta = coverage_pairs
    model = GaussianStandIn(gaussian_prior, n_grid_1d=1024)
    n_checks = 3 * len(LEVELS)
    # Bonferroni: all 21 intervals hold jointly with probability >= 0.95.
    table = expected_coverage(model, X, theta, levels=LEVELS, confidence=1 - 0.05 / n_checks)
    assert list(table.columns) == ["marginal", "level", "coverage", "lower", "upper"]
    assert len(table) == n_checks
    assert list(table["marginal"].unique()) == ["a", "b", "a|b"]
    # Grid levels (denser cells + half the own cell) move the covered mass by at most
    # half a cell from the nominal level.
    _, masses = model._grid_masses(X)
    slack = 0.5 * max(m.max() for m in masses.values())
    inside = (table["lower"] - slack <= table["level"]) & (table["level"] <= table["upper"] + slack)
    assert inside.all(), table


def test_overconfident_posterior_fails_coverage(gaussian_prior, coverage_pairs):
    X, theta = coverage_pairs
    table = expected_coverage(GaussianStandIn(gaussian_prior, scale=0.5), X, theta,
                              levels=LEVELS, confidence=1 - 0.05 / 21)
    # Halving the std: 1-d coverage at L is P(|Z| <= z_{(1+L)/2} / 2), 2-d 1 - (1-L)^(1/4).
    assert (table["upper"] < table["level"]).all(), table
    one_d = table[table["marginal"] == "a"].set_index("level")["coverage"]
    expected = 2 * stats.norm.cdf(stats.norm.ppf((1 + one_d.index.to_numpy()) / 2) / 2) - 1
    np.testing.assert_allclose(one_d, expected, atol=4 * np.sqrt(0.25 / len(X)))


def test_coverage_scorer_kinds(gaussian_prior, coverage_pairs):
    X, theta = coverage_pairs
    exact, narrow, wide = (GaussianStandIn(gaussian_prior, scale=s, n_grid_2d=64)
                           for s in (1.0, 0.5, 2.0))
    absolute, over = coverage_scorer(), coverage_scorer(kind="overconfidence")
    # A calibrated estimator's gaps are binomial noise, each below 3 sd at n = 2000.
    noise = 3 * np.sqrt(0.25 / len(X))
    assert -noise < absolute(exact, X, theta) <= 0
    assert absolute(narrow, X, theta) < -0.15
    assert absolute(wide, X, theta) < -0.15
    assert over(narrow, X, theta) < -0.15
    # Conservative posteriors cover more than nominal at every level: no penalty.
    assert over(wide, X, theta) == 0.0


def test_expected_coverage_argument_errors(gaussian_prior):
    model = GaussianStandIn(gaussian_prior, n_grid_1d=16, n_grid_2d=8)
    X, theta = gaussian_pairs(gaussian_prior, 10, seed=0)
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 1\]"):
        expected_coverage(model, X, theta, levels=[0.5, 1.5])
    with pytest.raises(ValueError, match="confidence"):
        expected_coverage(model, X, theta, confidence=1.0)
    with pytest.raises(ValueError, match="kind must be"):
        coverage_scorer(kind="relative")
    table = expected_coverage(model, X, theta, levels=0.9)
    assert list(table["level"]) == [0.9, 0.9, 0.9]


def test_jeffreys_interval_limits():
    lo, hi = jeffreys_interval([0, 10], [10, 10])
    assert lo[0] == 0.0 and hi[1] == 1.0
    # Large n: close to the normal approximation p +- 1.96 sqrt(p (1-p) / n).
    lo, hi = jeffreys_interval(5000, 10000)
    half = 1.959964 * np.sqrt(0.25 / 10000)
    np.testing.assert_allclose([lo, hi], [0.5 - half, 0.5 + half], atol=1e-4)


# ------------------------------------------------------- with a trained estimator
@pytest.fixture(scope="module")
def small_problem():
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
    theta = prior.sample(450, random_state=0)
    X = theta.to_numpy() + 0.3 * np.random.default_rng(1).standard_normal((450, 2))
    est = TMNREEstimator(prior=prior, marginals="1d+2d", max_epochs=2, hidden_features=16,
                         embedding_dim=8, n_grid_1d=48, n_grid_2d=16, random_state=0)
    return est, X, theta


@pytest.fixture(scope="module")
def fitted(small_problem):
    est, X, theta = small_problem
    return clone(est).fit(X[:300], theta[:300])


def test_trained_estimator_coverage_and_cross_validation(small_problem, fitted):
    est, X, theta = small_problem
    table = expected_coverage(fitted, X[300:], theta[300:], levels=[0.5, 0.9])
    assert len(table) == 6 and table["coverage"].between(0, 1).all()
    # The vectorized levels agree with MarginalPosterior.credibility, row by row.
    cred = credibility(fitted, X[300:305], theta[300:305])
    for i, post in enumerate(fitted.posterior(X[300:305])):
        for m in [("a",), ("b",), ("a", "b")]:
            value = theta.iloc[300 + i][list(m)].to_numpy()
            np.testing.assert_allclose(cred.iloc[i]["|".join(m)], post.credibility(m, value))
    pd.testing.assert_frame_equal(credibility(fitted, X[300:305], theta[300:305], dims=(1,)),
                                  cred[["a", "b"]])
    scores = cross_val_score(est, X, theta, cv=3, scoring=coverage_scorer())
    assert scores.shape == (3,) and np.all((scores <= 0) & (scores >= -1))
    result = cross_validate(est, X, theta, cv=2, scoring={
        "absolute": coverage_scorer(), "overconfidence": coverage_scorer(kind="overconfidence")})
    # max(0, level - coverage) <= |coverage - level|, fold by fold.
    assert np.all(result["test_overconfidence"] >= result["test_absolute"])


def test_grid_search_parallel_and_pickled_scorer(small_problem, fitted):
    est, X, theta = small_problem
    scorer = coverage_scorer(levels=[0.5, 0.9], kind="overconfidence")
    copy = pickle.loads(pickle.dumps(scorer))
    assert isinstance(copy, CoverageScorer) and copy.levels == (0.5, 0.9)
    assert copy(fitted, X[300:], theta[300:]) == scorer(fitted, X[300:], theta[300:])
    search = GridSearchCV(est, {"balance": [0.0, 10.0]}, cv=2, scoring=scorer, n_jobs=2,
                          refit=False)
    search.fit(X, theta)
    means = search.cv_results_["mean_test_score"]
    assert means.shape == (2,) and np.all((means <= 0) & (means >= -1))
    assert [p["balance"] for p in search.cv_results_["params"]] == [0.0, 10.0]


# -------------------------------------------------------------------------- c2st
def test_c2st_same_distribution_is_chance():
    rng = np.random.default_rng(0)
    assert abs(c2st(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))) - 0.5) < 0.05


def test_c2st_disjoint_is_one():
    rng = np.random.default_rng(1)
    assert c2st(rng.normal(size=(500, 2)), 10 + rng.normal(size=(500, 2))) > 0.95


def test_c2st_reaches_bayes_accuracy():
    # N(0, 1) against N(1, 1): the optimal classifier's accuracy is Phi(1/2) = 0.6915.
    rng = np.random.default_rng(2)
    acc = c2st(rng.normal(size=1000), 1 + rng.normal(size=1000))
    sd = np.sqrt(0.6915 * 0.3085 / 2000)
    assert abs(acc - 0.6915) < 4 * sd


def test_c2st_inputs_and_errors():
    rng = np.random.default_rng(3)
    a = pd.DataFrame(rng.normal(size=(100, 2)), columns=["x", "y"])
    b = pd.DataFrame(rng.normal(size=(100, 2)) + [0.0, 3.0], columns=["x", "y"])
    assert c2st(a, b[["y", "x"]]) == c2st(a, b) == c2st(a.to_numpy(), b.to_numpy())
    with pytest.raises(ValueError, match="same dimension"):
        c2st(a.to_numpy(), b.to_numpy()[:, :1])
    with pytest.raises(ValueError, match="different columns"):
        c2st(a, b.rename(columns={"y": "z"}))
    with pytest.raises(ValueError, match="NaN"):
        c2st(a.to_numpy(), np.full((100, 2), np.nan))
    with pytest.raises(ValueError, match="n_folds"):
        c2st(a, b, n_folds=1)


def test_marginal_c2st_against_exact_and_shifted_reference(gaussian_prior):
    model = GaussianStandIn(gaussian_prior, n_grid_1d=128, n_grid_2d=64)
    x_o = np.array([[0.4, -1.0]])
    axes, masses = model._grid_masses(x_o)
    post = MarginalPosterior(model.marginals_, axes, {m: v[0] for m, v in masses.items()})
    mean, std = model.posterior_moments(x_o)
    rng = np.random.default_rng(4)
    exact = pd.DataFrame(mean + std * rng.standard_normal((600, 2)), columns=["a", "b"])
    table = marginal_c2st(post, exact, random_state=0)
    assert list(table.columns) == ["marginal", "dim", "c2st"]
    assert list(table["marginal"]) == ["a", "b", "a|b"] and list(table["dim"]) == [1, 1, 2]
    assert (np.abs(table["c2st"] - 0.5) < 0.06).all(), table
    shifted = exact.assign(b=exact["b"] + 3 * std)
    table = marginal_c2st(post, shifted.to_numpy(), n=300, random_state=0).set_index("marginal")
    assert abs(table.loc["a", "c2st"] - 0.5) < 0.08
    assert table.loc["b", "c2st"] > 0.9 and table.loc["a|b", "c2st"] > 0.9
    with pytest.raises(ValueError, match="n must be"):
        marginal_c2st(post, exact, n=601)
    with pytest.raises(ValueError, match="3 columns"):
        marginal_c2st(post, np.zeros((10, 3)))


def test_a_long_credibility_call_shows_progress(gaussian_prior, monkeypatch, capsys):
    import sklearn_tmnre.metrics as metrics

    monkeypatch.setattr(metrics, "_FIRST_BLOCK", 5)
    monkeypatch.setattr(metrics, "_PROGRESS_SECONDS", 0.0)
    X, theta = gaussian_pairs(gaussian_prior, 40, seed=0)
    shown = credibility(GaussianStandIn(gaussian_prior), X, theta)
    assert "credibility" in capsys.readouterr().err
    monkeypatch.setattr(metrics, "_PROGRESS_SECONDS", 1e9)
    pd.testing.assert_frame_equal(credibility(GaussianStandIn(gaussian_prior), X, theta), shown)
    assert "credibility" not in capsys.readouterr().err


def test_the_first_block_fits_the_memory_budget_of_large_2d_grids(gaussian_prior):
    import sklearn_tmnre.metrics as metrics

    small = GaussianStandIn(gaussian_prior, n_grid_1d=16, n_grid_2d=8)
    assert metrics._first_block(small, None) == metrics._FIRST_BLOCK
    large = GaussianStandIn(gaussian_prior, n_grid_1d=256, n_grid_2d=1024)
    rows = metrics._first_block(large, None)
    per_row = 8 * (2 * 256 + 1024**2)  # two 1-d grids and one 2-d grid, float64
    assert 1 <= rows < metrics._FIRST_BLOCK
    assert rows * per_row <= metrics._MASS_BYTES_PER_CALL
    assert metrics._first_block(large, (1,)) == metrics._FIRST_BLOCK


# ------------------------------------------------- calibration of binary probabilities
def _bernoulli_events(n, seed):
    """Probabilities uniform on (0, 1) and events that happen with exactly them."""
    rng = np.random.default_rng(seed)
    proba = rng.random(n)
    return rng.random(n) < proba, proba


def _ece_tolerance(counts, z=4.0):
    """``z`` standard errors of the ECE of calibrated probabilities, at most.

    A bin of ``n_b`` events has a frequency with standard error at most
    ``sqrt(0.25 / n_b)``; weighted by ``n_b / N`` and summed over bins.
    """
    counts = counts[counts > 0]
    return z * np.sum(np.sqrt(0.25 * counts)) / np.sum(counts)


def test_ece_of_calibrated_probabilities_is_near_zero():
    happened, proba = _bernoulli_events(200_000, seed=0)
    _, _, counts = reliability_curve(happened, proba)
    ece = expected_calibration_error(happened, proba)
    assert 0 <= ece < _ece_tolerance(counts)


def test_ece_of_overconfident_and_underconfident_probabilities_is_large():
    from scipy.special import expit, logit

    happened, proba = _bernoulli_events(200_000, seed=1)
    tolerance = _ece_tolerance(reliability_curve(happened, proba)[2])
    overconfident = expit(3 * logit(proba))  # pushed towards 0 and 1
    underconfident = expit(logit(proba) / 3)  # pulled towards 0.5
    for wrong in (overconfident, underconfident):
        assert expected_calibration_error(happened, wrong) > max(0.1, 5 * tolerance)
    # The reliability curve tells which: below the diagonal above 0.5 when overconfident.
    mean_predicted, frequency, _ = reliability_curve(happened, overconfident)
    assert np.all(frequency[mean_predicted > 0.6] < mean_predicted[mean_predicted > 0.6])
    mean_predicted, frequency, _ = reliability_curve(happened, underconfident)
    assert np.all(frequency[mean_predicted > 0.6] > mean_predicted[mean_predicted > 0.6])


def test_reliability_curve_by_hand():
    mean_predicted, frequency, counts = reliability_curve(
        [0, 0, 1, 1], [0.05, 0.15, 0.15, 0.95], n_bins=2)
    np.testing.assert_allclose(mean_predicted, [0.35 / 3, 0.95])
    np.testing.assert_allclose(frequency, [1 / 3, 1.0])
    np.testing.assert_array_equal(counts, [3, 1])
    # ECE: 3/4 |1/3 - 0.35/3| + 1/4 |1 - 0.95|.
    assert expected_calibration_error([0, 0, 1, 1], [0.05, 0.15, 0.15, 0.95], n_bins=2) == \
        pytest.approx(0.75 * (1 - 0.35) / 3 + 0.25 * 0.05)


def test_reliability_curve_keeps_empty_bins_and_edges():
    # 0 and an inner edge belong to the lower bin, 1 to the last, as in calibration_curve.
    mean_predicted, frequency, counts = reliability_curve(
        [1, 0, 1, 1], [0.0, 0.1, 0.1000001, 1.0], n_bins=10)
    np.testing.assert_array_equal(counts, [2, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    assert np.isnan(mean_predicted[2:9]).all() and np.isnan(frequency[2:9]).all()
    np.testing.assert_allclose(frequency[[0, 1, 9]], [0.5, 1.0, 1.0])


def test_reliability_curve_agrees_with_sklearn_and_takes_maps():
    from sklearn.calibration import calibration_curve

    happened, proba = _bernoulli_events(4 * 3 * 8 * 8, seed=2)
    occupancy, maps = happened.reshape(4, 3, 8, 8), proba.reshape(4, 3, 8, 8)
    mean_predicted, frequency, counts = reliability_curve(occupancy, maps, n_bins=7)
    prob_true, prob_pred = calibration_curve(happened, proba, n_bins=7)
    np.testing.assert_allclose(frequency[counts > 0], prob_true)
    np.testing.assert_allclose(mean_predicted[counts > 0], prob_pred)
    assert counts.sum() == happened.size
    # Maps without any event (no subhalo anywhere) are valid.
    assert expected_calibration_error(np.zeros((2, 8, 8), bool), np.full((2, 8, 8), 0.1)) == \
        pytest.approx(0.1)


def test_block_brier_score_by_hand_and_one_cell_blocks_are_the_brier_score():
    from sklearn.metrics import brier_score_loss

    happened, proba = _bernoulli_events(2 * 3 * 5 * 7, seed=3)
    occupancy, maps = happened.reshape(2, 3, 5, 7), proba.reshape(2, 3, 5, 7)
    assert block_brier_score(occupancy, maps, (1, 1, 1)) == pytest.approx(
        brier_score_loss(happened, proba))
    # Blocks of 2 x 3 pixels over the last two axes: the edge blocks are smaller
    # (rows 0-1, 2-3, 4; columns 0-2, 3-5, 6), every map and bin kept apart.
    error = occupancy - maps
    by_hand = [error[i, k, r][:, c].sum() ** 2
               for i in range(2) for k in range(3)
               for r in (slice(0, 2), slice(2, 4), slice(4, 5))
               for c in (slice(0, 3), slice(3, 6), slice(6, 7))]
    assert block_brier_score(occupancy, maps, (2, 3)) == pytest.approx(np.mean(by_hand))
    assert block_brier_score(occupancy, maps, 2) == pytest.approx(np.mean(
        [error[i, k, r, c:c + 2].sum() ** 2 for i in range(2) for k in range(3)
         for r in range(5) for c in (0, 2, 4, 6)]))


def test_block_brier_score_rewards_a_map_that_is_off_by_a_cell():
    """Events placed one pixel off: worse than the prior cell by cell, better in blocks;
    the exact expected counts are best of all."""
    rng = np.random.default_rng(4)
    occupancy = rng.random((200, 12, 12)) < 0.01
    shifted = np.roll(occupancy, 1, axis=2).astype(float)
    prior = np.full(occupancy.shape, occupancy.mean())
    cell = [block_brier_score(occupancy, m, (1, 1)) for m in (shifted, prior)]
    block = [block_brier_score(occupancy, m, (6, 6)) for m in (shifted, prior)]
    assert cell[0] > cell[1] and block[0] < 0.5 * block[1]
    assert block_brier_score(occupancy, occupancy.astype(float), (6, 6)) == 0.0


@pytest.mark.parametrize("block", [(), (0, 2), (2, 2, 2, 2), (2.5,), (True,)])
def test_block_brier_score_bad_block(block):
    with pytest.raises(ValueError, match="block must be a tuple of positive integers"):
        block_brier_score(np.zeros((2, 4, 4), bool), np.full((2, 4, 4), 0.1), block)


@pytest.mark.parametrize("y_true, proba, n_bins, error, match", [
    ([0, 1, 1], [0.2, 0.8], 10, ValueError, "same shape"),
    (np.zeros((2, 3)), np.zeros((3, 2)), 10, ValueError, "same shape"),
    ([0, 1], [0.2, 1.2], 10, ValueError, r"\[0, 1\]"),
    ([0, 1], [-0.1, 0.5], 10, ValueError, r"\[0, 1\]"),
    ([0, 1], [np.nan, 0.5], 10, ValueError, "NaN"),
    ([0, 2], [0.2, 0.5], 10, ValueError, "binary labels"),
    ([-1, 1], [0.2, 0.5], 10, ValueError, "binary labels"),
    (["a", "b"], [0.2, 0.5], 10, TypeError, "binary labels"),
    ([0, 1], ["a", "b"], 10, TypeError, "proba"),
    ([], [], 10, ValueError, "empty"),
    ([0, 1], [0.2, 0.5], 0, ValueError, "n_bins"),
    ([0, 1], [0.2, 0.5], 2.5, ValueError, "n_bins"),
])
def test_calibration_bad_input(y_true, proba, n_bins, error, match):
    for func in (reliability_curve, expected_calibration_error):
        with pytest.raises(error, match=match):
            func(y_true, proba, n_bins=n_bins)
