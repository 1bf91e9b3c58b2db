"""Set embedding: any element network shared across a set of exchangeable observations.

An observation is a set :math:`\\{x_1, \\dots, x_k\\}` of :math:`k` elements of one
shape (vectors, spectra, images), exchangeable under the model: their order
carries no information. The embedding is

.. math:: e(x) = \\rho\\Big(\\operatorname{pool}_{i \\le k}\\, \\phi(x_i),\\; \\log k\\Big),

with one element network :math:`\\phi` shared by every element (any named
embedding -- ``"mlp"``, ``"cnn1d"``, ``"cnn2d"`` -- or a user module), a
permutation-invariant pooling, and an MLP :math:`\\rho` (Zaheer et al., "Deep
sets", NeurIPS 2017). Pooling is

* ``"sum"``: :math:`\\sum_i \\phi(x_i)`;
* ``"mean"``: :math:`\\frac1k \\sum_i \\phi(x_i)`;
* ``"attention"``: :math:`\\sum_i w_i \\phi(x_i)` with
  :math:`w = \\operatorname{softmax}_i\\big(q^\\top K\\phi(x_i) / \\sqrt{d}\\big)`,
  a learned query :math:`q` and key map :math:`K` (attention pooling with one
  seed vector, Lee et al., "Set transformer", ICML 2019).

:math:`\\rho` also reads :math:`\\log k`: the posterior from :math:`k` iid draws
narrows with :math:`k` (as :math:`1/\\sqrt{k}` for a mean), and an average
alone does not tell :math:`k`.

**Sets of varying size** are padded to a common size :math:`S`: X has shape
``(n, S, *element_shape)`` and an element whose values are *all* NaN is absent.
Absent elements are never embedded and take no part in the pooling, so a set
gives the same embedding whatever padding it carries. An element with some
NaN values and some numbers is an error, and so is a set with no element.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["POOLINGS", "SetEmbedding", "check_padding", "is_set_embedding", "present_elements",
           "set_embedding", "set_standardization"]

#: How :class:`SetEmbedding` pools the embedded elements (``embedding__pooling``).
POOLINGS = ("sum", "mean", "attention")

# Element embeddings whose data are standardized with one global mean and scale (as the
# estimator does for them on their own), so that their spatial structure is kept.
_SPATIAL_ELEMENTS = ("cnn1d", "cnn2d")


def present_elements(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of the present elements of padded sets, and the sets with NaN replaced by 0.

    Parameters
    ----------
    x : Tensor of shape (n, S, *element_shape)
        Sets padded to ``S`` elements with all-NaN elements.

    Returns
    -------
    present : bool Tensor of shape (n, S)
        True where an element is not all NaN (padding is absent; an element
        that mixes NaN and numbers counts as present and is flagged in
        ``partial``).
    x : Tensor of the shape of ``x``
        With every NaN replaced by 0, so that no NaN reaches the arithmetic
        (a NaN times a zero weight is still NaN, and so is its gradient).
    partial : bool Tensor of shape (n, S)
        True where an element mixes NaN and numbers (an error for the caller).
    """
    nan = torch.isnan(x)
    flat = nan.reshape(*x.shape[:2], -1)
    absent = flat.all(dim=-1)
    partial = flat.any(dim=-1) & ~absent
    return ~absent, torch.where(nan, torch.zeros((), dtype=x.dtype, device=x.device), x), partial


def is_set_embedding(embedding: object) -> bool:
    """Whether an estimator's ``embedding`` is the set embedding (its data may be NaN-padded)."""
    return isinstance(embedding, str) and embedding == "set"


def check_padding(X: np.ndarray, argname: str = "X") -> np.ndarray:
    """Check the padding convention of sets of varying size; return the element counts.

    Parameters
    ----------
    X : ndarray of shape (n, S, *element_shape)
        Sets padded with all-NaN elements (validated otherwise: no infinite values).
    argname : str, default="X"
        Name of ``X`` in the error messages.

    Returns
    -------
    ndarray of int of shape (n,)
        Present elements per set.

    Raises
    ------
    ValueError
        If an element mixes NaN and numbers (padding must be a whole element),
        or if a set has no present element.
    """
    if X.ndim < 2:
        raise ValueError(f"embedding='set' needs {argname} of shape (n, S, *element_shape): "
                         f"S elements per observation; got shape {X.shape}.")
    nan = np.isnan(X).reshape(*X.shape[:2], -1)
    absent = nan.all(axis=-1)
    partial = nan.any(axis=-1) & ~absent
    if partial.any():
        row, element = (int(i[0]) for i in np.nonzero(partial))
        raise ValueError(
            f"{argname} row {row}, element {element} has NaN in some values but not all "
            f"({int(partial.sum())} such element(s)). With embedding='set' an element is "
            "absent only when all its values are NaN (padding of sets of varying size); "
            "fill in or drop the missing values, or make the whole element NaN.")
    counts = (~absent).sum(axis=1)
    if not counts.all():
        rows = np.flatnonzero(counts == 0)
        raise ValueError(
            f"{argname} row {int(rows[0])} has no present element ({len(rows)} such row(s)): "
            "every element is all NaN. A set needs at least one element; drop those rows.")
    return counts


