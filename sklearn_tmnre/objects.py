"""Object-by-object inference: shared-weight heads for blocks of per-object parameters.

A survey of N objects (supernovae, stars, galaxies) has global parameters
:math:`\\theta_g` (a cosmology) and one latent parameter per object,
:math:`z_i`, observed through the object's own data :math:`x_i`
(MALFOI: *marginal likelihood-free object-by-object inference*). The data
have shape ``(n, N, k)``: N objects of k features each, object i's data being
``X[:, i]``. A :class:`~sklearn_tmnre.Prior` declares the objects with
:meth:`~sklearn_tmnre.Prior.with_objects`; its per-object parameters stay
ordinary named parameters ``z[0]``, ..., ``z[N-1]``.

Every object's 1-d marginal is learned by **one** head :math:`\\psi` whose
weights are shared by all objects,

.. math:: f_{z_i}(x, z_i) = \\psi\\big(\\phi(x_i),\\; s(x),\\; z_i\\big)
          \\approx \\log \\frac{p(z_i \\mid x)}{p(z_i)},

where :math:`\\phi` is a small MLP encoder of one object's k features (also
shared), :math:`s(x)` the estimator's embedding of the whole observation (the
global summary, from which the head can learn what the other objects say about
the population) and :math:`z_i` the object's standardized parameter (with
optional Fourier features). The weight count does not depend on N; the
activations grow as batch x candidates x N x hidden and are evaluated in
chunks by the grid engine. Global parameters keep their batched 1-d/2-d heads
(:class:`~sklearn_tmnre.networks.BatchedMarginalHeads`).

Training is the usual binary cross-entropy summed over marginals
(:class:`~sklearn_tmnre.loss.RatioLoss`), the N object terms included,
with the negatives of each object column drawn by its own derangement of the
batch (:func:`~sklearn_tmnre._training.derangements`): the negatives of
different objects of one row then come from different rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["SharedObjectHead", "check_object_data", "object_layout",
           "resolve_object_marginals"]


class SharedObjectHead(nn.Module):
    """One residual MLP head applied to every object of a block (weights shared).

    Parameters
    ----------
    object_features : int
        Features k of one object's data.
    in_features : int
        Width E of the global embedding :math:`s(x)`.
    hidden_features : int, default=64
        Width H of the encoder and of the head.
    num_blocks : int, default=2
        Residual blocks of the head.
    dropout : float, default=0.0
        Dropout inside the residual blocks.
    fourier_features : int, default=0
        Random Fourier features of the standardized parameter,
        ``sin(2 pi b z)``, ``cos(2 pi b z)`` with ``b ~ N(0, fourier_scale^2)``.
    fourier_scale : float, default=1.0

    Notes
    -----
    The first layer is split as in the batched heads: the data part
    ``W_x phi(x_i) + W_s s + b`` (:meth:`embed_part`, shape (B, N, H)) is
    computed once per observation, the parameter part ``W_z z_i`` per candidate.
    """

    def __init__(self, object_features, in_features, hidden_features=64, num_blocks=2,
                 dropout=0.0, fourier_features=0, fourier_scale=1.0):
        super().__init__()
        H = hidden_features
        self.register_buffer("frequencies", fourier_scale * torch.randn(1, fourier_features))
        self.encoder = nn.Sequential(nn.Linear(object_features, H), nn.ReLU(), nn.Linear(H, H))
        self.w_s = nn.Linear(in_features, H)
        self.w_x = nn.Linear(H, H, bias=False)
        self.w_theta = nn.Linear(1 + 2 * fourier_features, H, bias=False)
        self.blocks = nn.ModuleList(nn.ModuleList([nn.Linear(H, H), nn.Linear(H, H)])
                                    for _ in range(num_blocks))
        self.out = nn.Linear(H, 1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.act = nn.ReLU()

    def embed_part(self, s, x_objects):
        """Data part of the first layer: s (B, E), x_objects (B, N, k) -> (B, N, H)."""
        return self.w_x(self.encoder(x_objects)) + self.w_s(s)[:, None]

    def forward(self, theta, part):
        """Logits (B, P, N) of standardized parameters ``theta`` (B, P, N, 1) given ``part``."""
        if self.frequencies.shape[-1]:
            phase = 2 * math.pi * theta * self.frequencies
            theta = torch.cat([theta, torch.sin(phase), torch.cos(phase)], dim=-1)
        h = self.w_theta(theta) + part[:, None]
        for first, second in self.blocks:
            z = self.dropout(self.act(first(self.act(h))))
            h = h + second(z)
        return self.out(self.act(h))[..., 0]


def _block_members(prior):
    """``{parameter name: (block, object index)}`` of a prior's object blocks."""
    return {name: (block, i) for block in prior.object_blocks
            for i, name in enumerate(prior.object_names(block))}


