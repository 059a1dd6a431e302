"""napari layers as the widgets use them: axes of an image layer, planes, the annotation layer
of an image, output layers created or updated in place, layer pickers."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QSizePolicy

from ...common.axes import channels_last_to_first, guess_axes

logger = logging.getLogger(__name__)

# suffixes of the layers the widgets create, so re-running finds and updates them
ANNOTATIONS_SUFFIX = " annotations"
PREDICTION_SUFFIX = " prediction"
PROBABILITY_SUFFIX = " probability"
PREVIEW_SUFFIX = " preview"
UNCERTAINTY_SUFFIX = " uncertainty"
WEIGHTS_SUFFIX = " weight map"


def spatial_shape(layer) -> tuple[int, ...]:
    """Shape of an image layer without an RGB(A) channel axis."""
    shape = tuple(int(s) for s in layer.data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def image_axes(layer, in_channels: int = 1) -> str:
    """Axis names of an image layer's data for the core (``"YX"``, ``"ZYX"``, ``"YXC"``, ...).

    RGB(A) layers carry the channel last. A non-RGB layer is read as channels-first when the
    model wants ``in_channels > 1`` and the third-last axis has that size.
    """
    try:
        return guess_axes(layer.data.shape, channels=in_channels, channels_last=bool(getattr(layer, "rgb", False)))
    except ValueError:
        if layer.data.ndim < 2:
            raise ValueError(f"layer {layer.name!r} has {layer.data.ndim} dimension(s); an image needs at least 2 "
                             "(Y, X)") from None
        _too_many(layer)


def layer_pixel_size(layer, in_channels: int = 1) -> dict | None:
    """``{"z", "y", "x"}`` micrometres per pixel from an image layer's ``scale`` (None: napari's
    default scale of ones, or a layer whose axes cannot be named)."""
    from ...common.pixel_size import pixel_size_from_scale

    try:
        return pixel_size_from_scale(tuple(layer.scale), image_axes(layer, in_channels))
    except ValueError:
        return None


def common_pixel_size(layers, in_channels: int = 1, voxels: bool = False) -> tuple[float, ...] | None:
    """The (y, x) pixel size shared by image ``layers`` (None when any says nothing); ValueError when
    they differ by more than 5 %: one model learns one pixel size.

    ``voxels`` (a 3D network's z-stacks): the (z, y, x) voxel size when every layer's scale
    gives a z-step too (else the (y, x) pixel size), the z-steps held to the same 5 %."""
    from ...common.pixel_size import resample_factors

    found = [layer_pixel_size(layer, in_channels) for layer in layers]
    if not found or not all(found):
        return None
    sizes = [(f["y"], f["x"]) for f in found]
    if any(resample_factors(size, sizes[0]) for size in sizes):
        raise ValueError("the images have different pixel sizes ("
                         + ", ".join(f"{layer.name}: {size[1]:.3g} µm" for layer, size in zip(layers, sizes))
                         + "); train on images of one pixel size, or set their scales alike")
    if not voxels or not all("z" in f for f in found):
        return sizes[0]
    steps = [f["z"] for f in found]
    if any(resample_factors((z, z), (steps[0], steps[0])) for z in steps):
        raise ValueError("the z-stacks have different z-steps ("
                         + ", ".join(f"{layer.name}: {z:.3g} µm" for layer, z in zip(layers, steps))
                         + "); train a 3D network on stacks of one voxel size, or set their scales alike")
    return (steps[0], *sizes[0])


def has_z(layer, in_channels: int = 1) -> bool:
    """Whether an image layer is a z-stack (a Z among its axes, :func:`image_axes`)."""
    try:
        return "Z" in image_axes(layer, in_channels)
    except ValueError:
        return False


def _too_many(layer):
    raise ValueError(
        f"layer {layer.name!r} has shape {tuple(layer.data.shape)}: more than 2 axes before Y, X "
        "(and channels) are not supported"
    )


def current_plane_index(viewer, layer) -> tuple[int, ...]:
    """Data index of the visible plane of ``layer`` along its axes before (C,) Y, X."""
    n_leading = len(spatial_shape(layer)) - 2
    if n_leading <= 0:
        return ()
    point = layer.world_to_data(viewer.dims.point)
    shape = spatial_shape(layer)
    # world_to_data works on the layer dims (channel axis of RGB excluded)
    index = []
    for axis in range(n_leading):
        value = int(np.round(point[axis])) if axis < len(point) else 0
        index.append(int(np.clip(value, 0, shape[axis] - 1)))
    return tuple(index)


#: planes up to this side are previewed whole; larger ones only in the part in view
PREVIEW_MAX_SIDE = 1024
PREVIEW_MIN_SIDE = 256


def visible_box(layer, max_side: int = PREVIEW_MAX_SIDE, min_side: int = PREVIEW_MIN_SIDE):
    """The part ``(slice y, slice x)`` of ``layer``'s plane a preview predicts: None (the whole
    plane) when neither side exceeds ``max_side``; else the field of view (napari's
    ``corner_pixels``, the plane's centre before the first draw), made ``min_side`` to
    ``max_side`` pixels a side around its centre and kept inside the plane. Bounded work
    however large the image."""
    shape = spatial_shape(layer)[-2:]
    if len(shape) < 2 or max(shape) <= max_side:
        return None
    corners = np.asarray(getattr(layer, "corner_pixels", np.zeros((2, 2))), dtype=float)
    corners = corners[:, -2:] if corners.ndim == 2 and corners.shape[1] >= 2 else np.zeros((2, 2))
    box = []
    for axis, size in enumerate(shape):
        lo, hi = corners[0, axis], corners[1, axis] + 1
        if hi - lo <= 1:  # never drawn: the centre of the plane
            lo, hi = 0, size
        side = int(min(size, max(min_side, min(max_side, hi - lo))))
        start = int(np.clip(round((lo + hi) / 2 - side / 2), 0, size - side))
        box.append(slice(start, start + side))
    return tuple(box)


def image_plane(layer, index: tuple[int, ...], in_channels: int = 1) -> np.ndarray:
    """One plane of an image layer, ``(Y, X)`` or ``(C, Y, X)``, as a numpy array."""
    axes = image_axes(layer, in_channels)
    data = layer.data
    plane = np.asarray(data[tuple(index)]) if index else np.asarray(data)
    plane_axes = axes[len(index):]
    plane, _ = channels_last_to_first(plane, plane_axes)
    return plane


def is_kind(layer, kind: str) -> bool:
    """True when ``layer`` is a napari ``Image`` (kind "image") or ``Labels`` (kind "labels")."""
    from napari.layers import Image, Labels

    return isinstance(layer, {"image": Image, "labels": Labels}[kind])


def find_layer(viewer, name: str, kind: str | None = None):
    """The layer called ``name`` (of type ``kind``: "labels"/"image"), or None."""
    for layer in viewer.layers:
        if layer.name == name and (kind is None or is_kind(layer, kind)):
            return layer
    return None


def matching_annotations(viewer, image_layer):
    """The annotation Labels layer of ``image_layer`` (by name, then by marker), or None."""
    if image_layer is None:
        return None
    named = find_layer(viewer, image_layer.name + ANNOTATIONS_SUFFIX, "labels")
    if named is not None:
        return named
    for layer in viewer.layers:
        if is_kind(layer, "labels") and layer.metadata.get("napari_unet_annotations_of") == image_layer.name:
            return layer
    return None


OWNER_KEY = "napari_unet_output"
"""Metadata key of the layers the widgets make: the name each was made under."""
LABELS_OPACITY = 0.7
"""The opacity napari gives a new labels layer (a prediction layer's)."""


def is_output_layer(layer) -> bool:
    """True for the layers the widgets make (preview, uncertainty, prediction, ...)."""
    return bool(layer.metadata.get(OWNER_KEY))


def upsert_layer(viewer, name: str, kind: str, data, source_layer=None, **kwargs):
    """Update the data of layer ``name`` when it exists with the same shape; else add it.

    Re-running a prediction updates its output layer instead of piling up new ones. Adding a
    layer does not change the selected layer (the user may be painting).
    """
    layer = find_layer(viewer, name, kind)
    if layer is not None and tuple(layer.data.shape) == tuple(np.shape(data)):
        layer.data = data
        for key in ("colormap", "contrast_limits"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        layer.refresh()
        return layer
    active = viewer.layers.selection.active
    if layer is not None:
        viewer.layers.remove(layer)
    if source_layer is not None:
        n = len(spatial_shape(source_layer))
        kwargs.setdefault("scale", tuple(source_layer.scale)[-n:])
        kwargs.setdefault("translate", tuple(source_layer.translate)[-n:])
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata.setdefault(OWNER_KEY, name)
    if source_layer is not None:
        metadata.setdefault("napari_unet_source", source_layer.name)
    adder = viewer.add_labels if kind == "labels" else viewer.add_image
    layer = adder(data, name=name, metadata=metadata, **kwargs)
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return layer


class FollowsLayersMixin:
    """Calls ``self.refresh()`` whenever a layer is added, removed, moved or renamed.

    Call :meth:`_follow_layers` once from ``__init__`` (the callbacks are bound methods, so the
    viewer does not keep the widget alive).
    """

    def _follow_layers(self, viewer) -> None:
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved):
            emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)

    def _on_layers_changed(self, event=None):
        value = getattr(event, "value", None)
        if getattr(event, "type", "") == "inserted" and value is not None:
            value.events.name.connect(self.refresh)
        self.refresh()


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one kind ("image" or "labels"), kept up to date.

    ``filter`` (optional) further restricts the listed layers. The current choice survives
    layer insertions, removals and renames.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer, kind: str, parent=None, filter: Callable | None = None, allow_none: bool = False):
        super().__init__(parent)
        self.viewer = viewer
        self.kind = kind
        self._filter = filter
        self._allow_none = allow_none
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.currentIndexChanged.connect(self._emit_changed)
        events = viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.refresh()

    def _on_layers_changed(self, event=None):
        value = getattr(event, "value", None)
        if event is not None and getattr(event, "type", "") == "inserted" and value is not None:
            value.events.name.connect(self._on_layers_changed)
        self.refresh()

    def layers(self) -> list:
        return [
            layer for layer in self.viewer.layers
            if is_kind(layer, self.kind) and not is_output_layer(layer)
            and (self._filter is None or self._filter(layer))
        ]

    def refresh(self) -> None:
        current = self.layer()
        names = [layer.name for layer in self.layers()]
        self.blockSignals(True)
        try:
            self.clear()
            if self._allow_none:
                self.addItem("(none)", None)
            for name in names:
                self.addItem(name, name)
            if current is not None and current.name in names:
                self.setCurrentIndex(self.findData(current.name))
            else:
                self._select_default()
        finally:
            self.blockSignals(False)
        self._emit_changed()

    def _select_default(self):
        active = self.viewer.layers.selection.active
        if active is not None and is_kind(active, self.kind) and self.findData(active.name) >= 0:
            self.setCurrentIndex(self.findData(active.name))

    def layer(self):
        name = self.currentData()
        if name is None:
            return None
        for layer in self.viewer.layers:
            if layer.name == name and is_kind(layer, self.kind):
                return layer
        return None

    def set_layer(self, layer) -> None:
        index = self.findData(layer.name)
        if index >= 0:
            self.setCurrentIndex(index)

    def _emit_changed(self, *_):
        self.layer_changed.emit(self.layer())


