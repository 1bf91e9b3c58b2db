"""Input checks of the estimator, called directly (the estimator tests call them through fit)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._checks import (
    check_hyperparameters,
    check_support,
    marginal_label,
    parameter_names,
    resolve_marginals,
    validate_theta,
)


def test_marginal_label_joins_names():
    assert marginal_label(("a", "b")) == "a|b"
    assert marginal_label(("a",)) == "a"


@pytest.mark.parametrize("param, value, match", [
    ("patience", 0, r"'patience' parameter .* range \[1, inf\)"),
    ("dropout", 1.0, r"'dropout' parameter .* range \[0.0, 1.0\)"),
    ("dropout", "0.1", r"'dropout' parameter .* Got '0.1'"),
    ("balance", -1, r"'balance' parameter .* range \[0.0, inf\)"),
    ("balance", float("inf"), "'balance' parameter .* Got inf"),
    ("lr", float("inf"), "'lr' parameter .* Got inf"),
    ("fourier_scale", float("inf"), "'fourier_scale' parameter"),
    ("weight_decay", -1e-3, "'weight_decay' parameter"),
    ("n_ensemble", 0, "'n_ensemble' parameter"),
    ("prior", "uniform", "'prior' parameter .* 'sklearn_tmnre.prior.Prior' or None"),
    ("max_epochs", "many", "'max_epochs' parameter .* among {'auto'}"),
    ("max_epochs", 0, "'max_epochs' parameter"),
    ("hidden_features", 2.5, "'hidden_features' parameter"),
    ("hidden_features", True, "'hidden_features' parameter .* not a boolean"),
    ("lr_schedule", "step", "'lr_schedule' parameter .* among"),
    ("n_threads", 0, "'n_threads' parameter"),
    ("n_negatives", 10**9, r"'n_negatives' parameter .* \[1, 1024\]"),
    ("n_grid_1d", 10**9, "'n_grid_1d' parameter"),
    ("n_grid_2d", 10**6, "'n_grid_2d' parameter"),
])
def test_check_hyperparameters_names_the_bad_one(param, value, match):
    est = TMNREEstimator(**{param: value})
    with pytest.raises((ValueError, TypeError), match=match):
        check_hyperparameters(est)
    check_hyperparameters(TMNREEstimator())  # the defaults are valid


def test_parameter_names_orders_columns_like_the_prior():
    prior = Prior({"a": stats.norm(), "b": stats.norm()})
    names, y = parameter_names(pd.DataFrame({"b": [1.0], "a": [2.0]}), prior)
    assert names == ["a", "b"]
    assert list(y.columns) == ["a", "b"]
    assert parameter_names(np.zeros((3, 2)), None)[0] == ["theta_0", "theta_1"]
    with pytest.raises(ValueError, match="lacks the prior's parameters"):
        parameter_names(pd.DataFrame({"a": [1.0]}), prior)
    with pytest.raises(ValueError, match="requires y"):
        parameter_names(None, None)


def test_resolve_marginals_spellings_and_errors():
    names = ["a", "b", "c"]
    assert resolve_marginals("1d", names) == [("a",), ("b",), ("c",)]
    assert resolve_marginals("2d", names) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert len(resolve_marginals("1d+2d", names)) == 6
    assert resolve_marginals(["a", ("b", "c")], names) == [("a",), ("b", "c")]
    with pytest.raises(ValueError, match="unknown parameters"):
        resolve_marginals([("a", "z")], names)
    with pytest.raises(ValueError, match="listed twice"):
        resolve_marginals(["a", ("a",)], names)
    with pytest.raises(ValueError, match="needs at least two parameters"):
        resolve_marginals("2d", ["a"])


def test_validate_theta_shapes_and_values():
    out = validate_theta(pd.DataFrame({"b": [1, 2], "a": [3, 4]}), ["a", "b"], 2)
    np.testing.assert_array_equal(out, [[3.0, 1.0], [4.0, 2.0]])
    assert validate_theta(np.arange(3), ["a"], 3).shape == (3, 1)
    with pytest.raises(ValueError, match="different numbers of rows"):
        validate_theta(np.zeros((2, 1)), ["a"], 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        validate_theta(np.array([[np.nan]]), ["a"], 1)
    with pytest.raises(TypeError, match="numeric"):
        validate_theta(np.array([["x"]]), ["a"], 1)


def test_check_support_only_with_a_prior():
    prior = Prior({"a": stats.uniform(0, 1)})
    check_support(prior, np.array([[0.5]]), "theta")
    check_support(None, np.array([[5.0]]), "theta")  # no prior: nothing to check against
    with pytest.raises(ValueError, match="1 row\\(s\\) outside the prior's support"):
        check_support(prior, np.array([[0.5], [2.0]]), "theta")
