"""PredictWidget: image layer -> Labels layer (instances or classes) and a probability layer.

The prediction runs in a napari thread worker over the core's generator
(:func:`napari_unet.labels.segment.iter_segment`, as the CLI and the Batch widget); results reach the
layers on the main thread.
Re-running updates the output layers instead of adding new ones.
"""

from __future__ import annotations

import logging

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..common.axes import channels_last_to_first
from ..common.pixel_size import describe_resampling, prediction_pixel_size, volume_resample_factors
from .shared.controls import (CellDiameterSpin, DeviceCombo, FlipsCheck, MODE_CHOICES, choice_combo, follow_model_kind,
                              is_volume_model, large_cells_check, select_model_mode, set_bar)
from .shared.layers import (LABELS_OPACITY, LayerCombo, OWNER_KEY, PREDICTION_SUFFIX, PREVIEW_SUFFIX, PROBABILITY_SUFFIX,
                            current_plane_index, find_layer, image_axes, is_kind, layer_pixel_size, spatial_shape,
                            upsert_layer)
from .shared.model_box import ModelPanel, model_holder
from .shared.notify import notify_error, notify_warning, plain_error
from .shared.workers import PREDICT_MODULES, WorkerWidgetMixin, start_preloading

logger = logging.getLogger(__name__)

OUTPUTS = MODE_CHOICES
SCOPES = [("slice", "current slice"), ("stack", "whole stack")]


def no_objects_message(name: str) -> str:
    """The warning when a prediction of the layer ``name`` finds no object."""
    return (f"No cells found in {name!r}. The model may have trained too little: paint a few of the cells "
            f"it missed and press Continue in the Train widget (or check the cell diameter).")


def hide_preview(viewer, image) -> None:
    """Hide the training preview of ``image`` (the prediction now shows the same cells)."""
    for layer in viewer.layers:
        if layer.name == image.name + PREVIEW_SUFFIX and is_kind(layer, "labels"):
            layer.visible = False


def preview_as_prediction(viewer, image, shape, empty: bool = False) -> None:
    """Make the training preview of ``image`` its prediction layer when the image has no
    prediction layer yet: the prediction then fills a layer in place instead of adding one
    (napari holds its window 0.2-0.4 s to add a labels layer), and the preview, which would show
    the same cells under the prediction, is gone. Only a preview the Train widget made (its
    metadata says so) of the image's full ``shape`` is taken; ``empty``: clear it first (a
    prediction of one plane leaves the others as they are)."""
    name = image.name + PREDICTION_SUFFIX
    if any(layer.name == name for layer in viewer.layers):
        return
    preview = find_layer(viewer, image.name + PREVIEW_SUFFIX, "labels")
    if preview is None or preview.metadata.get(OWNER_KEY) != preview.name \
            or tuple(preview.data.shape) != tuple(shape):
        return
    if empty:
        preview.data[...] = 0
    preview.name = name
    preview.metadata = {**preview.metadata, OWNER_KEY: name}
    preview.opacity = LABELS_OPACITY
    preview.visible = True


def check_model_fits(model, layer) -> str:
    """The axes string of ``layer`` for ``model``; ValueError in plain words when it cannot fit
    (e.g. a 3D network and an image that is not a z-stack)."""
    from ..model.fit import check_channels

    axes = image_axes(layer, int(model.config.in_channels))
    name = f"{layer.name!r}{' (RGB)' if getattr(layer, 'rgb', False) else ''}"
    check_channels(model, layer.data.shape, axes, name)
    if is_volume_model(model) and "Z" not in axes:
        raise ValueError(f"the model is a 3D network, which predicts z-stacks, and {name} has no Z axis "
                         f"(shape {tuple(layer.data.shape)}, axes {axes}): predict it with a 2D network")
    return axes


