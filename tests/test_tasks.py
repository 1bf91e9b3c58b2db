"""Tests for the benchmark tasks: simulators, likelihoods and reference posteriors.

Every reference posterior is checked by a route independent of the one that made
it: closed-form moments (Gaussian linear), truncated-normal moments (uniform
prior), importance sampling with the analytic likelihood (two moons, Gaussian
mixture, SLCP) and the exact symmetry of the SLCP posterior. Statistical
tolerances are ``Z`` standard errors computed from the sample sizes (or the
importance-sampling effective sample size); seeds are fixed.
"""

from importlib import resources

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp

from sklearn_tmnre import simulate
from sklearn_tmnre import tasks as T

Z = 5.0  # standard errors allowed in every statistical comparison
ALL = list(T.TASKS)


@pytest.fixture(scope="module", params=ALL)
def task(request):
    return T.get_task(request.param)


def weighted_moments(theta, log_w):
    """Self-normalized importance-sampling mean, sd and effective sample size."""
    w = np.exp(log_w - logsumexp(log_w))
    mean = w @ theta
    sd = np.sqrt(w @ (theta - mean) ** 2)
    return mean, sd, 1.0 / np.sum(w**2)


def assert_means_agree(a_mean, a_sd, a_n, b_mean, b_sd, b_n):
    se = np.sqrt(a_sd**2 / a_n + b_sd**2 / b_n)
    np.testing.assert_array_less(np.abs(a_mean - b_mean), Z * se)


def assert_sds_agree(a_sd, a_n, b_sd, b_n):
    # sd of a sample sd is about sd / sqrt(2 n) (normal kurtosis); doubled for heavier tails.
    se = np.sqrt(2 * a_sd**2 / a_n + 2 * b_sd**2 / b_n)
    np.testing.assert_array_less(np.abs(a_sd - b_sd), Z * se)


# --------------------------------------------------------------------- registry
def test_registry_names_and_classes():
    assert T.TASKS == ("two_moons", "gaussian_linear", "gaussian_linear_uniform",
                       "gaussian_mixture", "slcp")
    for name in T.TASKS:
        task = T.get_task(name)
        assert isinstance(task, T.Task)
        assert task.name == name
        assert isinstance(getattr(T, name)(), type(task))
    with pytest.raises(ValueError, match="unknown task name 'moons'"):
        T.get_task("moons")


@pytest.mark.parametrize("name, n_params, event_shape", [
    ("two_moons", 2, (2,)), ("gaussian_linear", 10, (10,)),
    ("gaussian_linear_uniform", 10, (10,)), ("gaussian_mixture", 2, (2,)), ("slcp", 5, (8,)),
])
def test_dimensions_and_observations(name, n_params, event_shape):
    task = T.get_task(name)
    assert task.prior.names == [f"theta_{k}" for k in range(n_params)]
    assert task.event_shape == event_shape
    assert task.n_observations == 10
    for i in (1, 10):
        assert task.observation(i).shape == event_shape
        assert task.true_parameters(i).shape == (n_params,)
        # sbibm's true parameters are prior draws: inside the support, finite likelihood.
        assert task.prior.contains(task.true_parameters(i)[None]).all()
        assert np.isfinite(task.log_likelihood(task.true_parameters(i), task.observation(i)))


def test_sbibm_observation_values():
    # Spot checks against sbibm's files num_observation_1/{true_parameters,observation}.csv.
    np.testing.assert_allclose(T.two_moons().true_parameters(1), [-0.8176656, -0.5756806])
    np.testing.assert_allclose(T.two_moons().observation(1), [-0.6396706, 0.16234657])
    np.testing.assert_allclose(T.slcp().observation(10)[-1], -3.0089793)
    np.testing.assert_allclose(T.gaussian_mixture().true_parameters(5), [8.947857, 7.178486])
    np.testing.assert_allclose(T.gaussian_linear_uniform().observation(2)[9], 1.239455)


# ------------------------------------------------------------------- simulators
def test_shapes(task):
    theta, X = task.sample(7, random_state=0)
    assert isinstance(theta, pd.DataFrame) and list(theta.columns) == task.prior.names
    assert X.shape == (7, *task.event_shape) and X.dtype == float
    assert task.simulator(theta.iloc[0].to_numpy(), rng=0).shape == task.event_shape
    assert task.simulate_batch(theta, rng=0).shape == (7, *task.event_shape)
    assert task.simulator(task.true_parameters(1)).shape == task.event_shape  # rng=None


