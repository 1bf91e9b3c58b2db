"""Tests of model persistence: pickle-free model directories, pickle and joblib round trips."""

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

import sklearn_tmnre
from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.persistence import (
    FORMAT_VERSION,
    load_estimator,
    prior_from_json,
    prior_to_json,
    save_estimator,
)
from sklearn_tmnre.rounds import TMNRE
from sklearn_tmnre.truncation import Truncator

PRIOR = Prior({"a": stats.uniform(-2, 4), "b": stats.norm(0, 1)})
DATA = os.path.join(os.path.dirname(__file__), "data")
NOISE = 0.3


def shift(theta, rng):
    """x = theta + NOISE * standard normal."""
    return theta + NOISE * rng.standard_normal(theta.shape)


class TwoLayerEmbedding(nn.Module):
    """A custom embedding class (importable as test_persistence:TwoLayerEmbedding)."""

    def __init__(self, input_shape, out_features, width=6):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width),
                                 nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.net(x)


def _small(**kwargs):
    params = dict(hidden_features=8, embedding_dim=4, max_epochs=4, batch_size=64, lr=1e-2,
                  random_state=0)
    params.update(kwargs)
    return TMNREEstimator(**params)


def _data(n=300, seed=0):
    theta = PRIOR.sample(n, random_state=seed)
    return shift(theta.to_numpy(), np.random.default_rng(seed)), theta


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def fitted(data):
    X, theta = data
    return _small(prior=PRIOR, marginals="1d+2d", embedding__hidden=7,
                  embedding__layers=1).fit(X, theta)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    return save_estimator(fitted, tmp_path_factory.mktemp("model") / "model")


def _assert_same_outputs(a, b, X, theta):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    pd.testing.assert_frame_equal(a.log_ratio(X, theta), b.log_ratio(X, theta))
    pd.testing.assert_frame_equal(a.predict_interval(X, coverage=0.8),
                                  b.predict_interval(X, coverage=0.8))
    assert a.score(X, theta) == b.score(X, theta)
    pa, pb = a.posterior(X[0]), b.posterior(X[0])
    assert list(pa.mass) == list(pb.mass)
    for m in pa.mass:
        np.testing.assert_array_equal(pa.mass[m], pb.mass[m])
    pd.testing.assert_frame_equal(pa.summary(), pb.summary())


# ------------------------------------------------------------- model directories
def test_saved_model_gives_identical_outputs(fitted, saved, data):
    X, theta = data
    loaded = load_estimator(saved)
    assert type(loaded) is TMNREEstimator
    _assert_same_outputs(fitted, loaded, X[:40], theta.iloc[:40])
    assert loaded.get_params() == fitted.get_params()


def test_saved_ensemble_gives_identical_outputs(data, tmp_path):
    X, theta = data
    fitted = _small(prior=PRIOR, marginals="1d+2d", n_ensemble=3, max_epochs=2).fit(X, theta)
    loaded = load_estimator(save_estimator(fitted, tmp_path / "ensemble"))
    assert loaded.net_.module_.n_members == 3
    _assert_same_outputs(fitted, loaded, X[:40], theta.iloc[:40])
    assert loaded.prior_ == fitted.prior_ and loaded.prior is loaded.prior_
    for attr in ("names_", "marginals_", "log_ratio_columns_", "event_shape_",
                 "n_features_in_", "_y_1d"):
        assert getattr(loaded, attr) == getattr(fitted, attr), attr
    assert loaded.net_.device == "cpu" and not loaded.net_.module_.training


def test_estimator_save_and_load_methods(fitted, data, tmp_path):
    X, _ = data
    assert fitted.save(tmp_path / "m") == tmp_path / "m"
    loaded = TMNREEstimator.load(tmp_path / "m", device="cpu")
    np.testing.assert_array_equal(loaded.predict(X[:20]), fitted.predict(X[:20]))
    with pytest.raises((FileExistsError, ValueError), match="overwrite"):
        fitted.save(tmp_path / "m")
    fitted.save(tmp_path / "m", overwrite=True)
    np.testing.assert_array_equal(TMNREEstimator.load(tmp_path / "m").predict(X[:20]),
                                  fitted.predict(X[:20]))


