import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

from sklearn_tmnre import MarginalPosterior, Prior, TMNREEstimator  # noqa: E402
from sklearn_tmnre.metrics import expected_calibration_error  # noqa: E402
from sklearn_tmnre.plotting import (  # noqa: E402
    _hpd_thresholds,
    corner,
    coverage_plot,
    plot_posterior_map,
    plot_reliability_diagram,
    training_curve,
)
from sklearn_tmnre.posterior import grid_axes  # noqa: E402

MEANS = {"a": 0.2, "b": -0.5, "c": 1.0}
STDS = {"a": 0.1, "b": 0.4, "c": 0.3}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


ALL_MARGINALS = (("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"))


def gaussian_posterior(shift=0.0, marginals=ALL_MARGINALS):
    """Independent Gaussian marginals on prior grids."""
    prior = Prior({n: stats.uniform(-2, 4) for n in MEANS})
    axes, mass = {}, {}
    for m in marginals:
        axes[m] = grid_axes(prior, list(m), 400 if len(m) == 1 else 200)
        per = [stats.norm.pdf(c, MEANS[n] + shift, STDS[n]) for n, (c, _) in zip(m, axes[m])]
        p = per[0] if len(m) == 1 else per[0][:, None] * per[1][None, :]
        mass[m] = p / p.sum()
    return MarginalPosterior(list(marginals), axes, mass)


def png_size(fig, tmp_path):
    path = tmp_path / "figure.png"
    fig.savefig(path, dpi=50)
    return path.stat().st_size


def contour_sets(ax):
    return [c for c in ax.get_children() if isinstance(c, ContourSet) and not c.filled]


def test_hpd_thresholds_of_a_gaussian():
    # For a 2-d standard normal the 1 - e^{-r^2/2} HPD region ends where the density
    # is (1 - L) / (2 pi): the grid thresholds match up to the cell discretization.
    c = np.linspace(-6, 6, 601)
    dens = np.exp(-0.5 * (c[:, None] ** 2 + c[None, :] ** 2)) / (2 * np.pi)
    levels = np.array([0.68, 0.95])
    got = _hpd_thresholds(dens, (c[1] - c[0]) ** 2, levels)
    np.testing.assert_allclose(got, (1 - levels) / (2 * np.pi), rtol=0.01)


def test_corner_layout_and_labels(tmp_path):
    fig = corner(gaussian_posterior(), truths=MEANS)
    axes = np.asarray(fig.get_axes()).reshape(3, 3)
    # x axis = column parameter, y axis = row parameter.
    assert axes[2, 0].get_xlabel() == "a" and axes[2, 0].get_ylabel() == "c"
    assert axes[1, 0].get_ylabel() == "b" and axes[1, 0].get_xlabel() == ""
    assert axes[2, 1].get_xlabel() == "b" and axes[2, 1].get_ylabel() == ""
    assert axes[2, 2].get_xlabel() == "c" and axes[0, 0].get_ylabel() == ""
    assert all(axes[i, j].get_visible() == (j <= i) for i in range(3) for j in range(3))
    assert png_size(fig, tmp_path) > 1000


def test_corner_hides_panels_without_2d_marginal():
    fig = corner(gaussian_posterior(marginals=ALL_MARGINALS[:4]))
    axes = np.asarray(fig.get_axes()).reshape(3, 3)
    assert axes[1, 0].get_visible()
    assert not axes[2, 0].get_visible() and not axes[2, 1].get_visible()
    # The column labels move up to the lowest visible panel.
    assert axes[1, 0].get_xlabel() == "a" and axes[1, 1].get_xlabel() == "b"
    assert axes[1, 0].get_ylabel() == "b" and axes[2, 2].get_xlabel() == "c"


