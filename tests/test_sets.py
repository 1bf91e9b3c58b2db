"""Tests of the set embedding (``embedding="set"``, :mod:`sklearn_tmnre.sets`)."""

import time

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch import nn

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.networks import EMBEDDINGS, make_embedding
from sklearn_tmnre.sets import (
    SetEmbedding,
    check_padding,
    present_elements,
    set_standardization,
)

NAN = float("nan")
# A tiny set estimator: scalar or vector elements through a one-layer MLP.
TINY_SET = dict(embedding="set", embedding_dim=8, embedding__element_dim=8,
                embedding__element__hidden=16, embedding__element__layers=1,
                embedding__hidden=16, hidden_features=16, num_blocks=1, n_negatives=1,
                n_grid_1d=64, n_threads=1, random_state=0)


class Doubler(nn.Module):
    """A user element network: one linear map of the flattened element."""

    def __init__(self, input_shape, out_features, width=4):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width),
                                 nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.net(x)


def _padded(sets, size):
    """Stack sets of shape (k_i, *element_shape) into (n, size, *element_shape), NaN-padded."""
    shape = np.shape(sets[0])[1:]
    out = np.full((len(sets), size, *shape), np.nan)
    for i, s in enumerate(sets):
        out[i, :len(s)] = s
    return out


def test_set_is_a_registered_embedding():
    assert "set" in EMBEDDINGS


@pytest.mark.parametrize("shape, kwargs", [
    ((5,), {}),  # scalars
    ((5, 3), {"element": "linear"}),
    ((5, 3), {"element": "mlp", "element__hidden": 8, "pooling": "sum"}),
    ((4, 16), {"element": "cnn1d", "element__channels": (4,), "pooling": "attention"}),
    ((3, 8, 8), {"element": "cnn2d", "element__channels": (4, 8), "element__pooling": "avg"}),
    ((3, 2, 8, 8), {"element": "cnn2d", "element__channels": 4}),
    ((5, 3), {"element": Doubler, "element__width": 7, "element_dim": 5}),
])
def test_any_element_embedding_maps_sets_to_out_features(shape, kwargs):
    module, width = make_embedding("set", shape, 6, **kwargs)
    assert isinstance(module, SetEmbedding) and width == 6
    x = torch.randn(4, *shape)
    x[1, 2:] = NAN  # a smaller set
    out = module(x)
    assert out.shape == (4, 6) and torch.isfinite(out).all()
    if kwargs.get("element") is Doubler:
        assert module.element.width == 7 and module.element_dim == 5


