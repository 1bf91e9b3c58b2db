r"""Galaxy-galaxy strong lensing with a dark subhalo: images of a perturbed Einstein ring.

A singular isothermal ellipsoid (SIE) at the origin plus a point-mass subhalo at
:math:`\theta_{\rm sub}` deflect light from a circular Gaussian source. Ray shooting maps
every (super-sampled) pixel position :math:`\theta` to the source plane through the lens
equation

.. math:: \beta = \theta - \alpha_{\rm SIE}(\theta) - \alpha_{\rm sub}(\theta),

and the pixel records the source surface brightness there (lensing conserves surface
brightness), averaged over ``supersample``\ :sup:`2` sub-pixel rays.

**SIE** (Kormann, Schneider & Bartelmann 1994, A&A 284, 285; Keeton 2001,
astro-ph/0102341). In the frame rotated to the major axis (position angle :math:`\phi`),
with axis ratio :math:`q` and :math:`s = \sqrt{1 - q^2}`,

.. math:: \kappa = \frac{\theta_E}{2\sqrt{q x^2 + y^2/q}}, \qquad
          \alpha_x = \frac{\theta_E\sqrt q}{s} \arctan\frac{s x}{\psi}, \qquad
          \alpha_y = \frac{\theta_E\sqrt q}{s} \operatorname{artanh}\frac{s y}{\psi},
          \qquad \psi = \sqrt{q^2 x^2 + y^2},

which is the singular isothermal sphere :math:`\alpha = \theta_E\,\hat\theta` as
:math:`q \to 1`. The ellipticity components give
:math:`q = (1 - |e|)/(1 + |e|)`, :math:`\phi = \tfrac12 \arg(e_1 + i e_2)`.

**Subhalo**: a point mass :math:`m` with Einstein radius
:math:`b^2 = \frac{4 G m}{c^2} \frac{D_{ls}}{D_l D_s}`, deflection
:math:`\alpha = b^2 (\theta - \theta_{\rm sub}) / (|\theta - \theta_{\rm sub}|^2 + r_c^2)`
with a :math:`r_c = 10^{-3}`'' core that only keeps a ray landing on it finite. Lens at
:math:`z_l = 0.5`, source at :math:`z_s = 2`, flat ΛCDM with
:math:`\Omega_m = 0.3`, :math:`H_0 = 70`: :math:`b \approx 0.064'' (m / 10^9 M_\odot)^{1/2}`.

**Source**: :math:`I(\beta) = \exp(-|\beta - \beta_s|^2 / 2\sigma_s^2)`, peak surface
brightness 1. **Noise**: independent Gaussian per pixel, standard deviation ``noise``
(default 0.05, so the arcs have a peak signal-to-noise of about 20). No PSF.

Parameters (arcsec unless stated), in order: the subhalo ``x_sub, y_sub`` ~ U(-2, 2) and
``log10_m_sub`` ~ U(8, 10.5) (solar masses), the quantities of interest; then nuisance
``theta_E`` ~ U(0.8, 1.4), ``e1, e2`` ~ U(-0.2, 0.2), ``x_src, y_src`` ~ U(-0.3, 0.3).
Data: float32 images of shape ``(npix, npix)``, rows along :math:`y`, columns along
:math:`x`.

There is no reference posterior: it is 8-dimensional and multimodal in the subhalo
position; :meth:`StrongLensing.log_likelihood` is exact.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import stats

from ..prior import Prior
from .base import Task

__all__ = ["StrongLensing", "strong_lensing", "sie_deflection", "subhalo_einstein_radius"]

PRIOR_BOX = {
    "x_sub": (-2.0, 2.0),
    "y_sub": (-2.0, 2.0),
    "log10_m_sub": (8.0, 10.5),
    "theta_E": (0.8, 1.4),
    "e1": (-0.2, 0.2),
    "e2": (-0.2, 0.2),
    "x_src": (-0.3, 0.3),
    "y_src": (-0.3, 0.3),
}
#: Observation 1: a subhalo of 10^9.5 M_sun on the Einstein ring of a mildly elliptical lens.
FIDUCIAL = {"x_sub": 0.75, "y_sub": 0.8, "log10_m_sub": 9.5, "theta_E": 1.1, "e1": 0.1,
            "e2": -0.05, "x_src": 0.05, "y_src": 0.02}
N_OBSERVATIONS = 10
_OBSERVATION_SEED = 19_790_529
_CORE = 1e-3  # arcsec
# 1 - q^2 below this is treated as this: keeps the q -> 1 limit finite; the deflection
# then differs from the exact sphere's by a relative 1e-8 / 3.
_MIN_FLATTENING = 1e-8
# Rows per chunk: bounds the (rows, rays) work arrays to a few MB.
_CHUNK = 32

_G_MSUN_C2 = 1476.6250  # G M_sun / c^2 in metres
_MPC = 3.0856775814913673e22  # metres
_ARCSEC = np.pi / 180 / 3600


def _comoving_distance_mpc(z, Om=0.3, H0=70.0, n=4096):
    u = np.linspace(0.0, np.log1p(z), n)
    a1 = np.exp(u)
    return 299_792.458 / H0 * np.trapezoid(a1 / np.sqrt(Om * a1**3 + 1 - Om), u)


def _einstein_radius_1msun(z_l=0.5, z_s=2.0):
    """Einstein radius (arcsec) of one solar mass for the task's lens and source redshifts."""
    d_l, d_s = _comoving_distance_mpc(z_l), _comoving_distance_mpc(z_s)
    # Angular diameter distances of a flat universe: D = D_C / (1 + z).
    ratio = ((d_s - d_l) / (1 + z_s)) / ((d_l / (1 + z_l)) * (d_s / (1 + z_s))) / _MPC
    return np.sqrt(4 * _G_MSUN_C2 * ratio) / _ARCSEC


