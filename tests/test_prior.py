import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sklearn_tmnre import Prior


@pytest.fixture
def prior():
    return Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1), "c": stats.expon(scale=2)})


def test_names_ndim_support(prior):
    assert prior.names == ["a", "b", "c"]
    assert prior.ndim == 3
    sup = prior.support
    assert list(sup.columns) == ["low", "high"]
    assert list(sup.index) == ["a", "b", "c"]
    np.testing.assert_allclose(sup.loc["a"], [-1, 1])
    assert sup.loc["b", "low"] == -np.inf and sup.loc["c", "low"] == 0


def test_list_gives_default_names():
    p = Prior([stats.uniform(0, 1), stats.uniform(0, 1)])
    assert p.names == ["theta_0", "theta_1"]


def test_sample_is_dataframe_and_reproducible(prior):
    a = prior.sample(1000, random_state=1)
    b = prior.sample(1000, random_state=1)
    assert isinstance(a, pd.DataFrame) and list(a.columns) == prior.names
    pd.testing.assert_frame_equal(a, b)
    # sample moments agree with the distributions (5 sigma of the MC error)
    n = len(a)
    assert abs(a["a"].mean()) < 5 * np.sqrt(1 / 3 / n)
    assert abs(a["b"].std() - 1) < 5 * np.sqrt(0.5 / n)
    assert abs(a["c"].mean() - 2) < 5 * 2 / np.sqrt(n)


def test_log_prob_matches_scipy_and_is_minus_inf_outside(prior):
    theta = prior.sample(50, random_state=0)
    expected = (stats.uniform(-1, 2).logpdf(theta["a"]) + stats.norm().logpdf(theta["b"])
                + stats.expon(scale=2).logpdf(theta["c"]))
    np.testing.assert_allclose(prior.log_prob(theta), expected)
    assert prior.log_prob(np.array([[2.0, 0.0, 1.0]]))[0] == -np.inf
    # ndarray and DataFrame with shuffled columns agree
    np.testing.assert_allclose(prior.log_prob(theta[["c", "a", "b"]]),
                               prior.log_prob(theta.to_numpy()))


def test_truncate_is_exact_and_renormalized(prior):
    box = {"b": (1.0, 2.0), "a": (0.0, 0.5)}
    t = prior.truncate(box)
    s = t.sample(20_000, random_state=0)
    assert t.contains(s).all()
    assert s["b"].between(1, 2).all() and s["a"].between(0, 0.5).all()
    # truncated normal mean
    expected = stats.truncnorm(1, 2).mean()
    assert abs(s["b"].mean() - expected) < 5 * stats.truncnorm(1, 2).std() / np.sqrt(len(s))
    # the density integrates to one on the box: check the 1-d pieces numerically
    grid = np.linspace(1, 2, 2001)
    pts = np.column_stack([np.full_like(grid, 0.25), grid, np.full_like(grid, 1.0)])
    lp = t.log_prob_per_param(pts)[:, 1]
    np.testing.assert_allclose(np.trapezoid(np.exp(lp), grid), 1.0, rtol=1e-6)
    # a truncated prior truncates further, intersected with its box
    tt = t.truncate({"b": (1.5, 5.0)})
    np.testing.assert_allclose(tt.support.loc["b"], [1.5, 2.0])
    assert t.untruncated() == prior


def test_truncate_far_tail_keeps_precision():
    p = Prior({"x": stats.norm(0, 1)})
    t = p.truncate({"x": (9.0, 10.0)})
    s = t.sample(1000, random_state=0)["x"]
    assert s.between(9, 10).all() and s.std() > 0.01


def test_mass(prior):
    assert prior.mass({"a": (0, 1)}) == pytest.approx(0.5)
    assert prior.mass({"a": (0, 1), "b": (0, np.inf)}) == pytest.approx(0.25)
    assert prior.mass(prior.support) == pytest.approx(1.0)
    assert prior.mass({"a": (2, 3)}) == 0.0
    t = prior.truncate({"a": (0, 1)})
    assert t.mass({"a": (0, 0.5)}) == pytest.approx(0.5)


def test_unit_round_trip(prior):
    t = prior.truncate({"b": (-1, 3)})
    theta = t.sample(100, random_state=0)
    u = t.to_unit(theta)
    assert ((u >= 0) & (u <= 1)).all().all()
    np.testing.assert_allclose(t.from_unit(u).to_numpy(), theta.to_numpy(), rtol=1e-7, atol=1e-9)
    # uniform draws map to uniform unit coordinates
    np.testing.assert_allclose(prior.to_unit(np.array([[0.0, 0.0, 2 * np.log(2)]])), [[0.5] * 3])