def test_present_elements_masks_before_any_arithmetic():
    x = torch.tensor([[[1.0, 2.0], [NAN, NAN], [0.0, NAN]]])
    present, filled, partial = present_elements(x)
    assert present.tolist() == [[True, False, True]]
    assert partial.tolist() == [[False, False, True]]
    assert not torch.isnan(filled).any()
    assert filled[0, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("pooling", ["sum", "mean", "attention"])
def test_output_is_invariant_to_order_and_padding(pooling):
    torch.manual_seed(0)
    module, _ = make_embedding("set", (10, 2), 4, pooling=pooling, element__hidden=8)
    module.eval()
    with torch.no_grad():
        # Attention with its zero initial query would weigh elements equally anyway.
        if pooling == "attention":
            module.query.normal_()
        elements = torch.randn(3, 2)
        padded_10 = torch.full((1, 10, 2), NAN)
        padded_10[0, :3] = elements
        ref = module(padded_10)
        # Every ordering of the present elements, with padding before, between, after.
        for perm, slots in [([2, 0, 1], [0, 1, 2]), ([1, 2, 0], [9, 4, 0]),
                            ([0, 1, 2], [3, 7, 5])]:
            x = torch.full((1, 10, 2), NAN)
            x[0, slots] = elements[perm]
            torch.testing.assert_close(module(x), ref)
        # The same three elements padded to 5 (the module does not depend on S) and to 3.
        for size in (5, 3):
            x = torch.full((1, size, 2), NAN)
            x[0, :3] = elements
            torch.testing.assert_close(module(x), ref)
        # ... but not to the elements' values: a fourth element changes the embedding.
        padded_10[0, 3] = torch.randn(2)
        assert (module(padded_10) - ref).abs().max() > 1e-4


def test_mean_and_attention_pooling_know_the_set_size():
    # Two sets with the same mean element embedding but different sizes: log k tells them apart.
    module, _ = make_embedding("set", (4, 1), 3, pooling="mean")
    x = torch.tensor([[[1.0], [NAN], [NAN], [NAN]], [[1.0], [1.0], [1.0], [1.0]]])
    with torch.no_grad():
        out = module(x)
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_padding_is_never_passed_to_the_element_network():
    seen = []

    class Recorder(nn.Module):
        def __init__(self, input_shape, out_features):
            super().__init__()
            self.lin = nn.Linear(int(np.prod(input_shape)), out_features)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.lin(x.flatten(1))

    module, _ = make_embedding("set", (4, 3), 2, element=Recorder)
    seen.clear()
    x = torch.randn(2, 4, 3)
    x[0, 1:] = NAN
    x[1, 3] = NAN
    module(x)
    assert len(seen) == 1 and seen[0].shape == (1 + 3, 3)  # one batched call, 4 elements
    assert torch.isfinite(seen[0]).all()


def test_gradients_stay_finite_with_padding():
    module, _ = make_embedding("set", (6, 2), 3, pooling="attention")
    x = torch.randn(5, 6, 2)
    x[:, 3:] = NAN
    module(x).sum().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_module_rejects_partial_nan_and_empty_sets():
    module, _ = make_embedding("set", (3, 2), 4)
    x = torch.randn(2, 3, 2)
    x[1, 2, 0] = NAN
    with pytest.raises(ValueError, match="row 1, element 2 has NaN in some values but not all"):
        module(x)
    x = torch.randn(2, 3, 2)
    x[0] = NAN
    with pytest.raises(ValueError, match="row 0 has no present element"):
        module(x)


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": (4,)}, r"unexpected arguments \['channels'\].*embedding__element__<arg>"),
    ({"pooling": "max"}, r"pooling must be one of \['sum', 'mean', 'attention'\]"),
    ({"element": "nope"}, r"element network \(element='nope'.*unknown"),
    ({"element": "set"}, "element must be an embedding name other than 'set'"),
    ({"element": nn.Linear(2, 2)}, "module instance would be shared"),
    ({"element": "cnn2d"}, r"one element of shape \(2,\).*cnn2d.*needs"),
    ({"element": "mlp", "element__widht": 3}, r"embedding__element__<arg>"),
])
def test_bad_arguments_say_what_to_pass(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_embedding("set", (3, 2), 4, **kwargs)


def test_check_padding_counts_elements_and_names_bad_rows():
    X = _padded([np.ones((2, 3)), np.ones((5, 3))], 5)
    np.testing.assert_array_equal(check_padding(X), [2, 5])
    X[1, 4, 1] = np.nan
    with pytest.raises(ValueError, match="X row 1, element 4 has NaN in some values"):
        check_padding(X)
    X = _padded([np.ones((2, 3)), np.ones((5, 3))], 5)
    X[0] = np.nan
    with pytest.raises(ValueError, match="X row 0 has no present element"):
        check_padding(X)


def test_standardization_pools_present_elements_per_feature():
    rng = np.random.default_rng(0)
    sets = [rng.normal([1.0, -5.0], [2.0, 0.5], size=(k, 2)) for k in (1, 3, 2, 4)]
    X = _padded(sets, 6)
    mean, std = set_standardization(X)
    present = np.concatenate(sets)
    assert mean.shape == std.shape == (6, 2)
    np.testing.assert_allclose(mean, np.broadcast_to(present.mean(axis=0), (6, 2)))
    np.testing.assert_allclose(std, np.broadcast_to(present.std(axis=0), (6, 2)))
    # Images of a CNN element: one global mean and scale over the present pixels.
    images = _padded([rng.normal(3.0, 2.0, size=(k, 4, 4)) for k in (1, 2)], 3)
    mean, std = set_standardization(images, "cnn2d")
    np.testing.assert_allclose(mean, np.nanmean(images))
    np.testing.assert_allclose(std, np.nanstd(images))


@pytest.fixture(scope="module")
def small_sets():
    """Sets of 1..6 draws of N(mu, 1) (with a second feature of scale 5), padded to 6."""
    prior = Prior({"mu": stats.uniform(-2, 4)})
    theta = prior.sample(300, random_state=0)
    rng = np.random.default_rng(0)
    k = rng.integers(1, 7, size=300)
    sets = [m + rng.normal(size=(n, 2)) * [1.0, 5.0] for m, n in zip(theta["mu"], k)]
    return prior, _padded(sets, 6), theta


def test_estimator_fits_padded_sets_and_is_invariant(small_sets):
    prior, X, theta = small_sets
    est = TMNREEstimator(prior=prior, max_epochs=2, **TINY_SET).fit(X, theta)
    module = est.net_.module_
    # Standardization over the present elements only, the same for every position.
    present = X[~np.isnan(X).all(axis=-1)]
    np.testing.assert_allclose(module.x_mean.numpy(),
                               np.broadcast_to(present.mean(axis=0), (6, 2)), rtol=1e-5)
    np.testing.assert_allclose(module.x_std[:, 1].numpy(), present[:, 1].std(), rtol=1e-5)
    # The same set, its elements reversed and moved to the end of the padding.
    x_o = X[:1]
    k = int((~np.isnan(x_o[0]).all(axis=-1)).sum())
    moved = np.full_like(x_o, np.nan)
    moved[0, 6 - k:] = x_o[0, :k][::-1]
    grid = theta.iloc[:5]
    np.testing.assert_allclose(est.log_ratio(np.repeat(x_o, 5, axis=0), grid),
                               est.log_ratio(np.repeat(moved, 5, axis=0), grid),
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(est.predict(X[:3])).all()
    assert np.isfinite(est.posterior(X[0]).std()["mu"])


def test_estimator_rejects_partial_nan_and_empty_sets_by_row(small_sets):
    prior, X, theta = small_sets
    bad = X.copy()
    bad[7, 0, 1] = np.nan
    est = TMNREEstimator(prior=prior, max_epochs=1, **TINY_SET)
    with pytest.raises(ValueError, match="X row 7, element 0 has NaN in some values but not"):
        est.fit(bad, theta)
    bad = X.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="X row 3 has no present element"):
        est.fit(bad, theta)
    bad = X.copy()
    bad[2, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.fit(bad, theta)
    est.fit(X, theta)
    bad = X[:4].copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="X row 2, element 0"):
        est.log_ratio(bad, theta[:4])


def test_other_embeddings_still_reject_nan(small_sets):
    prior, X, theta = small_sets
    params = {k: v for k, v in TINY_SET.items() if not k.startswith("embedding")}
    for embedding in ("mlp", "deepset"):
        with pytest.raises(ValueError, match="NaN"):
            TMNREEstimator(prior=prior, embedding=embedding, max_epochs=1, **params).fit(X, theta)


def test_element_arguments_survive_clone_and_grid_search(small_sets):
    prior, X, theta = small_sets
    est = TMNREEstimator(prior=prior, max_epochs=1, **TINY_SET)
    params = clone(est).get_params()
    assert params["embedding__element__hidden"] == 16
    assert params["embedding__element_dim"] == 8
    est.set_params(embedding__element__hidden=12, embedding__pooling="attention")
    est.fit(X[:100], theta[:100])
    element_net = est.net_.module_.embedding.element
    assert element_net[1].out_features == 12
    assert est.net_.module_.embedding.pooling == "attention"
    search = GridSearchCV(TMNREEstimator(prior=prior, max_epochs=1, **TINY_SET),
                          {"embedding__pooling": ["sum", "mean"],
                           "embedding__element__hidden": [4, 8]}, cv=2)
    search.fit(X[:120], theta[:120])
    assert search.best_estimator_.net_.module_.embedding.element[1].out_features in (4, 8)


def test_saved_set_model_loads_with_the_same_ratio(small_sets, tmp_path):
    prior, X, theta = small_sets
    est = TMNREEstimator(prior=prior, max_epochs=1, embedding__pooling="attention",
                         **TINY_SET).fit(X, theta)
    est.save(tmp_path / "model")
    loaded = TMNREEstimator.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.log_ratio(X[:5], theta[:5]),
                               est.log_ratio(X[:5], theta[:5]), rtol=1e-6)


