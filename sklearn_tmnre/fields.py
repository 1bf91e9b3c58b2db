"""Field parameters: one binary value per pixel (and bin), learned by one shared pixel head.

A *field* is a derived parameter over the data's grid: for images of shape
(H, W), a binary array of shape (K, H, W) (K bins, e.g. subhalo mass bins) or
(H, W); for 1-d signals (L,), of shape (K, L) or (L,). Entry
:math:`o_{k,p}` says whether pixel :math:`p` holds something of bin :math:`k`
(probabilistic image segmentation). A :class:`~sklearn_tmnre.Prior` declares a
field with :meth:`~sklearn_tmnre.Prior.with_field` (name and shape only: the
values are *derived*, returned by the simulator beside ``X``, and their prior
is given by simulation), and :meth:`TMNREEstimator.fit
<sklearn_tmnre.TMNREEstimator.fit>` takes the values as a keyword array,
``fit(X, theta, occupancy=occ)``.

Every cell's 1-d marginal is learned by **one** head :math:`\\psi` whose
weights are shared by all pixels (a 1 x 1 convolution: a residual MLP applied
at every pixel) with one output pair per bin,

.. math:: \\psi\\big(u_p(x),\\, s(x)\\big)_{k, o}
          = f_{k,p}(x, o) \\approx \\log \\frac{p(o_{k,p} = o \\mid x)}{p(o_{k,p} = o)},
          \\qquad o \\in \\{0, 1\\},

where :math:`u_p(x)` are the per-pixel features of a U-Net embedding
(:class:`~sklearn_tmnre.unet.UNet`, or any embedding with a
``forward_features`` method) and :math:`s(x)` its global summary. The weight
count depends on K but not on the number of pixels.

**Training** (``field_loss``; the formulas are in :mod:`sklearn_tmnre.loss`).
By default (``"posterior"``, :class:`~sklearn_tmnre.loss.CellPosteriorLoss`)
each cell's posterior probability below is scored by its cross-entropy against
the cell's own value, in units of the prior's cross-entropy: a proper score,
whose optimum is the posterior and so the log ratio. With ``"ratio"`` each
cell is one binary parameter of the usual ratio loss
(:class:`~sklearn_tmnre.loss.RatioLoss`): the joint term reads
:math:`f_{k,p}(x_i, o_{k,p,i})`, and the marginal term, which needs a value of
the cell drawn from its prior independently of :math:`x_i`, is that draw's
exact expectation:

.. math:: \\mathbb E_{o \\sim p_k}\\big[\\operatorname{softplus} f_{k,p}(x_i, o)\\big]
          = (1 - p_k)\\, \\operatorname{softplus} f_{k,p}(x_i, 0)
            + p_k\\, \\operatorname{softplus} f_{k,p}(x_i, 1),

the loss of sampled negatives (e.g. another simulation's values) without their
noise. Both use the very :math:`p_k` of the posterior below. They have the same
optimum, but the ratio form pulls an overshooting :math:`f_{k,p}(x, 1)` back
with a gradient of at most :math:`p_k` per image, so rare bins stay
overconfident long after the rest has converged (measured on the subhalo
example: the user guide's segmentation page).
A cell weighs :math:`1/P` (P pixels), so that each bin of a field counts in the
loss as one marginal.

**Posterior.** With :math:`p_k` the prior frequency of bin k,

.. math:: P(o_{k,p} = 1 \\mid x) = \\frac{p_k\\, r_1}{p_k\\, r_1 + (1 - p_k)\\, r_0}
          = \\sigma\\big(\\operatorname{logit} p_k + f_{k,p}(x, 1) - f_{k,p}(x, 0)\\big).

:math:`p_k` is the empirical frequency of bin k in the training set, **pooled
over pixels** (the prior is taken as the same in every pixel, as the shared
head assumes too), with half a count added to each outcome (so a bin never seen
occupied gets a small, not a zero, probability): per-pixel frequencies of rare
bins would be mostly zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["FieldHead", "cell_frequencies", "cell_weights", "check_field_values", "field_layout",
           "field_logits", "field_pair_logits", "field_probabilities", "set_field_frequencies"]


class FieldHead(nn.Module):
    """One residual MLP applied at every pixel (weights shared): log ratios of every bin.

    Parameters
    ----------
    pixel_features : int
        Features C of the embedding at one pixel.
    in_features : int
        Width E of the global summary :math:`s(x)`.
    n_bins : int
        Bins K of the field (1 for a field of shape (*spatial)).
    hidden_features : int, default=32
    num_blocks : int, default=2
    dropout : float, default=0.0

    Attributes
    ----------
    frequency : Tensor of shape (K,)
        Prior frequency :math:`p_k` of value 1 in each bin (a buffer, set by
        :func:`set_field_frequencies` from the training values).
    """

    def __init__(self, pixel_features, in_features, n_bins, hidden_features=32, num_blocks=2,
                 dropout=0.0):
        super().__init__()
        H = hidden_features
        self.n_bins = n_bins
        self.register_buffer("frequency", torch.full((n_bins,), 0.5))
        self.w_x = nn.Linear(pixel_features, H)
        self.w_s = nn.Linear(in_features, H, bias=False)
        self.blocks = nn.ModuleList(nn.ModuleList([nn.Linear(H, H), nn.Linear(H, H)])
                                    for _ in range(num_blocks))
        self.out = nn.Linear(H, 2 * n_bins)
        # Zero log ratios at the start: the posterior starts at the prior.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, s, pixels):
        """Log ratios (B, 2, K, P) for values 0 and 1, from s (B, E) and pixels (B, C, P)."""
        h = self.w_x(pixels.transpose(1, 2)) + self.w_s(s)[:, None]
        for first, second in self.blocks:
            h = h + second(self.dropout(self.act(first(self.act(h)))))
        out = self.out(self.act(h))  # (B, P, 2 K)
        return out.reshape(len(out), out.shape[1], 2, self.n_bins).permute(0, 2, 3, 1)


def field_layout(prior, embedding, event_shape):
    """Where the pixel heads read their features, or None without fields.

    Parameters
    ----------
    prior : Prior or None
    embedding : nn.Module
        The embedding; with fields it must have ``forward_features(x)`` returning
        ``(summary (n, E), pixels (n, C, *spatial))`` (``embedding="unet"``).
    event_shape : tuple of int

    Returns
    -------
    dict or None
        ``pixel_features`` (C), ``spatial`` (the pixel grid) and ``fields``:
        per field its ``name``, ``shape``, ``n_bins`` and ``offset`` (first
        column in the concatenated cells of all fields); ``n_cells``, the
        cells of all fields.
    """
    fields = getattr(prior, "fields", None)
    if not fields:
        return None
    if prior.object_blocks:
        raise ValueError("A prior with both object blocks and fields is not supported; "
                         "declare either per-object parameters or field parameters.")
    if not callable(getattr(embedding, "forward_features", None)):
        raise ValueError(f"field parameters {sorted(fields)} need an embedding with per-pixel "
                         "features: use embedding='unet' (or a module with a forward_features "
                         "method returning (summary, pixels)).")
    with torch.no_grad():
        was_training = embedding.training
        embedding.eval()
        _, pixels = embedding.forward_features(torch.zeros(2, *event_shape))
        embedding.train(was_training)
    spatial = tuple(pixels.shape[2:])
    out, offset = [], 0
    for name, shape in fields.items():
        if shape[-len(spatial):] != spatial or len(shape) not in (len(spatial),
                                                                 len(spatial) + 1):
            raise ValueError(f"field {name!r} has shape {shape}, but the data grid of X (event "
                             f"shape {tuple(event_shape)}) is {spatial}: a field must have "
                             f"shape {spatial} or (n_bins, *{spatial}), one value per pixel "
                             "(and bin). Declare the field with the data's grid.")
        n_bins = shape[0] if len(shape) > len(spatial) else 1
        out.append({"name": name, "shape": shape, "n_bins": n_bins, "offset": offset})
        offset += math.prod(shape)
    return {"pixel_features": int(pixels.shape[1]), "spatial": spatial, "fields": out,
            "n_cells": offset}


def check_field_values(prior, values, n):
    """The fields' training values as one (n, n_cells) uint8 array, or None without fields.

    Parameters
    ----------
    prior : Prior or None
    values : dict of str to array-like
        The keyword arrays given to ``fit``, each of shape (n, *field_shape).
    n : int
        Rows of X.

    Returns
    -------
    ndarray of shape (n, n_cells) or None
        The fields' values flattened and concatenated in the prior's order; a
        single bool field is a view of the caller's array (never written to).
    """
    fields = getattr(prior, "fields", None) or {}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TypeError(f"fit got unexpected keyword arguments {unknown}; keywords of fit are "
                        f"the values of the prior's field parameters {sorted(fields)} "
                        "(declared with Prior.with_field).")
    missing = sorted(set(fields) - set(values))
    if missing:
        raise ValueError(f"the prior declares the field parameters {missing}, but fit got no "
                         "values for them: pass them as keywords, e.g. fit(X, theta, "
                         f"{missing[0]}=values) with values of shape (n, *field_shape).")
    if not fields:
        return None
    columns = []
    for name, shape in fields.items():
        arr = np.asarray(values[name])
        if arr.shape != (n, *shape):
            raise ValueError(f"field {name!r}: expected values of shape (n, *{shape}) = "
                             f"{(n, *shape)} (one row per row of X); got {arr.shape}.")
        if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
            bad = arr[~((arr == 0) | (arr == 1))].ravel()[:3].tolist()
            raise ValueError(f"field {name!r}: values must be binary (0/1 or bool), one per "
                             f"pixel and bin; got values such as {bad}.")
        flat = arr.reshape(n, -1)
        # A bool array is read as uint8 in place: a 64 x 64 x 10 field is 40 kB per image.
        columns.append(flat.view(np.uint8) if flat.dtype == bool and flat.flags.writeable
                       else flat.astype(np.uint8))
    return columns[0] if len(columns) == 1 else np.concatenate(columns, axis=1)


def set_field_frequencies(heads, layout, values):
    """Store each bin's prior frequency of value 1 in its head (pooled over pixels, +1/2).

    Parameters
    ----------
    heads : sequence of FieldHead
    layout : dict
        :func:`field_layout`.
    values : ndarray of shape (n, n_cells)
    """
    for head, field in zip(heads, layout["fields"]):
        block = values[:, field["offset"]:field["offset"] + math.prod(field["shape"])]
        block = block.reshape(len(values), field["n_bins"], -1)
        ones = block.sum(axis=(0, 2), dtype=np.float64)
        total = block.shape[0] * block.shape[2]
        head.frequency.copy_(torch.as_tensor((ones + 0.5) / (total + 1.0)))


def field_logits(heads, s, pixels):
    """Log ratios (B, 2, n_cells) of all fields' cells for values 0 and 1.

    Parameters
    ----------
    heads : sequence of FieldHead
    s : Tensor (B, E)
        Global summary.
    pixels : Tensor (B, C, P)
        Per-pixel features, pixels flattened.
    """
    return torch.cat([head(s, pixels).flatten(2) for head in heads], dim=2)


def field_pair_logits(logits, values, frequency):
    """Joint logits of every cell, and both values' logits with their prior weights.

    The marginal term of the loss is the expectation over the cell's prior of
    value 0 and value 1 (see the module docstring), so both values are
    negatives, weighted :math:`1 - p` and :math:`p`.

    Parameters
    ----------
    logits : Tensor (B, 2, n_cells)
        :func:`field_logits`.
    values : Tensor (B, n_cells)
        The rows' own field values (0/1).
    frequency : Tensor (n_cells,)
        Prior probability of value 1 of every cell (:func:`cell_frequencies`).

    Returns
    -------
    f_joint : Tensor (B, n_cells)
    f_marginal : Tensor (B, 2, n_cells)
        The logits of values 0 and 1: the two negatives.
    negative_weight : Tensor (2, n_cells)
        Their weights, :math:`1 - p` and :math:`p`, for
        :class:`~sklearn_tmnre.loss.RatioLoss`.
    """
    f_joint = torch.where(values.bool(), logits[:, 1], logits[:, 0])
    return f_joint, logits, torch.stack([1.0 - frequency, frequency])


def cell_frequencies(heads, layout):
    """Prior probability of value 1 of every cell (n_cells,), in the cells' order.

    Each bin's pooled frequency (:func:`set_field_frequencies`), repeated over its pixels.
    """
    n_pixels = math.prod(layout["spatial"])
    return torch.cat([head.frequency.repeat_interleave(n_pixels) for head in heads])


def cell_weights(layout, device=None):
    """Loss weight of every cell: 1 / pixels, so each bin of a field counts as one marginal."""
    n_pixels = math.prod(layout["spatial"])
    return torch.full((layout["n_cells"],), 1.0 / n_pixels, device=device)


def field_probabilities(logits, frequency):
    """Posterior probability of value 1 from log ratios (B, 2, K, P) and frequencies (K,).

    In double precision: a confident map's log-odds beyond about 17 would round to
    a probability of exactly 1 in single precision.
    """
    logits, frequency = logits.double(), frequency.double()
    prior_logit = torch.log(frequency) - torch.log1p(-frequency)
    return torch.sigmoid(prior_logit[:, None] + logits[:, 1] - logits[:, 0])
