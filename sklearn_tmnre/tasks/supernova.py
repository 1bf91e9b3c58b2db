r"""Type Ia supernova cosmology: a flat wCDM Hubble diagram, globally or object by object.

Each of ``n_sn`` supernovae at a known redshift :math:`z_i` has the apparent magnitude

.. math:: m_i = M + \mu(z_i; \Omega_m, w) + \delta_i + \epsilon_i,
          \qquad \epsilon_i \sim \mathcal N(0, \sigma_{\rm int}^2),

with the distance modulus of a spatially flat universe with matter and dark energy of
constant equation of state :math:`w` (no radiation),

.. math:: \mu = 5 \log_{10} \frac{d_L}{10\,{\rm pc}}, \qquad
          d_L(z) = (1+z) \frac{c}{H_0} \int_0^{\ln(1+z)} \frac{e^u\,du}{E(e^u - 1)}, \qquad
          E(z) = \sqrt{\Omega_m (1+z)^3 + (1-\Omega_m)(1+z)^{3(1+w)}}.

:math:`H_0` is fixed at 70 km/s/Mpc: it is exactly degenerate with the absolute
magnitude :math:`M` (which absorbs :math:`-5\log_{10}(H_0/70)`). The integral is a
cumulative trapezoid on 2,000 points uniform in :math:`u = \ln(1+z)`, vectorized over
parameter rows; it agrees with ``astropy.cosmology.FlatwCDM(...).distmod`` to about
:math:`10^{-5}` mag (see the tests).

Two variants:

* ``latent=False`` (default): parameters ``Om, w, M``; :math:`\delta_i = 0`;
  the data are the ``n_sn`` magnitudes, shape ``(n_sn,)``.
* ``latent=True``: every supernova also has its own standardization offset
  :math:`\delta_i \sim \mathcal N(0, \sigma_\delta^2)` (a stretch/colour-like
  correction) with a noisy observable proxy :math:`p_i = \delta_i + \eta_i`,
  :math:`\eta_i \sim \mathcal N(0, \sigma_p^2)`. Parameters ``Om, w, M, delta_0, ...,
  delta_{n_sn-1}`` (3 + ``n_sn`` of them) for object-by-object inference with many
  1-d marginals; data ``(n_sn, 2)``: columns magnitude and proxy.

Redshifts are drawn once from a fixed seed and stored (sorted) on the task: 15 % from a
low-redshift survey, uniform on [0.01, 0.1], and 85 % from a deep survey,
Gamma(shape 3, scale 0.2) truncated to [0.01, 1.5].

Reference posteriors are exact up to Monte Carlo error. :math:`M` enters linearly, so
with its uniform prior it is marginalized in closed form; the 2-d posterior of
:math:`(\Omega_m, w)` is sampled by importance resampling from a piecewise-constant
proposal built on a zoomed grid; then :math:`M \mid \Omega_m, w, x` (a truncated
normal) and, in the latent variant, :math:`\delta_i \mid M, \Omega_m, w, x` (normal)
are drawn exactly.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import special, stats

from ..prior import Prior
from .base import Task

__all__ = ["Supernovae", "supernovae", "distance_modulus"]

C_KM_S = 299_792.458
H0 = 70.0
N_GRID = 2000
Z_MIN, Z_MAX = 0.01, 1.5
FIDUCIAL = {"Om": 0.3, "w": -1.0, "M": -19.3}
PRIOR_BOX = {"Om": (0.1, 0.6), "w": (-2.0, -0.5), "M": (-19.6, -19.0)}
N_OBSERVATIONS = 10
_OBSERVATION_SEED = 20_240_517
# Rows per vectorized chunk: bounds the (rows, N_GRID) and (rows, n_sn) work arrays.
_CHUNK = 1024


def _interpolation_weights(z, z_max):
    """Index and fraction of each ln(1+z) on the uniform integration grid."""
    u_max = np.log1p(z_max)
    pos = np.log1p(z) / u_max * (N_GRID - 1)
    idx = np.minimum(pos.astype(np.int64), N_GRID - 2)
    return idx, pos - idx, u_max


def _comoving_distance(Om, w, idx, frac, u_max):
    """Comoving distance in Mpc, shape (n_rows, n_z), for rows of (Om, w)."""
    u = np.linspace(0.0, u_max, N_GRID)
    Om = Om[:, None]
    # (1+z)^p = exp(p u): one exp per point instead of a power.
    e2 = Om * np.exp(3.0 * u) + (1.0 - Om) * np.exp(np.outer(3.0 * (1.0 + w), u))
    f = np.exp(u) / np.sqrt(e2)
    du = u[1] - u[0]
    cum = np.zeros_like(f)
    np.cumsum(0.5 * du * (f[:, 1:] + f[:, :-1]), axis=1, out=cum[:, 1:])
    return C_KM_S / H0 * (cum[:, idx] * (1.0 - frac) + cum[:, idx + 1] * frac)


def distance_modulus(z, Om, w):
    r"""Distance modulus :math:`\mu(z)` of flat wCDM with :math:`H_0 = 70` km/s/Mpc.

    Parameters
    ----------
    z : array-like of shape (n_z,)
        Redshifts, positive.
    Om : float or array-like of shape (n_rows,)
        Matter density parameter.
    w : float or array-like of shape (n_rows,)
        Dark-energy equation of state.

    Returns
    -------
    mu : ndarray of shape (n_rows, n_z)
        In magnitudes.

    Examples
    --------
    >>> mu = distance_modulus([0.1, 1.0], 0.3, -1.0)
    >>> mu.shape
    (1, 2)
    >>> bool(mu[0, 1] > mu[0, 0])
    True
    """
    z = np.asarray(z, dtype=float)
    if z.ndim != 1 or not np.all(z > 0):
        raise ValueError("distance_modulus: z must be a 1-d array of positive redshifts.")
    Om, w = np.broadcast_arrays(np.atleast_1d(np.asarray(Om, float)),
                                np.atleast_1d(np.asarray(w, float)))
    idx, frac, u_max = _interpolation_weights(z, z.max())
    out = np.empty((len(Om), len(z)))
    for s in range(0, len(Om), _CHUNK):
        d_c = _comoving_distance(Om[s:s + _CHUNK], w[s:s + _CHUNK], idx, frac, u_max)
        # d_L in Mpc; 10 pc = 1e-5 Mpc gives the + 25.
        out[s:s + _CHUNK] = 5.0 * np.log10((1.0 + z) * d_c) + 25.0
    return out


def _draw_redshifts(n, rng):
    """15 % low-z uniform on [0.01, 0.1], 85 % Gamma(3, 0.2) truncated to [0.01, 1.5]."""
    n_low = int(round(0.15 * n))
    low = rng.uniform(Z_MIN, 0.1, n_low)
    gamma = stats.gamma(3.0, scale=0.2)
    lo, hi = gamma.cdf(Z_MIN), gamma.cdf(Z_MAX)
    deep = gamma.ppf(rng.uniform(lo, hi, n - n_low))
    return np.sort(np.concatenate([low, deep]))


class Supernovae(Task):
    """Flat-wCDM supernova Hubble diagram (see the module docstring for the model).

    Parameters
    ----------
    n_sn : int, default=1000
        Number of supernovae.
    latent : bool, default=False
        Give every supernova its own offset parameter ``delta_i`` and observable proxy.
    sigma_int : float, default=0.12
        Intrinsic magnitude scatter :math:`\\sigma_{\\rm int}` (mag).
    sigma_delta : float, default=0.1
        Prior standard deviation of the offsets (``latent=True`` only).
    sigma_proxy : float, default=0.2
        Noise of the offsets' observable proxy (``latent=True`` only); larger is weaker.
    redshift_seed : int, default=0
        Seed of the one-off redshift draw.

    Attributes
    ----------
    redshifts : ndarray of shape (n_sn,)
        Sorted redshifts of the supernovae.
    """

    def __init__(self, n_sn=1000, latent=False, sigma_int=0.12, sigma_delta=0.1,
                 sigma_proxy=0.2, redshift_seed=0):
        if not isinstance(n_sn, numbers.Integral) or n_sn < 2:
            raise ValueError(f"supernovae: n_sn must be an integer >= 2; got {n_sn!r}.")
        for argname, value in (("sigma_int", sigma_int), ("sigma_delta", sigma_delta),
                               ("sigma_proxy", sigma_proxy)):
            if not (isinstance(value, numbers.Real) and value > 0):
                raise ValueError(f"supernovae: {argname} must be a positive number; "
                                 f"got {value!r}.")
        self.n_sn = int(n_sn)
        self.latent = bool(latent)
        self.sigma_int = float(sigma_int)
        self.sigma_delta = float(sigma_delta)
        self.sigma_proxy = float(sigma_proxy)
        self.redshifts = _draw_redshifts(self.n_sn, np.random.default_rng(redshift_seed))
        self._interp = _interpolation_weights(self.redshifts, Z_MAX)

        dists = {k: stats.uniform(lo, hi - lo) for k, (lo, hi) in PRIOR_BOX.items()}
        if self.latent:
            delta = stats.norm(0.0, self.sigma_delta)
            dists.update({f"delta_{i}": delta for i in range(self.n_sn)})
        prior = Prior(dists)
        self._event_shape = (self.n_sn, 2) if self.latent else (self.n_sn,)

        # Observation 1 is the fiducial cosmology; 2..10 are prior draws. Drawn with
        # numpy directly: sampling a Prior of 10^5 parameters one by one is slow.
        rng = np.random.default_rng(_OBSERVATION_SEED)
        globals_ = np.column_stack([rng.uniform(lo, hi, N_OBSERVATIONS)
                                    for lo, hi in PRIOR_BOX.values()])
        globals_[0] = list(FIDUCIAL.values())
        theta = globals_
        if self.latent:
            theta = np.hstack([globals_,
                               rng.normal(0.0, self.sigma_delta, (N_OBSERVATIONS, self.n_sn))])
        observations = self._simulate_batch(theta, rng)
        name = "supernovae_latent" if self.latent else "supernovae"
        super().__init__(name, prior, self._event_shape, theta, observations)

    # ---------------------------------------------------------------- model
    def distance_modulus(self, Om, w):
        """Distance moduli of the task's supernovae for rows of (Om, w).

        Parameters
        ----------
        Om, w : float or array-like of shape (n_rows,)
            Matter density and dark-energy equation of state.

        Returns
        -------
        mu : ndarray of shape (n_rows, n_sn)
        """
        Om, w = np.broadcast_arrays(np.atleast_1d(np.asarray(Om, float)),
                                    np.atleast_1d(np.asarray(w, float)))
        out = np.empty((len(Om), self.n_sn))
        for s in range(0, len(Om), _CHUNK):
            d_c = _comoving_distance(Om[s:s + _CHUNK], w[s:s + _CHUNK], *self._interp)
            out[s:s + _CHUNK] = 5.0 * np.log10((1.0 + self.redshifts) * d_c) + 25.0
        return out

    def noiseless(self, theta):
        """Mean data for rows of ``theta``: magnitudes (and, if latent, proxies).

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params) or (n_params,)

        Returns
        -------
        X : ndarray of shape (n, *event_shape), float64
        """
        return self._noiseless(self._check_theta(theta))

    def _noiseless(self, theta):
        mag = self._mean_magnitude(theta)
        return np.stack([mag, theta[:, 3:]], axis=-1) if self.latent else mag

    def _mean_magnitude(self, theta):
        mag = theta[:, 2:3] + self.distance_modulus(theta[:, 0], theta[:, 1])
        if self.latent:
            mag = mag + theta[:, 3:]
        return mag

    def _simulate_batch(self, theta, rng):
        out = np.empty((len(theta), *self._event_shape), dtype=np.float32)
        scale = np.array([self.sigma_int, self.sigma_proxy])
        chunk = max(1, min(_CHUNK, 2**20 // self.n_sn))
        for s in range(0, len(theta), chunk):
            # Chunks draw in row order, so a row's noise does not depend on the chunking.
            mean = self._noiseless(theta[s:s + chunk])
            noise = rng.standard_normal(mean.shape)
            out[s:s + chunk] = mean + (noise * scale if self.latent else noise * scale[0])
        return out

    def _simulate_one(self, theta, rng):
        return self._simulate_batch(theta[None, :], rng)[0]

    def _log_likelihood(self, theta, x):
        r = (x[..., 0] if self.latent else x) - self._mean_magnitude(theta)
        ll = stats.norm.logpdf(r, scale=self.sigma_int).sum(axis=1)
        if self.latent:
            ll = ll + stats.norm.logpdf(x[..., 1] - theta[:, 3:], scale=self.sigma_proxy).sum(1)
        return ll

    # ---------------------------------------------------- reference posterior
    def _residual_model(self, x):
        """Reduce the data to ``y`` and ``v`` with ``y_i - mu_i = M + N(0, v)`` given (Om, w).

        In the latent variant the offsets are integrated out: conditioning the
        magnitude residual on the proxy leaves ``r_i - k p_i = M + N(0, v)``.
        """
        if not self.latent:
            return x, self.sigma_int**2
        sd2, sp2 = self.sigma_delta**2, self.sigma_proxy**2
        k = sd2 / (sd2 + sp2)
        v = sd2 + self.sigma_int**2 - sd2**2 / (sd2 + sp2)
        return x[:, 0] - k * x[:, 1], v

    def _log_marginal(self, Om, w, y, v):
        """log p(x | Om, w) up to a constant, with M integrated over its uniform prior."""
        mu = self.distance_modulus(Om, w)
        r = y[None, :] - mu
        rbar = r.mean(axis=1)
        ss = ((r - rbar[:, None]) ** 2).sum(axis=1)
        s = np.sqrt(v / self.n_sn)
        lo, hi = PRIOR_BOX["M"]
        return -0.5 * ss / v + _log_normal_mass((lo - rbar) / s, (hi - rbar) / s), rbar, s

    def _reference(self, i, n, rng):
        x = np.asarray(self.observation(i), dtype=float)
        y, v = self._residual_model(x)
        box = np.array([PRIOR_BOX["Om"], PRIOR_BOX["w"]])

        def log_post(om_w):
            return self._log_marginal(om_w[:, 0], om_w[:, 1], y, v)[0]

        om_w = _grid_importance_resample(log_post, box, n, rng)
        _, rbar, s = self._log_marginal(om_w[:, 0], om_w[:, 1], y, v)
        M = stats.truncnorm.rvs((PRIOR_BOX["M"][0] - rbar) / s, (PRIOR_BOX["M"][1] - rbar) / s,
                                loc=rbar, scale=s, random_state=rng)
        out = np.column_stack([om_w, M])
        if not self.latent:
            return out
        # delta_i | globals: Gaussian prior x magnitude residual x proxy, all Gaussian.
        prec = 1 / self.sigma_delta**2 + 1 / self.sigma_int**2 + 1 / self.sigma_proxy**2
        resid = x[None, :, 0] - M[:, None] - self.distance_modulus(om_w[:, 0], om_w[:, 1])
        mean = (resid / self.sigma_int**2 + x[None, :, 1] / self.sigma_proxy**2) / prec
        return np.hstack([out, mean + rng.standard_normal(mean.shape) / np.sqrt(prec)])


def _log_normal_mass(a, b):
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails."""
    # Reflect intervals in the upper tail so that Phi(a) <= 1/2 and the ratio is safe.
    flip = a > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    log_b = special.log_ndtr(b)
    return log_b + np.log1p(-np.exp(special.log_ndtr(a) - log_b))