def test_saved_history_is_the_training_history(fitted, saved):
    loaded = load_estimator(saved)
    for key in ("train_loss", "valid_loss", "valid_loss_best", "epoch"):
        assert list(loaded.net_.history[:, key]) == list(fitted.net_.history[:, key])
    # The net's epoch budget is a number (the epochs trained), whatever max_epochs said.
    assert loaded.net_.max_epochs == len(fitted.net_.history)
    from sklearn_tmnre.plotting import training_curve

    fig = training_curve(loaded)
    assert len(fig.axes[0].lines) >= 2  # the training and validation curves


def test_config_holds_versions_params_prior_and_metadata(fitted, saved):
    config = json.loads((saved / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION
    assert config["torch_version"] == torch.__version__
    assert config["sklearn_tmnre_version"]
    assert config["params"]["embedding__hidden"] == 7
    assert config["params"]["hidden_features"] == 8
    assert config["embedding"] == {"name": "mlp"}
    assert [d["distribution"] for d in config["prior"]["distributions"]] == ["uniform", "norm"]
    assert config["prior"]["bounds"][1] == [-np.inf, np.inf]
    assert config["fitted"]["marginals_"] == [["a"], ["b"], ["a", "b"]]
    assert config["fitted"]["embedding_features"] == 4
    state = load_file(saved / "weights.safetensors")
    reference = fitted.net_.module_.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    history = json.loads((saved / "history.json").read_text())
    assert len(history) == len(fitted.net_.history) and "batches" not in history[0]


def test_histogram_prior_and_one_d_target_round_trip(tmp_path):
    theta = PRIOR.sample(300, random_state=1)["a"].to_numpy()
    X = shift(theta[:, None], np.random.default_rng(1))
    est = _small().fit(X, theta)
    loaded = load_estimator(save_estimator(est, tmp_path / "m"))
    assert loaded.predict(X[:5]).shape == (5,)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.prior is None and loaded.prior_ == est.prior_
    grid = np.linspace(-2.5, 2.5, 101)[:, None]
    np.testing.assert_array_equal(loaded.prior_.log_prob(grid), est.prior_.log_prob(grid))


def test_truncated_prior_and_dataframe_features_round_trip(data, tmp_path):
    X, theta = data
    box = PRIOR.truncate({"a": (-1.5, 1.9), "b": (-2.0, 2.5)})
    inside = box.contains(theta)
    frame = pd.DataFrame(X[inside], columns=["x0", "x1"])
    est = _small(prior=box, marginals=[("a",), ("b", "a")]).fit(frame, theta[inside])
    loaded = load_estimator(save_estimator(est, tmp_path / "m"))
    assert loaded.prior == box
    assert loaded.get_params() == est.get_params()  # tuples in lists stay tuples
    np.testing.assert_array_equal(loaded.feature_names_in_, ["x0", "x1"])
    np.testing.assert_array_equal(loaded.predict(frame), est.predict(frame))


def test_loaded_model_serves_a_truncator_and_survives_pickle(fitted, saved, data):
    X, _ = data
    loaded = load_estimator(saved)
    a = Truncator(epsilon=1e-3, n_samples=500).fit(X[0], estimator=fitted)
    b = Truncator(epsilon=1e-3, n_samples=500).fit(X[0], estimator=loaded)
    pd.testing.assert_frame_equal(a.bounds_, b.bounds_)
    assert a.mass_ == b.mass_
    again = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(again.predict(X[:20]), fitted.predict(X[:20]))
    # A loaded model is an ordinary estimator: clone and refit work.
    refit = clone(loaded).set_params(max_epochs=1).fit(X, data[1])
    assert refit.predict(X[:3]).shape == (3, 2)


def test_custom_embedding_class_needs_trust(data, tmp_path):
    X, theta = data
    est = _small(prior=PRIOR, embedding=TwoLayerEmbedding, embedding__width=5).fit(X, theta)
    path = save_estimator(est, tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    assert config["embedding"] == {"class": f"{__name__}:TwoLayerEmbedding"}
    with pytest.raises(ValueError, match="trust_embedding=True"):
        load_estimator(path)
    loaded = load_estimator(path, trust_embedding=True)
    assert loaded.embedding is TwoLayerEmbedding
    np.testing.assert_array_equal(loaded.predict(X[:20]), est.predict(X[:20]))


def test_untrusted_embedding_module_is_never_imported(saved, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    module_dir = tmp_path / "pkg"
    module_dir.mkdir()
    (module_dir / "evil_embedding_mod.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(module_dir))
    model = tmp_path / "model"
    _copy_model(saved, model)
    config = json.loads((model / "config.json").read_text())
    config["embedding"] = {"class": "evil_embedding_mod:Embedding"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="runs its code"):
        load_estimator(model)
    assert not marker.exists() and "evil_embedding_mod" not in sys.modules
    # The code would run if trusted: the marker proves the check above means something.
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        load_estimator(model, trust_embedding=True)
    assert marker.exists()


class _Payload:
    """Unpickling this creates a directory: proof that the file's code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.makedirs, (self.target,)


def _copy_model(src, dst):
    shutil.copytree(src, dst)


@pytest.mark.parametrize("container", ["raw pickle", "torch.save zip"])
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_weights_are_rejected_and_not_executed(tmp_path, container, version):
    target = tmp_path / "payload-ran"
    model = tmp_path / "model"
    _copy_model(os.path.join(DATA, "model_v1"), model)
    if version == 2:  # the same pickles under the name of a current model's weights
        (model / "weights.pt").rename(model / "weights.safetensors")
        _edit_config(model, lambda c: c.update(format_version=2))
    weights = model / ("weights.pt" if version == 1 else "weights.safetensors")
    if container == "raw pickle":
        weights.write_bytes(pickle.dumps({"x_mean": _Payload(str(target))}))
    else:
        torch.save({"x_mean": _Payload(str(target))}, weights)
    kind = "tensors-only torch file" if version == 1 else "safetensors file"
    with pytest.raises(ValueError, match=f"not a {kind}.*nothing in it was executed"):
        load_estimator(model)
    assert not target.exists()
    # The same bytes do run code through an unrestricted loader.
    if container == "raw pickle":
        pickle.loads(weights.read_bytes())
    else:
        with open(weights, "rb") as f:  # a file object: torch picks no loader by the name
            torch.load(f, weights_only=False)
    assert target.exists()


def _edit_config(model, edit):
    config = json.loads((model / "config.json").read_text())
    edit(config)
    (model / "config.json").write_text(json.dumps(config))


def test_weights_of_another_architecture_are_rejected(saved, data, tmp_path):
    X, theta = data
    other = save_estimator(_small(prior=PRIOR, hidden_features=6).fit(X, theta), tmp_path / "o")
    model = tmp_path / "model"
    _copy_model(saved, model)
    (model / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    with pytest.raises(ValueError, match="does not match the network"):
        load_estimator(model)


def test_newer_format_version_names_both_versions(saved, tmp_path):
    model = tmp_path / "model"
    _copy_model(saved, model)
    config = json.loads((model / "config.json").read_text())
    config["format_version"] = FORMAT_VERSION + 1
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}.*up to "
                                         f"{FORMAT_VERSION}"):
        load_estimator(model)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("fitted"), "lacks or garbles"),
    (lambda c: c.update(format="something else"), "does not describe"),
    (lambda c: c.update(format_version="1"), "invalid format_version"),
    (lambda c: c["prior"]["distributions"][0].update(distribution="os.system"),
     "not a continuous scipy.stats distribution"),
    (lambda c: c.update(embedding={"name": "transformer"}), "not one of"),
    (lambda c: c["params"].update(embedding__nonsense=1), "unexpected arguments"),
    (lambda c: c["params"].update(warp_speed=9), "does not accept"),
    (lambda c: c["params"].update(hidden_features=0), "hidden_features"),
])
def test_garbled_config_is_a_clear_error(saved, tmp_path, edit, match):
    model = tmp_path / "model"
    _copy_model(saved, model)
    config = json.loads((model / "config.json").read_text())
    edit(config)
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        load_estimator(model)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_estimator(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_estimator(tmp_path)


def test_weights_are_read_onto_the_cpu_tensors_only(saved, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_estimator(saved, device="cpu")
    assert calls == []  # safetensors: no unpickler at all
    assert all(p.device.type == "cpu" for p in loaded.net_.module_.parameters())
    # Format 1's torch files are read tensors-only (skorch's reader, and a memory map
    # for the shapes), onto the CPU.
    old = load_estimator(os.path.join(DATA, "model_v1"))
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert all(p.device.type == "cpu" for p in old.net_.module_.parameters())
    with pytest.raises(ValueError, match="device="):
        load_estimator(saved, device="not-a-device")


def test_loading_leaves_the_global_torch_rng_alone(saved):
    before = torch.get_rng_state()
    load_estimator(saved)
    assert torch.equal(before, torch.get_rng_state())


def test_load_into_a_subclass(saved):
    class Sub(TMNREEstimator):
        pass

    assert type(load_estimator(saved, cls=Sub)) is Sub
    with pytest.raises(TypeError, match="cls must be TMNREEstimator"):
        load_estimator(saved, cls=dict)


def test_overwrite_rules_and_interrupted_save(fitted, saved, data, tmp_path, monkeypatch):
    X, _ = data
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_estimator(fitted, saved)
    stranger = tmp_path / "not-a-model"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("user data")
    with pytest.raises(ValueError, match="not a saved model"):
        save_estimator(fitted, stranger, overwrite=True)
    assert (stranger / "keep.txt").read_text() == "user data"

    model = tmp_path / "model"
    save_estimator(fitted, model)
    other = clone(fitted).set_params(random_state=3).fit(*data)

    import sklearn_tmnre.persistence as persistence

    real_write = persistence.durable_write

    def failing_write(path, data, synced=None):
        if path.name == "history.json":  # after the weights were written
            raise OSError("disk full")
        return real_write(path, data, synced)

    monkeypatch.setattr(persistence, "durable_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_estimator(other, model, overwrite=True)
    monkeypatch.undo()
    # The old model is intact and no partial directory is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "not-a-model"]
    np.testing.assert_array_equal(load_estimator(model).predict(X[:5]), fitted.predict(X[:5]))
    save_estimator(other, model, overwrite=True)
    np.testing.assert_array_equal(load_estimator(model).predict(X[:5]), other.predict(X[:5]))


def test_what_cannot_be_saved(fitted, data, tmp_path):
    X, theta = data
    with pytest.raises(NotFittedError):
        save_estimator(_small(), tmp_path / "a")
    with pytest.raises(TypeError, match="must be a TMNREEstimator"):
        save_estimator(Truncator(), tmp_path / "a")
    instance = _small(prior=PRIOR, embedding=TwoLayerEmbedding((2,), 4)).fit(X, theta)
    with pytest.raises(ValueError, match="not a module instance"):
        save_estimator(instance, tmp_path / "b")

    class Triangular(stats.rv_continuous):
        def _pdf(self, x):
            return 2 * x

    custom = Prior({"a": Triangular(a=0, b=1, name="triangular_custom")(),
                    "b": stats.norm(0, 1)})
    with pytest.raises(ValueError, match="not a named scipy.stats distribution"):
        prior_to_json(custom)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unsaved_hyperparameters_warn_and_load_as_defaults(data, tmp_path):
    from skorch.callbacks import EpochTimer

    X, theta = data
    est = _small(prior=PRIOR, random_state=np.random.RandomState(0),
                 callbacks=[("timer", EpochTimer())]).fit(X, theta)
    with pytest.warns(UserWarning, match=r"\['callbacks', 'random_state'\]"):
        path = save_estimator(est, tmp_path / "m")
    loaded = load_estimator(path)
    assert loaded.callbacks is None and loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict(X[:5]), est.predict(X[:5]))


def test_model_files_are_skorchs_safetensors_and_history(fitted, saved):
    from skorch.history import History

    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "history.json",
                                                       "weights.safetensors"]
    history = History.from_file(str(saved / "history.json"))
    assert history[:, "train_loss"] == list(fitted.net_.history[:, "train_loss"])
    state = load_file(saved / "weights.safetensors")
    assert state.keys() == fitted.net_.module_.state_dict().keys()


def test_a_format_1_model_still_loads_with_its_outputs():
    # tests/data/model_v1 was written by format 1 (torch.save weights): a 2-parameter,
    # "1d+2d" estimator on a truncated prior, with its log ratios at four rows recorded.
    expected = json.loads(open(os.path.join(DATA, "model_v1_expected.json")).read())
    loaded = load_estimator(os.path.join(DATA, "model_v1"))
    X, theta = np.asarray(expected["X"]), np.asarray(expected["theta"])
    assert loaded.marginals_ == [("a",), ("b",), ("a", "b")]
    assert loaded.prior.support.loc["a"].tolist() == [-1.5, 1.9]
    lr = loaded.log_ratio(X, theta)
    assert list(lr.columns) == expected["columns"]
    # The network's outputs (posterior summaries also depend on the grid engine, which may
    # change); the same arithmetic on another torch build may differ in the last bits.
    np.testing.assert_allclose(lr.to_numpy(), expected["log_ratio"], rtol=1e-5, atol=1e-5)


def test_a_format_1_model_is_saved_again_in_the_current_format(tmp_path):
    old = load_estimator(os.path.join(DATA, "model_v1"))
    again = load_estimator(save_estimator(old, tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format_version"] == 2
    X = np.asarray(json.loads(open(os.path.join(DATA, "model_v1_expected.json")).read())["X"])
    np.testing.assert_array_equal(again.predict(X), old.predict(X))


@pytest.mark.parametrize("edit", [
    # Parameter names in another order than the prior's: every prediction would swap.
    lambda c: c["fitted"].update(names_=["b", "a"]),
    lambda c: c["fitted"].update(names_=["a", "z"]),
])
def test_names_that_contradict_the_prior_are_refused(saved, tmp_path, edit):
    model = tmp_path / "model"
    _copy_model(saved, model)
    _edit_config(model, edit)
    with pytest.raises(ValueError, match="not the prior's parameters in its order"):
        load_estimator(model)


def test_marginals_reordered_against_the_weights_are_refused(saved, tmp_path):
    # The same shapes, another order of the 1-d heads: only the index buffers tell.
    model = tmp_path / "model"
    _copy_model(saved, model)
    _edit_config(model, lambda c: c["fitted"].update(marginals_=[["b"], ["a"], ["a", "b"]],
                                                     log_ratio_columns_=["b", "a", "a|b"]))
    with pytest.raises(ValueError, match="parameter indices"):
        load_estimator(model)
    _edit_config(model, lambda c: c["fitted"].update(log_ratio_columns_=["a", "b", "a|b"]))
    with pytest.raises(ValueError, match="do not label marginals_"):
        load_estimator(model)


@pytest.mark.parametrize("param, value, match", [
    ("hidden_features", 10**9, "hidden_features"),  # refused by its declared bounds
    ("hidden_features", 8192, "does not match the network"),  # by the weights' shapes
    ("embedding_dim", 4096, "does not match the network"),
    ("n_ensemble", 1000, "lacks the buffers"),
])
def test_crafted_sizes_are_refused_before_anything_is_allocated(saved, tmp_path, monkeypatch,
                                                                param, value, match):
    import sklearn_tmnre._build as build
    import sklearn_tmnre._model_config as model_config

    devices = []
    real_build = build.build_ratio_network

    def spy(*args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the default device of this build
        return real_build(*args, **kwargs)

    monkeypatch.setattr(build, "build_ratio_network", spy)
    monkeypatch.setattr(model_config, "build_ratio_network", spy)
    model = tmp_path / "model"
    _copy_model(saved, model)
    _edit_config(model, lambda c: c["params"].update({param: value}))
    with pytest.raises(ValueError, match=match):
        load_estimator(model)
    assert set(devices) <= {"meta"}  # never built with memory
    if match == "does not match the network":
        assert devices == ["meta"]


def test_tensors_added_to_the_weights_are_refused(saved, tmp_path):
    model = tmp_path / "model"
    _copy_model(saved, model)
    state = load_file(model / "weights.safetensors")
    state["extra"] = torch.zeros(3)
    save_file(state, model / "weights.safetensors")
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        load_estimator(model)


@pytest.mark.parametrize("module", ["persistence", "_model_config"])
def test_persistence_does_not_import_the_estimator_module(module):
    # The estimator calls persistence for save and load; the other way round would be a
    # cycle. The estimator class reaches persistence through the package's registration.
    source = open(getattr(sklearn_tmnre, module).__file__).read()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported |= {f"{'.' * node.level}{node.module or ''}:{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not [i for i in imported if "estimator" in i.split(":")[0]], imported
    assert load_estimator.__module__ == "sklearn_tmnre.persistence"


def test_prior_json_round_trip_of_shapes_and_boxes():
    prior = Prior({"g": stats.gamma(2.0, loc=0.5, scale=3.0), "t": stats.t(df=4),
                   "u": stats.uniform(-1, 2)}).truncate({"g": (1.0, 9.0), "t": (-3.0, np.inf)})
    back = prior_from_json(json.loads(json.dumps(prior_to_json(prior))))
    assert back == prior
    theta = prior.sample(50, random_state=0)
    np.testing.assert_array_equal(back.log_prob(theta), prior.log_prob(theta))


# ------------------------------------------------------------ pickle and joblib
@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_fitted_estimator_truncator_and_run_round_trip(fitted, data, tmp_path, dump):
    X, theta = data
    trunc = Truncator(epsilon=1e-3, n_samples=500).fit(X[0], estimator=fitted)
    run = _tiny_run()

    def round_trip(obj, name):
        if dump == "pickle":
            return pickle.loads(pickle.dumps(obj))
        joblib.dump(obj, tmp_path / name)
        return joblib.load(tmp_path / name)

    est2 = round_trip(fitted, "est.joblib")
    _assert_same_outputs(fitted, est2, X[:30], theta.iloc[:30])
    trunc2 = round_trip(trunc, "trunc.joblib")
    pd.testing.assert_frame_equal(trunc2.bounds_, trunc.bounds_)
    np.testing.assert_array_equal(trunc2.transform(theta), trunc.transform(theta))
    refit = Truncator(epsilon=1e-3, n_samples=500).fit(X[0], estimator=est2)
    pd.testing.assert_frame_equal(refit.bounds_, trunc.bounds_)
    run2 = round_trip(run, "run.joblib")
    pd.testing.assert_frame_equal(run2.rounds_, run.rounds_)
    assert run2.prior_ == run.prior_
    for m in run.posterior_.mass:
        np.testing.assert_array_equal(run2.posterior_.mass[m], run.posterior_.mass[m])
    np.testing.assert_array_equal(run2.estimator_.predict(X[:30]), run.estimator_.predict(X[:30]))


_RUN = {}


def _tiny_run():
    if "run" not in _RUN:
        est = _small(max_epochs=10, batch_size=32)
        _RUN["run"] = TMNRE(shift, PRIOR, estimator=est, truncator=Truncator(epsilon=1e-3),
                            n_sims=150, max_rounds=2, convergence_ratio=1.0,
                            random_state=0).fit(np.array([0.5, -0.5]))
    return _RUN["run"]


# ------------------------------------------------------------- GPU-trained models
CPU_ONLY_LOADER = """
import pickle, sys
import numpy as np, torch
from sklearn_tmnre.persistence import load_estimator
assert not torch.cuda.is_available()
X = np.load(sys.argv[1] + "/X.npy")
ref = np.load(sys.argv[1] + "/predict_cpu.npy")
loaded = load_estimator(sys.argv[1] + "/model")
with open(sys.argv[1] + "/est.pkl", "rb") as f:
    unpickled = pickle.load(f)
assert unpickled.net_.device == "cpu"
np.testing.assert_array_equal(loaded.predict(X), ref)
np.testing.assert_array_equal(unpickled.predict(X), ref)
print("ok")
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_trained_model_loads_on_a_machine_without_cuda(data, tmp_path):
    X, theta = data
    est = _small(prior=PRIOR, device="cuda").fit(X, theta)
    assert next(est.net_.module_.parameters()).device.type == "cuda"
    save_estimator(est, tmp_path / "model")
    with open(tmp_path / "est.pkl", "wb") as f:
        pickle.dump(est, f)
    on_cpu = load_estimator(tmp_path / "model")
    assert on_cpu.device == "cpu"
    np.save(tmp_path / "X.npy", X[:50])
    np.save(tmp_path / "predict_cpu.npy", on_cpu.predict(X[:50]))
    # GPU and CPU kernels round differently: same model, float32-level agreement.
    np.testing.assert_allclose(on_cpu.predict(X[:50]), est.predict(X[:50]), atol=1e-4)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(CPU_ONLY_LOADER), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_numpy_and_tensor_scalars_in_the_history_are_saved(fitted, tmp_path):
    # A user's callback may record numpy or torch scalars, which JSON cannot hold as such.
    est = clone(fitted).set_params(max_epochs=2).fit(*_data(100))
    est.net_.history.record("score32", np.float32(0.25))
    est.net_.history.record("tensor", torch.tensor(1.5))
    loaded = load_estimator(save_estimator(est, tmp_path / "m"))
    assert loaded.net_.history[-1, "score32"] == 0.25
    assert loaded.net_.history[-1, "tensor"] == 1.5