def check_object_data(prior, event_shape):
    """Raise unless data of ``event_shape`` hold the prior's N objects on their first axis.

    Parameters
    ----------
    prior : Prior or None
    event_shape : tuple of int
        Shape of one observation: ``(N,)`` (one feature per object) or ``(N, k)``.
    """
    if prior is None or not getattr(prior, "object_blocks", None):
        return
    sizes = set(prior.object_blocks.values())
    if len(sizes) > 1:
        raise ValueError(f"the prior's object blocks have different numbers of objects "
                         f"{prior.object_blocks}; all per-object parameters must describe the "
                         "same N objects (build the prior with one Prior.with_objects call).")
    n_objects = sizes.pop()
    if len(event_shape) not in (1, 2) or event_shape[0] != n_objects:
        raise ValueError(f"X has event shape {tuple(event_shape)}, but the prior has "
                         f"{n_objects} objects {prior.object_blocks}: object data must have "
                         f"shape (n, {n_objects}, k) (object i's k features in X[:, i]) or "
                         f"(n, {n_objects}) for one feature per object.")


def resolve_object_marginals(spec, prior, names):
    """The marginals of ``spec`` for a prior with object blocks.

    ``"1d"`` is every parameter's 1-d marginal (objects included); ``"2d"``
    and ``"1d+2d"`` add the 2-d marginals of the *global* parameters only. In a
    list, ``("z[*]",)`` stands for ``("z[0]",), ..., ("z[N-1]",)``. 2-d
    marginals of per-object parameters are refused: their shared heads are 1-d.

    Parameters
    ----------
    spec : str or list
    prior : Prior
        With :attr:`~sklearn_tmnre.Prior.object_blocks`.
    names : list of str

    Returns
    -------
    list of tuple of str
    """
    from ._checks import resolve_marginals

    members = _block_members(prior)
    if isinstance(spec, str):
        one_d = [(n,) for n in names]
        globals_ = [n for n in names if n not in members]
        if spec == "1d":
            return one_d
        if spec in ("2d", "1d+2d"):
            two_d = resolve_marginals("2d", globals_) if len(globals_) > 1 else []
            if spec == "2d":
                if not two_d:
                    raise ValueError(f"marginals='2d' needs two global parameters; there are "
                                     f"{globals_} (2-d marginals of per-object parameters are "
                                     "not supported).")
                return two_d
            return one_d + two_d
        return resolve_marginals(spec, names)  # raises the usual error
    expanded = []
    for m in spec:
        m = (m,) if isinstance(m, str) else tuple(m)
        stars = [n for n in m if isinstance(n, str) and n.endswith("[*]")]
        if stars:
            block = stars[0][:-3]
            if len(m) != 1 or block not in prior.object_blocks:
                raise ValueError(f"marginal {m}: 'name[*]' stands for every object's 1-d "
                                 f"marginal of an object block ({sorted(prior.object_blocks)}) "
                                 "and must be alone in its tuple, e.g. ('z[*]',).")
            expanded += [(n,) for n in prior.object_names(block)]
        else:
            expanded.append(m)
    out = resolve_marginals(expanded, names)
    bad = [m for m in out if len(m) > 1 and any(n in members for n in m)]
    if bad:
        raise ValueError(f"marginals {bad[:3]} combine per-object parameters; object "
                         "parameters have 1-d marginals only (one shared head per block). "
                         "Leave them out, or give 2-d marginals of global parameters only.")
    return out


def object_layout(prior, event_shape, marginal_indices):
    """Where a network's object heads read their data and parameters, or None.

    Parameters
    ----------
    prior : Prior or None
        The estimator's ``prior`` (its names are the network's parameter columns).
    event_shape : tuple of int
        ``(N,)`` or ``(N, k)``.
    marginal_indices : list of tuple of int
        Parameter columns of each marginal, in output order.

    Returns
    -------
    dict or None
        None without object blocks or object marginals; otherwise
        ``n_objects``, ``object_features`` (k) and ``blocks``: one dict per
        block with 1-d marginals, holding ``name``, ``positions`` (the
        marginals' places among the 1-d marginals), ``objects`` (their object
        indices) and ``columns`` (their parameter columns).
    """
    if prior is None or not getattr(prior, "object_blocks", None):
        return None
    check_object_data(prior, tuple(event_shape))
    members = _block_members(prior)
    names = prior.names
    one_d = [m[0] for m in marginal_indices if len(m) == 1]
    blocks = {}
    for position, column in enumerate(one_d):
        hit = members.get(names[column])
        if hit is not None:
            entry = blocks.setdefault(hit[0], {"name": hit[0], "positions": [], "objects": [],
                                                "columns": []})
            entry["positions"].append(position)
            entry["objects"].append(hit[1])
            entry["columns"].append(column)
    if not blocks:
        return None
    return {"n_objects": int(event_shape[0]),
            "object_features": int(event_shape[1]) if len(event_shape) == 2 else 1,
            "blocks": [blocks[b] for b in prior.object_blocks if b in blocks]}


def pooled_theta_standardization(prior, mean, std, theta):
    """Parameter standardization with one mean and scale per object block.

    A shared head must see the same standardized value for the same parameter
    value whatever the object; per-column statistics would differ by sampling
    noise. Columns outside blocks keep theirs.
    """
    if prior is None or not getattr(prior, "object_blocks", None):
        return mean, std
    mean, std = np.array(mean, dtype=float), np.array(std, dtype=float)
    column = {n: i for i, n in enumerate(prior.names)}
    for block in prior.object_blocks:
        cols = [column[n] for n in prior.object_names(block)]
        values = theta[:, cols]
        mean[cols] = values.mean()
        scale = values.std()
        std[cols] = scale if scale > 0 else 1.0
    return mean, std
