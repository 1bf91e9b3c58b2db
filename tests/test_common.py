"""scikit-learn's estimator checks for every estimator of the library.

``TMNREEstimator`` runs all of them, with no expected failure.

``Truncator`` and ``TMNRE`` cannot: ``Truncator.fit`` takes one observation and a
fitted ratio estimator (``fit(x_o, estimator=est)``) and ``transform`` takes
parameters, not the data it was fitted on; ``TMNRE.fit`` takes one observation
and runs a simulator. Every check that fits them on scikit-learn's random
``(X, y)`` therefore tests nothing of theirs. They run every check that does not
fit, plus ``check_param_validation`` (their ``fit`` validates the parameters
before it looks at its input) and a clone round trip; each skipped check is listed
in ``SKIPPED`` with its reason, and :func:`test_every_check_is_run_or_skipped_with_a_reason`
fails when scikit-learn yields a check in neither list.
"""

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_param_validation,
    estimator_checks_generator,
    parametrize_with_checks,
)

from sklearn_tmnre import TMNRE, Prior, TMNREEstimator, Truncator


def _tiny_estimator():
    return TMNREEstimator(max_epochs=3, hidden_features=8, embedding_dim=4, num_blocks=1,
                          n_negatives=1, n_grid_1d=32, n_grid_2d=16, random_state=0)


@parametrize_with_checks([_tiny_estimator()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ------------------------------------------------------------- Truncator and TMNRE
def simulator(theta, rng=None):
    """A module-level (picklable, cloneable) simulator."""
    return np.asarray(theta, dtype=float)


def _truncator():
    return Truncator(tail_mass=1e-4, n_samples=500)


def _run():
    return TMNRE(simulator, Prior({"a": stats.uniform(-1, 2)}), estimator=_tiny_estimator(),
                 truncator=_truncator(), n_sims=[100, 50], max_rounds=2, random_state=0)


#: Checks that do not fit the estimator: they apply as they are.
APPLICABLE = {
    "check_estimator_cloneable", "check_estimator_tags_renamed", "check_valid_tag_types",
    "check_estimator_repr", "check_no_attributes_set_in_init", "check_estimators_unfitted",
    "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
    "check_parameters_default_constructible", "check_get_params_invariance",
    "check_set_params", "check_transformers_unfitted", "check_transformer_n_iter",
}

_FITS = ("fits on scikit-learn's random (X, y): Truncator.fit needs fit(x_o, estimator=est), "
         "TMNRE.fit one observation of its simulator's shape")
_TRANSFORMS = ("calls fit_transform(X) / transform(X) on the fitted data: Truncator fits "
               "on an observation and transforms parameters, two different inputs")
_SPARSE = "fits on sparse X: an observation is one dense array"

#: Checks that cannot apply to Truncator and TMNRE, with the reason.
SKIPPED = {
    "check_fit_score_takes_y": _FITS,
    "check_estimators_overwrite_params": _FITS,
    "check_dont_overwrite_parameters": _FITS,
    "check_estimators_fit_returns_self": _FITS,
    "check_readonly_memmap_input": _FITS,
    "check_n_features_in_after_fitting": _FITS,
    "check_positive_only_tag_during_fit": _FITS,
    "check_estimators_dtypes": _FITS,
    "check_complex_data": _FITS + " (complex x_o is refused: tests/test_bad_input.py)",
    "check_dtype_object": _FITS,
    "check_estimators_empty_data_messages": _FITS,
    "check_pipeline_consistency": _FITS + "; neither is a pipeline step on (X, y)",
    "check_estimators_nan_inf": _FITS + " (NaN/inf x_o is refused: tests/test_bad_input.py)",
    "check_estimator_sparse_tag": _SPARSE,
    "check_estimator_sparse_array": _SPARSE,
    "check_estimator_sparse_matrix": _SPARSE,
    "check_estimators_pickle": _FITS + " (pickling fitted ones: tests/test_persistence.py)",
    "check_array_api_input": "array API inputs: the networks take numpy arrays (scikit-learn "
                             "skips it unless SCIPY_ARRAY_API=1)",
    "check_f_contiguous_array_estimator": _FITS,
    "check_transformer_data_not_an_array": _TRANSFORMS,
    "check_transformer_general": _TRANSFORMS,
    "check_transformer_preserve_dtypes": _TRANSFORMS,
    "check_methods_sample_order_invariance": _FITS,
    "check_methods_subset_invariance": _FITS,
    "check_fit2d_1sample": _FITS,
    "check_fit2d_1feature": _FITS,
    "check_dict_unchanged": _FITS,
    "check_fit_idempotent": _FITS + " (a rerun gives the same box: tests/test_truncation.py)",
    "check_fit_check_is_fitted": _FITS,
    "check_n_features_in": _FITS,
    "check_fit1d": _FITS,
    "check_fit2d_predict1d": _FITS,
}


def _checks(estimator):
    return [(check.func.__name__, est, check)
            for est, check in estimator_checks_generator(estimator, legacy=True)]


@pytest.mark.parametrize("make", [_truncator, _run], ids=["Truncator", "TMNRE"])
def test_every_check_is_run_or_skipped_with_a_reason(make):
    names = {name for name, _, _ in _checks(make())}
    assert not APPLICABLE & set(SKIPPED)
    assert names <= APPLICABLE | set(SKIPPED), sorted(names - APPLICABLE - set(SKIPPED))


@pytest.mark.parametrize("make", [_truncator, _run], ids=["Truncator", "TMNRE"])
def test_applicable_sklearn_checks(make):
    ran = []
    for name, est, check in _checks(make()):
        if name in APPLICABLE:
            check(est)
            ran.append(name)
    assert {"check_get_params_invariance", "check_set_params", "check_no_attributes_set_in_init",
            "check_parameters_default_constructible"} <= set(ran)


@pytest.mark.parametrize("make", [_tiny_estimator, _truncator, _run],
                         ids=["TMNREEstimator", "Truncator", "TMNRE"])
def test_param_validation(make):
    # Every parameter has a declared constraint, and a value of the wrong type or out of
    # range is an InvalidParameterError naming it, raised by fit before any work.
    est = make()
    check_param_validation(type(est).__name__, est)


def test_clone_round_trip_keeps_every_parameter():
    run = _run().set_params(estimator__lr=1e-3, truncator__epsilon=1e-4, timeout=5.0)
    copy = clone(run)
    assert copy.estimator is not run.estimator and copy.truncator is not run.truncator
    params, copied = run.get_params(deep=True), copy.get_params(deep=True)
    assert copied.keys() == params.keys()
    for key in params.keys() - {"estimator", "truncator"}:
        assert copied[key] == params[key], key
    assert copy.estimator.lr == 1e-3 and copy.truncator.epsilon == 1e-4
    trunc = clone(Truncator(prior=Prior({"a": stats.norm()}), epsilon=1e-3))
    assert trunc.epsilon == 1e-3 and trunc.tail_mass == 1e-5 and trunc.n_samples == 10_000
