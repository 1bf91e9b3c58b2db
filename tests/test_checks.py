"""Input checks of the estimator, called directly (the estimator tests call them through fit)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre._checks import (
    check_hyperparameters,
    check_support,
    int_seed,
    marginal_label,
    parameter_names,
    resolve_marginals,
    seed_entropy,
    validate_params,
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


# ---------------------------------------------------------------- declared constraints
@pytest.mark.parametrize("param, value, match", [
    ("embedding_dim", 10**6, r"'embedding_dim' parameter .* \[1, 16384\]"),
    ("hidden_features", 10**9, r"'hidden_features' parameter .* \[1, 16384\]"),
    ("fourier_features", 10**6, "'fourier_features' parameter"),
    ("random_state", True, "'random_state' parameter .* not a boolean"),
])
def test_absurd_widths_and_boolean_seeds_are_refused(param, value, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_hyperparameters(TMNREEstimator(**{param: value}))


def test_validate_params_refuses_booleans_for_numbers_and_appends_hints():
    from sklearn_tmnre import Truncator

    with pytest.raises(InvalidParameterError,
                       match=r"'n_samples' parameter of Truncator must be a number, not a "
                             r"boolean; got True\. It is the number of grid points"):
        validate_params(Truncator(n_samples=True), hints={
            "n_samples": "It is the number of grid points."})
    with pytest.raises(InvalidParameterError,
                       match=r"'tail_mass' .* Got 0\.7 instead\. Mean it\.$"):
        validate_params(Truncator(tail_mass=0.7), hints={"tail_mass": "Mean it."})
    validate_params(Truncator())  # the defaults are valid


# ------------------------------------------------------------------------ seeds
def _fresh_states():
    """Every kind of random_state, made anew (generators are consumed by a draw)."""
    return [0, 7, 2**40, lambda: np.random.RandomState(3), lambda: np.random.default_rng(3),
            lambda: np.random.SeedSequence(11)]


def _entropy_before_0_2(random_state):
    """simulate's own conversion before seed_entropy replaced it (pinned here)."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state.entropy
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1)) * 2**32 + int(random_state.randint(2**31 - 1))
    return int(random_state)


@pytest.mark.parametrize("make", _fresh_states())
def test_seed_entropy_is_the_conversion_simulate_and_campaigns_used(make):
    # Pinned against simulate's former conversion, so every simulation (and resumed
    # campaign) of an equal random_state draws what it drew before.
    state = make() if callable(make) else make
    again = make() if callable(make) else make
    assert seed_entropy(state, "test") == _entropy_before_0_2(again)
    with pytest.raises(ValueError, match="test: random_state must be"):
        seed_entropy(-1, "test")
    with pytest.raises(ValueError, match="random_state"):
        seed_entropy("0", "test")


@pytest.mark.parametrize("state", [0, 123, np.random.RandomState(5)])
def test_int_seed_is_the_estimators_seed(state):
    # TMNREEstimator.fit seeds torch with check_random_state(random_state).randint(2**31 - 1).
    from sklearn.utils import check_random_state

    expected = int(check_random_state(_copy(state)).randint(2**31 - 1))
    assert int_seed(_copy(state)) == expected


def _copy(state):
    import copy

    return copy.deepcopy(state)
