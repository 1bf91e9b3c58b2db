"""Marginal posteriors on grids: the ratio network evaluated over each marginal's grid.

For a 1-d marginal the grid has ``n_grid_1d`` cells over the (truncated)
prior's high-mass range (:func:`~sklearn_tmnre.posterior.grid_axes`); a 2-d
marginal gets ``n_grid_2d`` x ``n_grid_2d`` cells. The embedding of each
observation is computed once and broadcast against every grid point, and all
marginals of one dimension run through their batched heads together, in
chunks that bound memory (about ``_CHUNK_ELEMENTS`` hidden activations at a time).
The cell masses are ``exp(logit + log prior)`` normalized over the grid.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

from .posterior import grid_axes

__all__ = ["grid_logits", "grid_masses"]

# Elements (batch x candidates x marginals x hidden) per head evaluation chunk:
# large enough to amortize Python overhead, small enough to stay in cache-friendly memory.
_CHUNK_ELEMENTS = 2**22


@torch.no_grad()
def grid_logits(estimator, X, dims=(1, 2)):
    """Logits of a fitted estimator's 1-d/2-d marginals (of dimensions ``dims``) on their grids.

    Parameters
    ----------
    estimator : TMNREEstimator
        Fitted.
    X : ndarray of shape (n, *event_shape)
        Validated observations.
    dims : tuple of int, default=(1, 2)

    Returns
    -------
    axes : dict marginal -> list of (centres, width)
    logits : dict marginal -> ndarray (n, G) or (n, G, G)
    log_prior : dict marginal -> ndarray (G,) or (G, G)
    """
    net = estimator.net_.module_
    device = estimator.net_.device
    axes, grids, log_prior = {}, {}, {}
    for k, n_grid in ((1, estimator.n_grid_1d), (2, estimator.n_grid_2d)):
        members = [m for m in estimator.marginals_ if len(m) == k and k in dims]
        if not members:
            continue
        names = sorted({n for m in members for n in m}, key=estimator.names_.index)
        per_name = dict(zip(names, grid_axes(estimator.prior_, names, n_grid)))
        per_logp = {n: estimator.prior_.marginal([n]).log_prob(per_name[n][0][:, None])
                    for n in names}
        cols = []
        for m in members:
            axes[m] = [per_name[n] for n in m]
            mesh = np.meshgrid(*[per_name[n][0] for n in m], indexing="ij")
            cols.append(np.stack([g.ravel() for g in mesh], axis=-1))
            lp = per_logp[m[0]] if k == 1 else per_logp[m[0]][:, None] + per_logp[m[1]][None]
            log_prior[m] = lp
        theta_m = torch.as_tensor(np.stack(cols, axis=1), dtype=torch.float32, device=device)
        P, M = theta_m.shape[0], theta_m.shape[1]
        values = np.empty((len(X), P, M), dtype=np.float32)
        b_chunk = max(1, min(len(X), _CHUNK_ELEMENTS // (P * M * estimator.hidden_features)))
        p_chunk = max(1, min(P, _CHUNK_ELEMENTS // (b_chunk * M * estimator.hidden_features)))
        for i in range(0, len(X), b_chunk):
            s = estimator._embed(X[i:i + b_chunk])
            s_part = net.embed_part(s, k)
            for j in range(0, P, p_chunk):
                t = theta_m[None, j:j + p_chunk].expand(len(s), -1, -1, -1)
                values[i:i + b_chunk, j:j + p_chunk] = (
                    net.group_logits(s, t, k, s_part=s_part).cpu().numpy())
        for c, m in enumerate(members):
            shape = (len(X),) + tuple(len(a[0]) for a in axes[m])
            grids[m] = values[:, :, c].astype(np.float64).reshape(shape)
    return axes, grids, log_prior


def grid_masses(estimator, X, dims=(1, 2)):
    """Normalized cell masses of a fitted estimator's grid marginals.

    ``dims=(1,)`` skips the 2-d grids (much cheaper for many observations);
    parameters without a 1-d head then still get one from a 2-d marginal.

    Parameters
    ----------
    estimator : TMNREEstimator
        Fitted.
    X : ndarray of shape (n, *event_shape)
        Validated observations.
    dims : tuple of int, default=(1, 2)

    Returns
    -------
    axes : dict marginal -> list of (centres, width)
    masses : dict marginal -> ndarray (n, G) or (n, G, G), each row summing to one
    """
    if 2 not in dims and any((n,) not in estimator.marginals_ for n in estimator.names_):
        dims = (1, 2)
    axes, logits, log_prior = grid_logits(estimator, X, dims=dims)
    masses = {}
    for m, lg in logits.items():
        a = lg + log_prior[m]
        flat = a.reshape(len(a), -1)
        flat = np.exp(flat - logsumexp(flat, axis=1, keepdims=True))
        masses[m] = flat.reshape(a.shape)
    # Parameters without a 1-d head get their 1-d marginal from a 2-d one.
    for name in estimator.names_:
        if (name,) in masses:
            continue
        for m in masses:
            if len(m) == 2 and name in m:
                j = m.index(name)
                masses[(name,)] = masses[m].sum(axis=2 - j)
                axes[(name,)] = [axes[m][j]]
                break
    return axes, masses
