"""Tests of the grid evaluation of marginal posteriors (sklearn_tmnre._grids)."""

import numpy as np
import pytest
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._grids import (
    grid_logits,
    grid_masses,
    row_axes,
    zoom_ranges,
    zoomed_grid_masses,
)


@pytest.fixture(scope="module")
def fitted():
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1), "c": stats.uniform(0, 1)})
    theta = prior.sample(400, random_state=0)
    X = theta.to_numpy() + 0.1 * np.random.default_rng(0).standard_normal((400, 3))
    est = TMNREEstimator(prior=prior, marginals=[("a",), ("b",), ("a", "b"), ("b", "c")],
                         max_epochs=2, hidden_features=8, embedding_dim=4, num_blocks=1,
                         n_negatives=1, n_grid_1d=40, n_grid_2d=12, random_state=0)
    return est.fit(X, theta), X


def test_masses_are_normalized_on_grids_of_the_requested_size(fitted):
    est, X = fitted
    axes, masses = grid_masses(est, X[:5])
    assert masses[("a",)].shape == (5, 40) and masses[("a", "b")].shape == (5, 12, 12)
    for m, v in masses.items():
        np.testing.assert_allclose(v.reshape(5, -1).sum(axis=1), 1.0, rtol=1e-10, err_msg=m)
        assert [len(c) for c, _ in axes[m]] == list(v.shape[1:])


def test_parameters_without_a_1d_head_get_it_from_a_2d_marginal(fitted):
    est, X = fitted
    axes, masses = grid_masses(est, X[:3], dims=(1,))
    # "c" has no 1-d head: the 2-d grids are evaluated after all and (b, c) is summed over b.
    np.testing.assert_allclose(masses[("c",)], masses[("b", "c")].sum(axis=1))
    assert len(axes[("c",)][0][0]) == 12


def test_logits_match_log_ratio_at_the_grid_points(fitted):
    est, X = fitted
    axes, logits, _ = grid_logits(est, X[:2], dims=(1,))
    centres = axes[("a",)][0][0]
    theta = np.column_stack([centres[[3, 30]], [0.2, -0.4], [0.5, 0.5]])
    direct = est.log_ratio(X[:2], theta)["a"].to_numpy()
    np.testing.assert_allclose(direct, [logits[("a",)][0, 3], logits[("a",)][1, 30]], atol=1e-5)


def test_zoom_ranges_keep_the_mass_and_pad_by_whole_cells():
    centres = np.arange(100) + 0.5  # cells [0, 1), [1, 2), ...
    axes = {("a",): [(centres, 1.0)]}
    spike = np.zeros((2, 100))
    spike[0, 10] = 1.0
    spike[1] = 1 / 100  # flat: nothing to zoom
    low, high = zoom_ranges(axes, {("a",): spike}, ["a"], tail=1e-6, pad=2)["a"]
    np.testing.assert_allclose(low, [8.0, 0.0])
    np.testing.assert_allclose(high, [13.0, 100.0])
    # A cumulative mass a hair short of one (rounding) still finds its last cell.
    tail_heavy = np.full((1, 100), 1e-9)
    tail_heavy[0, 40:60] = (1 - 80e-9) / 20 * (1 - 1e-12)
    low, high = zoom_ranges(axes, {("a",): tail_heavy}, ["a"], tail=1e-6, pad=0)["a"]
    assert 39 <= low[0] <= 40 and 60 <= high[0] <= 61


def test_zoomed_grids_are_normalized_inside_the_prior_grid_and_per_observation(fitted):
    est, X = fitted
    axes, masses = zoomed_grid_masses(est, X[:3])
    coarse_axes, _ = grid_masses(est, X[:3])
    assert set(axes) == set(masses)
    for m, v in masses.items():
        for centres, widths in axes[m]:  # one grid per observation
            assert centres.shape == (3, v.shape[1]) and widths.shape == (3,)
        assert v.shape == (3,) + tuple(len(c0) for c0, _ in coarse_axes[m])
        np.testing.assert_allclose(v.reshape(3, -1).sum(axis=1), 1.0, rtol=1e-10)
        for i in range(3):
            for (c, w), (c0, w0) in zip(row_axes(axes, i)[m], coarse_axes[m]):
                assert w <= w0 + 1e-12
                assert c[0] - w / 2 >= c0[0] - w0 / 2 - 1e-9
                assert c[-1] + w / 2 <= c0[-1] + w0 / 2 + 1e-9
    # "c" has no 1-d head: its 1-d marginal is the (b, c) grid summed over b.
    np.testing.assert_allclose(masses[("c",)], masses[("b", "c")].sum(axis=1))


def test_zoomed_masses_follow_each_observations_own_ratio_and_prior(fitted):
    est, X = fitted
    axes, masses = zoomed_grid_masses(est, X[:2])
    for i in range(2):
        (ca, _), (cb, _) = row_axes(axes, i)[("a", "b")]
        cells = [(3, 5), (9, 1)]
        theta = np.array([[ca[j], cb[k], 0.5] for j, k in cells])
        log_r = est.log_ratio(np.repeat(X[i:i + 1], 2, axis=0), theta)["a|b"].to_numpy()
        log_p = est.prior_.marginal(["a", "b"]).log_prob(theta[:, :2])
        expected = (log_r[0] + log_p[0]) - (log_r[1] + log_p[1])
        got = np.log(masses[("a", "b")][i][cells[0]] / masses[("a", "b")][i][cells[1]])
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_posterior_zooms_by_default_and_agrees_with_the_prior_grid(fitted):
    est, X = fitted
    zoomed, plain = est.posterior(X[0]), est.posterior(X[0], zoom=False)
    coarse_axes, _ = grid_masses(est, X[:1])
    for m in coarse_axes:
        for (c, _), (c0, _) in zip(plain.axes[m], coarse_axes[m]):
            np.testing.assert_array_equal(c, c0)
    # Both grids describe the same posterior: means agree to within a coarse cell.
    for name in ("a", "b"):
        (c0, w0), = coarse_axes[(name,)]
        mean_z = zoomed.mass[(name,)] @ zoomed.axes[(name,)][0][0]
        mean_p = plain.mass[(name,)] @ c0
        assert abs(mean_z - mean_p) < w0
