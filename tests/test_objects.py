"""Object blocks of the prior, shared-weight object heads, per-object posteriors (objects.py)."""

import time

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from sklearn_tmnre import Prior, TMNREEstimator, Truncator
from sklearn_tmnre._training import PairData, _Batches, derangements
from sklearn_tmnre.objects import SharedObjectHead

N_OBJECTS, S_Z, S_X = 20, 0.5, 0.3


def _simulate(n, rng, n_objects=N_OBJECTS):
    """Hierarchical toy: mu ~ N(0, 1), z_i ~ N(mu, S_Z^2), x_i = z_i + N(0, S_X^2)."""
    mu = rng.standard_normal(n)
    z = mu[:, None] + S_Z * rng.standard_normal((n, n_objects))
    return mu, z, z + S_X * rng.standard_normal((n, n_objects))


def _exact(x):
    """Exact posterior means and standard deviations of z_i (mu marginalized) and of mu.

    x_i | mu ~ N(mu, S_Z^2 + S_X^2) gives mu | x ~ N(m, v); z_i | x, mu is the
    conjugate normal N(a mu + b x_i, v_c), so z_i | x ~ N(a m + b x_i, v_c + a^2 v).
    """
    vx = S_Z**2 + S_X**2
    v_mu = 1 / (1 + x.shape[1] / vx)
    m_mu = x.sum(axis=1) / vx * v_mu
    pz, px = 1 / S_Z**2, 1 / S_X**2
    a, b, v_c = pz / (pz + px), px / (pz + px), 1 / (pz + px)
    return a * m_mu[:, None] + b * x, np.sqrt(v_c + a * a * v_mu), m_mu, np.sqrt(v_mu)


def _prior(n_objects=N_OBJECTS):
    return Prior.with_objects({"mu": stats.norm(0, 1)}, {"z": stats.norm(0, 1)}, n_objects)


def _theta(prior, mu, z):
    return pd.DataFrame(np.column_stack([mu, z]), columns=prior.names)


@pytest.fixture(scope="module")
def fitted():
    prior = _prior()
    mu, z, x = _simulate(2000, np.random.default_rng(0))
    est = TMNREEstimator(prior=prior, max_epochs=12, random_state=0, embedding_dim=16,
                         embedding__hidden=64)
    return est.fit(x[:, :, None], _theta(prior, mu, z))


# ------------------------------------------------------------------ prior blocks
def test_prior_with_objects_names_blocks_and_serialization():
    prior = Prior.with_objects({"mu": stats.norm(0, 1)},
                               {"z": stats.uniform(0, 2), "m": stats.norm(1, 2)}, 3)
    assert prior.names == ["mu", "z[0]", "z[1]", "z[2]", "m[0]", "m[1]", "m[2]"]
    assert prior.object_blocks == {"z": 3, "m": 3}
    assert prior.object_names("m") == ["m[0]", "m[1]", "m[2]"]
    again = Prior.from_dict(prior.to_dict())
    assert again == prior and again.object_blocks == prior.object_blocks
    truncated = prior.truncate({"z[1]": (0.5, 1.0)})
    assert truncated.object_blocks == prior.object_blocks
    assert Prior.from_dict(truncated.to_dict()) == truncated
    assert truncated != prior
    # A block survives a marginal only whole; the untruncated prior keeps it.
    assert prior.marginal(["mu", "z[0]", "z[1]", "z[2]"]).object_blocks == {"z": 3}
    assert prior.marginal(["mu", "z[0]"]).object_blocks == {}
    assert truncated.untruncated().object_blocks == prior.object_blocks
    # Priors without blocks serialize as before (no new key), and differ from one with blocks.
    plain = Prior(prior.distributions)
    assert "object_blocks" not in plain.to_dict() and plain != prior


def test_prior_with_objects_refuses_bad_input():
    with pytest.raises(ValueError, match="positive integer"):
        _prior(0)
    with pytest.raises(ValueError, match="both global and per-object"):
        Prior.with_objects({"z": stats.norm()}, {"z": stats.norm()}, 2)
    with pytest.raises(ValueError, match="lacks the parameters"):
        Prior({"z[0]": stats.norm()}, object_blocks={"z": 2})
    with pytest.raises(ValueError, match="not an object block"):
        _prior(2).object_names("mu")


def test_prior_blocks_sample_fast_and_correctly():
    prior = Prior.with_objects({"mu": stats.norm(0, 1)}, {"z": stats.uniform(0, 1)}, 10_000)
    start = time.perf_counter()
    theta = prior.sample(200, random_state=0)
    elapsed = time.perf_counter() - start
    assert theta.shape == (200, 10_001)
    assert elapsed < 2.0  # one vectorized inverse-CDF call per family, not 10^4 calls
    z = theta.iloc[:, 1:].to_numpy()
    # 2 x 10^6 uniform draws: mean 0.5 within 5 standard errors (0.29 / sqrt(2e6)).
    assert abs(z.mean() - 0.5) < 5 * 0.2887 / np.sqrt(z.size)
    assert z.min() >= 0 and z.max() <= 1
    # Columns are independent draws, not copies of each other.
    assert not np.allclose(z[:, 0], z[:, 1])
    start = time.perf_counter()
    assert Prior.from_dict(prior.to_dict()) == prior
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------- the network
def test_derangements_have_no_fixed_point_and_differ():
    gen = torch.Generator().manual_seed(0)
    perms = derangements(7, 500, gen)
    assert perms.shape == (500, 7)
    assert torch.all(perms != torch.arange(7))
    assert torch.all(torch.sort(perms, dim=1).values == torch.arange(7))
    assert len({tuple(p.tolist()) for p in perms}) > 100