S_MAX = 20


def _iid_sets(mu, rng):
    """k ~ U{1..20} draws of N(mu, 1) per row, padded with NaN to 20."""
    k = rng.integers(1, S_MAX + 1, size=len(mu))
    X = mu[:, None] + rng.standard_normal((len(mu), S_MAX))
    X[np.arange(S_MAX) >= k[:, None]] = np.nan
    return X


def test_posterior_narrows_as_one_over_sqrt_k():
    """mu ~ U(-3, 3), x_1..x_k ~ N(mu, 1): the posterior is N(xbar, 1/k) cut to [-3, 3]."""
    start = time.perf_counter()
    prior = Prior({"mu": stats.uniform(-3, 6)})
    theta = prior.sample(4000, random_state=0)
    X = _iid_sets(theta["mu"].to_numpy(), np.random.default_rng(0))
    est = TMNREEstimator(prior=prior, max_epochs=40, batch_size=128,
                         **{**TINY_SET, "n_grid_1d": 128}).fit(X, theta)
    mus = np.linspace(-2, 2, 9)
    rng = np.random.default_rng(1)
    std, sd, err = {}, {}, {}
    for k in (2, 16):
        x_o = np.full((len(mus), S_MAX), np.nan)
        x_o[:, :k] = mus[:, None] + rng.standard_normal((len(mus), k))
        xbar, scale = x_o[:, :k].mean(axis=1), 1 / np.sqrt(k)
        exact = stats.truncnorm((-3 - xbar) / scale, (3 - xbar) / scale, xbar, scale)
        posts = est.posterior(x_o)
        mean = np.array([p.mean()["mu"] for p in posts])
        std[k] = np.array([p.std()["mu"] for p in posts])
        sd[k] = std[k] / exact.std()
        err[k] = (mean - exact.mean()) / exact.std()
    seconds = time.perf_counter() - start
    print(f"fit + posteriors: {seconds:.1f} s; std / exact std: k=2 {sd[2].round(2)}, "
          f"k=16 {sd[16].round(2)}; mean error / exact std: {err[2].round(2)}, "
          f"{err[16].round(2)}")
    # The exact std ratio is sqrt(8) = 2.8 (2.5 near the prior's edges); the network must
    # learn it from log k and the pooled elements alone.
    assert np.all(std[2] > 1.5 * std[16]) and np.median(std[2] / std[16]) > 2
    # Tolerances: the tiny network's error at 4,000 simulations, not sampling noise (the
    # exact posterior is known). Over seeds 0-3 of data and weights the std was 0.81-1.29 of
    # the exact one and the mean at most 0.33 of it off; seed 0 gives 0.85-1.09 and 0.16.
    assert np.all((sd[2] > 0.6) & (sd[2] < 1.4)) and np.all((sd[16] > 0.6) & (sd[16] < 1.4))
    assert np.all(np.abs(err[2]) < 0.5) and np.all(np.abs(err[16]) < 0.5)