def test_seeds_are_deterministic(task):
    theta_a, X_a = task.sample(50, random_state=3)
    theta_b, X_b = task.sample(50, random_state=3)
    pd.testing.assert_frame_equal(theta_a, theta_b)
    np.testing.assert_array_equal(X_a, X_b)
    assert not np.array_equal(X_a, task.sample(50, random_state=4)[1])
    row = task.true_parameters(2)
    np.testing.assert_array_equal(task.simulator(row, rng=5), task.simulator(row, rng=5))
    theta = theta_a.to_numpy()
    np.testing.assert_array_equal(task.simulate_batch(theta, np.random.default_rng(1)),
                                  task.simulate_batch(theta, np.random.default_rng(1)))
    a = task.reference_samples(1, n=200, random_state=0)
    pd.testing.assert_frame_equal(a, task.reference_samples(1, n=200, random_state=0))


def test_batch_accepts_reordered_dataframe(task):
    theta = task.prior.sample(20, random_state=0)
    shuffled = theta[theta.columns[::-1]]
    np.testing.assert_array_equal(task.simulate_batch(shuffled, rng=2),
                                  task.simulate_batch(theta.to_numpy(), rng=2))


def test_per_row_and_batch_simulators_agree(task):
    # Written independently (e.g. multivariate_normal vs. a hand-made Cholesky factor).
    n = 3000
    theta = task.true_parameters(1)
    rng = np.random.default_rng(11)
    per_row = np.stack([task.simulator(theta, rng=rng) for _ in range(n)]).reshape(n, -1)
    batch = task.simulate_batch(np.tile(theta, (n, 1)), rng=12).reshape(n, -1)
    assert_means_agree(per_row.mean(0), per_row.std(0), n, batch.mean(0), batch.std(0), n)
    assert_sds_agree(per_row.std(0), n, batch.std(0), n)
    for k in range(per_row.shape[1]):
        assert stats.ks_2samp(per_row[:, k], batch[:, k]).pvalue > 1e-4


def test_works_with_simulate(task):
    theta = task.prior.sample(6, random_state=0)
    X = simulate(task.simulator, theta, random_state=0)
    assert X.shape == (6, *task.event_shape)
    np.testing.assert_array_equal(X, simulate(task.simulator, theta, random_state=0))
    Xv = simulate(task.simulate_batch, theta, random_state=0, vectorized=True)
    assert Xv.shape == X.shape


# ------------------------------------------------------------------ likelihoods
def test_gaussian_likelihoods_match_scipy():
    rng = np.random.default_rng(0)
    for task in (T.gaussian_linear(), T.gaussian_linear_uniform()):
        theta = task.prior.sample(5, random_state=1).to_numpy()
        x = task.observation(3)
        expected = [stats.multivariate_normal(t, 0.1 * np.eye(10)).logpdf(x) for t in theta]
        np.testing.assert_allclose(task.log_likelihood(theta, x), expected, rtol=1e-10)
    task = T.gaussian_mixture()
    theta = rng.uniform(-10, 10, size=(5, 2))
    X = theta + rng.normal(size=(5, 2))
    expected = [np.log(0.5 * stats.multivariate_normal(t, np.eye(2)).pdf(x)
                       + 0.5 * stats.multivariate_normal(t, 0.01 * np.eye(2)).pdf(x))
                for t, x in zip(theta, X)]
    np.testing.assert_allclose(task.log_likelihood(theta, X), expected, rtol=1e-10)


def test_slcp_likelihood_matches_scipy():
    task = T.slcp()
    theta = task.prior.sample(5, random_state=2).to_numpy()
    x = task.observation(4)
    expected = []
    for t in theta:
        s0, s1, rho = t[2] ** 2, t[3] ** 2, np.tanh(t[4])
        cov = np.array([[s0**2, rho * s0 * s1], [rho * s0 * s1, s1**2]]) + 1e-6 * np.eye(2)
        expected.append(stats.multivariate_normal(t[:2], cov).logpdf(x.reshape(4, 2)).sum())
    np.testing.assert_allclose(task.log_likelihood(theta, x), expected, rtol=1e-9)


@pytest.mark.parametrize("name", ["two_moons", "gaussian_mixture"])
def test_likelihood_is_a_normalized_density_of_the_simulator(name):
    # Integrate exp(log_likelihood) over x on a fine grid: the total is 1 and the mass of
    # the half-plane x_1 > median matches the simulator's fraction there.
    task = T.get_task(name)
    theta = task.true_parameters(2)
    X = task.simulate_batch(np.tile(theta, (20_000, 1)), rng=0)
    lo, hi = X.min(0) - 0.05, X.max(0) + 0.05
    h = 0.0015 if name == "two_moons" else 0.01
    g0, g1 = np.arange(lo[0], hi[0], h), np.arange(lo[1], hi[1], h)
    grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(task.log_likelihood(np.broadcast_to(theta, grid.shape), grid)) * h * h
    # The simulator's tails beyond the sampled range hold < 1e-3 of the mass.
    assert abs(density.sum() - 1.0) < 0.01
    cut = np.median(X[:, 1])
    grid_mass = density[grid[:, 1] > cut].sum() / density.sum()
    assert abs(grid_mass - 0.5) < Z * np.sqrt(0.25 / len(X)) + 0.005


