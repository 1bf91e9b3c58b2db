"""Tests of the U-Net embedding (sklearn_tmnre.unet)."""

import numpy as np
import pytest
import torch

from sklearn_tmnre.networks import make_embedding
from sklearn_tmnre.unet import UNet


def _n_weights(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("event_shape, dim, spatial", [
    ((12, 10), None, (12, 10)),       # image (H, W)
    ((2, 16, 16), None, (16, 16)),    # image with channels (C, H, W)
    ((9, 11), 2, (9, 11)),            # odd sides: decoder upsamples to the skip's size
    ((20,), None, (20,)),             # signal (L,)
    ((3, 21), 1, (21,)),              # signal with channels (C, L)
])
def test_shapes(event_shape, dim, spatial):
    torch.manual_seed(0)
    net = UNet(event_shape, 7, channels=4, depth=2, pixel_features=5, dim=dim)
    summary, pixels = net.forward_features(torch.randn(3, *event_shape))
    assert summary.shape == (3, 7)
    assert pixels.shape == (3, 5, *spatial)
    assert net.spatial_shape == spatial and net.pixel_features == 5
    # forward is the summary alone, so the U-Net serves the global heads as any embedding.
    assert torch.allclose(net(torch.randn(3, *event_shape) * 0 + 1),
                          net.forward_features(torch.ones(3, *event_shape))[0])


def test_registered_in_make_embedding():
    module, width = make_embedding("unet", (16, 16), 12, channels=(4, 8), depth=1)
    assert isinstance(module, UNet) and width == 12
    with pytest.raises(ValueError, match="unexpected arguments"):
        make_embedding("unet", (16, 16), 12, chanels=4)


def test_weights_do_not_grow_with_the_grid():
    # The summary averages onto a fixed grid; convolutions do not see the grid size.
    small = UNet((16, 16), 8, channels=4, depth=2)
    large = UNet((64, 48), 8, channels=4, depth=2)
    assert _n_weights(small) == _n_weights(large)
    assert _n_weights(UNet((32,), 8, dim=1)) == _n_weights(UNet((256,), 8, dim=1))


def test_channels_per_level_and_doubling():
    doubled = UNet((16, 16), 8, channels=4, depth=2)
    explicit = UNet((16, 16), 8, channels=(4, 8, 16), depth=2)
    assert _n_weights(doubled) == _n_weights(explicit)
    assert doubled.down[-1][0].out_channels == 16


def test_pixels_are_local_and_depth_zero_is_a_plain_cnn():
    # depth=0: one block of two 3 x 3 convolutions, so a pixel sees its 5 x 5 neighbourhood;
    # a change far away leaves its features unchanged (the summary still sees everything).
    torch.manual_seed(0)
    net = UNet((16, 16), 4, channels=3, depth=0)
    x = torch.randn(1, 16, 16)
    y = x.clone()
    y[0, 15, 15] += 5.0
    _, px = net.forward_features(x)
    _, py = net.forward_features(y)
    assert torch.allclose(px[..., :8, :8], py[..., :8, :8])
    assert not torch.allclose(px[..., 14:, 14:], py[..., 14:, 14:])


def test_learns_a_per_pixel_target():
    # A few steps of a per-pixel regression: the U-Net output must track a local target.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((32, 12, 12)), dtype=torch.float32)
    target = (x > 1).float()
    net = UNet((12, 12), 4, channels=8, depth=1, pixel_features=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        logits = net.forward_features(x)[1][:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    base = torch.nn.functional.binary_cross_entropy(target.mean().expand_as(target), target)
    assert losses[-1] < 0.5 * base.item()


@pytest.mark.parametrize("kwargs, event_shape, match", [
    ({"depth": 3}, (6, 6), "too small for depth=3"),
    ({"channels": (4, 8)}, (16, 16), "one width per level"),
    ({"channels": 0}, (16, 16), "positive integers"),
    ({"kernel_size": 4}, (16, 16), "odd positive integer"),
    ({"dim": 1}, (2, 8, 8), r"\(n, L\) or \(n, C, L\)"),
    ({"depth": -1}, (16, 16), "depth must be an integer"),
    ({"pooled_size": 0}, (16, 16), "pooled_size"),
])
def test_bad_arguments(kwargs, event_shape, match):
    with pytest.raises(ValueError, match=match):
        UNet(event_shape, 8, **kwargs)
