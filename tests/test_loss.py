import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sklearn_tmnre import TMNREEstimator
from sklearn_tmnre.loss import LOSSES, CellPosteriorLoss, ContrastiveRatioLoss, RatioLoss


def test_ratio_loss_is_bce_plus_balance():
    torch.manual_seed(0)
    fj, fm = torch.randn(8, 3), torch.randn(8, 2, 3)
    bce = (F.binary_cross_entropy_with_logits(fj, torch.ones_like(fj), reduction="none").mean(0)
           + F.binary_cross_entropy_with_logits(fm, torch.zeros_like(fm),
                                                reduction="none").mean((0, 1))).sum()
    torch.testing.assert_close(RatioLoss()(fj, fm), bce)
    gap = torch.sigmoid(fj).mean(0) + torch.sigmoid(fm).mean((0, 1)) - 1
    torch.testing.assert_close(RatioLoss(balance=3.0)(fj, fm), bce + 3.0 * (gap**2).sum())
    # the optimum of the BCE for a fixed pair of densities is the log ratio
    assert np.isclose(float(RatioLoss()(torch.zeros(1, 1), torch.zeros(1, 1))), 2 * np.log(2))


def _contrastive_by_hand(fj, fm, gamma):
    """NRE-C written with explicit class probabilities, one row and column at a time."""
    b, k, m = fm.shape
    total = 0.0
    for col in range(m):
        for i in range(b):
            joint = [fj[i, col]] + [fm[i, j, col] for j in range(k - 1)]
            marg = [fm[i, j, col] for j in range(k)]
            q1 = gamma * np.exp(joint[0]) / (k + gamma * sum(np.exp(v) for v in joint))
            q0 = k / (k + gamma * sum(np.exp(v) for v in marg))
            total -= (gamma * np.log(q1) + np.log(q0)) / (1 + gamma) / b
    return total


@pytest.mark.parametrize("gamma", [1.0, 0.3])
def test_contrastive_loss_is_the_nre_c_cross_entropy(gamma):
    torch.manual_seed(1)
    fj, fm = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, 2, dtype=torch.float64)
    got = ContrastiveRatioLoss(gamma)(fj, fm)
    assert np.isclose(float(got), _contrastive_by_hand(fj.numpy(), fm.numpy(), gamma))
    weight = torch.tensor([2.0, 0.5], dtype=torch.float64)
    by_column = [float(ContrastiveRatioLoss(gamma)(fj[:, [c]], fm[:, :, [c]])) for c in (0, 1)]
    assert np.isclose(float(ContrastiveRatioLoss(gamma)(fj, fm, weight)),
                      2.0 * by_column[0] + 0.5 * by_column[1])


def test_contrastive_with_one_negative_is_half_the_bce():
    torch.manual_seed(2)
    fj, fm = torch.randn(16, 4), torch.randn(16, 1, 4)
    torch.testing.assert_close(ContrastiveRatioLoss()(fj, fm), RatioLoss()(fj, fm) / 2)


def test_field_terms_keep_the_bce_under_the_contrastive_loss():
    torch.manual_seed(3)
    fj, fm = torch.randn(6, 3), torch.randn(6, 2, 3)
    negative_weight = torch.tensor([[0.9, 0.8, 0.7], [0.1, 0.2, 0.3]])
    torch.testing.assert_close(ContrastiveRatioLoss()(fj, fm, None, negative_weight),
                               RatioLoss()(fj, fm, None, negative_weight))


def _minimize(table, objective):
    """Minimize ``objective()`` over the free tensor ``table`` in place (LBFGS, tight)."""
    opt = torch.optim.LBFGS([table], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    opt.step(closure)


def test_contrastive_optimum_is_the_exact_log_ratio():
    # A discrete joint p(x, theta): minimize the exact expected NRE-C loss over a free
    # logit table f[x, theta]; its minimum is log p(x, theta) / (p(x) p(theta)) itself
    # (no free constant, unlike a softmax over the set).
    joint = torch.tensor([[0.30, 0.10, 0.05], [0.05, 0.15, 0.35]], dtype=torch.float64)
    px, pt = joint.sum(1), joint.sum(0)
    k, gamma = 2, 1.0
    f = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    loss_fn = ContrastiveRatioLoss(gamma)
    # Every configuration (x, own theta, negatives) with its probability, as one batch.
    rows = list(itertools.product(range(2), range(3), *[range(3)] * k))
    x, own = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    neg = torch.tensor([r[2:] for r in rows])
    prob = joint[x, own] * torch.prod(pt[neg], 1)

    def expected_loss():
        fj, fm = f[x, own][:, None], f[x[:, None], neg][:, :, None]
        # The loss of each configuration alone, weighted by its probability.
        per_row = torch.stack([loss_fn(fj[[i]], fm[[i]]) for i in range(len(rows))])
        return (prob * per_row).sum()

    _minimize(f, expected_loss)
    exact = torch.log(joint / (px[:, None] * pt[None]))
    torch.testing.assert_close(f.detach(), exact, atol=1e-4, rtol=0)


def test_estimator_trains_with_the_contrastive_loss():
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (800, 1))
    x = theta + 0.1 * rng.standard_normal((800, 1))
    est = TMNREEstimator(loss="contrastive", max_epochs=30, random_state=0,
                         hidden_features=16, embedding_dim=8).fit(x, theta)
    assert isinstance(est.net_.criterion_, LOSSES["contrastive"])
    mean = est.posterior(np.array([0.3])).mean()
    assert abs(float(np.asarray(mean).ravel()[0]) - 0.3) < 0.05


