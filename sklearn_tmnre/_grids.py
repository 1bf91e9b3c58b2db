"""Marginal posteriors on grids: the ratio network evaluated over each marginal's grid.

For a 1-d marginal the grid has ``n_grid_1d`` cells over the (truncated)
prior's high-mass range (:func:`~sklearn_tmnre.posterior.grid_axes`); a 2-d
marginal gets ``n_grid_2d`` x ``n_grid_2d`` cells. The embedding of each
observation is computed once and broadcast against every grid point, and all
marginals of one dimension run through their batched heads together, in
chunks that bound memory (about ``_CHUNK_ELEMENTS`` hidden activations at a time).
The cell masses are ``exp(logit + log prior)`` normalized over the grid.

A discrete parameter's grid is its classes, each a cell of width 1 holding
its prior probability (the counting measure), and it is never zoomed: its
masses are ``softmax(logit + log pmf)`` over the classes, the class
probabilities. Its marginals are 1-d (:func:`check_grid_marginals`).

Every reader of a fitted model's posterior reads the grids of
:func:`zoomed_grid_masses` through ``TMNREEstimator._grid_masses``:
``posterior``, ``predict``, ``predict_interval`` and the coverage metrics,
so they agree with each other. Parameters without a 1-d or 2-d marginal (a
nuisance parameter, or one that only appears in a 3-d marginal) have no grid
and are marginalized (:func:`gridded_names`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

from .posterior import grid_axes

__all__ = ["candidate_logits", "check_grid_marginals", "grid_logits", "grid_masses",
           "gridded_names", "row_axes", "tail_cells", "zoom_ranges", "zoomed_grid_masses",
           "zoomed_log_densities"]

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
    axes, grids, log_prior = {}, {}, {}
    for k, n_grid in ((1, estimator.n_grid_1d), (2, estimator.n_grid_2d)):
        members = [m for m in estimator.marginals_ if len(m) == k and k in dims]
        if not members:
            continue
        names = sorted({n for m in members for n in m}, key=estimator.names_.index)
        per_name = dict(zip(names, grid_axes(estimator.prior_, names, n_grid)))
        per_logp = _log_prior_of_axes(estimator.prior_, per_name)
        cols = []
        for m in members:
            axes[m] = [per_name[n] for n in m]
            mesh = np.meshgrid(*[per_name[n][0] for n in m], indexing="ij")
            cols.append(np.stack([g.ravel() for g in mesh], axis=-1))
            lp = per_logp[m[0]] if k == 1 else per_logp[m[0]][:, None] + per_logp[m[1]][None]
            log_prior[m] = lp
        theta_m = np.stack(_padded(cols), axis=1)
        values = candidate_logits(estimator, X, k, theta_m.shape[:2], theta_m[None])
        for c, m in enumerate(members):
            shape = (len(X),) + tuple(len(a[0]) for a in axes[m])
            size = int(np.prod(shape[1:]))
            grids[m] = values[:, :size, c].astype(np.float64).reshape(shape)
    return axes, grids, log_prior


def _log_prior_of_axes(prior, axes):
    """Log prior density of each parameter at its grid centres, ``{name: (G,)}``.

    Grids shared by several parameters of one distribution and box (an object
    block's members, see :func:`~sklearn_tmnre.posterior.grid_axes`) are
    evaluated once.
    """
    done, out = {}, {}
    for name, (centres, _) in axes.items():
        key = (id(centres), id(prior.distributions[name]))
        if key not in done:
            done[key] = prior.marginal([name]).log_prob(centres[:, None])
        out[name] = done[key]
    return out


def _log_prior_of_centres(prior, centres, n):
    """Log prior density at per-observation grid centres, ``{name: (n, G)}``.

    The continuous parameters (all with grids of the same shape) go through
    one vectorized call of their joint marginal prior, whose per-parameter log
    densities are those of each 1-d marginal; a discrete parameter's classes
    through its own.
    """
    out = {}
    continuous = [p for p in centres if not prior.is_discrete(p)]
    if continuous:
        values = np.stack([centres[p].reshape(-1) for p in continuous], axis=1)
        per_param = prior.marginal(continuous).log_prob_per_param(values)
        for j, p in enumerate(continuous):
            out[p] = per_param[:, j].reshape(n, -1)
    for p in centres:
        if p not in out:
            out[p] = prior.marginal([p]).log_prob(centres[p].reshape(-1, 1)).reshape(n, -1)
    return out


def _padded(arrays):
    """Arrays of candidates made as long as the longest by repeating their last row.

    A discrete parameter's grid is its classes, usually fewer than a continuous
    grid's cells; all marginals evaluated together need the same number of
    candidates, and the logits of the padding are dropped.
    """
    length = max(len(a) for a in arrays)
    return [np.pad(a, [(0, length - len(a))] + [(0, 0)] * (a.ndim - 1), mode="edge")
            for a in arrays]


def check_grid_marginals(prior, marginals):
    """Refuse 2-d marginals of a discrete parameter (raised at fit, before training).

    A discrete parameter's posterior is a table of class probabilities, learned
    by its 1-d marginal; 2-d grids, their credible regions and draws are
    defined for continuous parameters only. Marginals of three or more
    parameters (weighted prior samples) are fine.
    """
    if prior is None:
        return
    discrete = [n for n in prior.names if prior.is_discrete(n)]
    bad = [m for m in marginals if len(m) == 2 and set(m) & set(discrete)]
    if bad:
        keep = [m for m in marginals if m not in bad]
        raise ValueError(
            f"2-d marginals of discrete parameters are not supported: {bad} involve "
            f"{sorted({n for m in bad for n in m if n in discrete})}. A discrete parameter's "
            "posterior is a table of class probabilities from its 1-d marginal; pass the "
            f"marginals as a list without them, e.g. marginals={keep!r}.")


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
    if 2 not in dims and _without_1d(estimator):
        dims = (1, 2)
    axes, logits, log_prior = grid_logits(estimator, X, dims=dims)
    masses = {m: _normalized(lg + log_prior[m]) for m, lg in logits.items()}
    for name, m, j in _one_d_from_two_d(estimator.names_, masses):
        axes[(name,)] = [axes[m][j]]
    return axes, masses


def _without_1d(estimator):
    """Parameters of a 2-d marginal without a 1-d one (their 1-d posterior comes from it)."""
    in_2d = {n for m in estimator.marginals_ if len(m) == 2 for n in m}
    return [n for n in estimator.names_ if n in in_2d and (n,) not in estimator.marginals_]


def gridded_names(estimator):
    """Parameters with a 1-d posterior on a grid: those of a 1-d or a 2-d marginal.

    Others (a nuisance parameter without a marginal, or one only in a 3-d or
    larger marginal) are marginalized and absent from the grids.
    """
    in_grids = {n for m in estimator.marginals_ if len(m) <= 2 for n in m}
    return [n for n in estimator.names_ if n in in_grids]


def _normalized(log_mass):
    """Cell masses ``exp(log_mass)`` normalized over each row's grid (axis 0 indexes rows)."""
    flat = log_mass.reshape(len(log_mass), -1)
    return np.exp(flat - logsumexp(flat, axis=1, keepdims=True)).reshape(log_mass.shape)


def _one_d_from_two_d(names, masses):
    """Give parameters without a 1-d head the 1-d marginal of a 2-d one, in ``masses``.

    Yields ``(name, marginal, j)`` for each, ``j`` the name's axis in ``marginal``,
    so the caller can copy the matching grid axis.
    """
    for name in names:
        if (name,) in masses:
            continue
        for m in [m for m in masses if len(m) == 2 and name in m]:
            j = m.index(name)
            masses[(name,)] = masses[m].sum(axis=2 - j)
            yield name, m, j
            break


@torch.no_grad()
def candidate_logits(estimator, X, k, shape, theta_of):
    """Logits (n, P, M) of the ``k``-dimensional heads at P candidates per observation.

    The one evaluator of a fitted network at given parameter values: the grids
    here and the :class:`~sklearn_tmnre.truncation.Truncator`'s points use it.
    ``theta_of`` is an array of shape (1, P, M, k) of candidates that every
    observation shares, or a function ``theta_of(i, j)`` giving the candidates
    of observations ``i:j``, of shape (j - i, P, M, k). The embedding of each
    observation is computed once; candidates run in chunks of about
    ``_CHUNK_ELEMENTS`` hidden activations.
    """
    net, device = estimator.net_.module_, estimator.net_.device
    P, M = shape
    values = np.empty((len(X), P, M), dtype=np.float32)
    b_chunk = max(1, min(len(X), _CHUNK_ELEMENTS // (P * M * net.activation_width)))
    p_chunk = max(1, min(P, _CHUNK_ELEMENTS // (b_chunk * M * net.activation_width)))
    for i in range(0, len(X), b_chunk):
        s = estimator._embed(X[i:i + b_chunk])
        s_part = net.embed_part(s, k)
        theta = theta_of(i, i + len(s)) if callable(theta_of) else theta_of
        theta = torch.as_tensor(theta, dtype=torch.float32, device=device)
        for j in range(0, P, p_chunk):
            t = theta[:, j:j + p_chunk].expand(len(s), -1, -1, -1)
            values[i:i + b_chunk, j:j + p_chunk] = (
                net.group_logits(s, t, k, s_part=s_part).cpu().numpy())
    return values


def tail_cells(mass, tail):
    """First and last cell of each row's grid that the mass outside them leaves at most ``tail``.

    The cells before ``first`` hold at most ``tail`` of the row's mass, and so
    do the cells after ``last`` (each as large a run as that allows).

    Parameters
    ----------
    mass : ndarray of shape (n, G)
        Cell masses of a 1-d grid per row.
    tail : float
        Mass each end may leave out.

    Returns
    -------
    first, last : int ndarrays of shape (n,)
    """
    cdf = np.cumsum(mass, axis=1)
    total = cdf[:, -1:]
    # Relative to the row total: rounding can leave it a hair below one.
    first = np.argmax(cdf > tail * total, axis=1)
    last = np.argmax(cdf >= (1 - tail) * total, axis=1)
    return first, last


def zoom_ranges(axes, masses, names, tail=1e-6, pad=2):
    """Per observation, the range of each parameter's grid that holds its 1-d posterior mass.

    The range runs from the first cell where the cumulative mass exceeds
    ``tail`` to the first where it reaches ``1 - tail``, widened by ``pad``
    cells on each side and kept inside the grid.

    Parameters
    ----------
    axes, masses : dict
        Grid axes and normalized 1-d masses of shape (n, G), as returned by
        :func:`grid_masses`; every name needs a 1-d entry.
    names : sequence of str
    tail : float, default=1e-6
        Mass left out on each side.
    pad : int, default=2
        Extra cells on each side.

    Returns
    -------
    dict name -> (low, high), two ndarrays of shape (n,)
    """
    ranges = {}
    for name in names:
        (centres, width), = axes[(name,)]
        first, last = tail_cells(masses[(name,)], tail)
        low = centres[np.maximum(first - pad, 0)] - width / 2
        high = centres[np.minimum(last + pad, len(centres) - 1)] + width / 2
        ranges[name] = (low, high)
    return ranges


def zoomed_grid_masses(estimator, X, dims=(1, 2), tail=1e-6, pad=2):
    """Cell masses on grids fitted to each observation's posterior instead of the prior's range.

    A first pass evaluates the 1-d grids over the prior's range (as
    :func:`grid_masses`); each parameter's grid is then narrowed to the range
    holding all but ``tail`` of its 1-d mass on each side (:func:`zoom_ranges`),
    and every 1-d and 2-d marginal is evaluated again on a grid of the same
    number of cells over the narrowed ranges. A posterior much narrower than the
    prior thus gets as many cells as a broad one, instead of a handful.

    Parameters
    ----------
    estimator : TMNREEstimator
        Fitted.
    X : ndarray of shape (n, *event_shape)
        Validated observations.
    dims : tuple of int, default=(1, 2)
        Dimensions of the marginals to evaluate; ``(1,)`` skips the 2-d grids
        unless a parameter's 1-d posterior must be read off one.
    tail : float, default=1e-6
        Mass of each 1-d marginal left outside its zoomed range on each side.
    pad : int, default=2
        Cells of the first pass added on each side of the range.

    Returns
    -------
    axes : dict marginal -> list of (centres, widths)
        One pair per parameter of the marginal: cell centres of shape (n, G)
        and cell widths of shape (n,), one grid per observation.
    masses : dict marginal -> ndarray (n, G) or (n, G, G), each row summing to one
    """
    if 2 not in dims and _without_1d(estimator):
        dims = (1, 2)
    axes, log_density = zoomed_log_densities(estimator, X, dims, tail=tail, pad=pad)
    masses = {m: _normalized(lg) for m, lg in log_density.items()}
    for name, m, j in _one_d_from_two_d(estimator.names_, masses):
        axes[(name,)] = [axes[m][j]]
    return axes, masses


def zoomed_log_densities(estimator, X, dims=(1, 2), tail=1e-6, pad=2):
    """Unnormalized log posterior densities (log ratio + log prior) on the zoomed grids.

    The grids of :func:`zoomed_grid_masses`, before normalization: the
    normalizer of a row, ``logsumexp`` of its cells plus the log of its cell
    volume, estimates :math:`\\log \\int r(x, \\theta) p(\\theta) d\\theta` (used by
    ``TMNREEstimator.score``). Only the marginals of ``dims`` are evaluated.

    Returns
    -------
    axes : dict marginal -> list of (centres, widths)
    log_density : dict marginal -> ndarray (n, G) or (n, G, G)
    """
    n = len(X)
    axes0, masses0 = grid_masses(estimator, X, dims=(1,))
    prior = estimator.prior_
    # A discrete parameter's grid is its classes: never zoomed.
    zoomed = [p for p in gridded_names(estimator) if not prior.is_discrete(p)]
    ranges = zoom_ranges(axes0, masses0, zoomed, tail=tail, pad=pad)
    axes, log_density = {}, {}
    for k, n_grid in ((1, estimator.n_grid_1d), (2, estimator.n_grid_2d)):
        members = [m for m in estimator.marginals_ if len(m) == k and k in dims]
        if not members:
            continue
        names = sorted({p for m in members for p in m}, key=estimator.names_.index)
        centres, widths = {}, {}
        for name in names:
            if prior.is_discrete(name):
                (classes, _), = grid_axes(prior, [name], n_grid)
                centres[name], widths[name] = np.tile(classes, (n, 1)), np.ones(n)
            else:
                low, high = ranges[name]
                widths[name] = (high - low) / n_grid
                centres[name] = low[:, None] + (np.arange(n_grid) + 0.5) * widths[name][:, None]
        log_prior = _log_prior_of_centres(prior, centres, n)

        # Cell indices of each marginal's flattened k-d grid along each of its axes
        # (padded to a common length when a discrete axis makes some grids smaller).
        sizes = [tuple(centres[p].shape[1] for p in m) for m in members]
        meshes = _padded([np.stack([g.ravel() for g in np.meshgrid(
            *[np.arange(s) for s in size], indexing="ij")], axis=-1) for size in sizes])

        def theta_of(i, j, members=members, centres=centres, meshes=meshes):
            return np.stack([np.stack([centres[p][i:j][:, g] for p, g in zip(m, mesh.T)],
                                      axis=-1)
                             for m, mesh in zip(members, meshes)], axis=2)

        values = candidate_logits(estimator, X, k, (len(meshes[0]), len(members)), theta_of)
        for c, (m, size) in enumerate(zip(members, sizes)):
            lg = values[:, :int(np.prod(size)), c].astype(np.float64).reshape((n,) + size)
            log_density[m] = lg + (log_prior[m[0]] if k == 1
                                   else log_prior[m[0]][:, :, None] + log_prior[m[1]][:, None, :])
            axes[m] = [(centres[p], widths[p]) for p in m]
    return axes, log_density


def row_axes(axes, i):
    """The grid axes of observation ``i`` from axes shared by all rows or one per row."""
    return {m: [(c if np.ndim(c) == 1 else c[i], float(w if np.ndim(w) == 0 else w[i]))
                for c, w in ax] for m, ax in axes.items()}