def test_corner_contours_are_hpd_levels_in_the_right_orientation():
    post = gaussian_posterior()
    fig = corner(post, levels=(0.68, 0.95))
    ax = np.asarray(fig.get_axes()).reshape(3, 3)[1, 0]
    (cs,) = contour_sets(ax)
    expected = (1 - np.array([0.95, 0.68])) / (2 * np.pi * STDS["a"] * STDS["b"])
    np.testing.assert_allclose(cs.levels, expected, rtol=0.03)
    # The 0.95 ellipse has semi-axes 2.45 sd: narrow along a (x), wide along b (y).
    vertices = np.concatenate([p.vertices for p in cs.get_paths()[:1]])
    half_width = np.ptp(vertices, axis=0) / 2
    r95 = np.sqrt(stats.chi2(2).ppf(0.95))
    np.testing.assert_allclose(half_width, [r95 * STDS["a"], r95 * STDS["b"]], rtol=0.05)
    centre = vertices.mean(axis=0)
    np.testing.assert_allclose(centre, [MEANS["a"], MEANS["b"]], atol=0.05)


def test_corner_overlay_reference_legend_and_reuse(tmp_path):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({n: MEANS[n] + STDS[n] * rng.standard_normal(4000) for n in MEANS})
    posts = [gaussian_posterior(), gaussian_posterior(shift=0.3)]
    fig = corner(posts, reference=reference, legend=["first", "second"],
                 labels={"a": r"$\alpha$"}, colors=["tab:red", "tab:green"])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["first", "second", "reference"]
    axes = np.asarray(fig.get_axes()).reshape(3, 3)
    assert axes[2, 0].get_xlabel() == r"$\alpha$" and axes[2, 1].get_xlabel() == "b"
    # Two posteriors and the dashed reference in the (b, a) panel.
    assert len(contour_sets(axes[1, 0])) == 3
    again = corner(gaussian_posterior(shift=-0.3), fig=fig, colors=["tab:blue"])
    assert again is fig and len(fig.get_axes()) == 9
    assert len(contour_sets(axes[1, 0])) == 4
    assert png_size(fig, tmp_path) > 1000


def test_corner_names_subset_and_arrays():
    post = gaussian_posterior()
    fig = corner(post, names=["b", "a"], truths=[-0.5, 0.2],
                 reference=np.column_stack([np.full(50, -0.5), np.full(50, 0.2)]))
    axes = np.asarray(fig.get_axes()).reshape(2, 2)
    assert axes[1, 0].get_xlabel() == "b" and axes[1, 0].get_ylabel() == "a"
    assert axes[1, 0].get_visible()


def test_corner_errors():
    post = gaussian_posterior()
    with pytest.raises(ValueError, match="have no 1-d marginal"):
        corner(post, names=["a", "z"])
    with pytest.raises(ValueError, match="labels has 1 entries"):
        corner(post, labels=["x"])
    with pytest.raises(ValueError, match=r"levels must be credibility levels in \(0, 1\)"):
        corner(post, levels=(0.68, 1.0))
    with pytest.raises(ValueError, match=r"reference must have shape \(n, 3\)"):
        corner(post, reference=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="needs 9"):
        corner(post, fig=plt.subplots(1, 2)[0])
    with pytest.raises(TypeError, match="MarginalPosterior"):
        corner([])


def test_posterior_plot_method_draws_a_corner():
    fig = gaussian_posterior().plot(levels=(0.5,))
    assert len(fig.get_axes()) == 9


def test_without_matplotlib_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-tmnre\[plot\]'"):
        corner(gaussian_posterior())


def coverage_frame():
    levels = np.linspace(0.05, 0.95, 19)
    rows = []
    for marginal, bias in [("a", 0.0), ("b", -0.05), ("a|b", 0.05)]:
        cov = np.clip(levels + bias, 0, 1)
        rows.append(pd.DataFrame({"marginal": marginal, "level": levels, "coverage": cov,
                                  "lower": cov - 0.02, "upper": cov + 0.02}))
    return pd.concat(rows, ignore_index=True)


def test_coverage_plot(tmp_path):
    fig = coverage_plot(coverage_frame())
    (ax,) = fig.get_axes()
    assert ax.get_xlabel() == "nominal credibility level"
    assert ax.get_ylabel() == "empirical coverage"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "a|b"]
    # Three curves and the diagonal.
    lines = ax.get_lines()
    assert len(lines) == 4
    np.testing.assert_allclose(lines[1].get_ydata(), np.linspace(0.05, 0.95, 19) - 0.05)
    np.testing.assert_allclose(lines[-1].get_xydata(), [[0, 0], [1, 1]])
    assert png_size(fig, tmp_path) > 1000
    _, ax = plt.subplots()
    assert coverage_plot(coverage_frame(), ax=ax) is ax.figure
    with pytest.raises(ValueError, match="expected_coverage"):
        coverage_plot(coverage_frame().drop(columns="upper"))


