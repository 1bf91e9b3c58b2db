"""Tests of the grid evaluation of marginal posteriors (sklearn_tmnre._grids)."""

import numpy as np
import pytest
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._grids import grid_logits, grid_masses


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
