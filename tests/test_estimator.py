import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_tmnre import MarginalPosterior, Prior, TMNREEstimator

NOISE = 0.2
TINY = dict(max_epochs=4, hidden_features=16, embedding_dim=8, num_blocks=1, n_negatives=1,
            n_grid_1d=64, n_grid_2d=32, random_state=0)


@pytest.fixture(scope="module")
def problem():
    """x = theta + N(0, NOISE^2) with a uniform prior on [-1, 1]^2."""
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
    theta = prior.sample(3000, random_state=0)
    X = theta.to_numpy() + NOISE * np.random.default_rng(1).standard_normal((3000, 2))
    return prior, X, theta


@pytest.fixture(scope="module")
def trained(problem):
    prior, X, theta = problem
    est = TMNREEstimator(prior=prior, marginals="1d+2d", max_epochs=40, patience=8,
                         hidden_features=64, num_blocks=2, n_negatives=2, random_state=0)
    return est.fit(X[:2500], theta[:2500])


def test_learns_the_gaussian_posterior(problem, trained):
    prior, X, theta = problem
    X_test, theta_test = X[2500:2700], theta[2500:2700].to_numpy()
    # Posterior of a (far from the edges): N(x, NOISE^2) truncated to [-1, 1].
    inner = np.all(np.abs(X_test) < 0.5, axis=1)
    pred = trained.predict(X_test)
    assert pred.shape == (200, 2) and pred.dtype == np.float64
    np.testing.assert_allclose(pred[inner], X_test[inner], atol=0.08)
    post = trained.posterior(X_test[np.flatnonzero(inner)[0]])
    assert post.summary()["std"].between(0.7 * NOISE, 1.3 * NOISE).all()
    # error of the posterior mean is close to the noise-limited optimum
    rmse = np.sqrt(np.mean((pred - theta_test) ** 2))
    assert rmse < 1.25 * NOISE
    # 90 % intervals cover the truth about 90 % of the time (200 pairs x 2 parameters)
    iv = trained.predict_interval(X_test, coverage=0.9)
    inside = np.column_stack([(iv[(n, "lower")] <= theta_test[:, j])
                              & (theta_test[:, j] <= iv[(n, "upper")])
                              for j, n in enumerate(["a", "b"])])
    assert 0.82 < inside.mean() < 0.97


def test_score_prefers_a_trained_model(problem, trained):
    prior, X, theta = problem
    untrained = TMNREEstimator(prior=prior, marginals="1d+2d", max_epochs=1, lr=1e-6,
                               hidden_features=16, random_state=0).fit(X[:100], theta[:100])
    good = trained.score(X[2500:], theta[2500:])
    bad = untrained.score(X[2500:], theta[2500:])
    assert np.isfinite(good) and good > bad + 0.5
    # a Gaussian with sd NOISE has mean log density -log(NOISE sqrt(2 pi e)) ~ 0.19
    assert good > -np.log(NOISE * np.sqrt(2 * np.pi * np.e)) - 0.3


def test_score_is_the_log_density_of_the_posterior_readers_see(problem, trained):
    """score's normalizer comes from the same zoomed grids as posterior()."""
    prior, X, theta = problem
    rows = slice(2500, 2520)
    expected = np.mean([[np.log(trained.posterior(x).pdf((name,), [t[j]])[0])
                         for j, name in enumerate(["a", "b"])]
                        for x, t in zip(X[rows], theta[rows].to_numpy())])
    # pdf reads the density of the cell holding theta*, score the exact ratio there.
    assert trained.score(X[rows], theta[rows]) == pytest.approx(expected, abs=0.02)