def disconnect_all(pairs: Iterable[tuple[Any, Callable]]) -> None:
    """Disconnect ``(emitter, callback)`` pairs, ignoring those already gone."""
    for emitter, callback in pairs:
        try:
            emitter.disconnect(callback)
        except (TypeError, ValueError, RuntimeError):
            pass


def layer_annotation_problems(image_layer, labels_layer, mode: str = "instances") -> tuple[list[str], list[str]]:
    """:func:`napari_unet.annotations.summary.annotation_problems` for an image layer and its annotation layer."""
    from ...annotations.summary import annotation_problems

    if image_layer is None:
        return ["Select an image layer first."], []
    if labels_layer is None:
        return [
            f"Image {image_layer.name!r} has no annotation layer: create one in the Annotate widget "
            f"(or name a Labels layer {image_layer.name + ANNOTATIONS_SUFFIX!r})."
        ], []
    return annotation_problems(spatial_shape(image_layer), labels_layer.data, mode,
                               image_name=image_layer.name, labels_name=labels_layer.name)


def write_plane_layer(viewer, image, suffix: str, kind: str, plane, index, shape, dtype, **kwargs):
    """Write one plane into the layer ``<image name><suffix>`` of ``kind`` (created at the image's
    full ``shape`` when missing or of another shape, else updated in place)."""
    name = image.name + suffix
    layer = next((l for l in viewer.layers if l.name == name and is_kind(l, kind)), None)
    if layer is None or tuple(layer.data.shape) != shape:
        data = np.zeros(shape, dtype=dtype)
        data[index] = plane
        return upsert_layer(viewer, name, kind, data, source_layer=image, **kwargs)
    if index:
        layer.data[index] = plane
    else:
        layer.data[...] = plane
    if "contrast_limits" in kwargs and kind == "image":
        layer.contrast_limits = kwargs["contrast_limits"]
    layer.refresh()
    return layer