def set_standardization(x: np.ndarray,
                        element: str | type = "mlp") -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of padded sets over their present elements, of the event's shape.

    Parameters
    ----------
    x : ndarray of shape (n, S, *element_shape)
        Training sets, padded with all-NaN elements.
    element : str or type, default="mlp"
        The element embedding: ``"cnn1d"`` and ``"cnn2d"`` get one global mean
        and scale (keeping the spatial structure, as on their own); any other
        one a mean and scale per element feature.

    Returns
    -------
    x_mean, x_std : ndarray of shape (S, *element_shape), float64
        The same statistics for every element position: they pool all present
        elements of all sets, so permuting the elements (or changing the
        padding) permutes the standardized data and nothing more; per-position
        statistics would differ by sampling noise and break the invariance.
        Zero scales are left for the caller to replace.
    """
    # Statistics in float64 (squares of float32 data beyond about 1e19 overflow); nan*
    # reductions skip the padding, which is NaN and only NaN (see check_padding).
    if isinstance(element, str) and element in _SPATIAL_ELEMENTS:
        mean, std = np.nanmean(x, dtype=np.float64), np.nanstd(x, dtype=np.float64)
    else:
        elements = x.reshape(-1, *x.shape[2:])
        mean = np.nanmean(elements, axis=0, dtype=np.float64)
        std = np.nanstd(elements, axis=0, dtype=np.float64)
    shape = x.shape[1:]
    return (np.broadcast_to(mean, shape).copy(), np.broadcast_to(std, shape).copy())


class SetEmbedding(nn.Module):
    """Permutation-invariant embedding of padded sets with a shared element network.

    Parameters
    ----------
    element : nn.Module
        Maps a batch of elements ``(m, *element_shape)`` to ``(m, element_dim)``.
    element_shape : tuple of int
        Shape of one element (``(1,)`` for scalars).
    element_dim : int
        Width of the element network's output.
    out_features : int
        Width of the embedding.
    pooling : {"sum", "mean", "attention"}, default="mean"
        How the embedded elements are pooled (see the module docstring).
    hidden : int, default=64
        Width of the hidden layers of :math:`\\rho`.
    layers : int, default=1
        Hidden layers of :math:`\\rho`, the MLP after pooling.
    dropout : float, default=0.0
        Dropout after each hidden layer of :math:`\\rho`.

    Notes
    -----
    ``forward`` takes ``(n, S, *element_shape)`` (or ``(n, S)`` for scalar
    elements). All present elements of the batch are embedded in one call of
    the element network; absent (all-NaN) ones are never passed to it, so a
    set's embedding does not depend on its padding, even for element networks
    whose output depends on the batch (batch normalization in training).
    """

    def __init__(self, element: nn.Module, element_shape: Sequence[int], element_dim: int,
                 out_features: int, pooling: str = "mean", hidden: int = 64, layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"embedding='set': pooling must be one of {list(POOLINGS)}; "
                             f"got {pooling!r}.")
        self.element = element
        self.element_shape = tuple(element_shape)
        self.element_dim = int(element_dim)
        self.pooling = pooling
        if pooling == "attention":
            self.key = nn.Linear(element_dim, element_dim)
            # A zero query gives equal weights at the start: training begins from mean
            # pooling and learns which elements to weigh more.
            self.query = nn.Parameter(torch.zeros(element_dim))
        rho, width = [], element_dim + 1  # + log k
        for _ in range(layers):
            rho += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout:
                rho.append(nn.Dropout(dropout))
            width = hidden
        self.rho = nn.Sequential(*rho, nn.Linear(width, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, size = x.shape[:2]
        x = x.reshape(n, size, *self.element_shape)
        present, x, partial = present_elements(x)
        flat, keep = x.reshape(n * size, *self.element_shape), present.reshape(-1)
        if x.device.type == "meta":
            # Shapes only (model loading builds networks without storage): a boolean
            # selection has a data-dependent size, which meta tensors cannot have.
            h = self.element(flat)
        else:
            # One host sync for both checks; the messages are built only on failure.
            if bool(partial.any() | (~present.any(dim=1)).any()):
                self._raise_bad_padding(present, partial)
            h_present = self.element(flat[keep])
            h = h_present.new_zeros(n * size, h_present.shape[-1]).masked_scatter(
                keep[:, None], h_present)
        h = h.reshape(n, size, -1)
        weights = present.to(h.dtype)
        count = weights.sum(dim=1, keepdim=True)
        if self.pooling == "attention":
            scores = self.key(h) @ self.query / math.sqrt(self.element_dim)
            weights = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)
        elif self.pooling == "mean":
            weights = weights / count
        # Absent elements have weight 0 (and zero features), so they add nothing.
        pooled = torch.einsum("ns,nsd->nd", weights, h)
        return self.rho(torch.cat([pooled, torch.log(count)], dim=1))

    @staticmethod
    def _raise_bad_padding(present, partial):
        if partial.any():
            row, element = (int(i[0]) for i in torch.nonzero(partial, as_tuple=True))
            raise ValueError(f"embedding='set': row {row}, element {element} has NaN in some "
                             "values but not all; an absent element must be all NaN.")
        row = int(torch.nonzero(~present.any(dim=1))[0, 0])
        raise ValueError(f"embedding='set': row {row} has no present element (all NaN); a "
                         "set needs at least one element.")


def set_embedding(input_shape: Sequence[int], out_features: int, element: str | type = "mlp",
                  element_dim: int = 32, pooling: str = "mean", hidden: int = 64,
                  layers: int = 1, dropout: float = 0.0, **element_params) -> SetEmbedding:
    """Set embedding of ``embedding="set"``: any element network, pooled, then an MLP.

    Parameters
    ----------
    input_shape : tuple of int
        ``(S, *element_shape)``: sets padded to ``S`` elements; ``(S,)`` is a
        set of scalars, ``(S, F)`` of vectors, ``(S, L)`` of spectra and
        ``(S, H, W)`` of images (``(S, C, H, W)`` with channels).
    out_features : int
        Output width (``embedding_dim``).
    element : str or torch.nn.Module class, default="mlp"
        The element network shared by all elements: a name in
        :data:`~sklearn_tmnre.networks.EMBEDDINGS` (``"mlp"``, ``"linear"``,
        ``"cnn1d"``, ``"cnn2d"``, ...) or a module class, built as the
        ``embedding`` argument is (:func:`~sklearn_tmnre.networks.make_embedding`)
        on one element's shape with ``out_features=element_dim``.
    element_dim : int, default=32
        Requested width of the element network's output.
    pooling : {"sum", "mean", "attention"}, default="mean"
        Pooling over the present elements (see :mod:`sklearn_tmnre.sets`).
        ``"mean"`` keeps the pooled scale independent of the set size;
        ``"sum"`` grows with it; ``"attention"`` learns weights per element.
    hidden : int, default=64
        Width of the hidden layers of the MLP after pooling.
    layers : int, default=1
        Hidden layers of the MLP after pooling.
    dropout : float, default=0.0
        Dropout after each hidden layer of the MLP after pooling.
    **element_params
        The element network's own arguments, each named ``element__<arg>``
        (``embedding__element__<arg>`` on the estimator), e.g.
        ``element__channels=(8, 16)`` for ``element="cnn2d"``.

    Returns
    -------
    SetEmbedding

    Notes
    -----
    Absent elements are all-NaN (padding); see :mod:`sklearn_tmnre.sets`. The
    estimator's standardization of such data pools over the present elements
    (:func:`set_standardization`), so it keeps the invariance too.
    """
    # Imported here: networks registers this builder in EMBEDDINGS, so it imports this module.
    from .networks import make_embedding

    unknown = sorted(k for k in element_params if not k.startswith("element__"))
    if unknown:
        raise ValueError(f"embedding='set' got unexpected arguments {unknown}; it accepts "
                         "element, element_dim, pooling, hidden, layers, dropout, and the "
                         "element network's own arguments as element__<arg> "
                         "(embedding__element__<arg> on the estimator).")
    if len(input_shape) < 1:
        raise ValueError("embedding='set' needs X of shape (n, S, *element_shape); got "
                         "observations without an element axis.")
    if isinstance(element, nn.Module) or element == "set":
        raise ValueError(f"embedding='set': element must be an embedding name other than "
                         f"'set' or a torch.nn.Module class; got {element!r} (a module "
                         "instance would be shared by every fit and ensemble member).")
    # Scalar elements are vectors of one feature: every element network takes (m, 1).
    element_shape = tuple(input_shape[1:]) or (1,)
    params = {k[len("element__"):]: v for k, v in element_params.items()}
    try:
        module, width = make_embedding(element, element_shape, element_dim, **params)
    except (TypeError, ValueError) as exc:
        # The element's own message speaks of X and embedding__<arg>; say where it sits.
        raise ValueError(f"embedding='set' could not build its element network "
                         f"(element={element!r}) for one element of shape {element_shape} "
                         f"(X has shape (n, S, *element_shape)): {exc} In a set, the "
                         "element's own arguments are embedding__element__<arg>.") from exc
    return SetEmbedding(module, element_shape, width, out_features, pooling=pooling,
                        hidden=hidden, layers=layers, dropout=dropout)
