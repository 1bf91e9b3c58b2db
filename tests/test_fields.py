"""Tests of field parameters: per-pixel, per-bin binary parameters (sklearn_tmnre.fields)."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.ndimage import gaussian_filter

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.fields import (
    FieldHead,
    cell_frequencies,
    check_field_values,
    field_layout,
    field_pair_logits,
    field_probabilities,
)
from sklearn_tmnre.loss import RatioLoss
from sklearn_tmnre.unet import UNet

RATES = np.array([0.06, 0.03])   # per-pixel occupancy probability of each bin
AMPLITUDES = np.array([1.5, 3.0])  # blob brightness of each bin
SHAPE = (12, 12)

TINY = dict(embedding="unet", embedding__channels=8, embedding__depth=1, embedding_dim=8,
            hidden_features=16, batch_size=64, lr=5e-3, n_threads=1, random_state=0)


def blob_toy(n, seed, shape=SHAPE):
    """Images with a blurred bright blob at every occupied pixel (brighter for bin 1),
    a global offset ``a`` and noise; the occupancy is learnable from the image."""
    rng = np.random.default_rng(seed)
    prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occupancy", (2, *shape))
    theta = prior.sample(n, random_state=rng)
    occ = rng.random((n, 2, *shape)) < RATES[None, :, None, None]
    sky = np.tensordot(AMPLITUDES, occ.astype(float), axes=([0], [1]))
    sky = gaussian_filter(sky, sigma=(0, 0.7, 0.7)) * 3.0
    X = sky + theta["a"].to_numpy()[:, None, None] + 0.3 * rng.standard_normal((n, *shape))
    return prior, theta, X.astype(np.float32), occ


@pytest.fixture(scope="module")
def fitted():
    prior, theta, X, occ = blob_toy(700, seed=0)
    est = TMNREEstimator(prior=prior, max_epochs=15, **TINY)
    est.fit(X[:600], theta[:600], occupancy=occ[:600])
    return est, X[600:], occ[600:], theta[600:]


# ------------------------------------------------------------------- the prior
def test_with_field_declares_a_field_beside_the_globals():
    prior = Prior.with_field({"a": stats.uniform(0, 1), "b": stats.norm()}, "occ", (3, 8, 8))
    assert prior.names == ["a", "b"] and prior.fields == {"occ": (3, 8, 8)}
    assert prior.sample(4, random_state=0).shape == (4, 2)  # fields are derived, not sampled
    assert Prior.from_dict(prior.to_dict()) == prior
    truncated = prior.truncate({"a": (0.2, 0.5), "b": (-1, 1)})
    assert truncated.fields == prior.fields and truncated.untruncated().fields == prior.fields
    assert prior.marginal(["b"]).fields == prior.fields
    # From a Prior: its box is kept; a second field is added beside the first.
    both = Prior.with_field(truncated, "mask", (8, 8))
    assert both.fields == {"occ": (3, 8, 8), "mask": (8, 8)} and both.is_truncated
    assert both != truncated


@pytest.mark.parametrize("name, shape, match", [
    ("occ", (0, 8), "1 to 3 positive integers"),
    ("occ", (2, 2, 8, 8), "1 to 3 positive integers"),
    ("occ", (2.5, 8), "1 to 3 positive integers"),
    ("a", (8, 8), "name of a global parameter"),
])
def test_bad_field_declaration(name, shape, match):
    with pytest.raises(ValueError, match=match):
        Prior.with_field({"a": stats.uniform(0, 1)}, name, shape)


def test_same_field_twice_is_refused():
    prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occ", (8, 8))
    with pytest.raises(ValueError, match="already has a field 'occ'"):
        Prior.with_field(prior, "occ", (8, 8))


def test_discrete_prior_of_infinite_support_is_refused():
    # Already refused by Prior (a TypeError: the family, not a value, is unsupported).
    with pytest.raises(TypeError, match="infinite support.*Cut it to a table"):
        Prior({"n": stats.poisson(3)})


# ------------------------------------------------------------------ the maths
def test_pair_logits_read_the_own_values_and_weigh_both_as_negatives():
    logits = torch.tensor([[[0.0, 1.0], [10.0, 11.0]],     # row 0: f0, f1 of two cells
                           [[2.0, 3.0], [12.0, 13.0]],
                           [[4.0, 5.0], [14.0, 15.0]]])
    values = torch.tensor([[1, 0], [0, 0], [1, 1]], dtype=torch.uint8)
    joint, marginal, negative_weight = field_pair_logits(logits, values, torch.tensor([0.1, 0.3]))
    assert joint.tolist() == [[10.0, 1.0], [2.0, 3.0], [14.0, 15.0]]
    # Both values are negatives of every row, weighted by the prior: 1 - p for 0, p for 1.
    assert torch.equal(marginal, logits)
    torch.testing.assert_close(negative_weight, torch.tensor([[0.9, 0.7], [0.1, 0.3]]))


@pytest.mark.parametrize("balance", [0.0, 2.0])
def test_expected_negatives_are_the_mean_of_sampled_negatives(balance):
    # The exact marginal term equals, in expectation, the term of negatives drawn from
    # the prior (what another simulation's values are): same objective, no sampling noise.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, 3, generator=gen)
    values = torch.tensor([[0, 1, 0]] * 6, dtype=torch.uint8)
    frequency = torch.tensor([0.05, 0.2, 0.5])
    weight = torch.tensor([0.5, 0.25, 0.25])
    joint, marginal, negative_weight = field_pair_logits(logits, values, frequency)
    exact = RatioLoss(balance)(joint, marginal, weight, negative_weight)
    draws = torch.rand(6, 40_000, 3, generator=gen) < frequency  # o ~ Bernoulli(p) per cell
    sampled = torch.where(draws, logits[:, 1:2], logits[:, 0:1])
    assert exact.item() == pytest.approx(RatioLoss(balance)(joint, sampled, weight).item(),
                                         rel=2e-3)
    # Uniform negative weights are the plain mean over the negatives.
    plain = RatioLoss(balance)(joint, marginal, weight)
    assert plain.item() == pytest.approx(
        RatioLoss(balance)(joint, marginal, weight, torch.full((2, 3), 0.5)).item(), rel=1e-6)


def test_cell_frequencies_follow_the_cells_order():
    heads = [FieldHead(4, 3, n_bins=2), FieldHead(4, 3, n_bins=1)]
    heads[0].frequency.copy_(torch.tensor([0.1, 0.2]))
    heads[1].frequency.copy_(torch.tensor([0.3]))
    layout = {"spatial": (2, 2)}
    assert cell_frequencies(heads, layout).tolist() == pytest.approx(
        [0.1] * 4 + [0.2] * 4 + [0.3] * 4)


def test_probability_is_bayes_with_the_prior_frequency():
    logits = torch.tensor([[[[0.3]], [[1.2]]]])  # (B=1, 2, K=1, P=1): f0, f1
    p1 = torch.tensor([0.1])
    r0, r1 = np.exp(0.3), np.exp(1.2)
    expected = 0.1 * r1 / (0.1 * r1 + 0.9 * r0)
    assert field_probabilities(logits, p1).item() == pytest.approx(expected, rel=1e-6)


def test_loss_weights_scale_each_column():
    torch.manual_seed(0)
    fj, fm = torch.randn(8, 3), torch.randn(8, 2, 3)
    weight = torch.tensor([1.0, 0.25, 0.25])
    per_column = [RatioLoss()(fj[:, [c]], fm[:, :, [c]]) for c in range(3)]
    expected = sum(w * t for w, t in zip(weight, per_column))
    assert RatioLoss()(fj, fm, weight).item() == pytest.approx(expected.item(), rel=1e-6)


# ------------------------------------------------------------------ estimator
def test_weight_count_does_not_grow_with_the_pixels():
    counts = []
    for shape in [(8, 8), (24, 24)]:
        _, theta, X, occ = blob_toy(16, seed=1, shape=shape)
        prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occupancy", (2, *shape))
        est = TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(X, theta, occupancy=occ)
        counts.append(sum(p.numel() for p in est.net_.module_.parameters()))
        assert est.predict_field(X[:3]).shape == (3, 2, *shape)
    assert counts[0] == counts[1]


def test_learns_the_occupancy_better_than_the_prior(fitted):
    est, X, occ, theta = fitted
    p = est.predict_field(X)
    assert p.shape == occ.shape and np.all((p > 0) & (p < 1))
    # The prior: the training frequency of each bin, close to the simulated rate.
    freq = est.field_prior_["occupancy"]
    assert freq.shape == (2,)
    assert np.allclose(freq, RATES, atol=4 * np.sqrt(RATES / (600 * 144)))
    brier = np.mean((p - occ) ** 2, axis=(0, 2, 3))
    brier_prior = np.mean((freq[None, :, None, None] - occ) ** 2, axis=(0, 2, 3))
    assert np.all(brier < 0.8 * brier_prior), (brier, brier_prior)
    # Roughly calibrated: the mean probability of each bin is near its frequency.
    assert np.allclose(p.mean(axis=(0, 2, 3)), occ.mean(axis=(0, 2, 3)), rtol=0.5)
    # Global parameters are still learned beside the field.
    assert np.corrcoef(est.predict(X)[:, 0], theta["a"])[0, 1] > 0.9


def test_posterior_field_is_predict_field(fitted):
    est, X, _, _ = fitted
    post = est.posterior(X[3])
    assert np.allclose(post.field("occupancy"), est.predict_field(X[3:4])[0])
    assert np.allclose(post.field(), est.predict_field(X[3:4], "occupancy")[0])


def test_save_and_load_keep_the_field(fitted, tmp_path):
    est, X, _, _ = fitted
    loaded = TMNREEstimator.load(est.save(tmp_path / "model"))
    assert loaded.prior_.fields == est.prior_.fields
    assert np.allclose(loaded.predict_field(X[:4]), est.predict_field(X[:4]))
    assert np.allclose(loaded.field_prior_["occupancy"], est.field_prior_["occupancy"])


def test_one_dimensional_field():
    rng = np.random.default_rng(2)
    prior = Prior.with_field({"a": stats.uniform(0, 1)}, "hits", (24,))
    theta = prior.sample(40, random_state=rng)
    hits = rng.random((40, 24)) < 0.1
    X = (2.0 * hits + 0.3 * rng.standard_normal((40, 24))).astype(np.float32)
    est = TMNREEstimator(prior=prior, max_epochs=2, **TINY).fit(X, theta, hits=hits)
    assert est.predict_field(X[:5]).shape == (5, 24)
    assert est.field_prior_["hits"].shape == (1,)


# ------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def small():
    return blob_toy(16, seed=3, shape=(8, 8))


def test_field_shape_must_match_the_data_grid(small):
    _, theta, X, occ = small
    prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occupancy", (2, 10, 10))
    with pytest.raises(ValueError, match=r"data grid of X .* is \(8, 8\)"):
        TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(
            X, theta, occupancy=np.zeros((16, 2, 10, 10), bool))


def test_field_values_must_be_binary(small):
    prior, theta, X, occ = small
    with pytest.raises(ValueError, match="must be binary"):
        TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(
            X, theta, occupancy=occ * 2.0)


def test_field_values_are_read_in_place_and_left_unchanged(small):
    """A bool field is read as uint8 without a copy (it is the largest input of a
    segmentation fit); 0/1 numbers and read-only arrays are converted; fitting does not
    write to the caller's array."""
    prior, theta, X, occ = small
    values = check_field_values(prior, {"occupancy": occ}, len(X))
    assert values.dtype == np.uint8 and np.shares_memory(values, occ)
    np.testing.assert_array_equal(values, occ.reshape(len(X), -1))
    frozen = occ.copy()
    frozen.flags.writeable = False
    for other in (occ.astype(float), frozen):
        copied = check_field_values(prior, {"occupancy": other}, len(X))
        assert copied.dtype == np.uint8 and not np.shares_memory(copied, other)
        np.testing.assert_array_equal(copied, values)
    before = occ.copy()
    TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(X, theta, occupancy=occ)
    np.testing.assert_array_equal(occ, before)