def test_log_ratio_and_posterior_api(problem, trained):
    prior, X, theta = problem
    lr = trained.log_ratio(X[:5], theta[:5])
    assert list(lr.columns) == ["a", "b", "a|b"] and lr.shape == (5, 3)
    # shuffled columns in theta are matched by name
    pd.testing.assert_frame_equal(lr, trained.log_ratio(X[:5], theta[:5][["b", "a"]]))
    post = trained.posterior(X[0])
    assert isinstance(post, MarginalPosterior)
    assert isinstance(trained.posterior(X[:1]), MarginalPosterior)
    many = trained.posterior(X[:3])
    assert isinstance(many, list) and len(many) == 3
    (ga, gb), dens = post.density(("a", "b"))
    assert dens.shape == (len(ga), len(gb))
    np.testing.assert_allclose(dens.sum() * (ga[1] - ga[0]) * (gb[1] - gb[0]), 1.0)
    draws = post.sample(2000, marginal=("a", "b"), random_state=0)
    assert list(draws.columns) == ["a", "b"]
    # the 2-d draws follow the 2-d grid (a different head than the 1-d marginals)
    (ga2, gb2), d2 = post.density(("a", "b"))
    np.testing.assert_allclose(draws["a"].mean(), (d2.sum(1) * ga2).sum() / d2.sum(), atol=0.02)
    s = post.sample(500, random_state=0)
    assert list(s.columns) == ["a", "b"]
    assert trained.predict_interval(X[:2], kind="hpd").shape == (2, 4)


def test_every_reader_sees_the_posterior_of_posterior(problem, trained):
    """predict, predict_interval and credibility read the grids of posterior()."""
    from sklearn_tmnre.metrics import credibility

    _, X, theta = problem
    rows = X[2500:2504]
    means = trained.predict(rows)
    central = trained.predict_interval(rows, coverage=0.8)
    hpd = trained.predict_interval(rows, coverage=0.8, kind="hpd")
    cred = credibility(trained, rows, theta[2500:2504])
    for i, post in enumerate(trained.posterior(rows)):
        np.testing.assert_allclose(means[i], post.mean()[["a", "b"]], rtol=1e-9, atol=1e-12)
        for name in ("a", "b"):
            np.testing.assert_allclose(
                [central[(name, "lower")][i], central[(name, "upper")][i]],
                post.interval(0.8).loc[name], rtol=1e-9)
            np.testing.assert_allclose(
                [hpd[(name, "lower")][i], hpd[(name, "upper")][i]],
                post.hpd(0.8).loc[name, ["lower", "upper"]].astype(float), rtol=1e-9)
        for m, label in ((("a",), "a"), (("a", "b"), "a|b")):
            truth = theta.iloc[2500 + i][list(m)].to_numpy()
            np.testing.assert_allclose(cred[label][i], post.credibility(m, truth)[0],
                                       rtol=1e-9, atol=1e-12)
    # credibility checks X as the estimator does: no broadcasting, no NaN.
    with pytest.raises(ValueError, match="features|shape"):
        credibility(trained, np.zeros((4, 1)), theta[:4])
    with pytest.raises(ValueError, match="NaN|finite|infinity"):
        credibility(trained, np.full((4, 2), np.nan), theta[:4])


def test_parameters_without_a_marginal_are_marginalized():
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2),
                   "nuisance": stats.uniform(-1, 2)})
    theta = prior.sample(400, random_state=0)
    X = theta.to_numpy() + NOISE * np.random.default_rng(0).standard_normal((400, 3))
    for marginals in ([("a",), ("b",)], [("a",), ("a", "b"), ("a", "b", "nuisance")]):
        est = TMNREEstimator(prior=prior, marginals=marginals, max_epochs=2,
                             random_state=0).fit(X, theta)
        post = est.posterior(X[0])
        assert list(post.summary().index) == ["a", "b"]
        assert list(post.sample(5, random_state=0).columns) == ["a", "b"]
        if ("a", "b", "nuisance") in marginals:  # drawn by reweighting prior draws
            draws = post.sample(5, marginal=("a", "b", "nuisance"), random_state=0)
            assert list(draws.columns) == ["a", "b", "nuisance"] and len(draws) == 5
        with pytest.warns(UserWarning, match=r"\['nuisance'\] have no 1-d or 2-d marginal"):
            assert est.predict(X[:3]).shape == (3, 2)
        with pytest.warns(UserWarning, match="nuisance"):
            interval = est.predict_interval(X[:3])
        assert list(interval.columns.get_level_values(0).unique()) == ["a", "b"]


def test_a_misspelled_argument_survives_clone_and_fit_reports_it(problem):
    _, X, theta = problem
    est = TMNREEstimator(hiden_features=8)
    for candidate in (est, clone(est), clone(clone(est))):
        assert candidate.get_params()["hiden_features"] == 8
        with pytest.raises(TypeError, match=r"unexpected arguments \['hiden_features'\]"):
            candidate.fit(X[:50], theta[:50])
    routed = clone(TMNREEstimator(embedding="mlp", embedding__hidden=(8,)))
    assert routed.get_params()["embedding__hidden"] == (8,)


