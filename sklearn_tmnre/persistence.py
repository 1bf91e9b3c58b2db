"""Pickle-free model files for a fitted :class:`~sklearn_tmnre.TMNREEstimator`.

A pickle runs code when it is loaded, so it can only be shared between people
who trust each other, and it breaks when class layouts change between
versions. A model directory holds only data:

``config.json``
    The format version, the ``sklearn_tmnre`` and ``torch`` versions that wrote
    it, every JSON-representable hyperparameter (``get_params(deep=False)``,
    ``embedding__<arg>`` included), the prior as data (per parameter the
    ``scipy.stats`` distribution name, ``args``, ``kwds`` and the box bounds;
    histogram priors of ``prior=None`` fits keep their bin counts and edges) and
    the fitted metadata (parameter names, marginals, event shape, embedding
    width) from which the network is rebuilt with the same shapes.
``weights.pt``
    The network's ``state_dict`` (``torch.save``), read back with
    ``torch.load(weights_only=True)``: tensors only, so a tampered file is
    rejected instead of executed. The data and parameter standardization are
    buffers of the network and travel with the weights.
``history.json``
    The training history, one record per epoch (losses, best-epoch flags,
    learning rate; skorch's per-batch records are left out).

Loading rebuilds the embedding with :func:`~sklearn_tmnre.networks.make_embedding`
and the :class:`~sklearn_tmnre.networks.RatioNetwork`, loads the weights with
``strict=True`` and wraps the network in a :class:`~sklearn_tmnre._training.RatioNet`,
so the loaded estimator predicts exactly as the saved one. A custom embedding
class is recorded as ``"module:qualname"``; importing it runs that module's
code, so :func:`load_estimator` does it only when ``trust_embedding=True``.

A directory is written under a temporary name and renamed into place, so an
interrupted save leaves either the previous model or the new one, never a mix.
"""

from __future__ import annotations

import importlib
import json
import numbers
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from skorch.history import History

from ._checks import check_hyperparameters
from ._durable import fsync_dir
from ._training import RatioLoss, RatioNet
from .networks import EMBEDDINGS
from .prior import Prior

__all__ = ["FORMAT_VERSION", "load_estimator", "prior_from_json", "prior_to_json",
           "save_estimator"]

#: Version of the model-directory layout written by :func:`save_estimator`; readers
#: accept this version and older ones.
FORMAT_VERSION = 1

_FORMAT = "sklearn_tmnre.TMNREEstimator"
_CONFIG, _WEIGHTS, _HISTORY = "config.json", "weights.pt", "history.json"
# Hyperparameters stored in their own sections of config.json.
_SPECIAL_PARAMS = ("prior", "embedding")


# ------------------------------------------------------------------ JSON values
class _NotJSON(Exception):
    """A hyperparameter value that config.json cannot represent."""