def test_field_values_must_have_the_declared_shape(small):
    prior, theta, X, occ = small
    with pytest.raises(ValueError, match=r"expected values of shape"):
        TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(X, theta, occupancy=occ[:, 0])
    with pytest.raises(ValueError, match=r"expected values of shape"):
        TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(X, theta, occupancy=occ[:8])


def test_field_values_are_required_and_named(small):
    prior, theta, X, occ = small
    with pytest.raises(ValueError, match="got no values"):
        TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(X, theta)
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        TMNREEstimator(prior=prior, max_epochs=1, **TINY).fit(X, theta, occupancy=occ,
                                                               occupncy=occ)


def test_fields_need_a_per_pixel_embedding(small):
    prior, theta, X, occ = small
    with pytest.raises(ValueError, match="embedding='unet'"):
        TMNREEstimator(prior=prior, embedding="cnn2d", max_epochs=1).fit(
            X, theta, occupancy=occ)
    with pytest.raises(ValueError, match="n_ensemble=1"):
        TMNREEstimator(prior=prior, max_epochs=1, n_ensemble=2, **TINY).fit(
            X, theta, occupancy=occ)


def test_predict_field_names_the_fields(fitted, small):
    est, X, _, _ = fitted
    with pytest.raises(ValueError, match=r"its fields are \['occupancy'\]"):
        est.predict_field(X[:2], "mask")
    _, theta, X8, _ = small
    plain = TMNREEstimator(prior=Prior({"a": stats.uniform(0, 1)}), max_epochs=1,
                           **TINY).fit(X8, theta)
    with pytest.raises(ValueError, match=r"its fields are \[\]"):
        plain.predict_field(X8[:2])
    with pytest.raises(AttributeError, match="no field parameters"):
        getattr(plain, "field_prior_")  # noqa: B009 (a property that raises)


def test_field_values_follow_the_rows_in_cross_validation(small):
    # Keyword arrays of n rows are split with X by scikit-learn's cross-validation.
    from sklearn.model_selection import cross_val_score

    prior, theta, X, occ = small
    est = TMNREEstimator(prior=prior, max_epochs=1, **TINY)
    scores = cross_val_score(est, X, theta, cv=2, params={"occupancy": occ})
    assert scores.shape == (2,) and np.all(np.isfinite(scores))


def test_objects_and_fields_together_are_refused():
    objects = Prior.with_objects({"a": stats.uniform(0, 1)}, {"z": stats.norm()}, n_objects=8)
    prior = Prior.with_field(objects, "occupancy", (8, 8))
    with pytest.raises(ValueError, match="both object blocks and fields"):
        field_layout(prior, UNet((8, 8), 4, channels=2, depth=1), (8, 8))
