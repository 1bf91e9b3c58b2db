"""The ``config.json`` of a model directory: its schema, encoding and validation.

:mod:`sklearn_tmnre.persistence` owns the directory (file names, format versions,
durable writes); this module owns what ``config.json`` holds and how a loader
checks it. Format versions 1 and 2 have the same keys; they differ only in the
weights file (1: ``weights.pt``, read with ``torch.load(weights_only=True)``;
2: ``weights.safetensors``).

``format``
    ``"sklearn_tmnre.TMNREEstimator"``: only a directory whose ``config.json``
    says so is taken for a model (and may be replaced by a save with
    ``overwrite=True``).
``format_version``
    An integer >= 1; a version newer than the reader's is refused.
``sklearn_tmnre_version``, ``torch_version``
    The writer's, named in that refusal.
``params``
    The hyperparameters of ``get_params(deep=False)`` but ``prior`` and
    ``embedding`` (``embedding__<arg>`` included), as JSON values: numpy
    numbers as numbers, tuples tagged ``{"__tuple__": [...]}`` so that they load
    as tuples. ``device`` is replaced by the loader's.
``unsaved_params``
    Hyperparameters with no JSON form (``callbacks``, a ``RandomState``): left
    out, they load as their defaults.
``embedding``
    ``{"name": <a key of networks.EMBEDDINGS>}``, or ``{"class":
    "module:qualname"}`` for a top-level ``torch.nn.Module`` class, which is
    imported (running its module's code) only with ``trust_embedding=True``.
``prior``, ``prior_``
    :meth:`Prior.to_dict <sklearn_tmnre.Prior.to_dict>` of the estimator's
    ``prior``; for a ``prior=None`` fit, ``prior`` is null and ``prior_`` holds
    the fitted histogram prior (otherwise ``prior_`` is null).
``fitted``
    The fitted metadata the network is rebuilt from: ``names_``,
    ``marginals_`` (lists of names), ``log_ratio_columns_``, ``event_shape_``,
    ``n_features_in_``, ``feature_names_in_`` (or null), ``y_1d`` and
    ``embedding_features`` (the width of one ensemble member's embedding).

Loading checks, in this order, all before the network is allocated:

1. :func:`read_config`: the header (``format``, ``format_version``).
2. :func:`decode_config`: every entry is present and well formed; the embedding
   is a known name or a trusted, importable module class; ``names_`` are the
   prior's parameters in its order (another order would swap the parameters of
   every prediction), ``marginals_`` name only those, ``log_ratio_columns_``
   label them, ``event_shape_`` and ``n_features_in_`` describe one data shape;
   the hyperparameters meet the estimator's declared constraints.
3. :func:`check_weights`: every tensor's name and shape in the weights file
   (read without reading the tensors) against the network the above describe,
   built by ``fit``'s builder on PyTorch's ``meta`` device (shapes, no memory),
   and the embedding's width against ``embedding_features`` (they differ when
   the embedding's code changed since the save).

Then :func:`load_network` builds the network, loads the weights and checks that
the marginals' index buffers in them are the ones ``names_`` and ``marginals_``
imply.
"""

from __future__ import annotations

import importlib
import json
import numbers

import numpy as np
import torch

from ._build import build_ratio_network, network_shapes, ratio_net
from ._checks import check_hyperparameters, marginal_label
from .networks import EMBEDDINGS
from .prior import Prior

__all__ = ["FORMAT", "check_weights", "decode_config", "encode_config", "is_model_config",
           "load_network", "read_config"]

#: The ``format`` of every model's ``config.json``.
FORMAT = "sklearn_tmnre.TMNREEstimator"
# Hyperparameters stored in their own sections, not in ``params``.
_SPECIAL_PARAMS = ("prior", "embedding")
_BUFFERS = ("x_mean", "x_std", "theta_mean", "theta_std")


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


# ---------------------------------------------------------------------- writing
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


def encode_config(estimator, format_version):
    """config.json's content for a fitted estimator, and the hyperparameters with no JSON form."""
    from . import __version__

    params, unsaved = {}, []
    for key, value in estimator.get_params(deep=False).items():
        if key in _SPECIAL_PARAMS:
            continue
        try:
            params[key] = _encode(value)
        except _NotJSON:
            if value is not None:
                unsaved.append(key)
    module = estimator.net_.module_
    return {
        "format": FORMAT,
        "format_version": format_version,
        "sklearn_tmnre_version": __version__,
        "torch_version": torch.__version__,
        "params": params,
        "unsaved_params": unsaved,
        "embedding": _embedding_to_json(estimator.embedding),
        "prior": None if estimator.prior is None else estimator.prior.to_dict(),
        "prior_": estimator.prior_.to_dict() if estimator.prior is None else None,
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
    }, unsaved


