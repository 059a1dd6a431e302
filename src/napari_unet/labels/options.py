"""How probabilities become labels, as one object: the options of :func:`napari_unet.to_labels`,
built once where they come in (a model's options, a user's keywords, the widgets' choices) and
passed down whole to the labels and the half-scale pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LabelOptions"]


@dataclass(frozen=True, kw_only=True)
class LabelOptions:
    """The keywords of :func:`napari_unet.to_labels` (see there for each), typed and checked for
    unknown names. ``three_d`` None: not said (the labels of a 3D network's probabilities are then
    3D objects, of planes otherwise).

    >>> options = LabelOptions.of({"mode": "instances", "cell_diameter": 20.0})
    >>> options.cell_diameter, options.but(three_d=True).three_d, dict(**options)["mode"]
    (20.0, True, 'instances')
    >>> LabelOptions.of({"cell_diameters": 20})
    Traceback (most recent call last):
    ...
    TypeError: unknown label options ['cell_diameters']: to_labels takes border_class, cell_class, cell_diameter, connectivity, fill_holes, min_size, mode, spacing, split, split_h, three_d, threshold
    """

    mode: str = "instances"
    cell_class: int = 1
    border_class: int | None = None
    threshold: float | None = None
    split: str | None = "distance"
    split_h: float | None = None
    min_size: int | None = None
    cell_diameter: float | None = None
    fill_holes: bool | str = "uncertain"
    connectivity: int = 1
    three_d: bool | None = None
    spacing: Any = None

    @classmethod
    def of(cls, options: LabelOptions | Mapping | None) -> LabelOptions:
        """``options`` as a LabelOptions: itself, a mapping of :func:`~napari_unet.to_labels`
        keywords (e.g. :func:`~napari_unet.label_options` of a model), or None (the defaults)."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if not isinstance(options, Mapping):
            raise TypeError(f"label options must be a LabelOptions or a dict of to_labels keywords, got {options!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown label options {unknown}: to_labels takes {', '.join(sorted(names))}")
        return cls(**options)

    def but(self, **changes) -> LabelOptions:
        """These options with ``changes``."""
        return dataclasses.replace(self, **changes)

    def kwargs(self) -> dict:
        """The keywords of :func:`~napari_unet.to_labels` that differ from its defaults, and the
        mode: ``to_labels(p, **options.kwargs())``."""
        out = {"mode": self.mode}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "mode" and value != f.default and not (f.name == "three_d" and not value):
                out[f.name] = value
        return out

    # ``to_labels(p, **options)`` and ``options["mode"]`` work as with that dict of keywords
    def keys(self) -> list[str]:
        return list(self.kwargs())

    def __getitem__(self, name: str):
        return self.kwargs()[name]
