import numpy as np
import torch
import torch.nn.functional as F

from sklearn_tmnre._training import PairData, RatioLoss, ValidationSplit, _Batches, derangement


def test_derangement_has_no_fixed_point():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 64, 257):
        for _ in range(50):
            perm = derangement(n, gen)
            assert sorted(perm.tolist()) == list(range(n))
            assert not (perm == torch.arange(n)).any()


def test_batches_cover_rows_and_redraw_negatives():
    data = PairData(torch.arange(10.0)[:, None], torch.arange(10.0)[:, None])
    it = _Batches(data, batch_size=4, shuffle=True, seed=0, n_negatives=2)
    epoch1 = list(it)
    epoch2 = list(it)
    rows = torch.cat([b["x"][:, 0] for b, _ in epoch1])
    assert sorted(rows.tolist()) == list(range(10))
    assert all(len(b["x"]) >= 2 for b, _ in epoch1)  # no batch of one row
    assert epoch1[0][0]["perm"].shape[1] == 2
    assert not all(torch.equal(a[0]["perm"], b[0]["perm"]) for a, b in zip(epoch1, epoch2))
    valid = _Batches(data, batch_size=4, shuffle=False, seed=1)
    v1, v2 = list(valid), list(valid)
    assert all(torch.equal(a[0]["perm"], b[0]["perm"]) for a, b in zip(v1, v2))


def test_validation_split_sizes():
    split = ValidationSplit(0.2, seed=0)
    train, valid = split(PairData(torch.zeros(50, 1), torch.zeros(50, 1)))
    assert (len(train), len(valid)) == (40, 10)
    assert split.n_valid(5) == 0


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
