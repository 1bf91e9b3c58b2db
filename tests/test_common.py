"""scikit-learn's estimator checks for every estimator of the library."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_tmnre import TMNREEstimator


def _tiny_estimator():
    return TMNREEstimator(max_epochs=3, hidden_features=8, embedding_dim=4, num_blocks=1,
                          n_negatives=1, n_grid_1d=32, n_grid_2d=16, random_state=0)


@parametrize_with_checks([_tiny_estimator()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
