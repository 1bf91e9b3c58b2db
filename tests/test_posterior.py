import numpy as np
import pytest
from scipy import stats

from sklearn_tmnre import Prior
from sklearn_tmnre.posterior import MarginalPosterior, grid_axes, hpd_level


def gaussian_posterior(mu=(0.2, -0.3), sd=(0.1, 0.2), rho=0.5, n1=400, n2=200):
    """A MarginalPosterior holding an exact correlated Gaussian on grids over [-1, 1]^2."""
    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
    ax1 = dict(zip("ab", grid_axes(prior, ["a", "b"], n1)))
    ax2 = dict(zip("ab", grid_axes(prior, ["a", "b"], n2)))
    mass = {}
    for j, n in enumerate("ab"):
        c, w = ax1[n]
        p = stats.norm(mu[j], sd[j]).pdf(c) * w
        mass[(n,)] = p / p.sum()
    cov = [[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]]
    A, B = np.meshgrid(ax2["a"][0], ax2["b"][0], indexing="ij")
    p = stats.multivariate_normal(mu, cov).pdf(np.dstack([A, B]))
    mass[("a", "b")] = p / p.sum()
    axes = {("a",): [ax1["a"]], ("b",): [ax1["b"]], ("a", "b"): [ax2["a"], ax2["b"]]}
    return MarginalPosterior([("a",), ("b",), ("a", "b")], axes, mass)


def test_grid_axes_cover_support_and_unbounded_tails():
    prior = Prior({"u": stats.uniform(2, 3), "n": stats.norm(1, 2)})
    (cu, wu), (cn, wn) = grid_axes(prior, ["u", "n"], 100)
    assert cu[0] - wu / 2 == pytest.approx(2) and cu[-1] + wu / 2 == pytest.approx(5)
    # normal: central 1 - 2e-6 probability range
    assert cn[0] - wn / 2 == pytest.approx(stats.norm(1, 2).ppf(1e-6))
    t = prior.truncate({"n": (0, 1)})
    (_, _), (cn2, wn2) = grid_axes(t, ["u", "n"], 10)
    assert cn2[0] - wn2 / 2 == pytest.approx(0) and cn2[-1] + wn2 / 2 == pytest.approx(1)


def test_moments_quantiles_intervals():
    post = gaussian_posterior()
    # b's Gaussian is cut at -3.5 sd by the prior box: its mean moves by ~2e-4
    np.testing.assert_allclose(post.mean(), [0.2, -0.3], atol=5e-4)
    np.testing.assert_allclose(post.std(), [0.1, 0.2], rtol=2e-3)
    q = post.quantile([0.16, 0.5, 0.84])
    np.testing.assert_allclose(q["a"], stats.norm(0.2, 0.1).ppf([0.16, 0.5, 0.84]), atol=2e-3)
    iv = post.interval(0.9)
    np.testing.assert_allclose(iv.loc["b"], stats.norm(-0.3, 0.2).ppf([0.05, 0.95]), atol=5e-3)
    hpd = post.hpd(0.9)
    # symmetric unimodal: HPD = central interval, one piece
    np.testing.assert_allclose(hpd.loc["a", ["lower", "upper"]].astype(float),
                               iv.loc["a"], atol=6e-3)
    assert (hpd["n_intervals"] == 1).all()
    s = post.summary()
    assert list(s.columns) == ["mean", "std", "median", "lower_68", "upper_68", "lower_95",
                               "upper_95"]


def test_samples_follow_the_density():
    post = gaussian_posterior()
    n = 20_000
    d2 = post.sample(n, marginal=("a", "b"), random_state=0)
    assert list(d2.columns) == ["a", "b"]
    np.testing.assert_allclose(d2.mean(), [0.2, -0.3], atol=5 * 0.2 / np.sqrt(n))
    assert np.corrcoef(d2["a"], d2["b"])[0, 1] == pytest.approx(0.5, abs=0.03)
    flipped = post.sample(n, marginal=("b", "a"), random_state=0)
    assert list(flipped.columns) == ["b", "a"]
    np.testing.assert_allclose(flipped.mean(), [-0.3, 0.2], atol=5 * 0.2 / np.sqrt(n))
    d1 = post.sample(n, random_state=1)
    assert list(d1.columns) == ["a", "b"]
    assert stats.kstest(d1["a"], stats.norm(0.2, 0.1).cdf).pvalue > 1e-3
    pd_a = post.sample(10, marginal=("a",), random_state=0)
    assert list(pd_a.columns) == ["a"]
    with pytest.raises(ValueError, match="not estimated"):
        post.sample(10, marginal=("a", "c"))


