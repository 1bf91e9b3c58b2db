"""U-Net embedding: per-pixel features of images (or signals) and a global summary.

A U-Net (Ronneberger et al., "U-Net: convolutional networks for biomedical image
segmentation", MICCAI 2015) encodes the data with ``depth`` blocks of two
convolutions and a max-pooling by 2 each, then decodes back to the input grid,
every decoder level upsampling its input (nearest neighbour, to the size of the
matching encoder level, so odd sizes work) and concatenating the encoder's
features of that level (the *skip connection*) before two more convolutions.
Every output pixel so sees a wide context (the bottleneck) and its own fine
detail (the skips): what a per-pixel classifier needs.

**Convention.** :class:`UNet` returns two things (:meth:`UNet.forward_features`):

* ``summary`` of shape (n, out_features): the bottleneck averaged onto a
  ``pooled_size`` grid (per spatial axis), flattened and mapped linearly to
  ``out_features``; :meth:`UNet.forward` returns only this, so the U-Net is a
  drop-in embedding of the global heads (``embedding="unet"``);
* ``pixels`` of shape (n, C, *spatial): ``C = pixel_features`` features at every
  pixel of the input grid, read by the shared-weight pixel heads of field
  parameters (:mod:`sklearn_tmnre.fields`).

Any embedding module with such a ``forward_features`` method can serve field
parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "unet_embedding"]


def _block(conv, in_ch, out_ch, kernel_size):
    """Two convolutions with ReLU, keeping the grid (same padding)."""
    pad = kernel_size // 2
    return nn.Sequential(conv(in_ch, out_ch, kernel_size, padding=pad), nn.ReLU(),
                         conv(out_ch, out_ch, kernel_size, padding=pad), nn.ReLU())


def _widths(channels, depth):
    """Channels of each level (top to bottleneck), ``depth + 1`` of them."""
    if not (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0):
        raise ValueError(f"embedding='unet': depth must be an integer >= 0; got {depth!r}.")
    if isinstance(channels, int) and not isinstance(channels, bool):
        widths = [channels * 2**level for level in range(depth + 1)]
    else:
        widths = list(channels) if isinstance(channels, list | tuple) else []
        if len(widths) != depth + 1:
            raise ValueError(f"embedding='unet': channels must be an integer (doubled at each "
                             f"level down) or one width per level, depth + 1 = {depth + 1} of "
                             f"them; got {channels!r}.")
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        raise ValueError(f"embedding='unet': channels must be positive integers; got "
                         f"{channels!r}.")
    return widths


class UNet(nn.Module):
    """A U-Net on 1-d signals or 2-d images (see the module docstring for its outputs).

    Parameters
    ----------
    input_shape : tuple of int
        Event shape: ``(L,)`` or ``(C_in, L)`` for ``dim=1``, ``(H, W)`` or
        ``(C_in, H, W)`` for ``dim=2``.
    out_features : int
        Width of the global summary (``embedding_dim``).
    channels : int or sequence of int, default=16
        Channels of the top level, doubled at each level down; or one width per
        level (``depth + 1`` of them, top first).
    depth : int, default=2
        Number of poolings by 2 (0: no pooling, a plain convolutional network).
        Every spatial side must be at least ``2**depth``.
    kernel_size : int, default=3
        Convolution kernel side (odd).
    pixel_features : int, optional
        Features C per pixel of ``pixels`` (a 1 x 1 convolution of the last
        decoder level); None: the top level's width.
    pooled_size : int, default=4
        Grid side onto which the bottleneck is averaged for the summary (keeps
        coarse positions, as global parameters such as a source position need).
    dim : {1, 2}, optional
        Spatial dimensions; None: 1 for a 1-d event, 2 otherwise.

    Attributes
    ----------
    n_spatial : int
    spatial_shape : tuple of int
        The grid of ``pixels``: the event's last ``n_spatial`` axes.
    pixel_features : int
        C.
    """

    def __init__(self, input_shape, out_features, channels=16, depth=2, kernel_size=3,
                 pixel_features=None, pooled_size=4, dim=None):
        super().__init__()
        input_shape = tuple(int(s) for s in input_shape)
        dim = (1 if len(input_shape) == 1 else 2) if dim is None else dim
        if dim not in (1, 2) or len(input_shape) not in (dim, dim + 1):
            raise ValueError(f"embedding='unet' needs X of shape (n, L) or (n, C, L) with "
                             f"dim=1, or (n, H, W) or (n, C, H, W) with dim=2; got event shape "
                             f"{input_shape} with dim={dim!r}.")
        if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
            raise ValueError(f"embedding='unet': kernel_size must be an odd positive integer; "
                             f"got {kernel_size!r}.")
        if not (isinstance(pooled_size, int) and pooled_size >= 1):
            raise ValueError(f"embedding='unet': pooled_size must be a positive integer; got "
                             f"{pooled_size!r}.")
        widths = _widths(channels, depth)
        self.n_spatial, self.spatial_shape = dim, input_shape[-dim:]
        if min(self.spatial_shape) < 2**depth:
            raise ValueError(f"embedding='unet': the grid {self.spatial_shape} is too small for "
                             f"depth={depth} (each side must be at least 2**depth = "
                             f"{2**depth}); lower depth.")
        self.pixel_features = int(pixel_features or widths[0])
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        in_ch = input_shape[0] if len(input_shape) == dim + 1 else 1
        self.down = nn.ModuleList()
        for width in widths:
            self.down.append(_block(conv, in_ch, width, kernel_size))
            in_ch = width
        # Decoder level l reads the upsampled level l + 1 beside the encoder's level l.
        self.up = nn.ModuleList(_block(conv, widths[level + 1] + widths[level], widths[level],
                                       kernel_size) for level in range(depth))
        self.to_pixels = conv(widths[0], self.pixel_features, 1)
        pool = nn.AdaptiveAvgPool1d if dim == 1 else nn.AdaptiveAvgPool2d
        self.summary = nn.Sequential(pool(pooled_size), nn.Flatten(),
                                     nn.Linear(widths[-1] * pooled_size**dim, out_features))
        self._pool = F.max_pool1d if dim == 1 else F.max_pool2d

    def forward_features(self, x):
        """Global summary (n, out_features) and per-pixel features (n, C, *spatial)."""
        if x.dim() == self.n_spatial + 1:
            x = x.unsqueeze(1)
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else self._pool(x, 2))
            skips.append(x)
        summary = self.summary(x)
        for level in reversed(range(len(self.up))):
            skip = skips[level]
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = self.up[level](torch.cat([x, skip], dim=1))
        return summary, self.to_pixels(x)

    def forward(self, x):
        """The global summary (n, out_features) alone: an embedding of the global heads."""
        return self.forward_features(x)[0]


def unet_embedding(input_shape, out_features, channels=16, depth=2, kernel_size=3,
                   pixel_features=None, pooled_size=4, dim=None):
    """U-Net embedding of ``make_embedding``'s ``"unet"`` (arguments as :class:`UNet`).

    Returns
    -------
    UNet
    """
    return UNet(input_shape, out_features, channels=channels, depth=depth,
                kernel_size=kernel_size, pixel_features=pixel_features,
                pooled_size=pooled_size, dim=dim)