def test_ndarray_and_1d_targets(problem):
    _, X, theta = problem
    est = TMNREEstimator(**TINY).fit(X[:300], theta.to_numpy()[:300])
    assert est.names_ == ["theta_0", "theta_1"]
    one = TMNREEstimator(**TINY).fit(X[:300, :1], theta.to_numpy()[:300, 0])
    assert one.predict(X[:4, :1]).shape == (4,)


def test_prior_none_uses_training_parameters(problem):
    _, X, theta = problem
    est = TMNREEstimator(**TINY).fit(X[:300], theta[:300])
    assert est.names_ == ["a", "b"]
    sup = est.prior_.support
    assert (sup["low"] >= -1).all() and (sup["high"] <= 1).all()
    assert np.isfinite(est.score(X[300:400], theta[300:400]))


def test_marginal_specs(problem):
    prior, X, theta = problem
    est = TMNREEstimator(prior=prior, marginals=[("b", "a"), "a"], **TINY).fit(X[:300], theta[:300])
    assert est.marginals_ == [("b", "a"), ("a",)]
    assert list(est.log_ratio(X[:2], theta[:2]).columns) == ["b|a", "a"]
    # b has no 1-d head: its 1-d posterior comes from the 2-d marginal
    assert est.predict(X[:3]).shape == (3, 2)
    only2d = TMNREEstimator(prior=prior, marginals="2d", **TINY).fit(X[:300], theta[:300])
    assert only2d.marginals_ == [("a", "b")]
    assert np.isfinite(only2d.score(X[:50], theta[:50]))


def test_reproducible_and_picklable(problem, tmp_path):
    prior, X, theta = problem
    a = TMNREEstimator(prior=prior, **TINY).fit(X[:300], theta[:300])
    b = TMNREEstimator(prior=prior, **TINY).fit(X[:300], theta[:300])
    np.testing.assert_array_equal(a.predict(X[:20]), b.predict(X[:20]))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict(X[:20]), c.predict(X[:20]))
    joblib.dump(a, tmp_path / "est.joblib")
    d = joblib.load(tmp_path / "est.joblib")
    np.testing.assert_array_equal(a.predict(X[:20]), d.predict(X[:20]))
    e = TMNREEstimator(prior=prior, **{**TINY, "random_state": 1}).fit(X[:300], theta[:300])
    assert not np.array_equal(a.predict(X[:20]), e.predict(X[:20]))