def _encode(value):
    """A JSON value for a hyperparameter; tuples are tagged so they load as tuples."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if "__tuple__" in value:
            raise _NotJSON
        return {k: _encode(v) for k, v in value.items()}
    raise _NotJSON


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    return value


def _scalar(value, what):
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be a number to be saved; got {value!r}.")
    return float(arr)


# ------------------------------------------------------------------------ prior
def prior_to_json(prior):
    """Describe a :class:`~sklearn_tmnre.Prior` as JSON data: :meth:`Prior.to_dict`.

    Kept for code written against 0.1; the serialized form is owned by
    :class:`~sklearn_tmnre.Prior`.
    """
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a sklearn_tmnre.Prior; got {type(prior).__name__}.")
    return prior.to_dict()


def prior_from_json(data):
    """Rebuild a :class:`~sklearn_tmnre.Prior` from JSON data: :meth:`Prior.from_dict`."""
    return Prior.from_dict(data)


# ----------------------------------------------------------------------- saving
def _embedding_to_json(embedding):
    if isinstance(embedding, str):
        return {"name": embedding}
    if isinstance(embedding, type) and issubclass(embedding, torch.nn.Module):
        if "<locals>" in embedding.__qualname__:
            raise ValueError(f"embedding class {embedding.__qualname__} is defined inside a "
                             "function and cannot be imported when loading; define it at the "
                             "top level of a module.")
        return {"class": f"{embedding.__module__}:{embedding.__qualname__}"}
    raise ValueError(f"embedding {embedding!r} cannot be saved: give the estimator an embedding "
                     "name or a torch.nn.Module class (its arguments as embedding__<arg>), not "
                     "a module instance.")


def _fsync_write(path, write):
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _json_bytes(data):
    return json.dumps(data, indent=1, allow_nan=True).encode()


def _is_model_dir(path):
    try:
        return json.loads((path / _CONFIG).read_text()).get("format") == _FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_estimator(estimator, path, *, overwrite=False):
    """Write a fitted estimator to a model directory without pickle.

    Parameters
    ----------
    estimator : TMNREEstimator
        Fitted.
    path : str or path-like
        The directory to create.
    overwrite : bool, default=False
        Replace an existing model directory at ``path`` (never any other
        directory).

    Returns
    -------
    pathlib.Path
        The model directory.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Something cannot be written as data: a prior distribution that is not a
        named ``scipy.stats`` one, or an embedding given as a module instance.

    Warns
    -----
    UserWarning
        For hyperparameters with no JSON form (``callbacks``, a ``RandomState``
        as ``random_state``): they are left out and load as their defaults.

    Examples
    --------
    >>> save_estimator(est, "model_dir")                       # doctest: +SKIP
    >>> est2 = load_estimator("model_dir")                     # doctest: +SKIP
    """
    from . import __version__
    from .estimator import TMNREEstimator

    if not isinstance(estimator, TMNREEstimator):
        raise TypeError(f"save_estimator: estimator must be a TMNREEstimator; got "
                        f"{type(estimator).__name__}.")
    check_is_fitted(estimator)
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"save_estimator: {str(path)!r} exists; pass overwrite=True "
                                  "to replace a saved model.")
        if not _is_model_dir(path):
            raise ValueError(f"save_estimator: {str(path)!r} exists and is not a saved model; "
                             "refusing to replace it.")

    params, unsaved = {}, []
    for key, value in estimator.get_params(deep=False).items():
        if key in _SPECIAL_PARAMS:
            continue
        try:
            params[key] = _encode(value)
        except _NotJSON:
            if value is not None:
                unsaved.append(key)
    if unsaved:
        warnings.warn(f"save_estimator: hyperparameters {unsaved} have no JSON form and are not "
                      "saved; the loaded estimator has their defaults.", UserWarning,
                      stacklevel=2)
    module = estimator.net_.module_
    config = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_tmnre_version": __version__,
        "torch_version": torch.__version__,
        "params": params,
        "unsaved_params": unsaved,
        "embedding": _embedding_to_json(estimator.embedding),
        "prior": None if estimator.prior is None else prior_to_json(estimator.prior),
        "prior_": prior_to_json(estimator.prior_) if estimator.prior is None else None,
        "fitted": {
            "names_": list(estimator.names_),
            "marginals_": [list(m) for m in estimator.marginals_],
            "log_ratio_columns_": list(estimator.log_ratio_columns_),
            "event_shape_": list(estimator.event_shape_),
            "n_features_in_": int(estimator.n_features_in_),
            "feature_names_in_": (None if not hasattr(estimator, "feature_names_in_")
                                  else [str(c) for c in estimator.feature_names_in_]),
            "y_1d": bool(getattr(estimator, "_y_1d", False)),
            # One member's embedding width (every member of an ensemble has the same).
            "embedding_features": int(getattr(module, "members", [module])[0]
                                      .heads[0].w_s.shape[1]),
        },
    }
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    history = [{k: v for k, v in epoch.items() if k != "batches"}
               for epoch in estimator.net_.history]
    history_bytes = json.dumps(history, allow_nan=True, default=_history_default).encode()

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    old = None
    try:
        _fsync_write(tmp / _WEIGHTS, lambda f: torch.save(state, f))
        _fsync_write(tmp / _HISTORY, lambda f: f.write(history_bytes))
        # config.json last: a directory without it is never taken for a model.
        _fsync_write(tmp / _CONFIG, lambda f: f.write(_json_bytes(config)))
        fsync_dir(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _history_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"history value {value!r} of type {type(value).__name__} is not JSON.")


# ---------------------------------------------------------------------- loading
def _read_config(path):
    config_path = path / _CONFIG
    if not config_path.is_file():
        raise ValueError(f"load_estimator: {str(path)!r} is not a saved model (no {_CONFIG}).")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"load_estimator: {str(config_path)!r} is not valid JSON ({exc}).") \
            from None
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise ValueError(f"load_estimator: {str(config_path)!r} does not describe a "
                         f"{_FORMAT} model.")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"load_estimator: {str(config_path)!r} has an invalid format_version "
                         f"{version!r}.")
    if version > FORMAT_VERSION:
        from . import __version__

        raise ValueError(
            f"load_estimator: {str(path)!r} is in model format version {version}, written by "
            f"sklearn_tmnre {config.get('sklearn_tmnre_version')} (torch "
            f"{config.get('torch_version')}); this sklearn_tmnre {__version__} reads format "
            f"versions up to {FORMAT_VERSION}. Upgrade sklearn_tmnre to load it.")
    return config


def _import_embedding(spec, trust_embedding):
    if "name" in spec:
        if spec["name"] not in EMBEDDINGS:
            raise ValueError(f"config.json: embedding {spec['name']!r} is not one of "
                             f"{sorted(EMBEDDINGS)}.")
        return spec["name"]
    target = str(spec.get("class"))
    if not trust_embedding:
        raise ValueError(
            f"load_estimator: the model uses the custom embedding class {target!r}; loading it "
            "imports that module, which runs its code. Pass trust_embedding=True if you trust "
            "the model's source and have the module installed.")
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"config.json: embedding class {target!r} is not 'module:qualname'.")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise ValueError(f"config.json: embedding class {target!r} is not a torch.nn.Module "
                         "class in the installed code.")
    return obj


def _read_weights(path):
    try:
        state = torch.load(path / _WEIGHTS, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"load_estimator: {str(path)!r} lacks {_WEIGHTS}.") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is one user error
        raise ValueError(
            f"load_estimator: {str(path / _WEIGHTS)!r} is not a tensors-only torch file and was "
            f"not loaded (nothing in it was executed): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not (isinstance(state, dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ValueError(f"load_estimator: {str(path / _WEIGHTS)!r} does not hold a state_dict "
                         "(a mapping of names to tensors).")
    return state


def load_estimator(path, cls=None, *, device="cpu", trust_embedding=False):
    """Load an estimator written by :func:`save_estimator`.

    Parameters
    ----------
    path : str or path-like
        The model directory.
    cls : type, optional
        The estimator class to instantiate (``TMNREEstimator`` or a subclass);
        default ``TMNREEstimator``.
    device : str, default="cpu"
        Where the loaded network runs (the weights are always read onto the CPU
        first, so a GPU-trained model loads on a machine without one). It
        becomes the estimator's ``device``.
    trust_embedding : bool, default=False
        Allow importing a custom embedding class named in the file. Importing
        runs the code of that module; leave False for files of unknown origin.

    Returns
    -------
    TMNREEstimator
        Fitted, with the saved hyperparameters, prior, network and training history.

    Raises
    ------
    ValueError
        Not a model directory; a newer format version; a custom embedding
        without ``trust_embedding``; weights that are not a tensors-only file or
        do not fit the architecture in ``config.json``.
    """
    from ._build import build_ratio_network
    from .estimator import TMNREEstimator

    cls = TMNREEstimator if cls is None else cls
    if not (isinstance(cls, type) and issubclass(cls, TMNREEstimator)):
        raise TypeError(f"load_estimator: cls must be TMNREEstimator or a subclass; got {cls!r}.")
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"load_estimator: device={device!r} is not a torch device ({exc}).") \
            from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"load_estimator: device={device!r} but CUDA is not available here; "
                         "load with device='cpu'.")
    path = Path(path)
    config = _read_config(path)
    try:
        params = {k: _decode(v) for k, v in config["params"].items()}
        fitted = config["fitted"]
        embedding = _import_embedding(config["embedding"], trust_embedding)
        prior = None if config["prior"] is None else prior_from_json(config["prior"])
        prior_ = prior if prior is not None else prior_from_json(config["prior_"])
        names = [str(n) for n in fitted["names_"]]
        marginals = [tuple(str(n) for n in m) for m in fitted["marginals_"]]
        event_shape = tuple(int(s) for s in fitted["event_shape_"])
        embedding_features = int(fitted["embedding_features"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"load_estimator: {str(path / _CONFIG)!r} lacks or garbles an entry "
                         f"({exc!r}).") from None
    params["device"] = str(torch_device)
    try:
        estimator = cls(prior=prior, embedding=embedding, **params)
        check_hyperparameters(estimator)
    except TypeError as exc:
        raise ValueError(f"load_estimator: {cls.__name__} does not accept the saved "
                         f"hyperparameters ({exc}).") from None
    state = _read_weights(path)

    # Building the network draws initial weights; the caller's torch RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        # An ensemble's buffers live in its members; member 0's standardization is everyone's.
        prefix = "members.0." if estimator.n_ensemble > 1 else ""
        buffers = [prefix + k for k in ("x_mean", "x_std", "theta_mean", "theta_std")]
        missing = [k for k in buffers if k not in state]
        if missing:
            raise ValueError(f"load_estimator: {_WEIGHTS} lacks the buffers {missing}.")
        unknown = sorted({n for m in marginals for n in m} - set(names))
        if unknown:
            raise ValueError(f"config.json: marginals name parameters {unknown} that are not "
                             f"in names_ {names}.")
        module, n_features = build_ratio_network(
            estimator, event_shape, [tuple(names.index(n) for n in m) for m in marginals],
            *(state[k] for k in buffers))
        if n_features != embedding_features:
            raise ValueError(f"load_estimator: the embedding now outputs {n_features} features "
                             f"but the saved network used {embedding_features}; the embedding "
                             "code changed since the model was saved.")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"load_estimator: {_WEIGHTS} does not match the network described in "
                         f"{_CONFIG}: {exc}") from None
    module.eval()

    history_path = path / _HISTORY
    try:
        history = History(json.loads(history_path.read_text()))
    except FileNotFoundError:
        raise ValueError(f"load_estimator: {str(path)!r} lacks {_HISTORY}.") from None
    except ValueError as exc:
        raise ValueError(f"load_estimator: {str(history_path)!r} is not valid JSON ({exc}).") \
            from None
    # The net's epoch budget is the number trained ("auto" is the estimator's to resolve).
    net = RatioNet(module, criterion=RatioLoss, criterion__balance=estimator.balance,
                   optimizer=torch.optim.AdamW, optimizer__weight_decay=estimator.weight_decay,
                   lr=estimator.lr, batch_size=estimator.batch_size,
                   max_epochs=max(1, len(history)), train_split=None,
                   device=str(torch_device), verbose=0, n_negatives=estimator.n_negatives)
    net.initialize()
    net.module_.eval()
    net.history = history

    estimator.prior_ = prior_
    estimator.names_ = names
    estimator.marginals_ = marginals
    estimator.log_ratio_columns_ = [str(c) for c in fitted["log_ratio_columns_"]]
    estimator.event_shape_ = event_shape
    estimator.n_features_in_ = int(fitted["n_features_in_"])
    if fitted.get("feature_names_in_") is not None:
        estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    estimator._y_1d = bool(fitted["y_1d"])
    estimator.net_ = net
    return estimator