# ------------------------------------------------------------ reference checks
@pytest.mark.parametrize("i", [1, 2, 3])
def test_gaussian_linear_reference_matches_conjugate_formula(i):
    task = T.gaussian_linear()
    n = 10_000
    ref = task.reference_samples(i, n=n, random_state=i).to_numpy()
    x = task.observation(i)
    cov = np.linalg.inv(np.linalg.inv(0.1 * np.eye(10)) + np.linalg.inv(0.1 * np.eye(10)))
    mean = cov @ np.linalg.inv(0.1 * np.eye(10)) @ x
    np.testing.assert_array_less(np.abs(ref.mean(0) - mean), Z * np.sqrt(np.diag(cov) / n))
    emp = np.cov(ref, rowvar=False)
    # sd of a sample covariance entry: sqrt((S_ij^2 + S_ii S_jj) / n) for Gaussian data.
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    np.testing.assert_array_less(np.abs(emp - cov), Z * se)
    got_mean, got_cov = task.posterior_moments(x)
    np.testing.assert_allclose(got_mean, mean)
    np.testing.assert_allclose(got_cov, cov)


@pytest.mark.parametrize("i", [1, 2, 4])
def test_gaussian_linear_uniform_reference_matches_truncated_normal(i):
    task = T.gaussian_linear_uniform()
    n = 10_000
    ref = task.reference_samples(i, n=n, random_state=i).to_numpy()
    assert np.all(np.abs(ref) <= 1.0)
    x, sd = task.observation(i), np.sqrt(0.1)
    mean, var, _, kurt = stats.truncnorm((-1 - x) / sd, (1 - x) / sd, loc=x, scale=sd).stats("mvsk")
    np.testing.assert_array_less(np.abs(ref.mean(0) - mean), Z * np.sqrt(var / n))
    np.testing.assert_array_less(np.abs(ref.var(0) - var), Z * np.sqrt(var**2 * (kurt + 2) / n))


@pytest.mark.parametrize("i", [1, 2])
def test_two_moons_reference_matches_importance_sampling(i):
    # Prior draws weighted by the exact likelihood (with its Jacobian): an independent route.
    task = T.two_moons()
    ref = task.reference_samples(i, n=10_000, random_state=i).to_numpy()
    theta = task.prior.sample(1_000_000, random_state=100 + i).to_numpy()
    log_w = task.log_likelihood(theta, task.observation(i))
    mean, sd, n_eff = weighted_moments(theta, log_w)
    assert n_eff > 2000
    assert_means_agree(ref.mean(0), ref.std(0), len(ref), mean, sd, n_eff)
    assert_sds_agree(ref.std(0), len(ref), sd, n_eff)
    # Mass of the moon with z_0 = (theta_0 + theta_1)/sqrt(2) > 0.
    w = np.exp(log_w - logsumexp(log_w))
    frac_is = w @ (theta.sum(1) > 0)
    frac_ref = np.mean(ref.sum(1) > 0)
    se = np.sqrt(frac_is * (1 - frac_is) * (1 / n_eff + 1 / len(ref)))
    assert abs(frac_is - frac_ref) < Z * se
    assert 0.05 < frac_ref < 0.95  # both crescents are present


@pytest.mark.parametrize("i", [1, 5, 10])
def test_gaussian_mixture_reference_matches_importance_sampling(i):
    # Proposal N(x_o, 1.5^2 I): heavier-tailed than both mixture components.
    task = T.gaussian_mixture()
    x = task.observation(i)
    rng = np.random.default_rng(i)
    theta = x + 1.5 * rng.standard_normal((400_000, 2))
    log_q = stats.norm.logpdf(theta, x, 1.5).sum(1)
    log_w = task.log_likelihood(theta, x) + task.prior.log_prob(theta) - log_q
    mean, sd, n_eff = weighted_moments(theta, log_w)
    ref = task.reference_samples(i, n=10_000, random_state=i).to_numpy()
    assert_means_agree(ref.mean(0), ref.std(0), len(ref), mean, sd, n_eff)
    assert_sds_agree(ref.std(0), len(ref), sd, n_eff)
    # Mass within 0.3 of x_o: about half, the narrow component.
    w = np.exp(log_w - logsumexp(log_w))
    near_is = w @ (np.linalg.norm(theta - x, axis=1) < 0.3)
    near_ref = np.mean(np.linalg.norm(ref - x, axis=1) < 0.3)
    se = np.sqrt(near_is * (1 - near_is) * (1 / n_eff + 1 / len(ref)))
    assert abs(near_is - near_ref) < Z * se
    assert 0.4 < near_ref < 0.7