# ---------------------------------------------------------------------- reading
def is_model_config(config_path):
    """Whether ``config_path`` is a JSON object of this ``format`` (the only test of a model)."""
    try:
        return json.loads(config_path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_config(config_path, newest_version):
    """The parsed ``config_path``, once its format and a readable format_version are checked."""
    path = config_path.parent
    if not config_path.is_file():
        raise ValueError(f"load_estimator: {str(path)!r} is not a saved model "
                         f"(no {config_path.name}).")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"load_estimator: {str(config_path)!r} is not valid JSON ({exc}).") \
            from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"load_estimator: {str(config_path)!r} does not describe a "
                         f"{FORMAT} model.")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"load_estimator: {str(config_path)!r} has an invalid format_version "
                         f"{version!r}.")
    if version > newest_version:
        from . import __version__

        raise ValueError(
            f"load_estimator: {str(path)!r} is in model format version {version}, written by "
            f"sklearn_tmnre {config.get('sklearn_tmnre_version')} (torch "
            f"{config.get('torch_version')}); this sklearn_tmnre {__version__} reads format "
            f"versions up to {newest_version}. Upgrade sklearn_tmnre to load it.")
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


def _fitted_metadata(config, prior_):
    """The fitted attributes in ``config``, checked against each other and the prior."""
    fitted = config["fitted"]
    meta = {
        "names_": [str(n) for n in fitted["names_"]],
        "marginals_": [tuple(str(n) for n in m) for m in fitted["marginals_"]],
        "log_ratio_columns_": [str(c) for c in fitted["log_ratio_columns_"]],
        "event_shape_": tuple(int(s) for s in fitted["event_shape_"]),
        "n_features_in_": int(fitted["n_features_in_"]),
        "_y_1d": bool(fitted["y_1d"]),
    }
    if fitted.get("feature_names_in_") is not None:
        meta["feature_names_in_"] = np.asarray(fitted["feature_names_in_"], dtype=object)
    names = meta["names_"]
    # The network's parameter columns are the prior's, in its order: another order would
    # silently swap the parameters of every prediction.
    if names != list(prior_.names):
        raise ValueError(f"config.json: names_ {names} are not the prior's parameters in its "
                         f"order {list(prior_.names)}; the file was edited or is damaged.")
    unknown = sorted({n for m in meta["marginals_"] for n in m} - set(names))
    if unknown:
        raise ValueError(f"config.json: marginals name parameters {unknown} that are not "
                         f"in names_ {names}.")
    if meta["log_ratio_columns_"] != [marginal_label(m) for m in meta["marginals_"]]:
        raise ValueError("config.json: log_ratio_columns_ do not label marginals_.")
    shape = meta["event_shape_"]
    if not shape or min(shape) < 1 or meta["n_features_in_"] != shape[0]:
        raise ValueError(f"config.json: event_shape_ {list(shape)} and n_features_in_ "
                         f"{meta['n_features_in_']} do not describe one data shape.")
    return meta, int(fitted["embedding_features"])


def decode_config(config, config_path, cls, *, device, trust_embedding):
    """The unfitted ``cls`` estimator that ``config`` describes, and its fitted state.

    Returns
    -------
    estimator : cls
        With the saved hyperparameters, checked against the declared constraints,
        and ``device``.
    prior_ : Prior
    meta : dict
        The fitted attributes to set, checked against each other and ``prior_``.
    embedding_features : int
        The saved network's embedding width.
    """
    try:
        params = {k: _decode(v) for k, v in config["params"].items()}
        embedding = _import_embedding(config["embedding"], trust_embedding)
        prior = None if config["prior"] is None else Prior.from_dict(config["prior"])
        prior_ = prior if prior is not None else Prior.from_dict(config["prior_"])
        meta, embedding_features = _fitted_metadata(config, prior_)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"load_estimator: {str(config_path)!r} lacks or garbles an entry "
                         f"({exc!r}).") from None
    params["device"] = device
    try:
        estimator = cls(prior=prior, embedding=embedding, **params)
        check_hyperparameters(estimator)
    except TypeError as exc:
        raise ValueError(f"load_estimator: {cls.__name__} does not accept the saved "
                         f"hyperparameters ({exc}).") from None
    return estimator, prior_, meta, embedding_features