def test_batches_draw_negatives_per_object_column():
    data = PairData(torch.zeros(64, 3), torch.zeros(64, 4))
    batch, _ = next(iter(_Batches(data, 16, shuffle=True, seed=0, n_negatives=2,
                                  n_object_columns=3)))
    perm = batch["object_perm"]
    assert perm.shape == (16, 2, 3)
    assert torch.all(perm != torch.arange(16)[:, None, None])
    # Each (negative, column) is its own derangement: columns are not copies of each other.
    assert not torch.equal(perm[:, 0, 0], perm[:, 0, 1])
    assert not torch.equal(perm[:, 0, 0], batch["perm"][:, 0])
    # Without object columns, the batches are those of before (no extra draws).
    plain, _ = next(iter(_Batches(data, 16, shuffle=True, seed=0, n_negatives=2)))
    assert "object_perm" not in plain
    assert torch.equal(plain["perm"], batch["perm"])


def test_shared_head_shapes():
    head = SharedObjectHead(3, 8, hidden_features=16, fourier_features=2)
    part = head.embed_part(torch.zeros(4, 8), torch.zeros(4, 5, 3))
    assert part.shape == (4, 5, 16)
    assert head(torch.zeros(4, 7, 5, 1), part).shape == (4, 7, 5)


def _head_weights(est):
    net = est.net_.module_
    return sum(p.numel() for mod in (net.heads, net.object_heads) for p in mod.parameters())


def test_weight_count_does_not_grow_with_objects():
    counts, totals = [], []
    for n_objects in (10, 1000):
        prior = _prior(n_objects)
        mu, z, x = _simulate(64, np.random.default_rng(0), n_objects)
        est = TMNREEstimator(prior=prior, embedding="deepset", embedding_dim=8,
                             embedding__hidden=16, hidden_features=16, max_epochs=1,
                             batch_size=32, random_state=0)
        est.fit(x[:, :, None], _theta(prior, mu, z))
        assert len(est.marginals_) == n_objects + 1
        assert est.log_ratio_columns_[:3] == ["mu", "z[0]", "z[1]"]
        counts.append(_head_weights(est))
        totals.append(sum(p.numel() for p in est.net_.module_.parameters()))
    assert counts[0] == counts[1]
    assert totals[0] == totals[1]  # a set embedding: nothing grows with N


def test_object_data_and_marginals_are_checked():
    prior = _prior(4)
    mu, z, x = _simulate(50, np.random.default_rng(0), 4)
    theta = _theta(prior, mu, z)
    with pytest.raises(ValueError, match=r"shape \(n, 4, k\)"):
        TMNREEstimator(prior=prior, max_epochs=1).fit(x[:, :3], theta)
    with pytest.raises(ValueError, match="1-d marginals only"):
        TMNREEstimator(prior=prior, marginals=[("mu", "z[0]")], max_epochs=1).fit(x, theta)
    est = TMNREEstimator(prior=prior, marginals=[("mu",), ("z[*]",)], max_epochs=1,
                         random_state=0).fit(x, theta)
    assert est.marginals_ == [("mu",), ("z[0]",), ("z[1]",), ("z[2]",), ("z[3]",)]
    assert est.net_.module_.object_heads is not None
    two_d = Prior.with_objects({"a": stats.norm(), "b": stats.norm()}, {"z": stats.norm()}, 4)
    th2 = pd.DataFrame(np.column_stack([mu, -mu, z]), columns=two_d.names)
    est = TMNREEstimator(prior=two_d, marginals="1d+2d", max_epochs=1, random_state=0)
    est.fit(x, th2)
    assert est.marginals_[-1] == ("a", "b") and len(est.marginals_) == 7
    assert est.posterior(x[0]).density(("a", "b"))[1].shape == (est.n_grid_2d, est.n_grid_2d)


# ------------------------------------------------------------- the conjugate toy
def test_object_posteriors_match_exact_ones(fitted):
    mu, z, x = _simulate(100, np.random.default_rng(100))
    m_z, s_z, m_mu, s_mu = _exact(x)
    pred = fitted.predict(x[:, :, None])
    assert pred.shape == (100, N_OBJECTS + 1)
    # rms error of the per-object posterior means in units of the exact posterior std
    # (0.08 to 0.16 over seeds 0-2 of this setting, 0.28 to 0.31 for mu; the issue's
    # target is 1.2).
    ratio = np.sqrt(np.mean((pred[:, 1:] - m_z) ** 2)) / s_z
    assert ratio < 0.4
    assert np.sqrt(np.mean((pred[:, 0] - m_mu) ** 2)) / s_mu < 0.7
    # Posterior widths: the exact per-object std within 15 %.
    post = fitted.posterior(x[:5, :, None])
    widths = np.concatenate([p.objects("z")["std"].to_numpy() for p in post])
    assert np.all(np.abs(widths / s_z - 1) < 0.15)


