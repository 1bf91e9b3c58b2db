"""Tests of the multiple-subhalo lensing task: population draws, images, occupancy maps.

Statistical tolerances are ``Z`` standard errors computed from the sample sizes; seeds
are fixed. The reference routes are independent of the task's code: the power-law CDF is
written out here, the mass bins come from ``np.histogram`` and the one-subhalo image from
:class:`~sklearn_tmnre.tasks.StrongLensing`.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sklearn_tmnre import simulate
from sklearn_tmnre import tasks as T
from sklearn_tmnre.tasks.base import Task
from sklearn_tmnre.tasks.lensing import strong_lensing
from sklearn_tmnre.tasks.subhalos import subhalo_lensing

Z = 5.0


@pytest.fixture(scope="module")
def task():
    return subhalo_lensing(npix=32, pixel_scale=0.16)


@pytest.fixture(scope="module")
def task64():
    return subhalo_lensing()


def _lens(**changes):
    """Free parameters of the default task: a circular lens and an aligned source."""
    theta = {"theta_E": 1.1, "e1": 0.0, "e2": 0.0, "x_src": 0.0, "y_src": 0.0,
             "n_sub_mean": 10.0}
    theta.update(changes)
    return np.array(list(theta.values()))


def _power_law_cdf(m, m_min, m_max, slope):
    a = slope + 1
    if a == 0:
        return np.log(m / m_min) / np.log(m_max / m_min)
    return (m**a - m_min**a) / (m_max**a - m_min**a)


# ------------------------------------------------------------------ interface
def test_registered_as_a_science_task():
    assert "subhalo_lensing" in T.SCIENCE_TASKS
    task = T.get_task("subhalo_lensing")
    assert isinstance(task, T.SubhaloLensing) and isinstance(task, Task)
    assert task.name == "subhalo_lensing"
    assert task.event_shape == (64, 64)
    assert task.prior.names == ["theta_E", "e1", "e2", "x_src", "y_src", "n_sub_mean"]
    np.testing.assert_allclose(np.log10(task.bin_edges), np.linspace(8, 10.5, 11))


def test_shapes_and_dtypes(task):
    theta, X = task.sample(5, random_state=0)
    assert isinstance(theta, pd.DataFrame) and list(theta.columns) == task.prior.names
    assert X.shape == (5, 32, 32) and X.dtype == np.float32 and np.all(np.isfinite(X))
    assert task.simulator(theta.iloc[0].to_numpy(), rng=0).shape == (32, 32)
    X, occupancy, cat = task.simulate_with_occupancy(theta, rng=1, return_catalogue=True)
    assert X.shape == (5, 32, 32) and X.dtype == np.float32
    assert occupancy.shape == (5, 10, 32, 32) and occupancy.dtype == bool
    assert list(cat.columns) == ["image", "x_sub", "y_sub", "log10_m_sub", "bin", "row", "col"]
    assert task.noiseless(theta).shape == (5, 32, 32)
    assert task.observation(1).shape == (32, 32)
    assert task.true_parameters(10).shape == (6,)
    assert task.prior.contains(task.true_parameters(1)[None]).all()
    assert task.true_occupancy(2).shape == (10, 32, 32)
    Xs = simulate(task.simulate_batch, theta, random_state=0, vectorized=True)
    assert Xs.shape == (5, 32, 32)


def test_non_square_images_keep_rows_along_y():
    task = subhalo_lensing(npix=(16, 24), n_bins=3)
    assert task.event_shape == (16, 24)
    x, y = task.coordinates
    assert x.shape == y.shape == (16, 24)
    assert np.all(np.diff(x, axis=1) > 0) and np.all(np.diff(y, axis=0) > 0)
    cat = pd.DataFrame({"x_sub": [0.5], "y_sub": [-0.3], "log10_m_sub": [10.0]})
    occupancy = task.occupancy(cat)
    k, i, j = np.argwhere(occupancy[0])[0]
    assert (k, i, j) == (2, 4, 18)  # x 0.5'' -> column 18 of 24, y -0.3'' -> row 4 of 16
    assert abs(x[i, j] - 0.5) <= task.pixel_scale / 2 and abs(y[i, j] + 0.3) <= 0.04
    theta, X = task.sample(2, random_state=0)
    assert X.shape == (2, 16, 24)


def test_fixed_parameters_leave_the_prior():
    task = subhalo_lensing(npix=16, fixed={"n_sub_mean": 3.0, "e1": 0.0, "e2": 0.0})
    assert task.prior.names == ["theta_E", "x_src", "y_src"]
    assert task.fixed == {"n_sub_mean": 3.0, "e1": 0.0, "e2": 0.0}
    theta, X = task.sample(4, random_state=0)
    assert theta.shape == (4, 3) and X.shape == (4, 16, 16)


# ------------------------------------------------------------ reproducibility
def test_seeded_determinism(task):
    theta = task.prior.sample(6, random_state=3)
    a = task.simulate_with_occupancy(theta, rng=7, return_catalogue=True)
    b = task.simulate_with_occupancy(theta, rng=7, return_catalogue=True)
    c = task.simulate_with_occupancy(theta, rng=8, return_catalogue=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    pd.testing.assert_frame_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])
    # The images are simulate_batch's with the same generator.
    np.testing.assert_array_equal(task.simulate_batch(theta, rng=7), a[0])
    # Observations are fixed: a new task has the same ones.
    other = subhalo_lensing(npix=32, pixel_scale=0.16)
    np.testing.assert_array_equal(other.observation(3), task.observation(3))
    pd.testing.assert_frame_equal(other.true_catalogue(3), task.true_catalogue(3))


def test_a_row_does_not_depend_on_the_batch_or_its_chunking(task):
    # 40 rows cross the 32-row chunk boundary of the vectorized simulator.
    theta = task.prior.sample(40, random_state=5).to_numpy()
    batch = task.simulate_batch(theta, rng=np.random.default_rng(9))
    rng = np.random.default_rng(9)
    rows = np.stack([task.simulator(t, rng=rng) for t in theta])
    np.testing.assert_array_equal(rows, batch)


# ---------------------------------------------------------------- population
def test_number_of_subhalos_is_poisson():
    task = subhalo_lensing(npix=16, fixed={"n_sub_mean": 12.0})
    n = 4000
    theta = task.prior.sample(n, random_state=0)
    counts = np.bincount(task.sample_catalogue(theta, rng=1)["image"], minlength=n)
    assert abs(counts.mean() - 12.0) < Z * np.sqrt(12.0 / n)
    # Poisson dispersion: variance = mean; the sample variance has sd ~ sqrt(2 mu^2 + mu) / sqrt n.
    assert abs(counts.var(ddof=1) - 12.0) < Z * np.sqrt((2 * 12.0**2 + 12.0) / n)
    # With the free normalization, E[N | theta] = n_sub_mean row by row.
    free = subhalo_lensing(npix=16)
    theta = free.prior.sample(n, random_state=2)
    counts = np.bincount(free.sample_catalogue(theta, rng=3)["image"], minlength=n)
    diff = counts - theta["n_sub_mean"].to_numpy()
    assert abs(diff.mean()) < Z * np.sqrt(theta["n_sub_mean"].mean() / n)


@pytest.mark.parametrize("slope", [-1.9, -1.0, -0.5])
def test_masses_follow_the_power_law_and_positions_are_uniform(slope):
    m_min, m_max = 1e8, 10**10.5
    task = subhalo_lensing(npix=16, slope=slope, fixed={"n_sub_mean": 20.0})
    cat = task.sample_catalogue(task.prior.sample(500, random_state=0), rng=4)
    m = 10 ** cat["log10_m_sub"].to_numpy()
    assert len(m) > 9000 and m.min() >= m_min and m.max() <= m_max
    assert stats.kstest(m, _power_law_cdf, args=(m_min, m_max, slope)).pvalue > 1e-3
    # The test has power: a slope 0.2 away is rejected.
    assert stats.kstest(m, _power_law_cdf, args=(m_min, m_max, slope - 0.2)).pvalue < 1e-6
    half = 16 * task.pixel_scale / 2
    for col in ("x_sub", "y_sub"):
        assert stats.kstest(cat[col], stats.uniform(-half, 2 * half).cdf).pvalue > 1e-3


# ----------------------------------------------------------------- occupancy
def test_occupancy_marks_exactly_the_cells_of_the_catalogue(task):
    theta = task.prior.sample(50, random_state=6)
    _, occupancy, cat = task.simulate_with_occupancy(theta, rng=2, return_catalogue=True)
    # Independent cell assignment: np.histogram's bins, the nearest pixel centre.
    x, y = task.coordinates
    edges = np.log10(task.bin_edges)
    bins = np.clip(np.digitize(cat["log10_m_sub"], edges) - 1, 0, task.n_bins - 1)
    np.testing.assert_array_equal(bins, cat["bin"])
    np.testing.assert_array_less(np.abs(x[0, cat["col"]] - cat["x_sub"]),
                                 task.pixel_scale / 2 + 1e-12)
    np.testing.assert_array_less(np.abs(y[cat["row"], 0] - cat["y_sub"]),
                                 task.pixel_scale / 2 + 1e-12)
    assert occupancy[cat["image"], cat["bin"], cat["row"], cat["col"]].all()
    # Coincident subhalos (same image, bin and pixel) mark their cell once.
    cells = cat[["image", "bin", "row", "col"]].drop_duplicates()
    assert occupancy.sum() == len(cells)
    for i in range(50):
        hist = np.histogram(cells.loc[cells["image"] == i, "bin"], bins=np.arange(11))[0]
        np.testing.assert_array_equal(occupancy[i].sum(axis=(1, 2)), hist)
        one = cat[cat["image"] == i]
        if len(one) == len(cells[cells["image"] == i]):  # no coincidences: the histogram
            hist = np.histogram(one["log10_m_sub"], bins=edges)[0]
            np.testing.assert_array_equal(occupancy[i].sum(axis=(1, 2)), hist)


def test_coincident_subhalos_mark_one_cell(task):
    cat = pd.DataFrame({"x_sub": [0.10, 0.11, 0.10, -1.0],
                        "y_sub": [0.20, 0.21, 0.20, 1.0],
                        "log10_m_sub": [8.01, 8.02, 10.4, 10.5]})  # 10.5: the top edge
    occupancy = task.occupancy(cat)[0]
    assert occupancy.sum() == 3
    assert occupancy.sum(axis=(1, 2)).tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]


def test_observations_expose_their_catalogue_and_occupancy(task64):
    for i in (1, 2):
        cat = task64.true_catalogue(i)
        assert "image" not in cat.columns and len(cat) > 0
        occupancy = task64.true_occupancy(i)
        assert occupancy[cat["bin"], cat["row"], cat["col"]].all()
        assert occupancy.sum() == len(cat[["bin", "row", "col"]].drop_duplicates())
        np.testing.assert_array_equal(task64.occupancy(cat)[0], occupancy)
    # Observation 1 is the fiducial lens with 15 subhalos expected.
    np.testing.assert_allclose(task64.true_parameters(1), [1.1, 0.1, -0.05, 0.05, 0.02, 15.0])
    residual = task64.observation(1) - task64.noiseless(task64.true_parameters(1),
                                                        task64.true_catalogue(1))[0]
    assert abs(residual.std() / task64.noise - 1) < Z * np.sqrt(0.5 / residual.size)


# -------------------------------------------------------------------- images
def test_no_subhalos_gives_the_main_lens_image(task64):
    theta = task64.prior.sample(3, random_state=0).to_numpy()
    lens = strong_lensing()
    # StrongLensing with a 1e-30 M_sun subhalo is the main lens alone.
    sl = np.column_stack([np.full(3, 2.0), np.full(3, 2.0), np.full(3, -30.0), theta[:, :5]])
    np.testing.assert_allclose(task64.noiseless(theta), lens.noiseless(sl), atol=1e-5)
    empty = pd.DataFrame({"image": [], "x_sub": [], "y_sub": [], "log10_m_sub": []})
    np.testing.assert_array_equal(task64.noiseless(theta, empty), task64.noiseless(theta))
    # An empty population: no marked cell, and the image is the main lens plus noise.
    none = subhalo_lensing(fixed={"n_sub_mean": 0.0})
    theta = none.prior.sample(20, random_state=1)
    X, occupancy = none.simulate_with_occupancy(theta, rng=2)
    assert not occupancy.any()
    residual = X - none.noiseless(theta)
    assert abs(residual.mean()) < Z * none.noise / np.sqrt(residual.size)
    assert abs(residual.std() / none.noise - 1) < Z * np.sqrt(0.5 / residual.size)


def test_one_subhalo_gives_the_strong_lensing_image(task64):
    lens = strong_lensing()
    theta = task64.prior.sample(4, random_state=3).to_numpy()
    sub = np.array([[0.75, 0.8, 9.5], [-1.0, 0.3, 10.2], [0.1, -1.2, 8.3], [2.0, -2.0, 10.5]])
    cat = pd.DataFrame({"image": np.arange(4), "x_sub": sub[:, 0], "y_sub": sub[:, 1],
                        "log10_m_sub": sub[:, 2]})
    np.testing.assert_allclose(task64.noiseless(theta, cat),
                               lens.noiseless(np.column_stack([sub, theta[:, :5]])), atol=1e-5)


def test_a_subhalo_perturbs_the_image_near_its_position(task64):
    x, y = task64.coordinates
    theta = _lens()
    one = pd.DataFrame({"x_sub": [0.0], "y_sub": [1.1], "log10_m_sub": [10.0]})
    diff = np.abs(task64.noiseless(theta, one)[0] - task64.noiseless(theta)[0])
    peak = np.unravel_index(np.argmax(diff), diff.shape)
    assert np.hypot(x[peak], y[peak] - 1.1) < 0.3
    near = np.hypot(x, y - 1.1) < 0.4
    far = np.hypot(x, y + 1.1) < 0.4
    assert diff[near].max() > 0.1  # visible above the 0.05 noise
    assert diff[near].sum() > 5 * diff[far].sum()
    # Several subhalos: each one changes the image most near itself.
    two = pd.DataFrame({"x_sub": [0.0, 1.1], "y_sub": [1.1, 0.0], "log10_m_sub": [10.0, 10.0]})
    diff2 = np.abs(task64.noiseless(theta, two)[0] - task64.noiseless(theta, one)[0])
    peak = np.unravel_index(np.argmax(diff2), diff2.shape)
    assert np.hypot(x[peak] - 1.1, y[peak]) < 0.3


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"npix": 2}, "npix"), ({"npix": (64, 3)}, "npix"), ({"npix": 32.0}, "npix"),
    ({"m_min": 1e10, "m_max": 1e9}, "m_min must be below m_max"),
    ({"m_min": 1e9, "m_max": 1e9}, "m_min must be below m_max"),
    ({"m_min": -1.0}, "m_min"), ({"n_bins": 0}, "n_bins"), ({"n_bins": 2.5}, "n_bins"),
    ({"slope": np.nan}, "slope"), ({"noise": 0}, "noise"), ({"supersample": 0}, "supersample"),
    ({"fixed": {"n_sub_mean": -1.0}}, "n_sub_mean"), ({"fixed": {"m_sub": 1.0}}, "unknown"),
    ({"fixed": {"e1": 0.9, "e2": 0.9}}, "ellipticity"),
    ({"fixed": {k: 0.0 for k in ("theta_E", "e1", "e2", "x_src", "y_src", "n_sub_mean")}},
     "at least one"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        subhalo_lensing(**kwargs)


def test_bad_theta_and_catalogues_are_refused(task):
    with pytest.raises(ValueError, match="n_sub_mean"):
        task.simulate_batch(_lens(n_sub_mean=-2.0), rng=0)
    with pytest.raises(ValueError, match="n_sub_mean"):
        task.sample_catalogue(_lens(n_sub_mean=np.nan), rng=0)
    with pytest.raises(ValueError, match="expected shape"):
        task.simulate_with_occupancy(np.zeros(3), rng=0)
    cat = pd.DataFrame({"x_sub": [0.0], "y_sub": [0.0], "log10_m_sub": [9.0]})
    with pytest.raises(ValueError, match="missing columns"):
        task.noiseless(np.tile(_lens(), (2, 1)), cat)
    with pytest.raises(ValueError, match="image must"):
        task.noiseless(_lens(), cat.assign(image=1))
    with pytest.raises(TypeError, match="DataFrame"):
        task.occupancy(cat.to_numpy())
    with pytest.raises(ValueError, match="inside the field"):
        task.occupancy(cat.assign(x_sub=10.0))
    with pytest.raises(ValueError, match="mass range"):
        task.occupancy(cat.assign(log10_m_sub=7.0))
    with pytest.raises(ValueError, match="n_images"):
        task.occupancy(cat, n_images=0)


def test_no_likelihood_and_no_reference_posterior(task):
    with pytest.raises(NotImplementedError, match="no tractable likelihood"):
        task.log_likelihood(task.true_parameters(1), task.observation(1))
    with pytest.raises(NotImplementedError, match="no reference posterior"):
        task.reference_samples(1, n=10)
