"""Tests of discrete parameters: priors, class tables, coverage, model comparison."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.metrics import credibility, expected_coverage, jeffreys_interval
from sklearn_tmnre.posterior import class_level, class_quantile, class_set_extent
from sklearn_tmnre.truncation import Truncator

TABLE = stats.rv_discrete(values=([0.5, 2.0, 7.0], [0.2, 0.3, 0.5]))
MIXED = Prior({"m": stats.bernoulli(0.3), "k": stats.randint(2, 5), "b": stats.binom(4, 0.3),
               "c": TABLE, "a": stats.norm(0, 1)})
SMALL = dict(hidden_features=16, embedding_dim=16, random_state=0)


# ----------------------------------------------------------------------------- prior
def test_prior_classes_and_support():
    assert [MIXED.is_discrete(n) for n in MIXED.names] == [True, True, True, True, False]
    np.testing.assert_allclose(MIXED.probabilities("m"), [0.7, 0.3])
    np.testing.assert_allclose(MIXED.probabilities("k").index, [2, 3, 4])
    np.testing.assert_allclose(MIXED.probabilities("b"), stats.binom(4, 0.3).pmf(np.arange(5)))
    np.testing.assert_allclose(MIXED.probabilities("c").index, [0.5, 2.0, 7.0])
    np.testing.assert_allclose(MIXED.support.loc[["m", "k", "b", "c"]].to_numpy(),
                               [[0, 1], [2, 4], [0, 4], [0.5, 7]])
    marginal = MIXED.marginal(["c", "a"])
    assert marginal.is_discrete("c") and not marginal.is_discrete("a")
    pd.testing.assert_series_equal(marginal.probabilities("c"), MIXED.probabilities("c"))
    with pytest.raises(ValueError, match="continuous"):
        MIXED.probabilities("a")
    with pytest.raises(ValueError, match="unknown parameter"):
        MIXED.is_discrete("z")


def test_prior_sampling_matches_probabilities():
    n = 40_000
    theta = MIXED.sample(n, random_state=0)
    for name in ["m", "k", "b", "c"]:
        p = MIXED.probabilities(name)
        assert set(theta[name].unique()) <= set(p.index)  # exact class values
        freq = theta[name].value_counts(normalize=True).reindex(p.index, fill_value=0)
        # Five binomial standard errors per class.
        np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert MIXED.sample(5, random_state=3).equals(MIXED.sample(5, random_state=3))


def test_prior_log_prob_and_contains():
    on = np.array([[1, 3, 2, 2.0, 0.0]])
    expected = np.log([0.3, 1 / 3, stats.binom(4, 0.3).pmf(2), 0.3]).sum() - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(MIXED.log_prob(on), [expected])
    off = np.array([[0.5, 3, 2, 2, 0], [1, 5, 2, 2, 0], [1, 3, 2, 1.0, 0], [1, 3, -1, 2, 0]])
    assert np.all(MIXED.log_prob(off) == -np.inf)
    assert MIXED.contains(on).tolist() == [True]
    assert not MIXED.contains(off).any()


@pytest.mark.parametrize("dist", [stats.poisson(3), stats.geom(0.3), stats.nbinom(3, 0.5)])
def test_prior_refuses_infinite_support(dist):
    with pytest.raises(TypeError, match=r"infinite support.*rv_discrete\(values="):
        Prior({"n": dist})


@pytest.mark.parametrize("dist", [stats.bernoulli(0.0), stats.randint(3, 4)])
def test_prior_refuses_single_class(dist):
    with pytest.raises(ValueError, match="single value is a constant"):
        Prior({"n": dist})


def test_prior_unit_round_trip_and_truncation():
    theta = MIXED.sample(200, random_state=1)
    u = MIXED.to_unit(theta)
    assert ((u > 0) & (u < 1)).all().all()
    pd.testing.assert_frame_equal(MIXED.from_unit(u), theta, check_exact=False, rtol=1e-9)
    box = {"m": (1, 1), "k": (3, 3), "c": (1, 8), "a": (0, 1)}
    np.testing.assert_allclose(MIXED.mass(box),
                               0.3 * (1 / 3) * 0.8 * (stats.norm.cdf(1) - 0.5))
    truncated = MIXED.truncate(box)
    # Discrete parameters keep their whole support; the continuous one is truncated.
    pd.testing.assert_frame_equal(truncated.support.loc[["m", "k", "b", "c"]],
                                  MIXED.support.loc[["m", "k", "b", "c"]])
    np.testing.assert_allclose(truncated.support.loc["a"], [0, 1])
    draws = truncated.sample(20_000, random_state=0)
    assert abs(draws["m"].mean() - 0.3) < 5 * np.sqrt(0.21 / 20_000)


def test_prior_serialization():
    prior = MIXED.truncate({"a": (-1, 2)})
    data = json.loads(json.dumps(prior.to_dict()))
    again = Prior.from_dict(data)
    assert again == prior and again != MIXED
    pd.testing.assert_frame_equal(again.sample(50, random_state=0),
                                  prior.sample(50, random_state=0))
    assert pickle.loads(pickle.dumps(prior)) == prior
    assert Prior({"c": TABLE()}) == Prior({"c": TABLE})  # frozen or not, the same table
    assert "rv_discrete(xk=[0.5, 2.0, 7.0])" in repr(prior)


# --------------------------------------------------------------------- class tables
def test_class_quantile_set_and_level():
    classes, mass = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.1, 0.4, 0.2, 0.3])
    np.testing.assert_array_equal(class_quantile(mass, classes, [0, 0.1, 0.11, 0.5, 0.7, 1]),
                                  [0, 0, 1, 1, 2, 3])
    assert class_set_extent(mass, classes, 0.5) == (1.0, 3.0, 2)   # {1, 3}: a gap at 2
    assert class_set_extent(mass, classes, 0.8) == (1.0, 3.0, 1)   # {1, 3, 2}
    np.testing.assert_allclose(class_level(mass, classes, [1, 3, 2, 0, 0.5], u=1.0),
                               [0.4, 0.7, 0.9, 1.0, 1.0])
    np.testing.assert_allclose(class_level(mass, classes, [1, 3], u=0.0), [0.0, 0.4])


def test_randomized_level_gives_nominal_coverage():
    """A calibrated stand-in: true classes drawn from the posteriors reported for them."""
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    mass = rng.dirichlet(np.full(k, 0.7), size=n)
    mass[: n // 4, :2] = 0.25  # ties as well
    mass[: n // 4, 2:] = 0.25
    classes = np.arange(k, dtype=float)
    truth = np.array([rng.choice(k, p=p) for p in mass], dtype=float)

    class StandIn:
        names_ = ["m"]
        prior_ = Prior({"m": stats.randint(0, k)})

        def _grid_masses(self, X, dims=None):
            rows = np.asarray(X[:, 0], dtype=int)
            return {("m",): [(np.tile(classes, (len(rows), 1)), np.ones(len(rows)))]}, {
                ("m",): mass[rows]}

    X = np.arange(n, dtype=float)[:, None]
    levels = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    table = expected_coverage(StandIn(), X, truth[:, None], levels=levels, confidence=0.999)
    assert ((table["lower"] <= levels) & (levels <= table["upper"])).all(), table
    # The deterministic "at least as probable" level would be far off at 0.5.
    upper = class_level(mass, classes, truth, u=1.0)
    lo, hi = jeffreys_interval(np.sum(upper <= 0.5), n, 0.999)
    assert not lo <= 0.5 <= hi
    again = credibility(StandIn(), X, truth[:, None])
    pd.testing.assert_frame_equal(again, credibility(StandIn(), X, truth[:, None]))


# ----------------------------------------------------------- model comparison (conjugate)
def _simulate(m, rng, n_draws=5):
    """x: ``n_draws`` iid N(0, 1) numbers for model 0, N(0, 3^2) for model 1."""
    scale = np.where(np.asarray(m) == 1, 3.0, 1.0)
    return scale[:, None] * rng.standard_normal((len(scale), n_draws))


def _exact(X):
    """P(m = 1 | x) under equal prior odds: the Bayes factor of the two Gaussians."""
    log_bf = (stats.norm.logpdf(X, 0, 3) - stats.norm.logpdf(X, 0, 1)).sum(axis=1)
    return expit(log_bf)


COMPARISON = Prior({"m": stats.bernoulli(0.5)})


@pytest.fixture(scope="module")
def comparison():
    theta = COMPARISON.sample(3000, random_state=0)
    X = _simulate(theta["m"], np.random.default_rng(0))
    est = TMNREEstimator(prior=COMPARISON, max_epochs=30, **SMALL).fit(X, theta)
    theta_test = COMPARISON.sample(300, random_state=1)
    return est, _simulate(theta_test["m"], np.random.default_rng(1)), theta_test


def test_model_comparison_matches_bayes_factor(comparison):
    est, X, _ = comparison
    proba = est.predict_proba(X)
    assert list(proba.columns) == [0.0, 1.0]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    error = np.abs(proba[1.0].to_numpy() - _exact(X))
    assert error.mean() < 0.1, error.mean()
    # predict: the most probable model.
    np.testing.assert_array_equal(est.predict(X)[:, 0], (proba[1.0] > 0.5).astype(float))


def test_discrete_posterior_is_a_class_table(comparison):
    est, X, _ = comparison
    post = est.posterior(X[0])
    p = post.probabilities("m")
    pd.testing.assert_series_equal(p, est.predict_proba(X[:1]).iloc[0].rename("probability"),
                                   check_index=False, check_names=False)
    assert post.discrete == ["m"]
    np.testing.assert_allclose(post.mean()["m"], p[1.0])
    np.testing.assert_allclose(post.std()["m"], np.sqrt(p[1.0] * p[0.0]))
    draws = post.sample(4000, random_state=0)["m"]
    assert set(draws.unique()) <= {0.0, 1.0}
    assert abs(draws.mean() - p[1.0]) < 5 * np.sqrt(p[1.0] * p[0.0] / 4000) + 1e-9
    mode = float(p.idxmax())
    assert post.quantile(0.5).loc[0.5, "m"] == (0.0 if p[0.0] >= 0.5 else 1.0)
    assert post.hpd(min(p.max(), 0.999) - 1e-6).loc["m", "lower"] == mode
    np.testing.assert_allclose(post.pdf("m", [0.0, 1.0, 0.5]), [p[0.0], p[1.0], 0.0])
    # The class grid evaluates the network at the classes: softmax(log ratio + log pmf).
    logr = est.log_ratio(np.repeat(X[:1], 2, axis=0), np.array([[0.0], [1.0]]))["m"]
    lp = logr.to_numpy() + np.log(0.5)
    np.testing.assert_allclose(p.to_numpy(), np.exp(lp - logsumexp(lp)), rtol=1e-5)


def test_discrete_coverage_and_score(comparison):
    est, X, theta = comparison
    table = expected_coverage(est, X, theta, levels=[0.5, 0.9], confidence=0.999)
    assert ((table["lower"] <= table["level"]) & (table["level"] <= table["upper"])).all(), table
    # score: the mean log posterior probability of the true model.
    proba = est.predict_proba(X).to_numpy()
    truth = theta["m"].to_numpy().astype(int)
    np.testing.assert_allclose(est.score(X, theta),
                               np.mean(np.log(proba[np.arange(len(X)), truth])), rtol=1e-4)


def test_predict_proba_only_with_discrete_parameters(comparison):
    est, X, _ = comparison
    assert hasattr(est, "predict_proba")
    assert not hasattr(TMNREEstimator(prior=Prior({"a": stats.norm()})), "predict_proba")
    assert not hasattr(TMNREEstimator(), "predict_proba")
    with pytest.raises(ValueError, match="not a discrete parameter"):
        est.predict_proba(X, name="z")


# ----------------------------------------------------------------------- mixed priors
MIXED_FIT = Prior({"m": stats.rv_discrete(values=([0, 1, 2], [0.2, 0.3, 0.5])),
                   "mu": stats.uniform(-3, 6), "nu": stats.norm(0, 1)})


def _mixed_data(n, seed):
    theta = MIXED_FIT.sample(n, random_state=seed)
    rng = np.random.default_rng(seed)
    # m sets the noise level, mu the location, nu a small shift.
    scale = 0.2 * (1 + 2 * theta[["m"]].to_numpy())
    X = theta[["mu"]].to_numpy() + 0.3 * theta[["nu"]].to_numpy() + scale * rng.standard_normal(
        (n, 8))
    return X, theta


@pytest.fixture(scope="module")
def mixed():
    X, theta = _mixed_data(2000, 0)
    marginals = [("m",), ("mu",), ("nu",), ("mu", "nu"), ("m", "mu", "nu")]
    est = TMNREEstimator(prior=MIXED_FIT, marginals=marginals, max_epochs=20, **SMALL)
    return est.fit(X, theta)


def test_mixed_prior_refuses_2d_discrete_marginals():
    X, theta = _mixed_data(50, 0)
    with pytest.raises(ValueError, match=r"2-d marginals of discrete parameters.*\('mu', 'nu'\)"):
        TMNREEstimator(prior=MIXED_FIT, marginals="1d+2d", max_epochs=1).fit(X, theta)


def test_mixed_prior_posterior(mixed):
    X, theta = _mixed_data(200, 1)
    posts = mixed.posterior(X[:20])
    accurate = []
    for post, (_, row) in zip(posts, theta.iloc[:20].iterrows()):
        p = post.probabilities("m")
        assert list(p.index) == [0.0, 1.0, 2.0]
        np.testing.assert_allclose(p.sum(), 1.0)
        accurate.append(p.idxmax() == row["m"])
        summary = post.summary()
        assert np.isfinite(summary.to_numpy()).all()
        assert summary.loc["mu", "std"] < 0.5 * 6 / np.sqrt(12)  # far narrower than the prior
    # The noise level separates the classes well: mostly the right model.
    assert np.mean(accurate) >= 0.7
    draws = posts[0].sample(300, marginal=("m", "mu", "nu"), random_state=0)
    assert set(draws["m"].unique()) <= {0.0, 1.0, 2.0}
    pred = mixed.predict(X[:20])
    assert set(np.unique(pred[:, 0])) <= {0.0, 1.0, 2.0}
    interval = mixed.predict_interval(X[:20], kind="hpd", coverage=0.68)
    assert set(np.unique(interval[("m", "lower")])) <= {0.0, 1.0, 2.0}
    assert (interval[("mu", "lower")] < interval[("mu", "upper")]).all()
    coverage = expected_coverage(mixed, X, theta, levels=[0.5], dims=(1,))
    assert set(coverage["marginal"]) == {"m", "mu", "nu"}


def test_mixed_prior_truncation_and_persistence(mixed, tmp_path):
    X, _ = _mixed_data(5, 2)
    trunc = Truncator().fit(X[0], estimator=mixed)
    np.testing.assert_allclose(trunc.bounds_.loc["m"], [0, 2])
    assert trunc.prior_.probabilities("m").equals(MIXED_FIT.probabilities("m"))
    assert trunc.bounds_.loc["mu", "high"] - trunc.bounds_.loc["mu", "low"] < 6
    mixed.save(tmp_path / "model")
    loaded = TMNREEstimator.load(tmp_path / "model")
    assert loaded.prior == MIXED_FIT
    np.testing.assert_allclose(loaded.predict(X), mixed.predict(X))
    pd.testing.assert_frame_equal(loaded.predict_proba(X), mixed.predict_proba(X))


def test_fit_refuses_values_that_are_not_classes():
    X, theta = _mixed_data(50, 0)
    theta.loc[3, "m"] = 0.5
    with pytest.raises(ValueError, match="outside the prior's support"):
        TMNREEstimator(prior=MIXED_FIT, max_epochs=1).fit(X, theta)


def test_predict_proba_needs_a_name_among_several_discrete_parameters():
    prior = Prior({"m": stats.bernoulli(0.5), "k": stats.randint(0, 3)})
    theta = prior.sample(200, random_state=0)
    X = theta.to_numpy() + 0.1 * np.random.default_rng(0).standard_normal((200, 2))
    est = TMNREEstimator(prior=prior, max_epochs=2, **SMALL).fit(X, theta)
    with pytest.raises(ValueError, match="name the discrete parameter"):
        est.predict_proba(X[:3])
    proba = est.predict_proba(X[:3], name="k")
    assert list(proba.columns) == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