@pytest.fixture(scope="module")
def training_data():
    prior = Prior({"a": stats.uniform(-1, 2)})
    theta = prior.sample(300, random_state=0)
    X = theta.to_numpy() + 0.2 * np.random.default_rng(0).standard_normal((300, 1))
    return prior, X, theta


@pytest.mark.parametrize("validation_fraction", [0.2, 0.0])
def test_training_curve(training_data, validation_fraction, tmp_path):
    prior, X, theta = training_data
    est = TMNREEstimator(prior=prior, max_epochs=4, hidden_features=8, embedding_dim=4,
                         validation_fraction=validation_fraction, random_state=0).fit(X, theta)
    fig = training_curve(est)
    (ax,) = fig.get_axes()
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    train = ax.get_lines()[0]
    np.testing.assert_allclose(train.get_xdata(), np.arange(1, 5))
    np.testing.assert_allclose(train.get_ydata(), est.net_.history[:, "train_loss"])
    if validation_fraction:
        assert labels[:2] == ["train", "validation"] and labels[2].startswith("best (epoch ")
        valid = np.asarray(est.net_.history[:, "valid_loss"])
        np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), valid)
        best = ax.get_lines()[2]
        assert best.get_ydata()[0] == valid.min()
    else:
        assert labels == ["train"]
    assert png_size(fig, tmp_path) > 1000
    # A skorch net works as well as the estimator.
    assert len(training_curve(est.net_).get_axes()[0].get_lines()) == len(ax.get_lines())


def test_training_curve_needs_a_fitted_model():
    with pytest.raises(ValueError, match="call fit first"):
        training_curve(TMNREEstimator())


def test_truncation_plot_shows_every_round_and_the_final_box(tmp_path):
    from types import SimpleNamespace

    from sklearn_tmnre.plotting import truncation_plot

    prior = Prior({"a": stats.uniform(-5, 10), "b": stats.norm(0, 1)})
    rounds = pd.DataFrame({
        "round": [0, 1], "mass": [1.0, 0.2],
        "bounds": [{"a": (-5.0, 5.0), "b": (-np.inf, np.inf)},
                   {"a": (-1.0, 3.0), "b": (-2.0, 2.0)}]})
    final = prior.truncate({"a": (0.0, 2.0), "b": (-1.0, 1.0)})
    run = SimpleNamespace(rounds_=rounds, prior_=final, truncator_=SimpleNamespace(mass_=0.05))
    fig = truncation_plot(run, truths={"a": 1.0, "b": 0.0}, labels={"a": "alpha"})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3  # the mass, then one panel per parameter
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["0", "1", "final"]
    assert axes[1].get_ylabel() == "alpha" and axes[2].get_ylabel() == "b"
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), [1.0, 0.2, 0.05])
    # Each round's interval is a bar from low to high; infinite bounds stop at the edge.
    segments = axes[1].collections[0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments], [[-5, 5], [-1, 3], [0, 2]])
    low, high = axes[2].get_ylim()
    assert np.isfinite([low, high]).all() and low < -2 and high > 2
    fig.savefig(tmp_path / "truncation.png")
    plt.close(fig)
    with pytest.raises(ValueError, match="fitted TMNRE"):
        truncation_plot(object())
    with pytest.raises(ValueError, match="not parameters"):
        truncation_plot(run, names=["c"])


def discrete_posterior(probabilities, marginals=(("m",), ("a",))):
    """A class table for ``m`` (classes 0, 1, 2) beside a Gaussian ``a``, as the estimator
    builds it: a discrete parameter's grid is its classes, each a cell of width 1."""
    prior = Prior({"m": stats.randint(0, 3), "a": stats.uniform(-2, 4)})
    axes, mass = {}, {}
    for m in marginals:
        axes[m] = grid_axes(prior, list(m), 200)
        if m == ("m",):
            mass[m] = np.asarray(probabilities, dtype=float)
        else:
            per = [stats.norm.pdf(c, 0.2, 0.3) for c, _ in axes[m]]
            p = per[0] if len(m) == 1 else per[0][:, None] * per[1][None, :]
            mass[m] = p / p.sum()
    return MarginalPosterior(list(marginals), axes, mass, discrete=["m"])