def test_balance_needs_the_bce_loss():
    theta = np.random.default_rng(0).uniform(-1, 1, (50, 1))
    with pytest.raises(ValueError, match="balance=1.0 applies to loss='bce' only"):
        TMNREEstimator(loss="contrastive", balance=1.0, max_epochs=1).fit(theta, theta)
    with pytest.raises(ValueError, match="'loss' parameter"):
        TMNREEstimator(loss="nre_c", max_epochs=1).fit(theta, theta)


# ------------------------------------------------------------------ field cells
def test_cell_posterior_loss_by_hand_and_the_prior_scores_one():
    torch.manual_seed(4)
    logits = torch.randn(7, 2, 3, dtype=torch.float64)
    values = torch.randint(0, 2, (7, 3))
    p = torch.tensor([0.01, 0.2, 0.5], dtype=torch.float64)
    q = torch.sigmoid(torch.logit(p) + logits[:, 1] - logits[:, 0])
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    cross_entropy = -(values * q.log() + (1 - values) * (1 - q).log()).mean(0)
    weight = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    torch.testing.assert_close(CellPosteriorLoss()(logits, values, p, weight),
                               (weight * cross_entropy / entropy).sum())
    # Zero log ratios are the prior; on values whose frequency is the prior's, each
    # cell scores exactly 1.
    values = torch.tensor([[1, 1], [0, 1], [0, 0], [0, 1]])  # frequencies 1/4 and 3/4
    zero = torch.zeros(4, 2, 2, dtype=torch.float64)
    p = torch.tensor([0.25, 0.75], dtype=torch.float64)
    torch.testing.assert_close(CellPosteriorLoss()(zero, values, p),
                               torch.tensor(2.0, dtype=torch.float64))


def test_cell_posterior_loss_optimum_is_the_posterior():
    """Minimizing the exact expected loss over a free table f(x, o) recovers the
    posterior P(o = 1 | x) through logit p + f(x, 1) - f(x, 0), as the ratio loss does."""
    px = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    posterior = torch.tensor([0.002, 0.3, 0.9], dtype=torch.float64)
    p = (px * posterior).sum().reshape(1)
    f = torch.zeros(3, 2, 1, dtype=torch.float64, requires_grad=True)
    loss_fn = CellPosteriorLoss()

    def expected_loss():
        # Each x with both values o, weighted by p(x) P(o | x).
        total = 0.0
        for value, weight in ((1, posterior), (0, 1 - posterior)):
            per_x = torch.stack([loss_fn(f[[i]], torch.tensor([[value]]), p) for i in range(3)])
            total = total + (px * weight * per_x).sum()
        return total

    _minimize(f, expected_loss)
    learned = torch.sigmoid(torch.logit(p) + f[:, 1, 0] - f[:, 0, 0]).detach()
    torch.testing.assert_close(learned, posterior, atol=1e-5, rtol=1e-4)


def test_overshooting_rare_cell_is_pulled_back_harder_by_the_posterior_loss():
    """The conditioning the loss module describes: a rare cell (p = 1e-4) whose log
    ratio has overshot to a posterior of 0.5 on an empty cell is pulled back with a
    gradient of at most p by the ratio loss, and of q / H(p) by the posterior loss."""
    p = torch.tensor([1e-4], dtype=torch.float64)
    logits = torch.zeros(1, 2, 1, dtype=torch.float64)
    logits[0, 1, 0] = -torch.logit(p)  # posterior log-odds 0: q = 0.5
    values = torch.zeros(1, 1)
    gradients = []
    for loss in ("ratio", "posterior"):
        f = logits.clone().requires_grad_(True)
        if loss == "ratio":
            joint = f[:, 0]  # the cell's own value is 0
            RatioLoss()(joint, f, None, torch.stack([1 - p, p])).backward()
        else:
            CellPosteriorLoss()(f, values, p).backward()
        gradients.append(float(f.grad[0, 1, 0]))
    entropy = float(-(p * p.log() + (1 - p) * (1 - p).log()))
    assert 0 < gradients[0] <= 1e-4
    assert gradients[1] == pytest.approx(0.5 / entropy)


def test_estimator_field_loss_choice_and_bad_value():
    from scipy import stats

    from sklearn_tmnre import Prior

    rng = np.random.default_rng(0)
    prior = Prior.with_field({"a": stats.uniform(0, 1)}, "occupancy", (8, 8))
    theta = prior.sample(64, random_state=rng)
    occ = rng.random((64, 8, 8)) < 0.1
    X = (occ + theta["a"].to_numpy()[:, None, None]).astype(np.float32)
    tiny = dict(prior=prior, embedding="unet", embedding__channels=4, embedding__depth=1,
                embedding_dim=4, hidden_features=8, max_epochs=2, random_state=0)
    maps = [TMNREEstimator(field_loss=loss, **tiny).fit(X, theta, occupancy=occ)
            .predict_field(X[:4]) for loss in ("posterior", "ratio")]
    assert all(m.shape == (4, 8, 8) for m in maps) and not np.allclose(maps[0], maps[1])
    with pytest.raises(ValueError, match="'field_loss' parameter"):
        TMNREEstimator(field_loss="bce", **tiny).fit(X, theta, occupancy=occ)