def test_density_and_pdf():
    post = gaussian_posterior()
    (ga,), dens = post.density("a")
    np.testing.assert_allclose(np.sum(dens) * (ga[1] - ga[0]), 1.0)
    np.testing.assert_allclose(post.pdf("a", [0.2]), stats.norm(0.2, 0.1).pdf(0.2), rtol=1e-3)
    assert post.pdf("a", [5.0])[0] == 0
    (gb, ga2), d = post.density(("b", "a"))
    assert d.shape == (len(gb), len(ga2))


def test_credibility_levels_match_gaussian_hpd():
    post = gaussian_posterior()
    # 1-d: the HPD level of mu + z sd is the central mass within |z|, up to the
    # mass of one grid cell (the resolution of a grid-based level)
    (centres, width), = post.axes[("a",)]
    for z in (0.5, 1.0, 2.0):
        value = centres[np.argmin(np.abs(centres - (0.2 + z * 0.1)))]
        z_cell = (value - 0.2) / 0.1
        cell_mass = stats.norm.pdf(z_cell) * width / 0.1
        level = post.credibility("a", [value])[0]
        assert level == pytest.approx(2 * stats.norm.cdf(z_cell) - 1, abs=cell_mass)
    # 2-d Gaussian: level of a point at Mahalanobis distance r is chi2(2).cdf(r^2)
    level = post.credibility(("a", "b"), [0.2 + 0.1 * 1.5, -0.3])[0]
    r2 = 1.5**2 / (1 - 0.5**2)
    assert level == pytest.approx(stats.chi2(2).cdf(r2), abs=0.02)
    assert post.credibility("a", [3.0])[0] == 1.0


def test_hpd_level_by_hand_and_ties():
    axes = [(np.arange(4) + 0.5, 1.0)]
    mass = np.array([0.1, 0.4, 0.4, 0.1])
    # Slopes (central differences): 0.3, 0.15, -0.15, -0.3 per cell.  At the centre of
    # cell 1 the density is 0.4: the inner halves of cells 1 and 2 are denser (0.4).
    # The two linear pieces meet at 0.475 on the shared edge (the mode: 0).  At 0.1
    # the density is 0.1 - 0.4 * 0.3 = -0.02: all but the outer 0.1 of cells 0 and 3.
    levels = hpd_level(mass, axes, [[1.5], [2.0], [0.1], [5.0]])
    np.testing.assert_allclose(levels, [0.4, 0.0, 0.98, 1.0])
    # One grid per point gives the same levels as a shared grid.
    np.testing.assert_allclose(hpd_level(np.tile(mass, (4, 1)), axes, [[1.5], [2.0], [0.1], [5.0]]),
                               levels)
    # A flat grid has no denser part: every cell ties and counts half.
    np.testing.assert_allclose(hpd_level(np.full(4, 0.25), axes, [[0.7], [3.2]]), [0.5, 0.5])
    with pytest.raises(ValueError, match="values must have shape"):
        hpd_level(mass, axes, [1.5])
    with pytest.raises(ValueError, match="mass must have shape"):
        hpd_level(np.tile(mass, (3, 1)), axes, [[1.5], [2.0]])
    with pytest.raises(ValueError, match="1-d or 2-d grid"):
        hpd_level(np.full((4, 4, 4), 1 / 64), axes * 3, [[1.5, 1.5, 1.5]])


def normal_on_64_cells(mu=0.0):
    """N(mu, 1) on the default grid of a normal prior: 64 cells over +-4.9 sd."""
    (centres, width), = grid_axes(Prior({"a": stats.norm(0, 1)}), ["a"], 64)
    mass = stats.norm.pdf(centres, mu)
    mass /= mass.sum()
    post = MarginalPosterior([("a",)], {("a",): [(centres, width)]}, {("a",): mass})
    # The old scheme (denser cells + half the point's own cell) was off by up to
    # 1.5 times the mode cell's mass (0.06), and by 0.026 in coverage; a tenth of
    # the mode cell is the tolerance (measured: 0.006 pointwise, 0.001 in coverage).
    return post, width, mass.max() / 10