def test_corner_draws_a_discrete_marginal_as_bars_of_class_probabilities(tmp_path):
    probabilities = [0.1, 0.6, 0.3]
    post = discrete_posterior(probabilities)
    fig = corner(post, truths={"m": 1.0, "a": 0.2})
    axes = np.asarray(fig.get_axes()).reshape(2, 2)
    bars = axes[0, 0].patches
    assert len(bars) == 3 and len(axes[0, 0].lines) == 1  # bars, and the truth's line only
    np.testing.assert_allclose([b.get_height() for b in bars], probabilities)
    np.testing.assert_allclose([b.get_x() + 0.5 * b.get_width() for b in bars], [0, 1, 2])
    assert all(b.get_width() < 1 for b in bars)  # neighbouring classes stay apart
    np.testing.assert_allclose(axes[0, 0].get_xticks(), [0, 1, 2])
    low, high = axes[0, 0].get_xlim()
    assert low < -0.4 and high > 2.4  # every class whole, even an improbable one
    # The continuous parameter is still a density curve, without bars.
    assert not axes[1, 1].patches and len(axes[1, 1].lines[0].get_xdata()) == 200
    # Overlaid posteriors: side by side at each class, heights still the probabilities;
    # reference samples are dashed outlines of their class frequencies.
    other = discrete_posterior([0.5, 0.25, 0.25])
    reference = pd.DataFrame({"m": [0.0, 1.0, 1.0, 2.0], "a": [0.1, 0.2, 0.3, 0.2]})
    fig = corner([post, other], reference=reference)
    bars = np.asarray(fig.get_axes()).reshape(2, 2)[0, 0].patches
    assert len(bars) == 9
    np.testing.assert_allclose([b.get_height() for b in bars],
                               [*probabilities, 0.5, 0.25, 0.25, 0.25, 0.5, 0.25])
    centres = np.array([b.get_x() + 0.5 * b.get_width() for b in bars[:6]]).reshape(2, 3)
    assert np.all(centres[0] < np.arange(3)) and np.all(centres[1] > np.arange(3))
    assert [b.get_fill() for b in bars] == [True] * 6 + [False] * 3
    fig.savefig(tmp_path / "discrete.png")


def test_corner_hides_a_2d_panel_of_a_discrete_parameter():
    # Fit refuses such marginals; a posterior built by hand with one is drawn without it.
    post = discrete_posterior([0.2, 0.3, 0.5], marginals=(("m",), ("a",), ("m", "a")))
    axes = np.asarray(post.plot().get_axes()).reshape(2, 2)
    assert not axes[1, 0].get_visible()
    assert not contour_sets(axes[1, 0])
    assert axes[1, 1].get_xlabel() == "a" and axes[0, 0].get_xlabel() == "m"


# ------------------------------------------------------ per-pixel probability maps
def _probability_maps(n_bins=3, rows=6, cols=8, seed=0):
    rng = np.random.default_rng(seed)
    proba = rng.random((n_bins, rows, cols)) * 0.5
    occupancy = np.zeros((n_bins, rows, cols), dtype=bool)
    occupancy[0, 1, 2] = occupancy[0, 4, 7] = occupancy[-1, 5, 0] = True
    return proba, occupancy


def test_posterior_map_of_one_bin_fades_with_probability():
    proba, occupancy = _probability_maps(n_bins=2)
    image = np.arange(48.0).reshape(6, 8)
    fig = plot_posterior_map(proba[0], image=image, truth=occupancy[0])
    panel, colorbar = fig.get_axes()  # the map and its colour bar
    grey, overlay = panel.get_images()
    np.testing.assert_array_equal(grey.get_array(), image)
    rgba = np.asarray(overlay.get_array())
    assert rgba.shape == (6, 8, 4)
    # Opacity is the probability over the largest one: the most probable pixel is opaque.
    np.testing.assert_allclose(rgba[..., 3], proba[0] / proba[0].max())
    # True subhalos at (column, row), y upwards.
    (markers,) = panel.collections
    np.testing.assert_array_equal(markers.get_offsets(), [[2, 1], [7, 4]])
    assert overlay.origin == "lower"
    assert colorbar.get_ylabel() == "probability"


