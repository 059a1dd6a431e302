"""The U-Net of Ronneberger et al. (2015), with the options a user needs.

The defaults build the paper's network: two unpadded 3x3 convolutions + ReLU per level, 2x2
max-pooling, channels doubling from 64 to 1024, 2x2 up-convolutions halving them, centre-crop +
concatenation of the skip connections and a final 1x1 convolution (23 conv layers, ~31.0 M
parameters, 572 x 572 in -> 388 x 388 out).

Forward shapes (``depth`` = d, ``base_channels`` = c, ``padding="valid"``)::

    x [B, in_channels, H, W]
      -> DoubleConv        [B, c, H - 4, W - 4]                      (skip 0)
      -> Down x d          [B, c * 2**d, ...]   (dropout after the last one)
      -> Up x d            [B, c, ...]          (centre-cropped skips concatenated)
      -> 1x1 conv          [B, n_classes, *model.output_shape((H, W))]

Examples
--------
>>> net = UNet()
>>> net.output_shape((572, 572)), net.input_shape((388, 388))
((388, 388), (572, 572))
>>> UNet(depth=2, base_channels=4).valid_input_shape((100, 101))
(100, 104)
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..common.checks import check_pair
from ..config import ModelConfig

__all__ = ["UNet", "DoubleConv", "Down", "Up", "folded_for_inference"]


#: the torch layers of a 2D and of a 3D network
_LAYERS = {
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d),
}


class DoubleConv(nn.Sequential):
    """Two 3x3 (3x3x3 with ``dims=3``) convolutions, each followed by (batch norm and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "valid", batch_norm: bool = False,
                 dims: int = 2):
        conv, norm = _LAYERS[dims][:2]
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layers.append(conv(cin, out_channels, kernel_size=3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(norm(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pooling (stride 2; ``pool`` per axis in 3D, e.g. (1, 2, 2) to keep Z), then a
    :class:`DoubleConv` doubling the channels."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "valid", batch_norm: bool = False,
                 dims: int = 2, pool=2):
        super().__init__(
            _LAYERS[dims][2](kernel_size=pool, stride=pool),
            DoubleConv(in_channels, out_channels, padding=padding, batch_norm=batch_norm, dims=dims),
        )


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre ``height`` x ``width`` of the last two axes of ``x`` (TorchScript-able)."""
    dy = (x.shape[-2] - height) // 2
    dx = (x.shape[-1] - width) // 2
    if dy == 0 and dx == 0 and x.shape[-2] == height and x.shape[-1] == width:
        return x
    return x[..., dy : dy + height, dx : dx + width]


def center_crop_3d(x: torch.Tensor, depth: int, height: int, width: int) -> torch.Tensor:
    """The centre ``depth`` x ``height`` x ``width`` of the last three axes of ``x`` (TorchScript-able)."""
    dz = (x.shape[-3] - depth) // 2
    return center_crop(x[..., dz : dz + depth, :, :], height, width)


class Up(nn.Module):
    """2x2 up-convolution halving the channels (``pool`` per axis in 3D), concatenation with the
    centre-cropped skip, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "valid", batch_norm: bool = False,
                 dims: int = 2, pool=2):
        super().__init__()
        self.up = _LAYERS[dims][3](in_channels, out_channels, kernel_size=pool, stride=pool)
        self.conv = DoubleConv(2 * out_channels, out_channels, padding=padding, batch_norm=batch_norm, dims=dims)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """``x`` up-convolved, joined with the last of ``skips`` (taken out of the list) and convolved.

        The skip is taken out of the list and the layers run one by one so that in inference each
        feature map is freed as soon as it has been read: the peak memory of a forward pass is the
        concatenation and one convolution's output, not every skip and map of the level.
        """
        x = self.up(x)
        skip = skips.pop()
        if x.ndim == 5:
            skip = center_crop_3d(skip, x.shape[-3], x.shape[-2], x.shape[-1])
        else:
            skip = center_crop(skip, x.shape[-2], x.shape[-1])
        x = torch.cat([skip, x], dim=1)
        del skip
        for layer in self.conv:
            x = layer(x)
        return x


def _as_shape(shape, name: str, dims: int) -> tuple[int, ...]:
    if dims == 2:
        return check_pair(name, shape, minimum=0)
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,) * dims
    try:
        values = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {dims} integers (Z, Y, X), got {shape!r}") from None
    if len(values) != dims or any(v < 0 or v != s for v, s in zip(values, shape)):
        raise ValueError(f"{name} must be {dims} non-negative integers (Z, Y, X), got {shape!r}")
    return values


class UNet(nn.Module):
    """The U-Net (Ronneberger et al. 2015); the defaults are the paper's network.

    Parameters
    ----------
    in_channels : int
        Image channels (1 gray, 3 RGB, C multichannel).
    n_classes : int
        Output classes, background included.
    depth : int
        Number of 2x2 max-poolings (the paper: 4).
    base_channels : int
        Channels of the first level, doubled at each level (the paper: 64).
    padding : {"valid", "same"}
        "valid": unpadded convolutions (output smaller than input, as in the paper);
        "same": zero-padded convolutions (output = input; the input must be divisible by
        ``2**depth``).
    batch_norm : bool
        Batch normalization after each 3x3 convolution.
    dropout : float
        Drop-out probability at the end of the contracting path (the paper: 0.5).

    Attributes
    ----------
    config : ModelConfig
        The architecture, to rebuild the network (``UNet.from_config(net.config)``).
    metadata : dict
        What prediction needs (``mode``, ``class_names``, ``normalization``, ``training``,
        ``axes``); empty for a fresh network.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        padding: str = "valid",
        batch_norm: bool = False,
        dropout: float = 0.0,
        spatial_dims: int = 2,
        xy_only_pools: int = 0,
    ):
        super().__init__()
        config = ModelConfig(
            in_channels=int(in_channels),
            n_classes=int(n_classes),
            depth=int(depth),
            base_channels=int(base_channels),
            padding=padding,
            batch_norm=bool(batch_norm),
            dropout=float(dropout),
            spatial_dims=spatial_dims,
            xy_only_pools=xy_only_pools,
        )
        self._config = config
        self.metadata: dict[str, Any] = {}
        c, d, dims = config.base_channels, config.depth, config.spatial_dims
        kw = dict(padding=config.padding, batch_norm=config.batch_norm, dims=dims)
        pools = [2 if dims == 2 else (2 if self._pools(0)[i] else 1, 2, 2) for i in range(d)]
        self.inc = DoubleConv(config.in_channels, c, **kw)
        self.down = nn.ModuleList(Down(c * 2**i, c * 2 ** (i + 1), pool=pools[i], **kw) for i in range(d))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(Up(c * 2 ** (i + 1), c * 2**i, pool=pools[i], **kw) for i in reversed(range(d)))
        self.head = _LAYERS[dims][0](c, config.n_classes, kernel_size=1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> "UNet":
        """Build a network from a :class:`~napari_unet.config.ModelConfig` (or its dict form)."""
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        if not isinstance(config, ModelConfig):
            raise TypeError(f"from_config expects a ModelConfig or a dict, got {type(config).__name__}")
        return cls(**config.to_dict())

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def in_channels(self) -> int:
        return self._config.in_channels

    @property
    def n_classes(self) -> int:
        return self._config.n_classes

    @property
    def spatial_dims(self) -> int:
        """2 for a network of planes (Y, X), 3 for one of volumes (Z, Y, X)."""
        return self._config.spatial_dims

    @property
    def pool_factor(self) -> int:
        """``2**depth``: tiles must be shifted by multiples of it (along Y and X) to give identical
        results."""
        return 2**self._config.depth

    @property
    def pool_factors(self) -> tuple[int, ...]:
        """The pooling factor per spatial axis ((Y, X) or (Z, Y, X)): tiles must be shifted by
        multiples of it to give identical results."""
        return tuple(2 ** sum(self._pools(axis)) for axis in range(self.spatial_dims))

    def _pools(self, axis: int = -1) -> tuple[bool, ...]:
        """Whether each level pools along spatial ``axis`` (only Z of a 3D net skips levels)."""
        d = self._config.depth
        if self._config.spatial_dims == 3 and axis in (0, -3):
            return tuple(level >= self._config.xy_only_pools for level in range(d))
        return (True,) * d

    # ------------------------------------------------------------------ geometry
    def output_size_1d(self, size: int, axis: int = -1) -> int:
        """Output size along one spatial axis (default X; ``axis=0`` is Z of a 3D net), or a
        ValueError saying where the size goes wrong."""
        d = self._config.depth
        pools = self._pools(axis)
        factor = 2 ** sum(pools)
        if self._config.padding == "same":
            if size < 1 or size % factor:
                raise ValueError(
                    f"input size {size} is not valid for a padding='same' U-Net of depth {d}: it must be a "
                    f"positive multiple of {factor} (e.g. {max(factor, -(-size // factor) * factor)})"
                )
            return size
        s = size
        for level, pooled in enumerate(pools):
            s -= 4
            if s < 2 or (pooled and s % 2):
                raise ValueError(
                    f"input size {size} is not valid for this U-Net (depth {d}, padding='valid'): at level "
                    f"{level} the 2x2 max-pool would meet size {s}, which is {'odd' if s > 0 else 'too small'}; "
                    f"use model.valid_input_shape(...) to round it up"
                )
            s = s // 2 if pooled else s
        s -= 4
        if s < 1:
            raise ValueError(f"input size {size} is too small for this U-Net (depth {d}): the bottom level would be {s} pixels")
        for pooled in reversed(pools):
            s = (2 * s if pooled else s) - 4
            if s < 1:
                raise ValueError(f"input size {size} is too small for this U-Net (depth {d})")
        return s

    def try_input_size(self, size: int, axis: int = -1) -> int | None:
        """Input size giving exactly ``size`` outputs along spatial ``axis``, or None."""
        pools = self._pools(axis)
        if self._config.padding == "same":
            factor = 2 ** sum(pools)
            return size if size >= 1 and size % factor == 0 else None
        s = size
        for pooled in pools:
            if s < 1 or (pooled and (s + 4) % 2):
                return None
            s = (s + 4) // 2 if pooled else s + 4
        if s < 1:
            return None
        s += 4
        for pooled in reversed(pools):
            s = 2 * s + 4 if pooled else s + 4
        return s

    def _input_size(self, size: int, axis: int = -1) -> int:
        found = self.try_input_size(size, axis)
        if found is None:
            step = 2**self._config.depth
            near = [s for s in range(max(1, size - 2 * step), size + 2 * step + 1) if self.try_input_size(s, axis)]
            raise ValueError(
                f"no input gives an output of size {size} for this U-Net (depth {self._config.depth}, "
                f"padding={self._config.padding!r}); nearby valid output sizes: {near}"
            )
        return found

    def _axes(self):
        return range(-self.spatial_dims, 0)

    def output_shape(self, input_shape: Sequence[int] | int) -> tuple[int, ...]:
        """Output (Y, X) (3D: (Z, Y, X)) for an input tile; ValueError for sizes the network cannot take."""
        shape = _as_shape(input_shape, "input_shape", self.spatial_dims)
        return tuple(self.output_size_1d(s, axis) for s, axis in zip(shape, self._axes()))

    def input_shape(self, output_shape: Sequence[int] | int) -> tuple[int, ...]:
        """Input (Y, X) (3D: (Z, Y, X)) that gives exactly this output; ValueError if none does."""
        shape = _as_shape(output_shape, "output_shape", self.spatial_dims)
        return tuple(self._input_size(s, axis) for s, axis in zip(shape, self._axes()))

    def valid_input_shape(self, shape: Sequence[int] | int) -> tuple[int, ...]:
        """The smallest valid input (Y, X) (3D: (Z, Y, X)) at least as large as ``shape`` along each axis."""
        result = []
        for s, axis in zip(_as_shape(shape, "shape", self.spatial_dims), self._axes()):
            s = max(int(s), 1)
            while True:
                try:
                    self.output_size_1d(s, axis)
                    break
                except ValueError:
                    s += 1
            result.append(s)
        return tuple(result)

    def margin(self, axis: int = -1) -> int:
        """Context on each side an output pixel depends on along spatial ``axis`` (default X):
        (input size - output size) / 2 of the unpadded network of the same depth; 92 for the
        paper's network."""
        pools = self._pools(axis)
        out = inp = 4  # bottom level, any valid size; the difference does not depend on it
        inp += 4
        for pooled in reversed(pools):
            out = (2 * out if pooled else out) - 4
            inp = (2 * inp if pooled else inp) + 4
        return (inp - out) // 2

    def margins(self) -> tuple[int, ...]:
        """:meth:`margin` along every spatial axis ((Y, X) or (Z, Y, X))."""
        return tuple(self.margin(axis) for axis in self._axes())

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self.spatial_dims
        if x.ndim != dims + 2:
            want = "[B, C, H, W]" if dims == 2 else "[B, C, Z, Y, X]"
            raise ValueError(f"UNet expects a {want} tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self._config.in_channels:
            raise ValueError(
                f"UNet built for {self._config.in_channels} input channel(s) got a tensor with {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        self.output_shape(tuple(x.shape[2:]))  # a clear error for invalid sizes
        skips = []
        x = self.inc(x)
        for down in self.down:
            skips.append(x)
            x = down(x)
        x = self.dropout(x)
        for up in self.up:  # each takes its skip out of the list: in inference it is freed once joined
            x = up(x, skips)
        return self.head(x)

    def extra_repr(self) -> str:
        c = self._config
        return (
            f"in_channels={c.in_channels}, n_classes={c.n_classes}, depth={c.depth}, "
            f"base_channels={c.base_channels}, padding={c.padding!r}, batch_norm={c.batch_norm}, dropout={c.dropout}"
            + (f", spatial_dims=3, xy_only_pools={c.xy_only_pools}" if c.spatial_dims == 3 else "")
        )


def folded_for_inference(model: UNet) -> UNet:
    """A copy of ``model`` in eval mode whose batch norms are folded into the convolutions before
    them (``model`` itself is not changed).

    In eval mode a batch norm is an affine map per channel, so each one is merged into its
    convolution's weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and replaced by
    an identity: the same function up to float rounding, without the pass over every feature map
    and the copy of it a batch norm costs in prediction. A network without batch norm is copied
    as it is.

    >>> net = UNet(depth=1, base_channels=2, batch_norm=True).eval()
    >>> folded = folded_for_inference(net)
    >>> sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()), folded.training
    (0, False)
    >>> x = torch.randn(1, 1, 28, 28)
    >>> bool(torch.allclose(folded(x), net(x), atol=1e-5))
    True
    """
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        if isinstance(block, DoubleConv):
            for i in range(len(block) - 1):
                conv, norm = block[i], block[i + 1]
                if isinstance(conv, (nn.Conv2d, nn.Conv3d)) and isinstance(norm, (nn.BatchNorm2d, nn.BatchNorm3d)):
                    block[i] = fuse_conv_bn_eval(conv, norm)
                    block[i + 1] = nn.Identity()
    return folded