@pytest.mark.parametrize("shift", [0.0, 0.25, 0.5])
def test_hpd_level_is_continuous_and_matches_the_normal(shift):
    # The mode on a cell edge, a quarter cell in, at a cell centre.
    post, width, tol = normal_on_64_cells()
    mu = shift * width
    post, _, _ = normal_on_64_cells(mu)
    z = np.linspace(-4, 4, 4001)
    level = post.credibility("a", mu + z)
    exact = 2 * stats.norm.cdf(np.abs(z)) - 1
    # Within a cell of the mode the grid cannot place the peak (off by <= one mode cell).
    far = np.abs(z) > width
    np.testing.assert_allclose(level[far], exact[far], atol=tol)
    np.testing.assert_allclose(level[~far], exact[~far], atol=post.mass[("a",)].max())
    # Coverage of exact draws: P(level <= q) = q, by quadrature over z.
    weight = stats.norm.pdf(z) / stats.norm.pdf(z).sum()
    q = np.linspace(0.05, 0.95, 19)
    coverage = ((level[:, None] <= q) * weight[:, None]).sum(0)
    np.testing.assert_allclose(coverage, q, atol=tol / 4)


def test_hpd_region_holds_its_level():
    # Old: whole cells until the level is reached, up to 0.048 more mass than q.
    post, width, tol = normal_on_64_cells()
    for mu in (0.0, 0.3 * width):
        post, _, _ = normal_on_64_cells(mu)
        for q in np.linspace(0.05, 0.95, 19):
            lower, upper, n_intervals = post.hpd(q).loc["a"]
            mass = stats.norm.cdf(upper, mu) - stats.norm.cdf(lower, mu)
            assert mass == pytest.approx(q, abs=tol / 4) and n_intervals == 1
            # An HPD region's ends are equally dense.
            assert stats.norm.pdf(lower, mu) == pytest.approx(stats.norm.pdf(upper, mu), rel=0.01)
    # Skewed: the region's mass is the level and its ends are equally dense.
    gamma = stats.gamma(3)
    (centres, width), = grid_axes(Prior({"a": stats.uniform(0, 12)}), ["a"], 64)
    mass = gamma.pdf(centres) / gamma.pdf(centres).sum()
    skewed = MarginalPosterior([("a",)], {("a",): [(centres, width)]}, {("a",): mass})
    for q in (0.5, 0.9):
        lower, upper, _ = skewed.hpd(q).loc["a"]
        assert gamma.cdf(upper) - gamma.cdf(lower) == pytest.approx(q, abs=tol)
        assert gamma.pdf(lower) == pytest.approx(gamma.pdf(upper), rel=0.01)
    # Two separated modes: two intervals.
    (centres, width), = grid_axes(Prior({"a": stats.uniform(-1, 2)}), ["a"], 64)
    mass = stats.norm.pdf(centres, -0.5, 0.1) + stats.norm.pdf(centres, 0.5, 0.1)
    bimodal = MarginalPosterior([("a",)], {("a",): [(centres, width)]},
                                {("a",): mass / mass.sum()})
    assert bimodal.hpd(0.9).loc["a", "n_intervals"] == 2


def test_hpd_level_of_a_correlated_gaussian_on_64_by_64_cells():
    post = gaussian_posterior(sd=(0.15, 0.2), n2=64)
    # Points at Mahalanobis radius r along several directions: level chi2_2.cdf(r^2).
    cov = np.array([[0.15**2, 0.5 * 0.15 * 0.2], [0.5 * 0.15 * 0.2, 0.2**2]])
    root = np.linalg.cholesky(cov)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    mode_cell = post.mass[("a", "b")].max()
    for r in (0.25, 0.5, 1.0, 1.5, 2.0, 2.5):
        points = np.array([0.2, -0.3]) + r * np.column_stack([np.cos(angles),
                                                              np.sin(angles)]) @ root.T
        level = post.credibility(("a", "b"), points)
        # Linear cells miss the curvature near the mode: up to 1.5 mode cells there
        # (0.009), where the old scheme was off by up to 12 (0.07).
        np.testing.assert_allclose(level, stats.chi2(2).cdf(r**2), atol=2 * mode_cell)