def test_posterior_map_of_several_bins_lays_out_panels():
    proba, occupancy = _probability_maps(n_bins=7)
    catalogue = pd.DataFrame({"bin": [0, 0, 6, -1], "row": [1, 4, 5, 2], "col": [2, 7, 0, 3]})
    fig = plot_posterior_map(proba, truth=catalogue, vmax=0.25, colorbar=False)
    axes = fig.get_axes()
    assert len(axes) == 10  # two rows of five, three hidden
    visible = [ax for ax in axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [f"bin {k}" for k in range(7)]
    assert all(len(ax.get_images()) == 1 for ax in visible)  # no image underneath
    # Probabilities above vmax are opaque; the subhalo without a bin (-1) is not drawn.
    alpha = np.asarray(visible[0].get_images()[0].get_array())[..., 3]
    np.testing.assert_allclose(alpha, np.clip(proba[0] / 0.25, 0, 1))
    offsets = [len(ax.collections[0].get_offsets()) for ax in visible]
    assert offsets == [2, 0, 0, 0, 0, 0, 1]


def test_posterior_map_draws_into_given_axes():
    proba, occupancy = _probability_maps(n_bins=3)
    fig, axes = plt.subplots(1, 2)
    out = plot_posterior_map(proba[:2], truth=occupancy[:2], ax=axes, bin_labels=["a", "b"])
    assert out is fig
    assert [ax.get_title() for ax in axes] == ["a", "b"]
    with pytest.raises(ValueError, match="one Axes per bin"):
        plot_posterior_map(proba, ax=axes)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(proba=np.full((4, 4), 1.5)), ValueError, r"\[0, 1\]"),
    (dict(proba=np.full((4, 4), np.nan)), ValueError, "NaN"),
    (dict(proba=np.zeros(4)), ValueError, r"\(rows, cols\)"),
    (dict(proba=np.zeros((2, 3, 4, 4))), ValueError, r"proba\[i\]"),
    (dict(proba=np.full((4, 4), "a")), TypeError, "real numbers"),
    (dict(proba=np.zeros((4, 4)), image=np.zeros((5, 4))), ValueError, "image"),
    (dict(proba=np.zeros((4, 4)), truth=np.zeros((5, 4), bool)), ValueError, "truth"),
    (dict(proba=np.zeros((2, 4, 4)), truth=pd.DataFrame({"row": [1], "col": [1]})),
     ValueError, "bin"),
    (dict(proba=np.zeros((4, 4)), vmax=0.0), ValueError, "vmax"),
    (dict(proba=np.zeros((2, 4, 4)), bin_labels=["a"]), ValueError, "bin_labels"),
])
def test_posterior_map_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        plot_posterior_map(**kwargs)


def test_reliability_diagram_shows_curve_counts_and_ece():
    rng = np.random.default_rng(0)
    proba = rng.random((4, 2, 8, 8))
    occupancy = rng.random(proba.shape) < proba**2  # events rarer than predicted
    fig = plot_reliability_diagram(occupancy, proba, n_bins=5)
    main, bars = fig.get_axes()
    ece = expected_calibration_error(occupancy, proba, n_bins=5)
    assert main.get_title() == f"ECE = {ece:.3g}"
    assert len(bars.patches) == 5
    np.testing.assert_allclose(sum(b.get_height() for b in bars.patches), proba.size)
    diagonal, curve = main.lines[:2]
    np.testing.assert_allclose(diagonal.get_xydata(), [[0, 0], [1, 1]])
    assert len(curve.get_xdata()) == 5
    # Events happen less often than predicted: the curve lies below the diagonal.
    assert np.all(curve.get_ydata() < curve.get_xdata())
    _, ax = plt.subplots()
    assert plot_reliability_diagram(occupancy, proba, ax=ax) is ax.figure


def test_reliability_diagram_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        plot_reliability_diagram(np.zeros((2, 4)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_reliability_diagram([0, 1], [0.5, 2.0])
    with pytest.raises(ValueError, match="binary labels"):
        plot_reliability_diagram([0, 3], [0.5, 0.2])
