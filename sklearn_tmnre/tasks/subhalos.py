r"""Strong lensing with a population of dark subhalos: images and per-pixel occupancy maps.

The lens, source, noise and ray shooting are those of :mod:`~sklearn_tmnre.tasks.lensing`
(:class:`~sklearn_tmnre.tasks.StrongLensing`): a singular isothermal ellipsoid (SIE) at the
origin (:func:`~sklearn_tmnre.tasks.lensing.sie_deflection`) deflects a circular Gaussian
source, and every (super-sampled) pixel records the source surface brightness at

.. math:: \beta = \theta - \alpha_{\rm SIE}(\theta)
          - \sum_{k=1}^{N_{\rm sub}} b_k^2 \frac{\theta - \theta_k}
                                          {|\theta - \theta_k|^2 + r_c^2},

averaged over ``supersample``\ :sup:`2` rays per pixel. Instead of one subhalo there is a
*population*: each image draws its own

* number :math:`N_{\rm sub} \sim {\rm Poisson}(\bar N)`, with the expected number
  :math:`\bar N` = ``n_sub_mean`` the normalization of the mass function below;
* positions :math:`\theta_k` uniform over the whole field of view;
* masses :math:`m_k` from the power law :math:`dN/dm \propto m^{\gamma}` (``slope``
  :math:`\gamma`, default -1.9) on :math:`[m_{\min}, m_{\max}]`, drawn by the inverse CDF:
  with :math:`a = \gamma + 1 \neq 0`,
  :math:`m = \left[m_{\min}^a + u\,(m_{\max}^a - m_{\min}^a)\right]^{1/a}`,
  :math:`u \sim U(0, 1)` (and :math:`m = m_{\min}(m_{\max}/m_{\min})^u` for :math:`a = 0`).

Each subhalo is the point mass of the strong-lensing toy: Einstein radius
:math:`b_k \approx 0.064'' (m_k / 10^9 M_\odot)^{1/2}`
(:func:`~sklearn_tmnre.tasks.lensing.subhalo_einstein_radius`: lens at :math:`z_l = 0.5`,
source at :math:`z_s = 2`, flat ΛCDM, :math:`\Omega_m = 0.3`, :math:`H_0 = 70`) and the same
:math:`r_c = 10^{-3}`'' core. With one subhalo the image is exactly the
:class:`~sklearn_tmnre.tasks.StrongLensing` image; with none it is the main lens alone. A
point mass deflects by :math:`b_k^2 / r` at every distance :math:`r`: a subhalo changes the
image most near itself, but also shifts distant arcs a little (a tidally truncated profile
would be more local).

Besides the image, a simulation returns its **occupancy map**: a boolean array of shape
``(n_bins, npix, npix)`` whose entry ``[k, i, j]`` says whether at least one subhalo of
mass bin ``k`` lies in pixel ``(i, j)``. The bins are ``n_bins`` (default 10) intervals
equal in :math:`\log_{10} m` between :math:`m_{\min}` and :math:`m_{\max}`
(:attr:`SubhaloLensing.bin_edges`); pixel ``(i, j)`` is the row ``i`` along :math:`y` and
column ``j`` along :math:`x`, as in the image. Two subhalos of one bin in one pixel mark it
once. These per-pixel, per-bin binary values are the "derived" parameters of probabilistic
image segmentation: marginals of the joint posterior of the whole subhalo catalogue, which
has about :math:`N_{\rm sub}!` modes.

Parameters (arcsec unless stated), in order: the main lens ``theta_E`` ~ U(0.8, 1.4),
``e1, e2`` ~ U(-0.2, 0.2), the source ``x_src, y_src`` ~ U(-0.3, 0.3) (the ranges of the
strong-lensing toy) and the population ``n_sub_mean`` ~ U(5, 25). Any of them can be held
fixed (``fixed={"n_sub_mean": 15.0}``, say) and then leaves the prior. Data: float32
images of shape ``event_shape = (rows, cols)`` with independent Gaussian noise of standard
deviation ``noise`` (default 0.05, in units of the source's peak surface brightness).

With the defaults (:math:`10^8` to :math:`10^{10.5} M_\odot`, slope -1.9) the ten bins hold
41, 24, 14, 8.6, 5.1, 3.1, 1.8, 1.1, 0.6 and 0.4 % of the subhalos: with 15 expected, about
one image in four (:math:`1 - e^{-0.32}`) has a subhalo heavier than
:math:`10^{9.75} M_\odot` (the top three bins).

There is neither a reference posterior nor a tractable likelihood: :math:`p(x \mid \theta)`
integrates over the number, positions and masses of the subhalos.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from ..prior import Prior
from .base import Task, check_generator

# Private constants of the strong-lensing toy, imported so that both tasks share one value.
from .lensing import _CHUNK, _CORE, sie_deflection, subhalo_einstein_radius
from .lensing import FIDUCIAL as _LENS_FIDUCIAL
from .lensing import PRIOR_BOX as _LENS_BOX

__all__ = ["SubhaloLensing", "subhalo_lensing"]

_LENS_NAMES = ("theta_E", "e1", "e2", "x_src", "y_src")
PRIOR_BOX = {**{k: _LENS_BOX[k] for k in _LENS_NAMES}, "n_sub_mean": (5.0, 25.0)}
#: Observation 1: the strong-lensing toy's lens and source, 15 subhalos expected.
FIDUCIAL = {**{k: _LENS_FIDUCIAL[k] for k in _LENS_NAMES}, "n_sub_mean": 15.0}
#: Columns of a subhalo catalogue (``image`` only when it describes several images).
CATALOGUE_COLUMNS = ("image", "x_sub", "y_sub", "log10_m_sub", "bin", "row", "col")
N_OBSERVATIONS = 10
_OBSERVATION_SEED = 20_230_915


def _check_npix(npix):
    pair = (npix, npix) if isinstance(npix, numbers.Integral) else tuple(np.ravel(npix))
    if len(pair) != 2 or not all(isinstance(n, numbers.Integral) and n >= 4 for n in pair):
        raise ValueError("subhalo_lensing: npix must be an integer >= 4 or a pair (rows, "
                         f"columns) of them; got {npix!r}.")
    return int(pair[0]), int(pair[1])


def _check_positive(argname, value):
    if not (isinstance(value, numbers.Real) and np.isfinite(value) and value > 0):
        raise ValueError(f"subhalo_lensing: {argname} must be a positive finite number; "
                         f"got {value!r}.")
    return float(value)


class SubhaloLensing(Task):
    r"""Strong-lensing images with a Poisson population of subhalos (see the module docstring).

    Parameters
    ----------
    npix : int or (int, int), default=64
        Image side in pixels, or ``(rows, columns)``; at least 4 each.
    pixel_scale : float, default=0.08
        Pixel side in arcsec (the default field is 5.12'' wide).
    source_sigma : float, default=0.1
        Gaussian source width :math:`\sigma_s` (arcsec).
    noise : float, default=0.05
        Pixel noise standard deviation, in units of the source peak surface brightness.
    supersample : int, default=2
        Rays per pixel side.
    m_min, m_max : float, default=1e8, 10**10.5
        Mass range of the subhalos (solar masses), ``0 < m_min < m_max``.
    slope : float, default=-1.9
        Power-law index :math:`\gamma` of the mass function :math:`dN/dm \propto m^\gamma`.
    n_bins : int, default=10
        Number of mass bins of the occupancy maps, equal in :math:`\log_{10} m`.
    fixed : dict or None, default=None
        Parameters held at a value and left out of the prior, e.g.
        ``{"n_sub_mean": 15.0}``; keys among ``theta_E, e1, e2, x_src, y_src, n_sub_mean``.
        At least one parameter stays free.

    Attributes
    ----------
    coordinates : tuple of ndarray
        Pixel-centre positions ``(x, y)`` (arcsec), each of shape ``event_shape``.
    bin_edges : ndarray of shape (n_bins + 1,)
        Edges of the mass bins (solar masses), from ``m_min`` to ``m_max``.
    fixed : dict
        The fixed parameters and their values.

    See Also
    --------
    sklearn_tmnre.tasks.StrongLensing : the same lens and source with one subhalo whose
        position and mass are parameters.
    """

    def __init__(self, npix: int | tuple[int, int] = 64, pixel_scale: float = 0.08,
                 source_sigma: float = 0.1, noise: float = 0.05, supersample: int = 2,
                 m_min: float = 1e8, m_max: float = 10**10.5, slope: float = -1.9,
                 n_bins: int = 10, fixed: Mapping[str, float] | None = None) -> None:
        self.npix = _check_npix(npix)
        self.pixel_scale = _check_positive("pixel_scale", pixel_scale)
        self.source_sigma = _check_positive("source_sigma", source_sigma)
        self.noise = _check_positive("noise", noise)
        if not isinstance(supersample, numbers.Integral) or supersample < 1:
            raise ValueError("subhalo_lensing: supersample must be a positive integer; "
                             f"got {supersample!r}.")
        self.supersample = int(supersample)
        self.m_min = _check_positive("m_min", m_min)
        self.m_max = _check_positive("m_max", m_max)
        if self.m_min >= self.m_max:
            raise ValueError(f"subhalo_lensing: m_min must be below m_max; got m_min={m_min!r}, "
                             f"m_max={m_max!r}.")
        if not (isinstance(slope, numbers.Real) and np.isfinite(slope)):
            raise ValueError(f"subhalo_lensing: slope must be a finite number; got {slope!r}.")
        self.slope = float(slope)
        if not isinstance(n_bins, numbers.Integral) or n_bins < 1:
            raise ValueError(f"subhalo_lensing: n_bins must be a positive integer; got {n_bins!r}.")
        self.n_bins = int(n_bins)
        self.fixed = self._check_fixed(fixed)
        self._free = [k for k in PRIOR_BOX if k not in self.fixed]

        rows, cols = self.npix
        self._extent = (cols * self.pixel_scale, rows * self.pixel_scale)  # field width, height
        self.coordinates = tuple(np.meshgrid(self._centres(cols), self._centres(rows),
                                             indexing="xy"))
        ss = self.supersample
        ray_x, ray_y = np.meshgrid(self._centres(cols * ss) / ss, self._centres(rows * ss) / ss,
                                   indexing="xy")
        # Single precision, as in StrongLensing: positions need only ~1e-6''.
        self._rays = ray_x.ravel().astype(np.float32)[None], ray_y.ravel().astype(np.float32)[None]
        self._log10_edges = np.linspace(np.log10(self.m_min), np.log10(self.m_max),
                                        self.n_bins + 1)
        self.bin_edges = 10**self._log10_edges

        prior = Prior({k: stats.uniform(PRIOR_BOX[k][0], np.diff(PRIOR_BOX[k])[0])
                       for k in self._free})
        rng = np.random.default_rng(_OBSERVATION_SEED)
        theta = prior.sample(N_OBSERVATIONS, random_state=rng).to_numpy(copy=True)
        theta[0] = [FIDUCIAL[k] for k in self._free]
        observations, self._true_catalogue = self._simulate(theta, rng)
        super().__init__("subhalo_lensing", prior, (rows, cols), theta, observations)

    # --------------------------------------------------------------- helpers
    def _centres(self, n):
        return (np.arange(n) - (n - 1) / 2) * self.pixel_scale

    def _check_fixed(self, fixed):
        if fixed is None:
            return {}
        if not isinstance(fixed, Mapping):
            raise TypeError("subhalo_lensing: fixed must be a dict of parameter values or None; "
                            f"got {type(fixed).__name__}.")
        unknown = [k for k in fixed if k not in PRIOR_BOX]
        if unknown:
            raise ValueError(f"subhalo_lensing: fixed has unknown parameters {unknown}; choose "
                             f"among {list(PRIOR_BOX)}.")
        if len(fixed) == len(PRIOR_BOX):
            raise ValueError("subhalo_lensing: fixed holds every parameter; leave at least one "
                             "free for the prior.")
        out = {}
        for k, v in fixed.items():
            if not (isinstance(v, numbers.Real) and np.isfinite(v)):
                raise ValueError(f"subhalo_lensing: fixed[{k!r}] must be a finite number; "
                                 f"got {v!r}.")
            out[k] = float(v)
        self._check_globals(np.array([[out.get(k, FIDUCIAL[k]) for k in PRIOR_BOX]]), "fixed")
        return out

    @staticmethod
    def _check_globals(full, argname):
        """Raise for a negative expected count or an ellipticity |e| >= 1."""
        if np.any(~(full[:, 5] >= 0)):
            raise ValueError(f"subhalo_lensing: {argname}: n_sub_mean, the expected number of "
                             "subhalos, must be >= 0.")
        if np.any(~(np.hypot(full[:, 1], full[:, 2]) < 1)):
            raise ValueError(f"subhalo_lensing: {argname}: the ellipticity |(e1, e2)| must be "
                             "below 1.")

    def _full(self, theta, argname="theta"):
        """All six parameters (n, 6): the free ones from ``theta``, the fixed ones filled in."""
        full = np.empty((len(theta), len(PRIOR_BOX)))
        for c, k in enumerate(PRIOR_BOX):
            full[:, c] = self.fixed[k] if k in self.fixed else theta[:, self._free.index(k)]
        self._check_globals(full, argname)
        return full

    def _log10_masses(self, u):
        """Inverse CDF of the power law dN/dm ~ m^slope on [m_min, m_max], in log10(m)."""
        lo, hi = np.log(self.m_min), np.log(self.m_max)
        a = self.slope + 1
        if abs(a) < 1e-12:
            return (lo + u * (hi - lo)) / np.log(10)
        # m^a = m_min^a + u (m_max^a - m_min^a), written as m_min^a (1 + u expm1(a (hi - lo))).
        return (lo + np.log1p(u * np.expm1(a * (hi - lo))) / a) / np.log(10)

    def _draw(self, n_sub_mean, rng):
        """One image's catalogue: x, y (arcsec) and log10 mass of Poisson(n_sub_mean) subhalos."""
        u = rng.random((rng.poisson(n_sub_mean), 3))
        return ((u[:, 0] - 0.5) * self._extent[0], (u[:, 1] - 0.5) * self._extent[1],
                self._log10_masses(u[:, 2]))

    def _frame(self, image, x, y, log10_m):
        """A catalogue DataFrame with the derived mass bin and pixel of every subhalo."""
        bins, row, col = self._cells(x, y, log10_m)
        values = (np.asarray(image, dtype=np.int64), x, y, log10_m, bins, row, col)
        return pd.DataFrame(dict(zip(CATALOGUE_COLUMNS, values, strict=True)))

    def _cells(self, x, y, log10_m):
        """Mass bin, pixel row and column; -1 where outside the mass range or the field."""
        rows, cols = self.npix
        col = np.floor((np.asarray(x) + self._extent[0] / 2) / self.pixel_scale)
        row = np.floor((np.asarray(y) + self._extent[1] / 2) / self.pixel_scale)
        bins = np.searchsorted(self._log10_edges, log10_m, side="right") - 1
        # The upper edges belong to the last bin, pixel row and column.
        bins[np.isclose(log10_m, self._log10_edges[-1], rtol=0, atol=1e-12)] = self.n_bins - 1
        col[np.isclose(x, self._extent[0] / 2, rtol=0, atol=1e-12)] = cols - 1
        row[np.isclose(y, self._extent[1] / 2, rtol=0, atol=1e-12)] = rows - 1
        bins[(bins < 0) | (bins >= self.n_bins)] = -1
        col[(col < 0) | (col >= cols)] = -1
        row[(row < 0) | (row >= rows)] = -1
        return bins.astype(np.int64), row.astype(np.int64), col.astype(np.int64)

    def _check_catalogue(self, catalogue, n):
        """(image, x, y, log10_m) arrays from a catalogue DataFrame describing ``n`` images."""
        if not isinstance(catalogue, pd.DataFrame):
            raise TypeError("catalogue must be a pandas DataFrame with columns x_sub, y_sub, "
                            f"log10_m_sub (and image); got {type(catalogue).__name__}.")
        need = ["x_sub", "y_sub", "log10_m_sub"] + (["image"] if n > 1 else [])
        missing = [c for c in need if c not in catalogue.columns]
        if missing:
            raise ValueError(f"catalogue: missing columns {missing} (image is needed when it "
                             f"describes {n} > 1 images).")
        x, y, log10_m = (catalogue[c].to_numpy(dtype=float) for c in need[:3])
        if not np.all(np.isfinite(x) & np.isfinite(y) & np.isfinite(log10_m)):
            raise ValueError("catalogue: x_sub, y_sub and log10_m_sub must be finite.")
        if "image" in catalogue.columns:
            image = catalogue["image"].to_numpy()
            if len(image) and (not np.issubdtype(image.dtype, np.integer)
                               or image.min() < 0 or image.max() >= n):
                raise ValueError(f"catalogue: image must hold integer row numbers in 0..{n - 1}.")
        else:
            image = np.zeros(len(x), dtype=np.int64)
        return image.astype(np.int64), x, y, log10_m

    # ------------------------------------------------------------ simulation
    def _render(self, full, image, x, y, log10_m):
        """Noise-free images (n, rows, cols) for lens rows ``full`` and flat catalogue arrays."""
        rows, cols = self.npix
        ss, n = self.supersample, len(full)
        out = np.empty((n, rows, cols))
        rx, ry = self._rays
        order = np.argsort(image, kind="stable")
        image, x, y = image[order], x[order].astype(np.float32), y[order].astype(np.float32)
        b2 = (subhalo_einstein_radius(log10_m[order]) ** 2).astype(np.float32)
        starts = np.searchsorted(image, np.arange(n + 1))
        for s in range(0, n, _CHUNK):
            block = np.arange(s, min(s + _CHUNK, n))
            counts = starts[block + 1] - starts[block]
            # Rows with more subhalos first: the k-th subhalo deflects only the leading rows.
            block, counts = block[np.argsort(-counts, kind="stable")], np.sort(counts)[::-1]
            lens = [c[:, None].astype(np.float32) for c in full[block, :5].T]
            theta_E, e1, e2, x_src, y_src = lens
            ax, ay = sie_deflection(rx, ry, theta_E, e1, e2)
            bx, by = rx - ax - x_src, ry - ay - y_src
            for k in range(counts.max(initial=0)):
                m = np.count_nonzero(counts > k)
                idx = starts[block[:m]] + k
                dx, dy = rx - x[idx, None], ry - y[idx, None]
                f = b2[idx, None] / (dx * dx + dy * dy + np.float32(_CORE**2))
                bx[:m] -= f * dx
                by[:m] -= f * dy
            flux = np.exp(-(bx * bx + by * by) / np.float32(2 * self.source_sigma**2))
            out[block] = flux.reshape(-1, rows, ss, cols, ss).mean(axis=(2, 4))
        return out

    def _simulate(self, theta, rng):
        """Images (n, rows, cols) float32 and their catalogue, for free-parameter rows."""
        full = self._full(theta)
        rows, cols = self.npix
        out = np.empty((len(full), rows, cols), dtype=np.float32)
        parts = []
        for s in range(0, len(full), _CHUNK):
            chunk = full[s:s + _CHUNK]
            noise = np.empty((len(chunk), rows, cols))
            cat = []
            # Row by row, catalogue then noise: a row's draws do not depend on the batch.
            for r, n_sub_mean in enumerate(chunk[:, 5]):
                cat.append(self._draw(n_sub_mean, rng))
                noise[r] = rng.standard_normal((rows, cols))
            image = np.repeat(np.arange(len(chunk)), [len(c[0]) for c in cat])
            x, y, log10_m = (np.concatenate([c[i] for c in cat]) for i in range(3))
            out[s:s + _CHUNK] = self._render(chunk, image, x, y, log10_m) + self.noise * noise
            parts.append(self._frame(image + s, x, y, log10_m))
        return out, pd.concat(parts, ignore_index=True)

    def _simulate_batch(self, theta, rng):
        return self._simulate(theta, rng)[0]

    def _simulate_one(self, theta, rng):
        return self._simulate_batch(theta[None, :], rng)[0]

    # ---------------------------------------------------------------- public
    def simulate_with_occupancy(
        self, theta: pd.DataFrame | ArrayLike, rng: np.random.Generator | int | None = None,
        return_catalogue: bool = False,
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Simulate images and their occupancy maps, one per row of ``theta``.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params) or (n_params,)
        rng : Generator, int or None
            Source of randomness; None uses a fresh generator. The images are those of
            :meth:`simulate_batch` with the same ``rng``.
        return_catalogue : bool, default=False
            Also return the subhalos.

        Returns
        -------
        X : ndarray of shape (n, rows, cols), float32
            Noisy images.
        occupancy : ndarray of shape (n, n_bins, rows, cols), bool
            Whether pixel ``(i, j)`` holds a subhalo of mass bin ``k``.
        catalogue : DataFrame
            Only with ``return_catalogue=True``: one row per subhalo, columns ``image`` (row
            of ``theta``), ``x_sub, y_sub`` (arcsec), ``log10_m_sub`` (solar masses),
            ``bin``, ``row``, ``col`` (its cell of ``occupancy``).

        Examples
        --------
        >>> task = subhalo_lensing(npix=32)
        >>> rng = np.random.default_rng(0)
        >>> theta = task.prior.sample(3, random_state=rng)
        >>> X, occupancy = task.simulate_with_occupancy(theta, rng)
        >>> X.shape, occupancy.shape, occupancy.dtype
        ((3, 32, 32), (3, 10, 32, 32), dtype('bool'))
        """
        X, catalogue = self._simulate(self._check_theta(theta), check_generator(rng, "rng"))
        occupancy = self._occupancy(catalogue, len(X))
        return (X, occupancy, catalogue) if return_catalogue else (X, occupancy)

    def sample_catalogue(self, theta: pd.DataFrame | ArrayLike,
                         rng: np.random.Generator | int | None = None) -> pd.DataFrame:
        """Draw a subhalo catalogue per row of ``theta``, without an image.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params) or (n_params,)
        rng : Generator, int or None

        Returns
        -------
        catalogue : DataFrame
            One row per subhalo, columns as in :meth:`simulate_with_occupancy`.
        """
        full = self._full(self._check_theta(theta))
        rng = check_generator(rng, "rng")
        cat = [self._draw(n_sub_mean, rng) for n_sub_mean in full[:, 5]]
        image = np.repeat(np.arange(len(full)), [len(c[0]) for c in cat])
        return self._frame(image, *(np.concatenate([c[i] for c in cat]) for i in range(3)))

    def noiseless(self, theta: pd.DataFrame | ArrayLike,
                  catalogue: pd.DataFrame | None = None) -> np.ndarray:
        """Noise-free images of the main lens plus the subhalos of ``catalogue``.

        Parameters
        ----------
        theta : DataFrame or array-like of shape (n, n_params) or (n_params,)
            ``n_sub_mean``, if free, is not used.
        catalogue : DataFrame or None, default=None
            Subhalos with columns ``x_sub, y_sub`` (arcsec, anywhere), ``log10_m_sub`` (any
            mass) and ``image`` (row of ``theta``; optional when ``n == 1``). None: no
            subhalos, the main lens alone.

        Returns
        -------
        images : ndarray of shape (n, rows, cols), float64
        """
        full = self._full(self._check_theta(theta))
        if catalogue is None:
            empty = np.empty(0)
            return self._render(full, empty.astype(np.int64), empty, empty, empty)
        return self._render(full, *self._check_catalogue(catalogue, len(full)))

    def occupancy(self, catalogue: pd.DataFrame, n_images: int = 1) -> np.ndarray:
        """Occupancy maps of a catalogue: is there a subhalo of bin ``k`` in pixel ``(i, j)``.

        Parameters
        ----------
        catalogue : DataFrame
            Columns ``x_sub, y_sub`` (inside the field), ``log10_m_sub`` (in
            ``[log10 m_min, log10 m_max]``) and ``image`` (optional when ``n_images == 1``).
        n_images : int, default=1
            Number of images the catalogue describes.

        Returns
        -------
        occupancy : ndarray of shape (n_images, n_bins, rows, cols), bool
        """
        if not isinstance(n_images, numbers.Integral) or n_images < 1:
            raise ValueError(f"n_images must be a positive integer; got {n_images!r}.")
        image, x, y, log10_m = self._check_catalogue(catalogue, int(n_images))
        frame = self._frame(image, x, y, log10_m)
        if np.any(frame[["bin", "row", "col"]].to_numpy() < 0):
            raise ValueError("catalogue: every subhalo must lie inside the field "
                             f"(|x| <= {self._extent[0] / 2}'', |y| <= {self._extent[1] / 2}'') "
                             f"and the mass range [{self.m_min:g}, {self.m_max:g}] M_sun.")
        return self._occupancy(frame, int(n_images))

    def _occupancy(self, frame, n):
        out = np.zeros((n, self.n_bins, *self.npix), dtype=bool)
        out[frame["image"], frame["bin"], frame["row"], frame["col"]] = True
        return out

    def true_catalogue(self, i: int) -> pd.DataFrame:
        """The subhalos of observation ``i`` (1-based).

        Returns
        -------
        catalogue : DataFrame
            Columns as in :meth:`simulate_with_occupancy`, without ``image``.
        """
        cat = self._true_catalogue
        cat = cat[cat["image"] == self._check_index(i) - 1]
        return cat.drop(columns="image").reset_index(drop=True)

    def true_occupancy(self, i: int) -> np.ndarray:
        """The occupancy map of observation ``i`` (1-based).

        Returns
        -------
        occupancy : ndarray of shape (n_bins, rows, cols), bool
        """
        return self._occupancy(self.true_catalogue(i).assign(image=0), 1)[0]

    def _log_likelihood(self, theta, x):
        raise NotImplementedError(
            "subhalo_lensing has no tractable likelihood: p(x | theta) integrates over the "
            "Poisson number, positions and masses of the subhalos."
        )

    def _reference(self, i, n, rng):
        raise NotImplementedError(
            "subhalo_lensing has no reference posterior: the joint posterior of the subhalo "
            "catalogue has about N_sub! modes and the likelihood is intractable; check "
            "per-pixel occupancy probabilities for calibration instead."
        )


def subhalo_lensing(npix: int | tuple[int, int] = 64, pixel_scale: float = 0.08,
                    source_sigma: float = 0.1, noise: float = 0.05, supersample: int = 2,
                    m_min: float = 1e8, m_max: float = 10**10.5, slope: float = -1.9,
                    n_bins: int = 10, fixed: Mapping[str, float] | None = None
                    ) -> SubhaloLensing:
    """Return the multiple-subhalo lensing task (:class:`SubhaloLensing`).

    Parameters
    ----------
    npix : int or (int, int), default=64
        Image side in pixels, or ``(rows, columns)``.
    pixel_scale : float, default=0.08
        Arcsec per pixel.
    source_sigma : float, default=0.1
        Source width (arcsec).
    noise : float, default=0.05
        Pixel noise standard deviation.
    supersample : int, default=2
        Rays per pixel side.
    m_min, m_max : float, default=1e8, 10**10.5
        Subhalo mass range (solar masses).
    slope : float, default=-1.9
        Mass function :math:`dN/dm \\propto m^{\\rm slope}`.
    n_bins : int, default=10
        Mass bins of the occupancy maps, equal in log mass.
    fixed : dict or None, default=None
        Parameters held fixed, e.g. ``{"n_sub_mean": 15.0}``.

    Returns
    -------
    task : SubhaloLensing

    Examples
    --------
    >>> task = subhalo_lensing(npix=32)
    >>> task.prior.names
    ['theta_E', 'e1', 'e2', 'x_src', 'y_src', 'n_sub_mean']
    >>> theta, X = task.sample(2, random_state=0)
    >>> X.shape, X.dtype
    ((2, 32, 32), dtype('float32'))
    >>> task.true_occupancy(1).shape
    (10, 32, 32)
    >>> list(task.true_catalogue(1).columns)
    ['x_sub', 'y_sub', 'log10_m_sub', 'bin', 'row', 'col']
    """
    return SubhaloLensing(npix=npix, pixel_scale=pixel_scale, source_sigma=source_sigma,
                          noise=noise, supersample=supersample, m_min=m_min, m_max=m_max,
                          slope=slope, n_bins=n_bins, fixed=fixed)