def prediction_input(model, data, axes: str, index: tuple | None, zoom: float = 1.0):
    """What :func:`predict_job` segments: ``(input, its axes, normalize, at, planes)``.

    The whole image or stack (``index`` None), channels first; or the plane ``index`` of a stack,
    normalized with the whole stack's percentiles as in training. A 3D network's plane is
    predicted in the slab around it (the training patch's z size, as the training preview): the
    input is the window of the stack that holds the slab and its context
    (:func:`napari_unet.predict.volume.slab_window`), ``planes`` the slab in it, so that the slab
    gets the whole stack's probabilities; ``at``: the plane's z in the slab (else None). ``zoom``:
    the factor the stack is resampled by along Z for a 3D network (its window reaches further).
    """
    from ..predict.tiling import normalization_range

    if index is None:
        data, axes = channels_last_to_first(data, axes) if axes.endswith("YXC") else (data, axes)
        return data, axes, True, None, None
    if not index:  # an image without planes
        plane, plane_axes = channels_last_to_first(np.asarray(data), axes)
        return plane, plane_axes, True, None, None
    whole, whole_axes = channels_last_to_first(data, axes)
    normalize = normalization_range(model, whole, axes=whole_axes) or True
    if is_volume_model(model):
        from ..model.fit import default_tile_shape
        from ..predict.volume import slab_window
        from ..training.job import plane_slab

        window = planes = None
        depth, z = default_tile_shape(model)[0], axes.find("Z")
        if 0 <= z < len(index):  # else plane_slab says that a 3D network needs a z-stack
            window, planes = slab_window(model, np.shape(data)[z], index[z], depth, zoom)
        slab, slab_axes, at = plane_slab(data, axes, index, depth, z_range=window)
        return slab, slab_axes, normalize, at - planes[0], planes
    plane, plane_axes = channels_last_to_first(np.asarray(data[tuple(index)]), axes[len(index):])
    return plane, plane_axes, normalize, None, None


def predict_job(model, data, axes: str, index: tuple | None, mode: str, probability: bool, device=None,
                cell_diameter: float | None = None, space: dict | None = None, three_d: bool = False,
                large_cells: bool = True, tta: int | str = 1):
    """Generator: yields ``(done, total)``; returns ``{"labels", "probability", "index"}``.

    ``index`` selects one plane of a stack (None: the whole stack, or the image when 2D).
    ``cell_diameter`` overrides the model's (instance mode: the split of touching cells and
    the smallest object kept scale with it). ``space``: the layer's pixel sizes (``{"z", "y",
    "x"}`` micrometres, from its scale): the image is resampled to the model's pixel size when
    they differ. ``three_d``: one id per 3D object of a z-stack (voxel spacing from ``space``;
    always, for a 3D network, whose plane ``index`` is predicted in the slab around it).
    ``large_cells``: the half-scale pass for cells much larger than the painted ones
    (:mod:`napari_unet.labels.large_cells`; instances of planes only). ``tta``: flipped views averaged
    (:func:`~napari_unet.predict_tiled`).
    """
    from ..labels.segment import iter_segment, segment_options

    pixel_size = prediction_pixel_size(space, model)
    factors = volume_resample_factors(pixel_size, model) if is_volume_model(model) else None
    plane, plane_axes, normalize, at, planes = prediction_input(model, data, axes, index,
                                                                factors[0] if factors else 1.0)
    if is_volume_model(model):  # 3D objects, of the layer's voxel size (else the model's: iter_segment)
        three_d, large_cells = space is not None, False
    else:
        three_d = three_d and index is None
    options = segment_options(model, mode, cell_diameter=cell_diameter, space=space, three_d=three_d,
                              axes=plane_axes)
    where = {} if planes is None else {"planes": planes}  # a 3D network's slab in its window
    probabilities, labels = yield from iter_segment(model, plane, axes=plane_axes, options=options, device=device,
                                                    pixel_size=pixel_size, normalize=normalize, tta=tta,
                                                    large_cells=large_cells, **where)
    if at is not None:  # the plane in the slab a 3D network predicted
        probabilities, labels = probabilities[:, at], labels[at]
    result = {"labels": labels, "index": index, "probability": None}
    if probability:
        # probability of "not background" (cell, or any foreground class)
        result["probability"] = (1.0 - probabilities[0]).astype(np.float32)
    return result