def _grid_importance_resample(log_post, box, n, rng, n_grid=48, n_zoom=4, cut=30.0):
    """Draw ``n`` samples of a 2-d density known up to a constant inside ``box``.

    A ``n_grid`` x ``n_grid`` grid of cell centres is zoomed ``n_zoom`` times onto the
    cells within ``cut`` nats of the maximum (plus one cell of margin); the last grid
    defines a piecewise-constant proposal (1 % of it spread uniformly over the zoomed
    box, so the proposal is positive wherever the grid might have missed mass), and
    sampling-importance-resampling with exact weights corrects it. Mass outside the
    zoomed box is below ``exp(-cut)`` per cell and is neglected.
    """
    full = np.array(box, dtype=float)

    def grid(box):
        edges = [np.linspace(lo, hi, n_grid + 1) for lo, hi in box]
        g0, g1 = np.meshgrid(*[0.5 * (e[1:] + e[:-1]) for e in edges], indexing="ij")
        lp = log_post(np.column_stack([g0.ravel(), g1.ravel()])).reshape(n_grid, n_grid)
        return edges, lp

    box = full.copy()
    edges, lp = grid(box)
    for _ in range(n_zoom):
        keep = lp > lp.max() - cut
        new = box.copy()
        for axis, e in enumerate(edges):
            rows = np.flatnonzero(keep.any(axis=1 - axis))
            new[axis] = e[max(rows[0] - 1, 0)], e[min(rows[-1] + 2, n_grid)]
        if np.allclose(new, box):
            break
        box = new
        edges, lp = grid(box)
    cell_p = np.exp(lp - lp.max()).ravel()
    cell_p = 0.99 * cell_p / cell_p.sum() + 0.01 / cell_p.size
    width = (box[:, 1] - box[:, 0]) / n_grid
    log_q = np.log(cell_p / np.prod(width))
    props, logws = [], []
    while True:
        m = 4 * n
        cells = rng.choice(cell_p.size, size=m, p=cell_p)
        i0, i1 = np.divmod(cells, n_grid)
        props.append(np.column_stack([box[0, 0] + (i0 + rng.uniform(size=m)) * width[0],
                                      box[1, 0] + (i1 + rng.uniform(size=m)) * width[1]]))
        logws.append(log_post(props[-1]) - log_q[cells])
        logw = np.concatenate(logws)
        wts = np.exp(logw - logw.max())
        if wts.sum() ** 2 / (wts**2).sum() >= n:
            break
    prop = np.concatenate(props)
    return prop[rng.choice(len(prop), size=n, p=wts / wts.sum())]


def supernovae(n_sn=1000, latent=False, sigma_int=0.12, sigma_delta=0.1, sigma_proxy=0.2,
               redshift_seed=0):
    """Return the supernova cosmology task (:class:`Supernovae`).

    Parameters
    ----------
    n_sn : int, default=1000
        Number of supernovae (100,000 works; with ``latent=True`` the
        :class:`~sklearn_tmnre.Prior` of 100,003 parameters is slow to build).
    latent : bool, default=False
        Add one offset parameter per supernova (3 + ``n_sn`` parameters).
    sigma_int, sigma_delta, sigma_proxy : float
        Magnitude scatter, offset prior width, proxy noise (mag).
    redshift_seed : int, default=0
        Seed of the redshift draw.

    Returns
    -------
    task : Supernovae

    Examples
    --------
    >>> task = supernovae(n_sn=200)
    >>> theta, X = task.sample(5, random_state=0)
    >>> X.shape, X.dtype
    ((5, 200), dtype('float32'))
    """
    return Supernovae(n_sn=n_sn, latent=latent, sigma_int=sigma_int, sigma_delta=sigma_delta,
                      sigma_proxy=sigma_proxy, redshift_seed=redshift_seed)