def test_sklearn_tools(problem):
    prior, X, theta = problem
    pipe = make_pipeline(StandardScaler(), TMNREEstimator(prior=prior, **TINY))
    pipe.fit(X[:300], theta[:300])
    assert pipe.predict(X[:5]).shape == (5, 2)
    scores = cross_val_score(TMNREEstimator(prior=prior, **TINY), X[:300], theta[:300], cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    est = clone(TMNREEstimator(prior=prior, embedding__hidden=16, **TINY))
    assert est.get_params()["embedding__hidden"] == 16
    grid = GridSearchCV(TMNREEstimator(prior=prior, **TINY),
                        {"embedding__hidden": [8, 16], "balance": [0.0, 10.0]}, cv=2, n_jobs=2)
    grid.fit(X[:300], theta[:300])
    assert set(grid.best_params_) == {"embedding__hidden", "balance"}
    assert grid.best_estimator_.embedding__hidden in (8, 16)


class _Emb(nn.Module):
    def __init__(self, input_shape, out_features, width=8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width),
                                 nn.ReLU(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("embedding, shape, params", [
    ("identity", (2,), {}),
    ("linear", (2,), {}),
    ("cnn1d", (16,), {"embedding__channels": (4,)}),
    ("cnn2d", (8, 8), {"embedding__channels": 4}),
    (_Emb, (2,), {"embedding__width": 4}),
])
def test_embeddings_fit(embedding, shape, params):
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(200, 2))
    X = theta[:, :1, None] * np.ones((200, int(np.prod(shape))))[:, None, :] if False else None
    X = (np.repeat(theta.sum(1, keepdims=True), int(np.prod(shape)), axis=1)
         + 0.1 * rng.standard_normal((200, int(np.prod(shape))))).reshape(200, *shape)
    est = TMNREEstimator(embedding=embedding, **params, **TINY).fit(X, theta)
    assert est.event_shape_ == shape
    assert est.predict(X[:3]).shape == (3, 2)


def test_balance_makes_classifier_balanced(problem):
    prior, X, theta = problem

    def gap(est):
        lr = est.log_ratio(X[2500:], theta[2500:]).to_numpy()
        perm = np.random.default_rng(0).permutation(500)
        lm = est.log_ratio(X[2500:], theta[2500:].to_numpy()[perm]).to_numpy()
        sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
        return np.abs(sig(lr).mean(0) + sig(lm).mean(0) - 1).mean()

    kw = dict(prior=prior, max_epochs=15, hidden_features=16, embedding_dim=8, n_negatives=1,
              random_state=0)
    plain = TMNREEstimator(**kw).fit(X[:2000], theta[:2000])
    balanced = TMNREEstimator(balance=100.0, **kw).fit(X[:2000], theta[:2000])
    assert gap(balanced) < gap(plain)


def test_ensemble_averages_independently_trained_members(problem):
    prior, X, theta = problem
    params = {**TINY, "max_epochs": 3}
    ens = TMNREEstimator(prior=prior, marginals="1d+2d", n_ensemble=3, **params)
    ens.fit(X[:400], theta[:400])
    again = clone(ens).fit(X[:400], theta[:400])
    np.testing.assert_array_equal(ens.predict(X[:10]), again.predict(X[:10]))
    members = ens.net_.module_.members
    assert len(members) == 3
    # Each member trained on its own loss from its own start: they disagree.
    x = torch.as_tensor(X[:50], dtype=torch.float32)
    t = torch.as_tensor(theta.to_numpy()[:50].copy(), dtype=torch.float32)
    with torch.no_grad():
        each = np.stack([m(x, t).numpy() for m in members])
    assert np.abs(each[0] - each[1]).max() > 1e-3
    np.testing.assert_allclose(ens.log_ratio(X[:50], theta[:50]).to_numpy(), each.mean(0),
                               rtol=1e-5, atol=1e-5)
    # The training loss reported is the members' mean, on the scale of one network.
    single = TMNREEstimator(prior=prior, marginals="1d+2d", **params).fit(X[:400], theta[:400])
    first = ens.net_.history[0, "train_loss"]
    assert abs(first - single.net_.history[0, "train_loss"]) < 0.25 * first
    post = ens.posterior(X[0])
    assert set(post.mass) == {("a",), ("b",), ("a", "b")}


def test_errors(problem, trained):
    prior, X, theta = problem
    est = TMNREEstimator(prior=prior, **TINY)
    with pytest.raises(NotFittedError):
        est.predict(X[:2])
    bad = X[:100].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad, theta[:100])
    bad_theta = theta[:100].copy()
    bad_theta.iloc[2, 0] = np.inf
    with pytest.raises(ValueError, match="infinite|outside"):
        est.fit(X[:100], bad_theta)
    with pytest.raises(ValueError, match="different numbers of rows|inconsistent"):
        est.fit(X[:100], theta[:90])
    with pytest.raises(ValueError, match="unknown parameters"):
        TMNREEstimator(prior=prior, marginals=[("a", "z")], **TINY).fit(X[:100], theta[:100])
    with pytest.raises(ValueError, match="not in the prior"):
        est.fit(X[:100], theta[:100].rename(columns={"a": "c"}))
    with pytest.raises(ValueError, match="outside the prior"):
        est.fit(X[:100], theta[:100] * 3)
    with pytest.raises(ValueError, match="features|event shape"):
        trained.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="embedding"):
        TMNREEstimator(embedding="resnet", **TINY).fit(X[:100], theta[:100])
    with pytest.raises(TypeError, match="embedding__"):
        TMNREEstimator(hidden=3).fit(X[:100], theta[:100])
    with pytest.raises(ValueError, match="batch_size"):
        TMNREEstimator(batch_size=1).fit(X[:100], theta[:100])
    with pytest.raises(ValueError, match=r"'n_ensemble' parameter .* \[1, inf\)"):
        TMNREEstimator(n_ensemble=0).fit(X[:100], theta[:100])
    with pytest.raises(ValueError, match="at least 2 samples"):
        est.fit(X[:1], theta[:1])