class PaddedDraws:
    """A simulator of sets of varying size: 1..S_MAX draws of N(mu, 1), NaN-padded."""

    def __call__(self, theta, rng):
        out = np.full(S_MAX, np.nan)
        k = rng.integers(1, S_MAX + 1)
        out[:k] = theta[0] + rng.standard_normal(k)
        return out


def test_simulate_keeps_padded_sets_only_when_asked():
    from sklearn_tmnre import simulate

    theta = np.array([[0.0], [1.0], [2.0]])
    padded = simulate(PaddedDraws(), theta, random_state=0, nan_padding=True, return_result=True)
    assert padded.ok.all() and np.isnan(padded.X).any()
    plain = simulate(PaddedDraws(), theta, random_state=0, return_result=True)
    assert not plain.ok.any() and "NaN" in plain.errors[0]

    def partly_nan(theta, rng):
        return np.array([1.0, np.nan, 2.0]).reshape(3, 1) if theta[0] else np.ones((3, 1))

    mixed = simulate(partly_nan, theta, random_state=0, nan_padding=True, return_result=True)
    # (3, 1): three elements of one number; a NaN element is padding, so this one is fine.
    assert mixed.ok.all()

    def torn(theta, rng):
        return np.array([[1.0, np.nan], [2.0, 3.0]])

    bad = simulate(torn, theta, random_state=0, nan_padding=True, return_result=True)
    assert not bad.ok.any() and "not padding of whole elements" in bad.errors[0]


def test_a_truncation_campaign_runs_on_sets_of_varying_size(tmp_path):
    from sklearn_tmnre import TMNRE

    prior = Prior({"mu": stats.uniform(-3, 6)})
    x_o = np.full(S_MAX, np.nan)
    x_o[:5] = 1.0 + np.random.default_rng(3).standard_normal(5)
    run = TMNRE(PaddedDraws(), prior,
                estimator=TMNREEstimator(max_epochs=3, **TINY_SET),
                n_sims=[300, 200], store=str(tmp_path / "sims"), random_state=0).fit(x_o)
    assert len(run.rounds_) == 2 and run.rounds_["n_simulated"].sum() == 500
    assert np.isfinite(run.posterior_.mean()["mu"])