def test_marginal(prior):
    m = prior.truncate({"b": (0, 1)}).marginal(["b", "a"])
    assert m.names == ["b", "a"]
    np.testing.assert_allclose(m.support.loc["b"], [0, 1])


@pytest.mark.parametrize(
    "dists, match",
    [
        ({"a": stats.norm}, "not frozen"),
        ({"a": stats.multivariate_normal(np.zeros(2))}, "frozen univariate|multivariate"),
        ({"a": 3.0}, "frozen univariate"),
        ({}, "at least one"),
        ("a", "dict"),
        ({"a": stats.poisson(3)}, "continuous"),
    ],
)
def test_bad_distributions(dists, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Prior(dists)


def test_bad_inputs(prior):
    with pytest.raises(ValueError, match="unknown parameter"):
        prior.truncate({"z": (0, 1)})
    with pytest.raises(ValueError, match="empty or outside"):
        prior.truncate({"a": (2, 3)})
    with pytest.raises(ValueError, match="high < low"):
        prior.truncate({"a": (0.5, 0.1)})
    with pytest.raises(ValueError, match="NaN"):
        prior.log_prob(np.array([[np.nan, 0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        prior.log_prob(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="missing columns"):
        prior.log_prob(pd.DataFrame({"a": [0.0]}))
    with pytest.raises(TypeError, match="numeric"):
        prior.log_prob(np.array([["x", "y", "z"]], dtype=object))
    with pytest.raises(ValueError, match="non-negative integer"):
        prior.sample(-1)
    with pytest.raises(ValueError, match="shape"):
        prior.truncate(np.zeros((2, 2)))


def test_duplicate_names_rejected():
    # dict keys cannot repeat, but names that stringify the same can
    with pytest.raises(ValueError, match="duplicate"):
        Prior({1: stats.norm(), "1": stats.norm()})


def test_many_parameters_vectorized_by_family_match_scipy():
    rng = np.random.default_rng(0)
    dists = {}
    for i in range(300):
        kind = i % 3
        if kind == 0:
            dists[f"n{i}"] = stats.norm(rng.normal(), rng.uniform(0.5, 2))
        elif kind == 1:
            dists[f"u{i}"] = stats.uniform(loc=rng.normal(), scale=rng.uniform(1, 3))
        else:
            dists[f"g{i}"] = stats.gamma(rng.uniform(1, 3), scale=2.0)
    prior = Prior(dists)
    theta = prior.sample(5, random_state=0)
    expected = np.column_stack([d.logpdf(theta[n]) for n, d in dists.items()])
    np.testing.assert_allclose(prior.log_prob_per_param(theta), expected, rtol=1e-10)
    expected_u = np.column_stack([d.cdf(theta[n]) for n, d in dists.items()])
    np.testing.assert_allclose(prior.to_unit(theta).to_numpy(), expected_u, rtol=1e-9)


def test_a_truncated_prior_passed_to_prior_keeps_its_box():
    box = Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1)}).truncate({"a": (0, 0.5)})
    again = Prior(box)
    assert again == box and again.bounds[0].tolist() == [0.0, 0.5]
    assert Prior(box, bounds={"a": (-1, 1)}).bounds[0].tolist() == [-1.0, 1.0]


def test_equality_compares_the_distributions_themselves():
    edges = np.array([0.0, 1.0, 2.0])
    one = Prior({"a": stats.rv_histogram((np.array([1, 2]), edges))()})
    other = Prior({"a": stats.rv_histogram((np.array([2, 1]), edges))()})
    assert one != other
    assert one == Prior.from_dict(one.to_dict())


def test_the_serialized_form_round_trips_and_refuses_code():
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1)}).truncate({"b": (0, 1)})
    data = prior.to_dict()
    assert Prior.from_dict(data) == prior
    import json

    assert Prior.from_dict(json.loads(json.dumps(data))) == prior
    data["distributions"][0]["distribution"] = "os.system"
    with pytest.raises(ValueError, match="not a continuous scipy.stats distribution"):
        Prior.from_dict(data)
    with pytest.raises(ValueError, match="lack names"):
        Prior.from_dict({"names": ["a"]})
