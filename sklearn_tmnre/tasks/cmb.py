r"""CMB temperature and E-mode power spectra (TT, TE, EE) from a fast analytic template.

**This is an analytic toy, not a Boltzmann solution.** The spectra come from a damped
acoustic-oscillation template whose ingredients (acoustic scale, baryon loading, radiation
driving, diffusion damping, reionization) are computed from the cosmological parameters,
so every parameter moves the spectra in the physical direction; the template's shape
constants were calibrated once against CAMB. It costs well under a millisecond per
spectrum, so it can be simulated millions of times; it must not be used for real data.

**Parameters** (``names``): ``ombh2`` :math:`\omega_b`, ``omch2`` :math:`\omega_c`,
``H0`` (km/s/Mpc), ``tau`` (optical depth to reionization), ``logA``
:math:`= \ln(10^{10} A_s)` and ``ns``. The fiducial point and the scales
:math:`\sigma_i` are Planck 2018 (TT,TE,EE+lowE+lensing) means and 68 % errors:
:math:`\omega_b = 0.02237 \pm 0.00015`, :math:`\omega_c = 0.1200 \pm 0.0012`,
:math:`H_0 = 67.36 \pm 0.54`, :math:`\tau = 0.0544 \pm 0.0073`,
:math:`\ln(10^{10}A_s) = 3.044 \pm 0.014`, :math:`n_s = 0.9649 \pm 0.0042`.
**Prior**: independent uniforms on :math:`\theta^{\rm fid}_i \pm w\,\sigma_i` with
:math:`w` = ``prior_width`` (default 5, i.e. a box five Planck standard deviations to
each side); the lower edge of ``tau`` is raised to 0.01 if it would fall below.

**Background** (no fitted constants). Flat ΛCDM with photons and 3.046 massless
neutrinos as radiation (:math:`\omega_r = 4.18 \times 10^{-5}`) and one 0.06 eV
neutrino counted as matter; last scattering :math:`z_*` from the Hu & Sugiyama (1996,
ApJ 471, 542) fit; the sound horizon :math:`r_s = \int_{z_*}^\infty c_s\,dz/H` with
:math:`c_s = c/\sqrt{3(1+R)}`, :math:`R = 3\omega_b / 4\omega_\gamma (1+z)`; the comoving
distance :math:`D_M(z_*)`. These give the acoustic scale
:math:`\ell_A = \pi D_M / r_s` (within 0.2 % of CAMB's :math:`100\theta_*` over the prior),
the baryon loading :math:`R_*`, the equality scale :math:`\ell_{\rm eq} = k_{\rm eq} D_M`
and the damping scale :math:`\ell_D = k_D D_M` from the photon diffusion integral
(:math:`k_D^{-2} = \int d\eta\,[R^2/(1+R) + 16/15] / [6(1+R)\dot\tau]`, fully ionized
plasma, scaled by 1/1.57 to match CAMB's :math:`k_D`).

**Template** (:math:`x = \ell/\ell_A`, :math:`\vartheta = \pi(x + \varphi)`):

.. math::

   D_0 &= c_A \tfrac{9}{25} T_0^2 A_s (\ell / k_p D_M)^{n_s - 1},
        \quad k_p = 0.05\,{\rm Mpc^{-1}} \\
   B &= 1 + \beta\, y^p / (1 + y^p), \quad y = \ell / (c_{\rm eq}\ell_{\rm eq})
        \quad\text{(radiation driving)} \\
   S &= B\,\tfrac{1+3R_*}{3}(1+R_*)^{-1/4}\cos\vartheta - R_* / [1 + (\ell/c_\psi\ell_{\rm eq})^2]
        \quad\text{(monopole, baryon-shifted zero point)} \\
   V &= d_v\,B\,\tfrac{1+3R_*}{3}(1+R_*)^{-3/4} \sin\vartheta \quad\text{(Doppler)} \\
   D^{TT} &= D_0\,[s_{\rm sw}/9 / (1 + (\ell/\ell_{\rm sw})^2) + I_{\rm eISW}
             + (S^2 + V^2)\,d_T]\,F_\tau \\
   D^{EE} &= D_0\,E_a^2\,[\sin^2(\vartheta + \varphi_E) + f_E]\,d_E\,F_\tau + D^{EE}_{\rm reion} \\
   D^{TE} &= D_0 \tanh(\rho)\,S\,E_a \sin(\vartheta + \varphi_E) \sqrt{d_T d_E}\,F_\tau
             + D^{TE}_{\rm reion}

with damping :math:`d_{T,E} = \exp[-(\ell / c_{D,E}\ell_D)^{a_{T,E}}]`, the E-mode source
:math:`E_a^2 \propto x^2/(x_p^2 + x^2) \cdot [x^2/(1 + x^2/x_E^2)]^{g_E} (1+3R_*)^2/(1+R_*)`,
an early-ISW bump :math:`I_{\rm eISW} \propto \omega_r (1+z_*)/(\omega_b+\omega_c)` (the
radiation left at last scattering) centred near the first peak, the reionization
screening :math:`F_\tau = e^{-2\tau} + (1 - e^{-2\tau}) / (1 + (\ell/\ell_{re})^{q})`
(so :math:`F_\tau \to e^{-2\tau}` at high :math:`\ell`), and the reionization bump
:math:`D^{EE}_{\rm reion} = D_0\,c_{re}\,\tau^2 \exp[-(\ell/\ell_r)^3]`,
:math:`\ell_r \propto \tau^{1/3}`, with
:math:`D^{TE}_{\rm reion} = \tanh(\rho_r)\sqrt{D_0 (s_{\rm sw}/9) F_\tau D^{EE}_{\rm reion}}`.
Both correlation factors are below one, so :math:`|D^{TE}| \le \sqrt{D^{TT} D^{EE}}`.
The 28 constants were fit by least squares to CAMB 2.0.5 unlensed spectra (and to their
differences along each parameter) at the fiducial point, at :math:`\pm2.5\sigma` and
:math:`\pm5\sigma` along each parameter and at 12 random points of the :math:`\pm5\sigma`
box. Residuals against CAMB over that box (rms, relative to the fiducial TT, EE and
:math:`\sqrt{TT \cdot EE}` for TE): TT 16 % at :math:`\ell < 30`, 12 % at 30-500, 10 % above;
TE 20-30 %; EE 20 % above :math:`\ell = 500` and 47 % below (the first E-mode peak is too
low). The first TT peak sits at :math:`\ell = 219` (CAMB: 220). Known deviation: the
first-to-second peak ratio falls slightly with :math:`\omega_b` (CAMB's rises), because the
early-ISW term near the first peak does not grow with the baryon loading; the odd/even
modulation shows in the third-to-second ratio, which rises as in CAMB. Lensing is not
modelled.

**Noise** (Planck-like; all options of :func:`cmb_spectrum`). White noise of
:math:`\Delta_T` = 45 μK-arcmin in temperature and :math:`\sqrt 2\,\Delta_T` in
polarization behind a Gaussian beam of 5 arcmin FWHM,
:math:`N_\ell = \Delta^2 \exp[\ell(\ell+1)\sigma_b^2]`, observed on a sky fraction
:math:`f_{\rm sky} = 0.6`. Each multipole's estimates
:math:`\hat D^{XY}_\ell` (debiased: the noise bias is subtracted, so their mean is the
signal) are Gaussian with the cosmic-variance-plus-noise covariance

.. math:: {\rm Cov}(\hat C^{AB}, \hat C^{CD}) = \frac{\tilde C^{AC}\tilde C^{BD}
          + \tilde C^{AD}\tilde C^{BC}}{(2\ell+1) f_{\rm sky}}, \qquad
          \tilde C^{XX} = C^{XX} + N^{XX},\ \tilde C^{TE} = C^{TE},

i.e. :math:`\sigma_\ell = \sqrt{2/(2\ell+1)f_{\rm sky}}\,(C_\ell + N_\ell)` for TT and EE,
with the TT-TE-EE correlations at equal :math:`\ell` included, independent across
:math:`\ell`. :meth:`CMBSpectrum.log_likelihood` is this Gaussian, exactly.

**Data**: float32 vector ``[TT, TE, EE]`` of :math:`D_\ell = \ell(\ell+1)C_\ell/2\pi` for
:math:`\ell = 2 \dots n_\ell + 1` each (default :math:`n_\ell` = 2499: 7,497 numbers), in
units scaled to order one: TT in :math:`10^3\,\mu K^2`, TE in :math:`10^2\,\mu K^2`, EE in
:math:`10\,\mu K^2` (``SPECTRUM_UNITS``); ``X.reshape(-1, 3, n_ell)`` separates them.

**Posteriors**: :meth:`CMBSpectrum.fisher_matrix` gives the exact Fisher information of
this Gaussian (mean and covariance terms, central differences), hence a Gaussian
approximation of the posterior widths. Reference posterior samples are drawn by
importance resampling with exact likelihood weights from a mixture of Gaussians centred
on the likelihood maximum in the prior box, with the inverse Fisher matrix there widened
by 1.25 (80 %) and 2.5 (20 %); draws outside the box are dropped (the prior is zero).
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..prior import Prior
from .base import Task

__all__ = ["CMBSpectrum", "cmb_spectrum", "FIDUCIAL", "PLANCK_SIGMA", "SPECTRUM_UNITS"]

#: Planck 2018 TT,TE,EE+lowE+lensing means.
FIDUCIAL = {"ombh2": 0.02237, "omch2": 0.1200, "H0": 67.36, "tau": 0.0544, "logA": 3.044,
            "ns": 0.9649}
#: Planck 2018 68 % errors: the unit of ``prior_width``.
PLANCK_SIGMA = {"ombh2": 0.00015, "omch2": 0.0012, "H0": 0.54, "tau": 0.0073, "logA": 0.014,
                "ns": 0.0042}
#: Units of the data, per spectrum (μK^2).
SPECTRUM_UNITS = {"TT": 1e3, "TE": 1e2, "EE": 1e1}
N_OBSERVATIONS = 10
_OBSERVATION_SEED = 19_650_513
_TAU_MIN = 0.01

_C_KM_S = 299_792.458
_T_CMB_UK = 2.7255e6
_OMEGA_GAMMA = 2.4728e-5
_OMEGA_R = _OMEGA_GAMMA * (1 + 0.2271 * 3.046)
_OMEGA_NU = 0.06 / 93.14
_Y_HE = 0.245
# Thomson opacity today per unit omega_b, fully ionized H and He (1/Mpc):
# n_b0 = 11.23 omega_b m^-3, n_e = n_b (1 - Y/2), sigma_T, 1 Mpc = 3.0857e22 m.
_OPACITY = 11.23 * (1 - _Y_HE / 2) * 6.6524587e-29 * 3.0856776e22
_KD_CALIBRATION = 1 / 1.57
_N_INTEGRAL = 512
_ARCMIN = np.pi / 180 / 60

# Template constants, fit once to CAMB 2.0.5 (see the module docstring).
_TEMPLATE = {"c_amp": 0.0197846, "s_sw": 31.6109, "l_sw": 1410.33, "a_isw": 19.7208, "x_isw": 0.7,
             "w_isw": 0.304398, "phi": 0.251937, "beta": 7.44778, "p": 0.549061, "c_eq": 0.419557,
             "c_psi": 14.0333, "d_v": 0.953586, "c_D": 0.5545, "a_T": 2.06873, "c_DE": 0.659661,
             "a_E": 1.98924, "c_E": 0.968035, "x_hp": 3.3092, "x_E": 3.27041, "g_E": 0.275842,
             "phi_E": -0.258979, "f_E": 0.569993, "rho": 1.1783, "l_re": 90.662, "q_re": 4,
             "c_re": 0.0608948, "l_r": 7.22428, "rho_r": 0.689286}

# Rows per vectorized chunk: small enough for the (rows, n_ell) temporaries to stay in
# cache (32 rows ran 25 % faster than 256 on a 2-core machine).
_CHUNK = 32


def _background(ombh2, omch2, H0):
    """Derived scales (each of shape (n,)) of flat ΛCDM for rows of parameters."""
    ombh2, omch2, H0 = (np.asarray(a, dtype=float)[:, None] for a in (ombh2, omch2, H0))
    h2 = (H0 / 100) ** 2
    om = ombh2 + omch2 + _OMEGA_NU
    ol = h2 - om - _OMEGA_R
    g1 = 0.0783 * ombh2**-0.238 / (1 + 39.5 * ombh2**0.763)
    g2 = 0.560 / (1 + 21.1 * ombh2**1.81)
    z_star = 1048 * (1 + 0.00124 * ombh2**-0.738) * (1 + g1 * om**g2)
    t = np.linspace(0.0, 1.0, _N_INTEGRAL)[None, :]
    # Comoving distance to z_*, integrated in u = ln(1+z).
    u = t * np.log1p(z_star)
    a1 = np.exp(u)
    hubble = 100 * np.sqrt(om * a1**3 + _OMEGA_R * a1**4 + ol)
    d_m = np.trapezoid(_C_KM_S * a1 / hubble, u, axis=1)
    # Sound horizon and diffusion length, integrated in ln a from a = 1e-8 to a_*.
    lna = np.log(1e-8) + t * (-np.log1p(z_star) - np.log(1e-8))
    a = np.exp(lna)
    hubble = 100 * np.sqrt(om / a**3 + _OMEGA_R / a**4 + ol)
    baryon = 3 * ombh2 / (4 * _OMEGA_GAMMA) * a
    deta = _C_KM_S / (a * hubble)  # d(conformal time)/d(ln a), Mpc
    r_s = np.trapezoid(deta / np.sqrt(3 * (1 + baryon)), lna, axis=1)
    opacity = _OPACITY * ombh2 / a**2
    diffusion = (baryon**2 / (1 + baryon) + 16 / 15) / (6 * (1 + baryon) * opacity)
    k_d = _KD_CALIBRATION / np.sqrt(np.trapezoid(diffusion * deta, lna, axis=1))
    z_eq = om[:, 0] / _OMEGA_R - 1
    k_eq = np.sqrt(2 * om[:, 0] * 1e4 * (1 + z_eq)) / _C_KM_S
    return {
        "z_star": z_star[:, 0],
        "d_m": d_m,
        "ell_a": np.pi * d_m / r_s,
        "ell_d": k_d * d_m,
        "ell_eq": k_eq * d_m,
        "r_star": 3 * ombh2[:, 0] / (4 * _OMEGA_GAMMA * (1 + z_star[:, 0])),
    }


def _signal_spectra(theta, ell):
    """Template D_ell (μK^2) of shape (n, 3, n_ell): TT, TE, EE for rows of theta."""
    c = _TEMPLATE
    bg = _background(theta[:, 0], theta[:, 1], theta[:, 2])
    # Powers of ell are written as exp(a * (ln ell - ln scale)): one exp, no pow.
    l = ell[None, :]
    ln_l = np.log(l)
    ell_a, ell_d, ell_eq, R = (bg[k][:, None] for k in ("ell_a", "ell_d", "ell_eq", "r_star"))
    tau, ns = theta[:, 3:4], theta[:, 5:6]
    a_s = np.exp(theta[:, 4:5]) * 1e-10
    d0 = (c["c_amp"] * 9 / 25 * _T_CMB_UK**2 * a_s
          * np.exp((ns - 1) * (ln_l - np.log(0.05 * bg["d_m"][:, None]))))
    x = l / ell_a
    ln_x = ln_l - np.log(ell_a)
    phase = np.pi * (x + c["phi"])
    cos_p, sin_p = np.cos(phase), np.sin(phase)
    y = np.exp(c["p"] * (ln_l - np.log(c["c_eq"] * ell_eq)))
    drive = 1 + c["beta"] * y / (1 + y)
    m = drive * (1 + 3 * R) / 3 * (1 + R) ** -0.25
    monopole = m * cos_p - R / (1 + np.exp(2 * (ln_l - np.log(c["c_psi"] * ell_eq))))
    doppler = c["d_v"] * m / np.sqrt(1 + R) * sin_p
    damp_t = np.exp(-np.exp(c["a_T"] * (ln_l - np.log(c["c_D"] * ell_d))))
    damp_e = np.exp(-np.exp(c["a_E"] * (ln_l - np.log(c["c_DE"] * ell_d))))
    screen_max = np.exp(-2 * tau)
    screen = screen_max + (1 - screen_max) / (1 + np.exp(c["q_re"] * (ln_l - np.log(c["l_re"]))))
    radiation = (1 + bg["z_star"][:, None]) * _OMEGA_R / (theta[:, 0:1] + theta[:, 1:2])
    eisw = (c["a_isw"] * radiation / 0.3
            * np.exp(-0.5 * ((ln_x - np.log(c["x_isw"])) / c["w_isw"]) ** 2))
    sachs_wolfe = c["s_sw"] / 9 / (1 + (l / c["l_sw"]) ** 2)
    tt = d0 * (sachs_wolfe + eisw + (monopole**2 + doppler**2) * damp_t) * screen
    source_e = (np.sqrt(c["c_E"] * x**2 / (c["x_hp"] ** 2 + x**2))
                * np.exp(c["g_E"] * (ln_x - 0.5 * np.log1p((x / c["x_E"]) ** 2)))
                * (1 + 3 * R) / (3 * np.sqrt(1 + R)))
    sin_e = sin_p * np.cos(c["phi_E"]) + cos_p * np.sin(c["phi_E"])
    ell_r = c["l_r"] * (tau / 0.0544) ** (1 / 3)
    ee_reion = d0 * c["c_re"] * tau**2 * np.exp(-np.exp(3 * (ln_l - np.log(ell_r))))
    ee = d0 * source_e**2 * (sin_e**2 + c["f_E"]) * damp_e * screen + ee_reion
    te = (d0 * np.tanh(c["rho"]) * monopole * source_e * sin_e * np.sqrt(damp_t * damp_e) * screen
          + np.tanh(c["rho_r"]) * np.sqrt(d0 * sachs_wolfe * screen * ee_reion))
    return np.stack([tt, te, ee], axis=1)


def _cholesky3(a, b, c, d, e, f):
    """Elementwise Cholesky factor of [[a, b, c], [b, d, e], [c, e, f]]."""
    l11 = np.sqrt(a)
    l21, l31 = b / l11, c / l11
    l22 = np.sqrt(d - l21**2)
    l32 = (e - l31 * l21) / l22
    l33 = np.sqrt(f - l31**2 - l32**2)
    return l11, l21, l31, l22, l32, l33


class CMBSpectrum(Task):
    """TT, TE and EE power spectra of the CMB from an analytic template (module docstring).

    Parameters
    ----------
    n_ell : int, default=2499
        Multipoles per spectrum, :math:`\\ell = 2 \\dots n_\\ell + 1` (the template was
        calibrated up to :math:`\\ell = 2500`).
    prior_width : float, default=5.0
        Half-width of the uniform prior box in Planck standard deviations.
    noise_uk_arcmin : float, default=45.0
        Temperature white-noise level (μK-arcmin); polarization has :math:`\\sqrt2` times it.
    beam_fwhm_arcmin : float, default=5.0
        Gaussian beam full width at half maximum (arcmin).
    fsky : float, default=0.6
        Observed sky fraction.

    Attributes
    ----------
    ell : ndarray of shape (n_ell,)
        The multipoles.
    noise_spectra : ndarray of shape (2, n_ell)
        Noise :math:`N_\\ell` as :math:`D_\\ell` (μK^2) in temperature and polarization.
    """

    def __init__(self, n_ell=2499, prior_width=5.0, noise_uk_arcmin=45.0, beam_fwhm_arcmin=5.0,
                 fsky=0.6):
        if not isinstance(n_ell, numbers.Integral) or n_ell < 2:
            raise ValueError(f"cmb_spectrum: n_ell must be an integer >= 2; got {n_ell!r}.")
        for argname, value in (("prior_width", prior_width), ("noise_uk_arcmin", noise_uk_arcmin),
                               ("beam_fwhm_arcmin", beam_fwhm_arcmin)):
            if not (isinstance(value, numbers.Real) and value > 0):
                raise ValueError(f"cmb_spectrum: {argname} must be a positive number; "
                                 f"got {value!r}.")
        if not (isinstance(fsky, numbers.Real) and 0 < fsky <= 1):
            raise ValueError(f"cmb_spectrum: fsky must be in (0, 1]; got {fsky!r}.")
        self.n_ell = int(n_ell)
        self.prior_width = float(prior_width)
        self.fsky = float(fsky)
        self.ell = np.arange(2, self.n_ell + 2, dtype=float)
        sigma_b = beam_fwhm_arcmin * _ARCMIN / np.sqrt(8 * np.log(2))
        white = (noise_uk_arcmin * _ARCMIN) ** 2 * np.exp(self.ell * (self.ell + 1) * sigma_b**2)
        to_d = self.ell * (self.ell + 1) / (2 * np.pi)
        self.noise_spectra = np.stack([white * to_d, 2 * white * to_d])
        self._units = np.array(list(SPECTRUM_UNITS.values()))

        box = {}
        for name, fid in FIDUCIAL.items():
            lo = fid - self.prior_width * PLANCK_SIGMA[name]
            hi = fid + self.prior_width * PLANCK_SIGMA[name]
            if name == "tau":
                lo = max(lo, _TAU_MIN)
            box[name] = (lo, hi)
        prior = Prior({k: stats.uniform(lo, hi - lo) for k, (lo, hi) in box.items()})
        rng = np.random.default_rng(_OBSERVATION_SEED)
        theta = prior.sample(N_OBSERVATIONS, random_state=rng).to_numpy(copy=True)
        theta[0] = list(FIDUCIAL.values())
        observations = self._simulate_batch(theta, rng)
        super().__init__("cmb_spectrum", prior, (3 * self.n_ell,), theta, observations)

    # ---------------------------------------------------------------- model
    def noiseless(self, theta):
        """Mean data (the template spectra in data units) for rows of ``theta``.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, 6) or (6,)

        Returns
        -------
        X : ndarray of shape (n, 3 * n_ell), float64
        """
        theta = self._check_theta(theta)
        mean = _signal_spectra(theta, self.ell) / self._units[None, :, None]
        return mean.reshape(len(theta), -1)

    def _moments(self, theta):
        """Mean (n, 3, n_ell) and the six covariance entries (n, n_ell), in data units."""
        signal = _signal_spectra(theta, self.ell)
        tt = signal[:, 0] + self.noise_spectra[0]
        te = signal[:, 1]
        ee = signal[:, 2] + self.noise_spectra[1]
        nu = (2 * self.ell + 1) * self.fsky
        u_tt, u_te, u_ee = self._units
        cov = (2 * tt**2 / (nu * u_tt**2),
               2 * tt * te / (nu * u_tt * u_te),
               2 * te**2 / (nu * u_tt * u_ee),
               (te**2 + tt * ee) / (nu * u_te**2),
               2 * te * ee / (nu * u_te * u_ee),
               2 * ee**2 / (nu * u_ee**2))
        return signal / self._units[None, :, None], cov

    def _simulate_batch(self, theta, rng):
        out = np.empty((len(theta), 3, self.n_ell), dtype=np.float32)
        for s in range(0, len(theta), _CHUNK):
            mean, cov = self._moments(theta[s:s + _CHUNK])
            l11, l21, l31, l22, l32, l33 = _cholesky3(*cov)
            # Chunks draw in row order, so a row's noise does not depend on the chunking.
            z = rng.standard_normal((len(mean), 3, self.n_ell))
            z0, z1, z2 = z[:, 0], z[:, 1], z[:, 2]
            out[s:s + _CHUNK, 0] = mean[:, 0] + l11 * z0
            out[s:s + _CHUNK, 1] = mean[:, 1] + l21 * z0 + l22 * z1
            out[s:s + _CHUNK, 2] = mean[:, 2] + l31 * z0 + l32 * z1 + l33 * z2
        return out.reshape(len(theta), -1)

    def _simulate_one(self, theta, rng):
        return self._simulate_batch(theta[None, :], rng)[0]

    def _log_likelihood(self, theta, x):
        x = x.reshape(len(theta), 3, self.n_ell)
        out = np.empty(len(theta))
        for s in range(0, len(theta), _CHUNK):
            mean, cov = self._moments(theta[s:s + _CHUNK])
            l11, l21, l31, l22, l32, l33 = _cholesky3(*cov)
            r = x[s:s + _CHUNK] - mean
            w0 = r[:, 0] / l11
            w1 = (r[:, 1] - l21 * w0) / l22
            w2 = (r[:, 2] - l31 * w0 - l32 * w1) / l33
            logdet = np.log(l11 * l22 * l33).sum(axis=1)
            out[s:s + _CHUNK] = (-0.5 * (w0**2 + w1**2 + w2**2).sum(axis=1) - logdet
                                 - 1.5 * self.n_ell * np.log(2 * np.pi))
        return out

    # -------------------------------------------------------------- Fisher
    def _information(self, theta, x=None, step=0.1):
        """Fisher matrix and, given data ``x``, the score, at one parameter vector."""
        h = step * np.array(list(PLANCK_SIGMA.values()))
        rows = np.concatenate([theta + np.diag(h), theta - np.diag(h), theta[None, :]])
        mean, cov = self._moments(rows)
        cov = np.stack([np.stack([cov[0], cov[1], cov[2]], -1),
                        np.stack([cov[1], cov[3], cov[4]], -1),
                        np.stack([cov[2], cov[4], cov[5]], -1)], -1)  # (rows, n_ell, 3, 3)
        d_mean = ((mean[:6] - mean[6:12]) / (2 * h[:, None, None])).transpose(0, 2, 1)
        d_cov = (cov[:6] - cov[6:12]) / (2 * h[:, None, None, None])
        inv = np.linalg.inv(cov[12])
        a = np.einsum("lab,ilbc->ilac", inv, d_cov)  # Sigma^-1 dSigma_i
        fisher = (np.einsum("ila,lab,jlb->ij", d_mean, inv, d_mean)
                  + 0.5 * np.einsum("ilab,jlba->ij", a, a))
        if x is None:
            return fisher, None
        r = x.reshape(3, self.n_ell).T - mean[12].T
        w = np.einsum("lab,lb->la", inv, r)
        score = (np.einsum("ila,la->i", d_mean, w)
                 + 0.5 * (np.einsum("la,ilab,lb->i", w, d_cov, w)
                          - np.einsum("ilaa->i", a)))
        return fisher, score

    def fisher_matrix(self, theta=None):
        """Fisher information of the Gaussian likelihood at ``theta`` (default: fiducial).

        :math:`F_{ij} = \\sum_\\ell \\partial_i\\mu^T \\Sigma^{-1} \\partial_j\\mu
        + \\tfrac12 {\\rm tr}(\\Sigma^{-1}\\partial_i\\Sigma\\,\\Sigma^{-1}\\partial_j\\Sigma)`
        with central differences of step 0.1 Planck σ.

        Parameters
        ----------
        theta : array-like of shape (6,) or dict, optional

        Returns
        -------
        fisher : DataFrame of shape (6, 6), index and columns = parameter names
        """
        theta = self._point(theta)
        fisher, _ = self._information(theta)
        return pd.DataFrame(fisher, index=self.prior.names, columns=self.prior.names)

    def fisher_posterior_std(self, theta=None):
        """Gaussian-approximation (Cramér-Rao) posterior standard deviations at ``theta``.

        :math:`\\sqrt{(F^{-1})_{ii}}`, marginalized over the other parameters; it ignores
        the prior box, so it is the posterior width only where that is well inside the box.

        Parameters
        ----------
        theta : array-like of shape (6,) or dict, optional
            Default: the fiducial point.

        Returns
        -------
        std : Series indexed by parameter name
        """
        fisher = self.fisher_matrix(theta)
        return pd.Series(np.sqrt(np.diag(np.linalg.inv(fisher.to_numpy()))), index=fisher.index)

    def _point(self, theta):
        if theta is None:
            return np.array(list(FIDUCIAL.values()))
        if isinstance(theta, dict):
            missing = [n for n in self.prior.names if n not in theta]
            if missing:
                raise ValueError(f"theta: missing parameters {missing}.")
            theta = [theta[n] for n in self.prior.names]
        theta = self._check_theta(theta)
        if len(theta) != 1:
            raise ValueError(f"theta: expected one parameter vector; got {len(theta)} rows.")
        return theta[0]

    # ---------------------------------------------------- reference posterior
    def _reference(self, i, n, rng):
        x = self.observation(i)
        low, high = self.prior.bounds.T
        scale = np.array(list(PLANCK_SIGMA.values()))

        def neg_log_likelihood(u):
            return -self._log_likelihood((low + u * scale)[None, :], x[None, :])[0]

        # The likelihood maximum in the box, from the true parameters; L-BFGS-B copes with
        # the nearly degenerate omch2-H0 direction and with maxima on the box's faces.
        start = (self.true_parameters(i) - low) / scale
        fit = optimize.minimize(neg_log_likelihood, start, method="L-BFGS-B",
                                bounds=list(zip(np.zeros(6), (high - low) / scale)))
        centre = low + fit.x * scale
        cov = np.linalg.inv(self._information(centre)[0])
        # Defensive mixture: the Laplace Gaussian widened by 1.25, plus 20 % of a 2.5x wider one
        # so that heavier-than-Gaussian tails keep bounded weights.
        parts = [(0.8, stats.multivariate_normal(centre, 1.25**2 * cov)),
                 (0.2, stats.multivariate_normal(centre, 2.5**2 * cov))]
        draws, logw = [], []
        for _ in range(100):
            m = 2 * n
            pick = rng.random(m) < parts[0][0]
            prop = np.where(pick[:, None], parts[0][1].rvs(m, random_state=rng).reshape(m, -1),
                            parts[1][1].rvs(m, random_state=rng).reshape(m, -1))
            prop = prop[np.all((prop >= low) & (prop <= high), axis=1)]
            if len(prop):
                log_q = np.logaddexp(*[np.log(wt) + d.logpdf(prop).reshape(len(prop))
                                       for wt, d in parts])
                draws.append(prop)
                logw.append(self._log_likelihood(prop, np.broadcast_to(x, (len(prop), *x.shape)))
                            - log_q)
            w = np.exp(np.concatenate(logw) - np.concatenate(logw).max()) if logw else np.zeros(1)
            if w.sum() > 0 and w.sum() ** 2 / (w**2).sum() >= n:
                break
        else:
            raise RuntimeError(
                f"cmb_spectrum: importance sampling of the reference posterior of observation "
                f"{i} reached an effective sample size below n={n} after 100 rounds."
            )
        draws = np.concatenate(draws)
        return draws[rng.choice(len(draws), size=n, p=w / w.sum())]


def cmb_spectrum(n_ell=2499, prior_width=5.0, noise_uk_arcmin=45.0, beam_fwhm_arcmin=5.0,
                 fsky=0.6):
    """Return the CMB power-spectrum task (:class:`CMBSpectrum`).

    Parameters
    ----------
    n_ell : int, default=2499
        Multipoles per spectrum, :math:`\\ell = 2 \\dots n_\\ell + 1`.
    prior_width : float, default=5.0
        Half-width of the uniform prior in Planck 2018 standard deviations.
    noise_uk_arcmin : float, default=45.0
        Temperature noise (μK-arcmin); polarization is :math:`\\sqrt 2` times noisier.
    beam_fwhm_arcmin : float, default=5.0
        Beam FWHM (arcmin).
    fsky : float, default=0.6
        Sky fraction.

    Returns
    -------
    task : CMBSpectrum

    Examples
    --------
    >>> task = cmb_spectrum(n_ell=500)
    >>> theta, X = task.sample(4, random_state=0)
    >>> X.shape, X.dtype
    ((4, 1500), dtype('float32'))
    """
    return CMBSpectrum(n_ell=n_ell, prior_width=prior_width, noise_uk_arcmin=noise_uk_arcmin,
                       beam_fwhm_arcmin=beam_fwhm_arcmin, fsky=fsky)
