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

from typing import Any, Sequence

import torch
from torch import nn

from .checks import check_pair
from .config import ModelConfig

__all__ = ["UNet", "DoubleConv", "Down", "Up"]


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "valid", batch_norm: bool = False):
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for cin in (in_channels, out_channels):
            layers.append(nn.Conv2d(cin, out_channels, kernel_size=3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pooling (stride 2), then a :class:`DoubleConv` doubling the channels."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "valid", batch_norm: bool = False):
        super().__init__(
            nn.MaxPool2d(kernel_size=2, stride=2),
            DoubleConv(in_channels, out_channels, padding=padding, batch_norm=batch_norm),
        )


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    dy = (x.shape[-2] - height) // 2
    dx = (x.shape[-1] - width) // 2
    if dy == 0 and dx == 0 and x.shape[-2] == height and x.shape[-1] == width:
        return x
    return x[..., dy : dy + height, dx : dx + width]


class Up(nn.Module):
    """2x2 up-convolution halving the channels, concatenation with the centre-cropped skip, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "valid", batch_norm: bool = False):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, padding=padding, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = center_crop(skip, x.shape[-2], x.shape[-1])
        return self.conv(torch.cat([skip, x], dim=1))


def _as_pair(shape, name: str) -> tuple[int, int]:
    return check_pair(name, shape, minimum=0)


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
        )
        self._config = config
        self.metadata: dict[str, Any] = {}
        c, d = config.base_channels, config.depth
        kw = dict(padding=config.padding, batch_norm=config.batch_norm)
        self.inc = DoubleConv(config.in_channels, c, **kw)
        self.down = nn.ModuleList(Down(c * 2**i, c * 2 ** (i + 1), **kw) for i in range(d))
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(Up(c * 2 ** (i + 1), c * 2**i, **kw) for i in reversed(range(d)))
        self.head = nn.Conv2d(c, config.n_classes, kernel_size=1)

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
    def pool_factor(self) -> int:
        """``2**depth``: tiles must be shifted by multiples of it to give identical results."""
        return 2**self._config.depth

    # ------------------------------------------------------------------ geometry
    def output_size_1d(self, size: int) -> int:
        """Output size along one axis, or a ValueError saying where the size goes wrong."""
        d = self._config.depth
        if self._config.padding == "same":
            if size < 1 or size % 2**d:
                raise ValueError(
                    f"input size {size} is not valid for a padding='same' U-Net of depth {d}: it must be a "
                    f"positive multiple of {2**d} (e.g. {max(2**d, -(-size // 2**d) * 2**d)})"
                )
            return size
        s = size
        for level in range(d):
            s -= 4
            if s < 2 or s % 2:
                raise ValueError(
                    f"input size {size} is not valid for this U-Net (depth {d}, padding='valid'): at level "
                    f"{level} the 2x2 max-pool would meet size {s}, which is {'odd' if s > 0 else 'too small'}; "
                    f"use model.valid_input_shape(...) to round it up"
                )
            s //= 2
        s -= 4
        if s < 1:
            raise ValueError(f"input size {size} is too small for this U-Net (depth {d}): the bottom level would be {s} pixels")
        for _ in range(d):
            s = 2 * s - 4
            if s < 1:  # pragma: no cover - cannot happen once the bottom is >= 1... but be safe
                raise ValueError(f"input size {size} is too small for this U-Net (depth {d})")
        return s

    def try_input_size(self, size: int) -> int | None:
        """Input size giving exactly ``size`` outputs, or None."""
        d = self._config.depth
        if self._config.padding == "same":
            return size if size >= 1 and size % 2**d == 0 else None
        s = size
        for _ in range(d):
            if s < 1 or (s + 4) % 2:
                return None
            s = (s + 4) // 2
        if s < 1:
            return None
        s += 4
        for _ in range(d):
            s = 2 * s + 4
        return s

    def _input_size(self, size: int) -> int:
        found = self.try_input_size(size)
        if found is None:
            step = 2**self._config.depth
            near = [s for s in range(max(1, size - 2 * step), size + 2 * step + 1) if self.try_input_size(s)]
            raise ValueError(
                f"no input gives an output of size {size} for this U-Net (depth {self._config.depth}, "
                f"padding={self._config.padding!r}); nearby valid output sizes: {near}"
            )
        return found

    def output_shape(self, input_shape: Sequence[int] | int) -> tuple[int, int]:
        """Output (Y, X) for an input tile (Y, X); ValueError for sizes the network cannot take."""
        y, x = _as_pair(input_shape, "input_shape")
        return self.output_size_1d(y), self.output_size_1d(x)

    def input_shape(self, output_shape: Sequence[int] | int) -> tuple[int, int]:
        """Input (Y, X) that gives exactly this output (Y, X); ValueError if none does."""
        y, x = _as_pair(output_shape, "output_shape")
        return self._input_size(y), self._input_size(x)

    def valid_input_shape(self, shape: Sequence[int] | int) -> tuple[int, int]:
        """The smallest valid input (Y, X) at least as large as ``shape`` along each axis."""
        result = []
        for s in _as_pair(shape, "shape"):
            s = max(int(s), 1)
            while True:
                try:
                    self.output_size_1d(s)
                    break
                except ValueError:
                    s += 1
            result.append(s)
        return tuple(result)  # type: ignore[return-value]

    def margin(self) -> int:
        """Context on each side an output pixel depends on (input size - output size) / 2 of the
        unpadded network of the same depth; 92 for the paper's network."""
        d = self._config.depth
        s = 4  # bottom level, any valid size; the difference does not depend on it
        out = s
        for _ in range(d):
            out = 2 * out - 4
        inp = s + 4
        for _ in range(d):
            inp = 2 * inp + 4
        return (inp - out) // 2

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet expects a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self._config.in_channels:
            raise ValueError(
                f"UNet built for {self._config.in_channels} input channel(s) got a tensor with {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        self.output_shape(tuple(x.shape[-2:]))  # a clear error for invalid sizes
        skips = []
        x = self.inc(x)
        for down in self.down:
            skips.append(x)
            x = down(x)
        x = self.dropout(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.head(x)

    def extra_repr(self) -> str:
        c = self._config
        return (
            f"in_channels={c.in_channels}, n_classes={c.n_classes}, depth={c.depth}, "
            f"base_channels={c.base_channels}, padding={c.padding!r}, batch_norm={c.batch_norm}, dropout={c.dropout}"
        )