def test_read_only_and_memory_mapped_inputs_fit_without_warnings(problem, tmp_path):
    import warnings

    prior, X, theta = problem
    path = tmp_path / "X.npy"
    np.save(path, X[:300].astype(np.float32))
    X_mmap = np.load(path, mmap_mode="r")  # read-only float32: torch would share memory
    assert not X_mmap.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        est = TMNREEstimator(prior=prior, **{**TINY, "max_epochs": 1}).fit(X_mmap, theta[:300])
    ref = TMNREEstimator(prior=prior, **{**TINY, "max_epochs": 1}).fit(np.array(X_mmap),
                                                                       theta[:300])
    np.testing.assert_array_equal(est.predict(X_mmap[:5]), ref.predict(X[:5].astype(np.float32)))


def test_auto_epochs_follow_the_data_size():
    from sklearn_tmnre._build import resolve_max_epochs

    # About 3,000 steps at 10^4 training pairs, growing as the square root of their number.
    assert resolve_max_epochs("auto", 9_000, 256) == 79
    assert resolve_max_epochs("auto", 900, 256) == 225
    assert resolve_max_epochs("auto", 90_000, 256) == 26
    assert resolve_max_epochs("auto", 10**7, 256) == 10  # never below 10 ...
    assert resolve_max_epochs("auto", 200, 256) == 300  # ... nor above 300
    assert resolve_max_epochs(7, 9_000, 256) == 7


def test_auto_head_width_follows_the_marginals():
    from sklearn_tmnre._build import resolve_hidden_features

    widths = [resolve_hidden_features("auto", m) for m in (1, 3, 6, 15, 55, 10_000)]
    assert widths == [64, 64, 48, 32, 16, 16]
    assert resolve_hidden_features(100, 55) == 100
    prior = Prior({f"t{i}": stats.uniform(0, 1) for i in range(10)})
    theta = prior.sample(64, random_state=0)
    est = TMNREEstimator(prior=prior, marginals="1d+2d", max_epochs=1, embedding_dim=4,
                         random_state=0).fit(theta.to_numpy(), theta)
    assert est.net_.module_.activation_width == 16  # 55 marginals


def test_cosine_schedule_warms_up_then_anneals(problem):
    prior, X, theta = problem
    est = TMNREEstimator(prior=prior, max_epochs=40, patience=40, hidden_features=8,
                         embedding_dim=4, lr=1e-2, random_state=0).fit(X[:600], theta[:600])
    lrs = [b["event_lr"] for epoch in est.net_.history for b in epoch["batches"]
           if "event_lr" in b]
    assert len(lrs) == 40 * 3  # stepped every batch (540 training pairs, batches of 256)
    assert lrs[0] < 2e-3  # warming up from lr / 10
    assert max(lrs) == pytest.approx(1e-2, rel=0.05)
    assert lrs[-1] < 2e-4  # annealed towards lr / 1000
    plateau = TMNREEstimator(prior=prior, max_epochs=3, hidden_features=8, embedding_dim=4,
                             lr_schedule="plateau", random_state=0).fit(X[:600], theta[:600])
    assert len(plateau.net_.history) == 3


def test_verbose_one_prints_progress_lines(problem, capsys):
    prior, X, theta = problem
    TMNREEstimator(prior=prior, max_epochs=2, hidden_features=8, embedding_dim=4, verbose=1,
                   random_state=0).fit(X[:300], theta[:300])
    out = capsys.readouterr().out
    assert "trained: epoch 2/2" in out and "valid loss" in out
    assert "dur" not in out  # not skorch's per-epoch table (verbose=2)


def test_numpy_integer_hyperparameters_train(problem):
    # GridSearchCV grids built with numpy (np.arange) hand over numpy integers.
    prior, X, theta = problem
    est = TMNREEstimator(prior=prior, **{**TINY, "batch_size": np.int64(64),
                                         "n_negatives": np.int64(1),
                                         "max_epochs": np.int64(2)})
    assert len(est.fit(X[:300], theta[:300]).net_.history) == 2
