"""Tests of the science tasks: CMB spectra, supernova cosmology, strong lensing."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from sklearn_tmnre import simulate
from sklearn_tmnre.tasks.base import Task
from sklearn_tmnre.tasks.cmb import FIDUCIAL, PLANCK_SIGMA, _background, cmb_spectrum
from sklearn_tmnre.tasks.lensing import sie_deflection, strong_lensing
from sklearn_tmnre.tasks.supernova import PRIOR_BOX, distance_modulus, supernovae


@pytest.fixture(scope="module")
def cmb():
    return cmb_spectrum()


@pytest.fixture(scope="module")
def cmb_small():
    return cmb_spectrum(n_ell=300)


@pytest.fixture(scope="module")
def sn():
    return supernovae(n_sn=200)


@pytest.fixture(scope="module")
def sn_latent():
    return supernovae(n_sn=40, latent=True)


@pytest.fixture(scope="module")
def lens():
    return strong_lensing()


TASKS = ["cmb_small", "sn", "sn_latent", "lens"]


def _fiducial(**changes):
    theta = dict(FIDUCIAL, **changes)
    return np.array([theta[k] for k in FIDUCIAL])


# ------------------------------------------------------------------ interface
@pytest.mark.parametrize("name", TASKS)
def test_interface_shapes_and_dtypes(name, request):
    task = request.getfixturevalue(name)
    assert isinstance(task, Task)
    theta, X = task.sample(5, random_state=0)
    assert isinstance(theta, pd.DataFrame)
    assert list(theta.columns) == task.prior.names
    assert X.shape == (5, *task.event_shape)
    assert X.dtype == np.float32
    assert np.all(np.isfinite(X))
    assert task.simulator(theta.iloc[0].to_numpy(), rng=0).shape == task.event_shape
    assert task.observation(1).shape == task.event_shape
    assert task.true_parameters(10).shape == (task.prior.ndim,)
    assert np.all(task.prior.contains(task.true_parameters(1)[None, :]))


@pytest.mark.parametrize("name", TASKS)
def test_seeded_determinism(name, request):
    task = request.getfixturevalue(name)
    theta, X = task.sample(3, random_state=7)
    theta2, X2 = task.sample(3, random_state=7)
    _, X3 = task.sample(3, random_state=8)
    np.testing.assert_array_equal(theta.to_numpy(), theta2.to_numpy())
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, X3)


@pytest.mark.parametrize("name", TASKS)
def test_per_row_simulator_is_the_first_row_of_a_batch(name, request):
    task = request.getfixturevalue(name)
    theta, _ = task.sample(4, random_state=1)
    batch = task.simulate_batch(theta, rng=np.random.default_rng(3))
    one = task.simulator(theta.iloc[0].to_numpy(), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(np.float32(one), batch[0])


@pytest.mark.parametrize("name", TASKS)
def test_noise_matches_log_likelihood(name, request):
    """Whitened residuals of repeated simulations at one theta are chi^2 with k = data size.

    -2 [log p(x | theta) - log p(mean | theta)] is the chi^2 of the residual; its average
    over 30 draws has mean k and standard deviation sqrt(2k / 30).
    """
    task = request.getfixturevalue(name)
    n = 30
    theta = np.repeat(task.true_parameters(1)[None, :], n, axis=0)
    X = task.simulate_batch(theta, rng=11).astype(float)
    chi2 = -2 * (task.log_likelihood(theta, X) - task.log_likelihood(theta, task.noiseless(theta)))
    k = np.prod(task.event_shape)
    assert abs(chi2.mean() - k) < 5 * np.sqrt(2 * k / n)


def test_simulate_runs_the_task_simulator(cmb_small):
    theta = cmb_small.prior.sample(6, random_state=0)
    X = simulate(cmb_small.simulator, theta, random_state=0)
    Xv = simulate(cmb_small.simulate_batch, theta, random_state=0, vectorized=True)
    assert X.shape == Xv.shape == (6, 900)


def test_factory_arguments_are_validated():
    with pytest.raises(ValueError, match="n_ell"):
        cmb_spectrum(n_ell=1)
    with pytest.raises(ValueError, match="fsky"):
        cmb_spectrum(fsky=1.5)
    with pytest.raises(ValueError, match="n_sn"):
        supernovae(n_sn=1)
    with pytest.raises(ValueError, match="sigma_int"):
        supernovae(sigma_int=0)
    with pytest.raises(ValueError, match="npix"):
        strong_lensing(npix=2)


# ------------------------------------------------------------------------ CMB
def test_cmb_prior_box_is_prior_width_planck_sigmas():
    task = cmb_spectrum(n_ell=10, prior_width=3.0)
    bounds = task.prior.bounds
    for (name, fid), (lo, hi) in zip(FIDUCIAL.items(), bounds):
        assert hi == pytest.approx(fid + 3 * PLANCK_SIGMA[name])
        if name != "tau":
            assert lo == pytest.approx(fid - 3 * PLANCK_SIGMA[name])
    wide = cmb_spectrum(n_ell=10, prior_width=20.0).prior.bounds
    assert wide[3, 0] == pytest.approx(0.01)  # tau's lower edge stays physical


def test_cmb_acoustic_scale_matches_camb():
    # CAMB 2.0.5 at the fiducial point: 100 theta_* = 1.041198, so ell_A = pi / theta_*.
    bg = _background(*_fiducial()[None, :3].T)
    assert bg["ell_a"][0] == pytest.approx(np.pi / 0.01041198, rel=3e-3)
    # Raising H0 at fixed omega_b, omega_c shortens D_M: the peaks move to lower ell.
    faster = _background(*_fiducial(H0=70.0)[None, :3].T)
    assert faster["ell_a"][0] < bg["ell_a"][0]


def test_cmb_first_peak_near_220(cmb):
    tt = cmb.noiseless(_fiducial())[0, : cmb.n_ell] * 1e3
    peak = cmb.ell[100:400][np.argmax(tt[100:400])]
    assert 205 <= peak <= 235
    assert 4000 < tt.max() < 7000  # μK^2


def test_cmb_amplitude_and_optical_depth(cmb):
    base = cmb.noiseless(_fiducial())[0]
    brighter = cmb.noiseless(_fiducial(logA=3.144))[0]
    np.testing.assert_allclose(brighter / base, np.exp(0.1), rtol=1e-10)
    d_tau = 0.03
    screened = cmb.noiseless(_fiducial(tau=0.0544 + d_tau))[0].reshape(3, -1)
    high = cmb.ell > 1000
    ratio = screened[[0, 2]][:, high] / base.reshape(3, -1)[[0, 2]][:, high]
    np.testing.assert_allclose(ratio, np.exp(-2 * d_tau), rtol=1e-3)
    # The E-mode reionization bump grows like tau^2.
    ee = [cmb.noiseless(_fiducial(tau=t))[0].reshape(3, -1)[2, 1] for t in (0.04, 0.08)]
    assert 3.0 < ee[1] / ee[0] < 5.0


def test_cmb_parameters_move_spectra_physically(cmb):
    def tt(**changes):
        return cmb.noiseless(_fiducial(**changes))[0, : cmb.n_ell]

    def peak(spec, lo, hi):
        sel = (cmb.ell >= lo) & (cmb.ell < hi)
        return spec[sel].max()

    # Tilt pivots at k = 0.05/Mpc (ell ~ 700): more power above, less below.
    tilted = tt(ns=0.9649 + 0.02) / tt()
    assert tilted[cmb.ell == 2000][0] > 1 > tilted[cmb.ell == 10][0]
    # Baryon loading raises odd (compression) peaks relative to even ones; CAMB's
    # third-to-second peak ratio goes from 0.981 to 1.003 over omega_b = fiducial -+ 5 sigma.
    ratio = [peak(t, 700, 900) / peak(t, 450, 650)
             for t in (tt(ombh2=0.02237 - 0.00075), tt(ombh2=0.02237 + 0.00075))]
    assert ratio[1] > ratio[0]
    # More dark matter means less radiation driving: a lower first peak.
    assert peak(tt(omch2=0.126), 150, 350) < peak(tt(omch2=0.114), 150, 350)


def test_cmb_cosmic_variance_and_correlations(cmb_small):
    n = 2000
    theta = np.repeat(_fiducial()[None, :], n, axis=0)
    X = cmb_small.simulate_batch(theta, rng=5).astype(float).reshape(n, 3, -1)
    units = np.array([1e3, 1e2, 1e1])[:, None]
    signal = cmb_small.noiseless(_fiducial())[0].reshape(3, -1) * units
    noise_t, noise_p = cmb_small.noise_spectra
    ell = cmb_small.ell
    nu = (2 * ell + 1) * 0.6
    # sigma_ell = sqrt(2 / ((2l+1) fsky)) (C_l + N_l), for TT and EE.
    for k, noise in ((0, noise_t), (2, noise_p)):
        expected = np.sqrt(2 / nu) * (signal[k] + noise)
        ratio = (X[:, k].std(axis=0) * units[k, 0] / expected) ** 2
        # each variance ratio has standard deviation sqrt(2/n); 300 of them are averaged
        assert abs(ratio.mean() - 1) < 5 * np.sqrt(2 / n / len(ell))
    # The debiased estimates are unbiased: |z| of the 900 sample means averages sqrt(2/pi).
    tt, te, ee = signal[0] + noise_t, signal[1], signal[2] + noise_p
    sd = np.stack([np.sqrt(2 / nu) * tt, np.sqrt((te**2 + tt * ee) / nu), np.sqrt(2 / nu) * ee])
    z = (X.mean(axis=0) * units - signal) / (sd / np.sqrt(n))
    assert abs(np.abs(z).mean() - np.sqrt(2 / np.pi)) < 0.1
    # TT-TE correlation at equal ell: sqrt(2) C_TE / sqrt(C_TE^2 + (C_TT+N_T)(C_EE+N_P)).
    sel = (ell >= 90) & (ell <= 110)
    expected = np.sqrt(2) * te / np.sqrt(te**2 + tt * ee)
    empirical = np.array([np.corrcoef(X[:, 0, j], X[:, 1, j])[0, 1] for j in np.flatnonzero(sel)])
    assert np.abs(empirical - expected[sel]).mean() < 4 * 0.8 / np.sqrt(n)


def test_cmb_fisher_is_the_score_covariance(cmb_small):
    """E[s] = 0 and E[s^T F^-1 s] = 6 for the score s of simulated data at theta."""
    theta = _fiducial()
    fisher, _ = cmb_small._information(theta)
    n = 150
    X = cmb_small.simulate_batch(np.repeat(theta[None, :], n, axis=0), rng=2).astype(float)
    scores = np.array([cmb_small._information(theta, x)[1] for x in X])
    inv = np.linalg.inv(fisher)
    quad = np.einsum("ni,ij,nj->n", scores, inv, scores)
    assert abs(quad.mean() - 6) < 5 * np.sqrt(12 / n)
    std = cmb_small.fisher_posterior_std()
    np.testing.assert_allclose(std.to_numpy(), np.sqrt(np.diag(inv)), rtol=1e-12)
    assert list(std.index) == list(FIDUCIAL)


def test_cmb_reference_posterior_matches_fisher_width(cmb):
    ref = cmb.reference_samples(1, n=400, random_state=0)
    fisher_std = cmb.fisher_posterior_std(ref.mean().to_numpy())
    ratio = ref.std().to_numpy() / fisher_std.to_numpy()
    # 400 resampled draws: the sample standard deviation is good to ~10 %
    np.testing.assert_allclose(ratio, 1.0, atol=0.2)
    z = (ref.mean().to_numpy() - cmb.true_parameters(1)) / fisher_std.to_numpy()
    assert np.all(np.abs(z) < 4)


# ---------------------------------------------------------------- supernovae
def test_sn_distance_modulus_matches_astropy(sn):
    cosmology = pytest.importorskip("astropy.cosmology")
    z = sn.redshifts
    for om, w in [(0.3, -1.0), (0.1, -2.0), (0.6, -0.5), (0.45, -1.3)]:
        ref = cosmology.FlatwCDM(H0=70, Om0=om, w0=w).distmod(z).value
        assert np.abs(sn.distance_modulus(om, w)[0] - ref).max() < 1e-4
        assert np.abs(distance_modulus(z, om, w)[0] - ref).max() < 1e-4


def test_sn_distance_modulus_grows_with_redshift_and_matches_hubble_law(sn):
    mu = sn.distance_modulus([0.3, 0.2], [-1.0, -1.5])
    assert np.all(np.diff(mu, axis=1) >= 0)
    # Low z: d_L ~ cz/H0 (1 + (1 - q0) z / 2), q0 = Om/2 + (1 - Om)(1 + 3w)/2.
    z = np.array([0.01, 0.02])
    q0 = 0.15 - 0.35 * 2
    d_l = 299_792.458 * z / 70 * (1 + (1 - q0) * z / 2)
    np.testing.assert_allclose(distance_modulus(z, 0.3, -1.0)[0], 5 * np.log10(d_l) + 25,
                               atol=2e-3)


def test_sn_redshifts_are_fixed_and_realistic():
    a, b = supernovae(n_sn=1000), supernovae(n_sn=1000)
    np.testing.assert_array_equal(a.redshifts, b.redshifts)
    assert not np.array_equal(a.redshifts, supernovae(n_sn=1000, redshift_seed=1).redshifts)
    z = a.redshifts
    assert z.min() >= 0.01 and z.max() <= 1.5 and np.all(np.diff(z) >= 0)
    assert 0.13 < np.mean(z < 0.1) < 0.22  # the 15 % low-z sample plus the deep tail


def test_sn_marginal_over_M_is_the_integral_of_the_likelihood(sn):
    x = sn.observation(2)
    y, v = sn._residual_model(x)
    om_w = np.array([[0.25, -0.9], [0.35, -1.2], [0.5, -0.6]])
    closed = sn._log_marginal(om_w[:, 0], om_w[:, 1], y, v)[0]
    lo, hi = PRIOR_BOX["M"]
    numeric = []
    for om, w in om_w:
        def loglik(M, om=om, w=w):
            return sn.log_likelihood(np.array([om, w, M]), x)[0]

        peak = np.clip(x.mean() - sn.distance_modulus(om, w)[0].mean(), lo, hi)
        ref = loglik(peak)
        value, _ = integrate.quad(lambda M, ref=ref: np.exp(loglik(M) - ref), lo, hi,
                                  points=[peak], limit=200, epsabs=0, epsrel=1e-9)
        numeric.append(ref + np.log(value))
    numeric = np.array(numeric)
    # equal up to one constant (the Gaussian normalization and the prior density)
    np.testing.assert_allclose(closed - closed[0], numeric - numeric[0], atol=1e-4)


def test_sn_reference_posterior_matches_a_grid(sn):
    ref = sn.reference_samples(3, n=2000, random_state=0)
    x = sn.observation(3)
    om = np.linspace(*PRIOR_BOX["Om"], 121)
    w = np.linspace(*PRIOR_BOX["w"], 121)
    M = np.linspace(*PRIOR_BOX["M"], 301)
    oo, ww = np.meshgrid(om, w, indexing="ij")
    mu = sn.distance_modulus(oo.ravel(), ww.ravel())
    # log p(x | Om, w, M) on the 3-d grid, written directly from the model:
    # sum_i (r_i - M)^2 = sum r^2 - 2 M sum r + n M^2 with r = x - mu
    r = x[None, :] - mu
    ss = (r**2).sum(axis=1)[:, None] - 2 * r.sum(axis=1)[:, None] * M + len(x) * M**2
    ll = -0.5 * ss / sn.sigma_int**2
    p = np.exp(ll - ll.max()).reshape(len(om), len(w), len(M))
    p /= p.sum()
    for axis, (name, grid) in enumerate((("Om", om), ("w", w), ("M", M))):
        marginal = p.sum(axis=tuple(a for a in range(3) if a != axis))
        mean = (marginal * grid).sum()
        std = np.sqrt((marginal * (grid - mean) ** 2).sum())
        # resampled draws: standard error about std / sqrt(n_eff), n_eff >= 2000 / 2
        assert abs(ref[name].mean() - mean) < 5 * std / np.sqrt(1000)
        assert ref[name].std() == pytest.approx(std, rel=0.1)


def test_sn_latent_offsets(sn_latent):
    names = sn_latent.prior.names
    assert len(names) == 3 + 40 and names[3] == "delta_0" and names[-1] == "delta_39"
    assert sn_latent.event_shape == (40, 2)
    theta = sn_latent.true_parameters(1)
    shifted = theta.copy()
    shifted[3 + 5] += 0.5
    diff = sn_latent.noiseless(shifted)[0] - sn_latent.noiseless(theta)[0]
    expected = np.zeros((40, 2))
    expected[5] = 0.5
    np.testing.assert_allclose(diff, expected, atol=1e-12)
    ref = sn_latent.reference_samples(1, n=1000, random_state=0)
    # delta_i | globals, x is Gaussian with this width; the uncertainty of M (about 0.06 mag
    # with 40 supernovae) widens it by a few per cent. Each sample standard deviation is
    # good to 1 / sqrt(2 * 1000) = 2.2 %.
    prec = 1 / 0.1**2 + 1 / 0.12**2 + 1 / 0.2**2
    sd = ref.iloc[:, 3:].std().to_numpy()
    ratio = sd * np.sqrt(prec)
    assert 0.98 < ratio.mean() < 1.1
    assert np.all((ratio > 0.88) & (ratio < 1.2))
    truth = theta[3:]
    z = (ref.iloc[:, 3:].mean().to_numpy() - truth) / sd
    assert abs(z.mean()) < 5 / np.sqrt(40) + 0.5 and np.mean(np.abs(z) < 3) > 0.9


# ------------------------------------------------------------------- lensing
def test_sie_deflection_is_a_gradient_with_divergence_two_kappa():
    theta_e, e1, e2 = 1.2, 0.15, -0.1
    e = np.hypot(e1, e2)
    q, phi = (1 - e) / (1 + e), 0.5 * np.arctan2(e2, e1)
    h = 1e-5
    for x, y in [(0.5, 0.3), (-1.1, 0.7), (0.2, -1.5)]:
        ax_px, ay_px = sie_deflection(x + h, y, theta_e, e1, e2)
        ax_mx, ay_mx = sie_deflection(x - h, y, theta_e, e1, e2)
        ax_py, ay_py = sie_deflection(x, y + h, theta_e, e1, e2)
        ax_my, ay_my = sie_deflection(x, y - h, theta_e, e1, e2)
        div = (ax_px - ax_mx + ay_py - ay_my) / (2 * h)
        curl = (ay_px - ay_mx - ax_py + ax_my) / (2 * h)
        xr = np.cos(phi) * x + np.sin(phi) * y
        yr = -np.sin(phi) * x + np.cos(phi) * y
        kappa = theta_e / (2 * np.sqrt(q * xr**2 + yr**2 / q))
        assert div == pytest.approx(2 * kappa, rel=1e-6)
        assert abs(curl) < 1e-6


def test_lensing_has_no_reference_posterior(lens):
    with pytest.raises(NotImplementedError, match="no reference posterior"):
        lens.reference_samples(1, n=10)
    assert lens.log_likelihood(lens.true_parameters(1), lens.observation(1)).shape == (1,)


def test_lensing_unlensed_flux_and_einstein_ring():
    task = strong_lensing(supersample=4)
    area = task.pixel_scale**2
    sigma = task.source_sigma
    # no lens: the image is the source, flux 2 pi sigma^2
    off = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, -0.05])
    assert task.noiseless(off)[0].sum() * area == pytest.approx(2 * np.pi * sigma**2, rel=1e-4)
    # circular lens, aligned source, negligible subhalo far away: an Einstein ring
    ring = np.array([2.0, 2.0, 8.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    img = task.noiseless(ring)[0]
    x, y = task.coordinates
    r = np.hypot(x, y)
    # flux-weighted radius of a Gaussian ring of width sigma: theta_E + sigma^2 / theta_E
    radius = (img * r).sum() / img.sum()
    assert radius == pytest.approx(1.0 + sigma**2, abs=1e-3)
    # magnification of a ring: flux ratio sqrt(2 pi) theta_E / sigma
    assert img.sum() * area / (2 * np.pi * sigma**2) == pytest.approx(
        np.sqrt(2 * np.pi) / sigma, rel=1e-3)
    # surface brightness is conserved: the ring peaks at the source's peak (pixel-averaged)
    assert 0.95 < img.max() <= 1.0


def test_lensing_subhalo_perturbs_the_image_locally(lens):
    x, y = lens.coordinates
    base = np.array([1.1, 0.0, 9.5, 1.1, 0.0, 0.0, 0.05, 0.0])
    without = base.copy()
    without[2] = 0.0  # a 1 M_sun subhalo: no visible effect
    diff = np.abs(lens.noiseless(base)[0] - lens.noiseless(without)[0])
    peak = np.unravel_index(np.argmax(diff), diff.shape)
    assert np.hypot(x[peak] - 1.1, y[peak]) < 0.3  # the largest change is at the subhalo
    near = np.hypot(x - 1.1, y) < 0.4
    # The point mass's 1/r deflection still shifts the far side of the ring a little.
    far = np.hypot(x + 1.1, y) < 0.4
    assert diff[near].sum() > 5 * diff[far].sum()
    assert diff[near].max() > 0.1  # visible above the 0.05 noise
    heavier = base.copy()
    heavier[2] = 10.5
    assert np.abs(lens.noiseless(heavier)[0] - lens.noiseless(without)[0])[near].sum() > \
        diff[near].sum()