def test_object_coverage_is_nominal(fitted):
    mu, z, x = _simulate(100, np.random.default_rng(101))
    iv = fitted.predict_interval(x[:, :, None], coverage=0.68)
    lo = iv.xs("lower", axis=1, level=1)[[f"z[{i}]" for i in range(N_OBJECTS)]].to_numpy()
    hi = iv.xs("upper", axis=1, level=1)[[f"z[{i}]" for i in range(N_OBJECTS)]].to_numpy()
    covered = (z >= lo) & (z <= hi)
    # 2,000 object-level checks: binomial sd sqrt(0.68 * 0.32 / 2000) = 0.0104; objects of one
    # observation share mu, so allow four binomial standard deviations.
    assert abs(covered.mean() - 0.68) < 4 * 0.0104


def test_objects_frame_is_tidy_and_agrees_with_summary(fitted):
    _, _, x = _simulate(1, np.random.default_rng(5))
    post = fitted.posterior(x[0, :, None])
    frame = post.objects("z")
    assert list(frame.columns) == ["parameter", "object", "mean", "std", "median", "lower_68",
                                   "upper_68", "lower_95", "upper_95"]
    assert frame.shape == (N_OBJECTS, 9)
    assert frame["object"].tolist() == list(range(N_OBJECTS))
    summary = post.summary().loc[[f"z[{i}]" for i in range(N_OBJECTS)]]
    for col in ("mean", "std", "median", "lower_68", "upper_68", "lower_95", "upper_95"):
        np.testing.assert_allclose(frame[col].to_numpy(), summary[col].to_numpy(), rtol=1e-9,
                                   atol=1e-9)
    assert post.objects().equals(frame)
    with pytest.raises(ValueError, match="not an object block"):
        post.objects("mu")


def test_truncation_keeps_the_object_blocks(fitted):
    _, _, x = _simulate(1, np.random.default_rng(7))
    trunc = Truncator(fitted.prior_).fit(x[0, :, None], estimator=fitted)
    assert trunc.prior_.object_blocks == {"z": N_OBJECTS}
    bounds = trunc.bounds_.loc[[f"z[{i}]" for i in range(N_OBJECTS)]]
    # Each object's box is about its own posterior (std ~0.26), far narrower than the prior.
    assert np.all(np.isfinite(bounds.to_numpy()))
    assert np.all((bounds["high"] - bounds["low"]).to_numpy() < 4.0)


def test_object_model_save_load_round_trip(fitted, tmp_path):
    _, _, x = _simulate(3, np.random.default_rng(6))
    loaded = TMNREEstimator.load(fitted.save(tmp_path / "model"))
    assert loaded.prior_.object_blocks == {"z": N_OBJECTS}
    np.testing.assert_array_equal(loaded.predict(x[:, :, None]), fitted.predict(x[:, :, None]))
    theta = fitted.prior_.sample(3, random_state=0)
    pd.testing.assert_frame_equal(loaded.log_ratio(x[:, :, None], theta),
                                  fitted.log_ratio(x[:, :, None], theta))


def test_object_ensemble_trains_and_evaluates():
    prior = _prior(5)
    mu, z, x = _simulate(200, np.random.default_rng(0), 5)
    est = TMNREEstimator(prior=prior, n_ensemble=2, fourier_features=2, max_epochs=2,
                         random_state=0).fit(x, _theta(prior, mu, z))
    assert est.predict(x[:3]).shape == (3, 6)
    assert np.isfinite(est.log_ratio(x[:3], _theta(prior, mu[:3], z[:3])).to_numpy()).all()


# ------------------------------------------------------ models without objects
def test_models_without_objects_are_unchanged():
    """Log ratios recorded before object heads existed (same code path, same numbers)."""
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1)})
    theta = prior.sample(300, random_state=0)
    X = (theta.to_numpy() @ np.array([[1.0, 0.5, 0.2], [0.3, -1.0, 0.4]])
         + 0.2 * np.random.default_rng(1).standard_normal((300, 3)))
    est = TMNREEstimator(prior=prior, marginals="1d+2d", max_epochs=3, random_state=0,
                         fourier_features=2, n_negatives=2).fit(X, theta)
    recorded = [[-0.016835, -0.00432, 0.113514], [-0.018374, -0.006755, -0.062878],
                [0.039165, -0.036783, 0.001099], [0.059986, 0.020872, 0.171813]]
    np.testing.assert_allclose(est.log_ratio(X[:4], theta[:4]).to_numpy(), recorded,
                               atol=2e-6)
    np.testing.assert_allclose(est.predict(X[:2]), [[0.063586, 0.075902],
                                                    [0.040339, 0.018513]], atol=2e-6)
    assert not hasattr(est.net_.module_, "object_heads")