class PredictWidget(WorkerWidgetMixin, QWidget):
    """Predict an image layer with the current model into a Labels layer (napari dock widget)."""

    JOB_NAME = "Prediction"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.holder = model_holder(napari_viewer)
        self._target = None
        start_preloading(PREDICT_MODULES)  # the first Predict's imports, while the user looks around

        layout = QVBoxLayout(self)
        self.model_panel = ModelPanel(self.holder, self.load_model)
        self.model_label, self.load_button = self.model_panel.label, self.model_panel.load_button
        layout.addWidget(self.model_panel)

        form = QFormLayout()
        self.image_combo = LayerCombo(napari_viewer, "image", self)
        self.image_combo.setToolTip("The image to segment (2D, a stack, a time series, RGB/multichannel).")
        form.addRow("image", self.image_combo)
        self.output_combo = choice_combo(
            OUTPUTS,
            "cells (instances): one id per cell, touching cells separated.\n"
            "classes: one value per class (0 = background).",
        )
        form.addRow("output", self.output_combo)
        self.scope_combo = choice_combo(
            SCOPES, "Predict the slice in view (fast, to check) or every slice of the stack."
        )
        form.addRow("predict", self.scope_combo)
        self.diameter_spin = CellDiameterSpin()
        form.addRow("cell diameter", self.diameter_spin)
        self.three_d_check = QCheckBox("3D objects")
        self.three_d_check.setToolTip("Whole z-stacks: one id per object over all its planes (touching objects split "
                                      "in 3D, voxel size from the layer's scale). Off: plane by plane.")
        self.show_3d_check = QCheckBox("show in 3D")
        self.show_3d_check.setToolTip("Switch the viewer to 3D when the 3D objects are ready.")
        row = QHBoxLayout()
        row.addWidget(self.three_d_check)
        row.addWidget(self.show_3d_check)
        form.addRow(row)
        self.large_cells_check = large_cells_check()
        form.addRow(self.large_cells_check)
        self.flips_check = FlipsCheck()
        form.addRow(self.flips_check)
        self.pixel_label = QLabel("")
        self.pixel_label.setWordWrap(True)
        form.addRow(self.pixel_label)
        self.probability_check = QCheckBox("also add the probability layer")
        self.probability_check.setToolTip("An Image layer with the probability of foreground (1 - background) per pixel.")
        form.addRow(self.probability_check)
        self.device_combo = DeviceCombo()
        form.addRow("device", self.device_combo)
        layout.addLayout(form)

        self.predict_button = self._add_run_buttons(layout, "Predict", self.predict)
        self._add_progress(layout, 1, value=None)
        layout.addStretch(1)

        self.holder.changed.connect(self._on_model_changed)
        self._on_model_changed(self.holder.description)
        self.image_combo.layer_changed.connect(self._update_space)
        self.scope_combo.currentIndexChanged.connect(self._update_space)
        self._set_running(False)
        self._update_space()

    def _set_running(self, running: bool) -> None:
        self.predict_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.model_panel.set_running(running, self.holder.model is not None)

    def _on_model_changed(self, description: str) -> None:
        select_model_mode(self.output_combo, self.holder.model)
        self.diameter_spin.set_model(self.holder.model)
        self._update_space()

    def _space(self, image, axes: str) -> dict | None:
        model = self.holder.model
        return layer_pixel_size(image, int(model.config.in_channels) if model else 1) if image is not None else None

    def _update_space(self, *_):
        """3D objects only for whole z-stacks; what prediction does with the pixel sizes."""
        image, model = self.image_combo.layer(), self.holder.model
        try:
            axes = image_axes(image, int(model.config.in_channels) if model else 1) if image is not None else ""
        except ValueError:
            axes = ""
        stack_3d = "Z" in axes and self.scope_combo.currentData() == "stack"
        follow_model_kind(self.three_d_check, model, stack_3d)  # a 3D network: always 3D objects
        self.show_3d_check.setEnabled(stack_3d)
        space = self._space(image, axes)
        text = describe_resampling(model, prediction_pixel_size(space, model)) if model is not None else ""
        self.pixel_label.setText(text)

    def predict(self):
        """Predict the chosen image (slice or stack) in a worker thread."""
        if self.is_running:
            return
        image = self.image_combo.layer()
        if image is None:
            notify_error("No image layer to predict: open an image first.")
            return
        model = self.holder.model
        if model is None:
            notify_error("No model yet: train one (Train widget) or load a .unet file.")
            return
        try:
            axes = check_model_fits(model, image)
        except ValueError as exc:
            notify_error(f"Cannot predict: {plain_error(exc)}")
            return
        n_leading = len(spatial_shape(image)) - 2
        scope = self.scope_combo.currentData()
        index = current_plane_index(self.viewer, image) if (scope == "slice" and n_leading > 0) else None
        if n_leading == 0:
            index = ()
        mode = self.output_combo.currentData()
        self._target = (image, index)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("predicting… %p%")
        what = f"slice {index}" if index else "the whole image" if n_leading == 0 else "the whole stack"
        self.status_label.setText(f"Predicting {what} of {image.name!r}…")
        three_d = index is None and (is_volume_model(model) and n_leading > 0
                                     or self.three_d_check.isEnabled() and self.three_d_check.isChecked())
        self._show_3d = three_d and self.show_3d_check.isChecked()
        self._start_worker(
            predict_job(model, image.data, axes, index, mode, self.probability_check.isChecked(),
                        device=self.device_combo.device(), cell_diameter=self.diameter_spin.diameter(),
                        space=self._space(image, axes), three_d=three_d,
                        large_cells=self.large_cells_check.isChecked(), tta=self.flips_check.tta()),
            yielded=self._on_progress,
            returned=self._on_returned,
            aborted=self._on_aborted,
        )

    def _on_progress(self, value):
        try:
            done, total = value
        except (TypeError, ValueError):
            return
        if total:
            set_bar(self.progress, int(1000 * done / total))

    def _on_returned(self, result):
        image, index = self._target
        if image not in self.viewer.layers:
            return
        shape = spatial_shape(image)
        labels = result["labels"]
        preview_as_prediction(self.viewer, image, shape, empty=bool(index))
        self._write(image, PREDICTION_SUFFIX, "labels", labels, index, shape)
        if result["probability"] is not None:
            self._write(image, PROBABILITY_SUFFIX, "image", result["probability"], index, shape,
                        colormap="magma", contrast_limits=(0.0, 1.0), blending="additive", visible=True)
        hide_preview(self.viewer, image)
        n = len(np.unique(labels)) - (1 if np.any(labels == 0) else 0)
        instances = self.output_combo.currentData() == "instances"
        kind = "object(s)" if instances else "class(es)"
        self.status_label.setText(f"{image.name + PREDICTION_SUFFIX!r}: {n} {kind}.")
        if instances and n == 0:
            notify_warning(no_objects_message(image.name))
        self.progress.setValue(self.progress.maximum())
        self.progress.setFormat("done")
        if getattr(self, "_show_3d", False):
            self.viewer.dims.ndisplay = 3

    def _write(self, image, suffix, kind, data, index, shape, **kwargs):
        """Whole result -> update or add the layer; one plane -> write it into the layer."""
        name = image.name + suffix
        if index:  # one plane of a stack
            existing = next((l for l in self.viewer.layers if l.name == name and is_kind(l, kind)), None)
            if existing is not None and tuple(existing.data.shape) == shape:
                plane = data.astype(existing.data.dtype, copy=False)
                if kind == "labels" and np.issubdtype(existing.data.dtype, np.integer):
                    # keep ids unique across slices: shift this plane past the others' ids
                    rest = existing.data.copy()
                    rest[index] = 0
                    offset = int(rest.max())
                    plane = np.where(plane > 0, plane + offset, 0).astype(existing.data.dtype) \
                        if self.output_combo.currentData() == "instances" else plane
                existing.data[index] = plane
                existing.refresh()
                return existing
            full = np.zeros(shape, dtype=data.dtype)
            full[index] = data
            data = full
        return upsert_layer(self.viewer, name, kind, data, source_layer=image, **kwargs)

    def _on_aborted(self):
        self.progress.setFormat("cancelled")
        self.status_label.setText("Prediction cancelled.")