_B_1MSUN = _einstein_radius_1msun()


def subhalo_einstein_radius(log10_mass):
    """Einstein radius (arcsec) of a point mass of ``10**log10_mass`` solar masses.

    Lens at z = 0.5, source at z = 2, flat ΛCDM with Om = 0.3, H0 = 70 km/s/Mpc.

    Examples
    --------
    >>> round(float(subhalo_einstein_radius(9.0)), 3)
    0.064
    """
    return _B_1MSUN * 10 ** (0.5 * np.asarray(log10_mass, dtype=float))


def sie_deflection(x, y, theta_E, e1, e2):
    """Deflection of a singular isothermal ellipsoid centred on the origin.

    Parameters
    ----------
    x, y : array-like
        Image-plane positions (arcsec), broadcast against the lens parameters.
    theta_E : array-like
        Einstein radius (arcsec).
    e1, e2 : array-like
        Ellipticity components; ``|e| < 1``.

    Returns
    -------
    alpha_x, alpha_y : ndarray
        Deflection components (arcsec).

    Examples
    --------
    >>> ax, ay = sie_deflection(2.0, 0.0, 1.0, 0.0, 0.0)  # isothermal sphere
    >>> round(float(ax), 6), round(float(ay), 6)
    (1.0, 0.0)
    """
    e = np.hypot(e1, e2)
    q = (1 - e) / (1 + e)
    phi = 0.5 * np.arctan2(e2, e1)
    c, s = np.cos(phi), np.sin(phi)
    xr = c * x + s * y
    yr = -s * x + c * y
    flat = np.sqrt(np.maximum(1 - q**2, _MIN_FLATTENING))
    psi = np.maximum(np.sqrt(q**2 * xr**2 + yr**2), 1e-12)
    f = theta_E * np.sqrt(q) / flat
    axr = f * np.arctan(flat * xr / psi)
    ayr = f * np.arctanh(flat * yr / psi)
    return c * axr - s * ayr, s * axr + c * ayr