@pytest.fixture(scope="module")
def slcp_task():
    return T.slcp()


def test_slcp_reference_file_is_small_and_covers_all_observations(slcp_task):
    data = resources.files("sklearn_tmnre.tasks").joinpath("data")
    total = sum(f.stat().st_size for f in data.iterdir() if f.name.endswith(".npz"))
    assert total < 3e6
    for i in range(1, slcp_task.n_observations + 1):
        assert slcp_task.reference_samples(i, n=10_000, random_state=0).shape == (10_000, 5)


@pytest.mark.parametrize("i", range(1, 11))
def test_slcp_reference_has_four_symmetric_modes(slcp_task, i):
    ref = slcp_task.reference_samples(i, n=10_000, random_state=0).to_numpy()
    n = len(ref)
    quadrant = 2 * (ref[:, 2] > 0) + (ref[:, 3] > 0)
    counts = np.bincount(quadrant, minlength=4) / n
    np.testing.assert_array_less(np.abs(counts - 0.25), Z * np.sqrt(0.25 * 0.75 / n))
    # The folded values are distributed alike in every quadrant.
    folded = np.abs(ref)
    for q in range(4):
        part = folded[quadrant == q]
        assert_means_agree(part.mean(0), part.std(0), len(part),
                           folded.mean(0), folded.std(0), n)


@pytest.mark.parametrize("i", range(1, 11))
def test_slcp_reference_sits_where_the_likelihood_is_high(slcp_task, i):
    x = slcp_task.observation(i)
    ref = slcp_task.reference_samples(i, n=2000, random_state=0)
    prior = slcp_task.prior.sample(20_000, random_state=i)
    ll_ref = slcp_task.log_likelihood(ref, x)
    ll_prior = slcp_task.log_likelihood(prior, x)
    # Most posterior mass lies where fewer than 1 % of prior draws reach.
    assert np.median(ll_ref) > np.quantile(ll_prior, 0.99)
    assert np.median(ll_ref) > np.median(ll_prior) + 20
    # The true parameter (a prior draw that produced x) lies inside the reference's range.
    truth = slcp_task.true_parameters(i)
    full = slcp_task.reference_samples(i, n=10_000, random_state=0).to_numpy()
    assert np.all(full.min(0) <= truth) and np.all(truth <= full.max(0))


@pytest.mark.parametrize("i", [3, 5])
def test_slcp_reference_matches_prior_importance_sampling(slcp_task, i):
    # Observations whose posterior is broad enough for plain prior importance sampling.
    x = slcp_task.observation(i)
    theta = slcp_task.prior.sample(400_000, random_state=i).to_numpy()
    folded = np.abs(theta)
    folded[:, [0, 1, 4]] = theta[:, [0, 1, 4]]
    mean, sd, n_eff = weighted_moments(folded, slcp_task.log_likelihood(theta, x))
    assert n_eff > 500
    ref = slcp_task.reference_samples(i, n=10_000, random_state=0).to_numpy(copy=True)
    ref[:, 2:4] = np.abs(ref[:, 2:4])
    assert_means_agree(ref.mean(0), ref.std(0), len(ref), mean, sd, n_eff)
    assert_sds_agree(ref.std(0), len(ref), sd, n_eff)


# ----------------------------------------------------------------------- errors
def test_argument_errors(task):
    with pytest.raises(ValueError, match="observation number i"):
        task.observation(0)
    with pytest.raises(ValueError, match="observation number i"):
        task.true_parameters(11)
    with pytest.raises(ValueError, match="observation number i"):
        task.reference_samples(1.5)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        task.reference_samples(1, n=0)
    d = task.prior.ndim
    with pytest.raises(ValueError, match="one parameter vector"):
        task.simulator(np.zeros((2, d)))
    with pytest.raises(ValueError, match=rf"expected shape \(n, {d}\)"):
        task.simulate_batch(np.zeros((3, d + 1)))
    with pytest.raises(ValueError, match="x: expected one observation"):
        task.log_likelihood(np.zeros(d), np.zeros(task.event_shape[0] + 1))
    with pytest.raises(TypeError, match="random_state must be"):
        task.sample(3, random_state="zero")


def test_slcp_refuses_more_samples_than_shipped(slcp_task):
    with pytest.raises(ValueError, match="are shipped for observation 1"):
        slcp_task.reference_samples(1, n=10_001)