# ------------------------------------------------------------ weights vs config
def _weight_shapes(file, version):
    """Name and shape of every tensor in the weights file, without reading the tensors."""
    if not file.is_file():
        raise ValueError(f"load_estimator: {str(file.parent)!r} lacks {file.name}.")
    try:
        if version == 1:
            # Memory-mapped: the tensors are not read into memory yet.
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            if not (isinstance(state, dict) and all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
                raise TypeError("not a mapping of names to tensors")
            return {k: tuple(v.shape) for k, v in state.items()}
        from safetensors import safe_open

        with safe_open(file, framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is one user error
        kind = "tensors-only torch file" if version == 1 else "safetensors file"
        raise ValueError(
            f"load_estimator: {str(file)!r} is not a {kind} holding a state_dict and was not "
            f"loaded (nothing in it was executed): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def check_weights(estimator, meta, embedding_features, file, version):
    """Compare the weights file with the network of ``config.json``, allocating nothing.

    Returns
    -------
    indices : list of tuple of int
        Each marginal's parameter columns.
    buffer_shapes : list of tuple of int
        Shapes of the standardization buffers, as :func:`network_shapes` takes them.
    """
    shapes = _weight_shapes(file, version)
    prefix = "members.0." if estimator.n_ensemble > 1 else ""
    missing = [prefix + k for k in _BUFFERS if prefix + k not in shapes]
    if missing:
        raise ValueError(f"load_estimator: {file.name} lacks the buffers {missing}.")
    names = meta["names_"]
    column = {n: i for i, n in enumerate(names)}
    indices = [tuple(column[n] for n in m) for m in meta["marginals_"]]
    buffer_shapes = [shapes[prefix + k] for k in _BUFFERS]
    expected, n_features = network_shapes(estimator, meta["event_shape_"], indices,
                                          buffer_shapes)
    if expected != shapes:
        wrong = sorted(k for k in expected.keys() & shapes.keys() if expected[k] != shapes[k])
        raise ValueError(
            f"load_estimator: {file.name} does not match the network described in "
            f"config.json: missing {sorted(expected.keys() - shapes.keys())[:5]}, unexpected "
            f"{sorted(shapes.keys() - expected.keys())[:5]}, other shapes "
            f"{[(k, shapes[k], expected[k]) for k in wrong[:5]]}.")
    if n_features != embedding_features:
        raise ValueError(f"load_estimator: the embedding now outputs {n_features} features "
                         f"but the saved network used {embedding_features}; the embedding "
                         "code changed since the model was saved.")
    return indices, buffer_shapes


def load_network(estimator, meta, indices, buffer_shapes, file, version, n_epochs):
    """The fitted net of ``config.json`` with the weights of ``file``, its index buffers checked.

    ``indices`` and ``buffer_shapes`` are :func:`check_weights`'s; ``n_epochs``
    is the number trained, the net's epoch budget (``"auto"`` is the estimator's
    to resolve).
    """
    # Building the network draws initial weights; the caller's torch RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        module, _ = build_ratio_network(
            estimator, meta["event_shape_"], indices,
            *(torch.zeros(s) for s in buffer_shapes))
    built = {k: v.clone() for k, v in module.state_dict().items() if not v.is_floating_point()}
    net = ratio_net(estimator, module, max_epochs=max(1, n_epochs), train_split=None,
                    verbose=0).initialize()
    try:
        net.load_params(f_params=str(file), use_safetensors=version >= 2)
    except RuntimeError as exc:
        raise ValueError(f"load_estimator: {file.name} does not match the network described "
                         f"in config.json: {exc}") from None
    # Marginal column indices are buffers too: the file's must be the ones config.json implies.
    state = net.module_.state_dict()
    if any(not torch.equal(state[k].cpu(), v) for k, v in built.items()):
        raise ValueError(f"load_estimator: the marginals' parameter indices in {file.name} "
                         "differ from names_ and marginals_ in config.json.")
    net.module_.eval()
    return net
