"""Pickle-free model files for a fitted :class:`~sklearn_tmnre.TMNREEstimator`.

A pickle runs code when it is loaded; a model directory holds only data, written
and read with skorch's own I/O:

``config.json``
    Format and library versions, the JSON-representable hyperparameters, the
    prior and the fitted metadata the network is rebuilt from; its schema, and
    what loading checks against the prior and the weights before it allocates
    the network, are in ``sklearn_tmnre._model_config``.
``weights.safetensors``
    Parameters and buffers (standardization included), by
    ``net.save_params(use_safetensors=True)``: tensors only, no code.
``history.json``
    One record per epoch, by :meth:`skorch.history.History.to_file`.

A custom embedding class is imported (which runs its module's code) only with
``trust_embedding=True``. Files are written durably into a temporary directory
that is renamed into place, so an interrupted save leaves the previous model or
the new one, never a mix. Format 1 (weights in ``weights.pt``, read with
``torch.load(weights_only=True)``) is still read.
"""

from __future__ import annotations

import io
import json
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

from ._durable import durable_write, fsync_dir
from ._model_config import (
    FORMAT,
    check_weights,
    decode_config,
    encode_config,
    is_model_config,
    load_network,
    read_config,
)
from .prior import Prior

__all__ = ["FORMAT_VERSION", "load_estimator", "prior_from_json", "prior_to_json",
           "save_estimator"]

#: Version of the model-directory layout written by :func:`save_estimator`; readers
#: accept this version and older ones (1: ``torch.save`` weights).
FORMAT_VERSION = 2

_CONFIG, _HISTORY = "config.json", "history.json"
_WEIGHTS = {1: "weights.pt", 2: "weights.safetensors"}
# The estimator class of each model format; filled by the package (sklearn_tmnre/__init__.py)
# so that this module never imports the estimator module, which calls it.
_ESTIMATOR_CLASSES: dict[str, type] = {}


def _register_estimator_class(cls: type) -> None:
    """Make ``cls`` the class that :func:`load_estimator` builds by default."""
    _ESTIMATOR_CLASSES[FORMAT] = cls


def _estimator_class() -> type:
    if FORMAT not in _ESTIMATOR_CLASSES:  # only when sklearn_tmnre/__init__.py did not run
        raise RuntimeError("sklearn_tmnre.persistence: import sklearn_tmnre first.")
    return _ESTIMATOR_CLASSES[FORMAT]


def prior_to_json(prior: Prior) -> dict:
    """Describe a :class:`~sklearn_tmnre.Prior` as JSON data: :meth:`Prior.to_dict`.

    Kept for code written against 0.1; the serialized form is owned by
    :class:`~sklearn_tmnre.Prior`.
    """
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a sklearn_tmnre.Prior; got {type(prior).__name__}.")
    return prior.to_dict()


def prior_from_json(data: dict) -> Prior:
    """Rebuild a :class:`~sklearn_tmnre.Prior` from JSON data: :meth:`Prior.from_dict`."""
    return Prior.from_dict(data)


# ----------------------------------------------------------------------- saving
class _TextBuffer(io.StringIO):
    """A text buffer that keeps its content when skorch's writer closes it."""

    text = ""

    def close(self):
        self.text = self.getvalue()
        super().close()


def _plain(value):
    """A history value as JSON can hold it: numpy and one-element torch scalars as numbers."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return value.item()
    return value


def save_estimator(estimator, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
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
    cls = _estimator_class()
    if not isinstance(estimator, cls):
        raise TypeError(f"save_estimator: estimator must be a {cls.__name__}; got "
                        f"{type(estimator).__name__}.")
    check_is_fitted(estimator)
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"save_estimator: {str(path)!r} exists; pass overwrite=True "
                                  "to replace a saved model.")
        if not is_model_config(path / _CONFIG):
            raise ValueError(f"save_estimator: {str(path)!r} exists and is not a saved model; "
                             "refusing to replace it.")
    config, unsaved = encode_config(estimator, FORMAT_VERSION)
    if unsaved:
        warnings.warn(f"save_estimator: hyperparameters {unsaved} have no JSON form and are not "
                      "saved; the loaded estimator has their defaults.", UserWarning,
                      stacklevel=2)
    weights = io.BytesIO()
    estimator.net_.save_params(f_params=weights, use_safetensors=True)
    history = _TextBuffer()
    History([{k: _plain(v) for k, v in epoch.items() if k != "batches"}
             for epoch in estimator.net_.history]).to_file(history)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    old = None
    try:
        synced = set()
        durable_write(tmp / _WEIGHTS[FORMAT_VERSION], weights.getvalue(), synced)
        durable_write(tmp / _HISTORY, history.text.encode(), synced)
        # config.json last: a directory without it is never taken for a model.
        durable_write(tmp / _CONFIG, json.dumps(config, indent=1).encode(), synced)
        for directory in synced:
            fsync_dir(directory)
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


# ---------------------------------------------------------------------- loading
def _check_device(device):
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"load_estimator: device={device!r} is not a torch device ({exc}).") \
            from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"load_estimator: device={device!r} but CUDA is not available here; "
                         "load with device='cpu'.")
    return str(torch_device)


def _read_history(path):
    try:
        history = History.from_file(str(path / _HISTORY))
    except FileNotFoundError:
        raise ValueError(f"load_estimator: {str(path)!r} lacks {_HISTORY}.") from None
    except ValueError as exc:
        raise ValueError(f"load_estimator: {str(path / _HISTORY)!r} is not valid JSON "
                         f"({exc}).") from None
    if not all(isinstance(epoch, dict) for epoch in history):
        raise ValueError(f"load_estimator: {str(path / _HISTORY)!r} is not a list of epochs.")
    return history


def load_estimator(path: str | os.PathLike, cls: type | None = None, *, device: str = "cpu",
                   trust_embedding: bool = False):
    """Load an estimator written by :func:`save_estimator`.

    Parameters
    ----------
    path : str or path-like
        The model directory.
    cls : type, optional
        The estimator class to instantiate (``TMNREEstimator`` or a subclass);
        default ``TMNREEstimator``.
    device : str, default="cpu"
        Where the loaded network runs (a GPU-trained model loads on a machine
        without one). It becomes the estimator's ``device``.
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
        without ``trust_embedding``; fitted metadata that contradict the prior;
        weights that are not a tensors-only file or do not fit the architecture
        in ``config.json``.
    """
    base = _estimator_class()
    cls = base if cls is None else cls
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"load_estimator: cls must be {base.__name__} or a subclass; got "
                        f"{cls!r}.")
    device = _check_device(device)
    path = Path(path)
    config = read_config(path / _CONFIG, FORMAT_VERSION)
    version = config["format_version"]
    estimator, prior_, meta, embedding_features = decode_config(
        config, path / _CONFIG, cls, device=device, trust_embedding=trust_embedding)
    weights = path / _WEIGHTS[version]
    indices, buffer_shapes = check_weights(estimator, meta, embedding_features, weights, version)
    history = _read_history(path)

    net = load_network(estimator, meta, indices, buffer_shapes, weights, version,
                       n_epochs=len(history))
    net.history = history
    estimator.prior_ = prior_
    for name, value in meta.items():
        setattr(estimator, name, value)
    estimator.net_ = net
    return estimator