class StrongLensing(Task):
    """Strong-lensing image with a point-mass subhalo (see the module docstring).

    Parameters
    ----------
    npix : int, default=64
        Image side in pixels.
    pixel_scale : float, default=0.08
        Pixel side in arcsec (the default field is 5.12'' wide).
    source_sigma : float, default=0.1
        Gaussian source width :math:`\\sigma_s` (arcsec).
    noise : float, default=0.05
        Pixel noise standard deviation, in units of the source peak surface brightness.
    supersample : int, default=2
        Rays per pixel side.

    Attributes
    ----------
    coordinates : tuple of ndarray
        Pixel-centre positions ``(x, y)`` (arcsec), each of shape (npix, npix).
    """

    def __init__(self, npix=64, pixel_scale=0.08, source_sigma=0.1, noise=0.05, supersample=2):
        if not isinstance(npix, numbers.Integral) or npix < 4:
            raise ValueError(f"strong_lensing: npix must be an integer >= 4; got {npix!r}.")
        if not isinstance(supersample, numbers.Integral) or supersample < 1:
            raise ValueError("strong_lensing: supersample must be a positive integer; "
                             f"got {supersample!r}.")
        for argname, value in (("pixel_scale", pixel_scale), ("source_sigma", source_sigma),
                               ("noise", noise)):
            if not (isinstance(value, numbers.Real) and value > 0):
                raise ValueError(f"strong_lensing: {argname} must be a positive number; "
                                 f"got {value!r}.")
        self.npix = int(npix)
        self.pixel_scale = float(pixel_scale)
        self.source_sigma = float(source_sigma)
        self.noise = float(noise)
        self.supersample = int(supersample)
        centre = (np.arange(self.npix) - (self.npix - 1) / 2) * self.pixel_scale
        self.coordinates = tuple(np.meshgrid(centre, centre, indexing="xy"))
        n_rays = self.npix * self.supersample
        sub = (np.arange(n_rays) - (n_rays - 1) / 2) * (self.pixel_scale / self.supersample)
        ray_x, ray_y = np.meshgrid(sub, sub, indexing="xy")
        self._rays = ray_x.ravel(), ray_y.ravel()

        prior = Prior({k: stats.uniform(lo, hi - lo) for k, (lo, hi) in PRIOR_BOX.items()})
        rng = np.random.default_rng(_OBSERVATION_SEED)
        theta = prior.sample(N_OBSERVATIONS, random_state=rng).to_numpy(copy=True)
        theta[0] = list(FIDUCIAL.values())
        observations = self._simulate_batch(theta, rng)
        super().__init__("strong_lensing", prior, (self.npix, self.npix), theta, observations)

    def noiseless(self, theta):
        """Noise-free images for rows of ``theta``.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, 8) or (8,)

        Returns
        -------
        images : ndarray of shape (n, npix, npix), float64
        """
        return self._noiseless(self._check_theta(theta))

    def _noiseless(self, theta):
        out = np.empty((len(theta), self.npix, self.npix))
        # Single precision: arctan/artanh run ~5x faster, and positions need only ~1e-6''.
        x, y = (r.astype(np.float32)[None, :] for r in self._rays)
        ss, n = self.supersample, self.npix
        for s in range(0, len(theta), _CHUNK):
            t = [col[:, None].astype(np.float32) for col in theta[s:s + _CHUNK].T]
            x_sub, y_sub, log10_m, theta_E, e1, e2, x_src, y_src = t
            ax, ay = sie_deflection(x, y, theta_E, e1, e2)
            dx, dy = x - x_sub, y - y_sub
            b2 = subhalo_einstein_radius(log10_m).astype(np.float32) ** 2
            r2 = dx**2 + dy**2 + _CORE**2
            bx = x - ax - b2 * dx / r2 - x_src
            by = y - ay - b2 * dy / r2 - y_src
            rays = np.exp(-(bx**2 + by**2) / (2 * self.source_sigma**2))
            out[s:s + _CHUNK] = rays.reshape(-1, n, ss, n, ss).mean(axis=(2, 4))
        return out

    def _simulate_batch(self, theta, rng):
        out = np.empty((len(theta), self.npix, self.npix), dtype=np.float32)
        for s in range(0, len(theta), _CHUNK):
            # Chunks draw in row order, so a row's noise does not depend on the chunking.
            mean = self._noiseless(theta[s:s + _CHUNK])
            out[s:s + _CHUNK] = mean + self.noise * rng.standard_normal(mean.shape)
        return out

    def _simulate_one(self, theta, rng):
        return self._simulate_batch(theta[None, :], rng)[0]

    def _log_likelihood(self, theta, x):
        r = x - self._noiseless(theta)
        return stats.norm.logpdf(r, scale=self.noise).sum(axis=(1, 2))

    def _reference(self, i, n, rng):
        raise NotImplementedError(
            "strong_lensing has no reference posterior (8-d and multimodal in the subhalo "
            "position); compare methods with log_likelihood-based MCMC or coverage tests."
        )


def strong_lensing(npix=64, pixel_scale=0.08, source_sigma=0.1, noise=0.05, supersample=2):
    """Return the strong-lensing subhalo task (:class:`StrongLensing`).

    Parameters
    ----------
    npix : int, default=64
        Image side in pixels.
    pixel_scale : float, default=0.08
        Arcsec per pixel.
    source_sigma : float, default=0.1
        Source width (arcsec).
    noise : float, default=0.05
        Pixel noise standard deviation.
    supersample : int, default=2
        Rays per pixel side.

    Returns
    -------
    task : StrongLensing

    Examples
    --------
    >>> task = strong_lensing(npix=32)
    >>> theta, X = task.sample(2, random_state=0)
    >>> X.shape, X.dtype
    ((2, 32, 32), dtype('float32'))
    """
    return StrongLensing(npix=npix, pixel_scale=pixel_scale, source_sigma=source_sigma,
                         noise=noise, supersample=supersample)
