"""The Predict widget: image -> Labels (and probability), slice or stack, cancel, bad input."""

from __future__ import annotations

import numpy as np


def n_objects(labels) -> int:
    return len(np.unique(labels[labels > 0]))


def test_predict_2d_instances_and_probability(viewer, open_widget, qtbot, with_model, cells, notifications):
    viewer.add_image(cells[0], name="cells")
    widget = open_widget("Predict")
    assert "test model" in widget.model_label.text()
    widget.probability_check.setChecked(True)
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    labels = viewer.layers["cells prediction"]
    assert labels.data.shape == cells[0].shape
    assert n_objects(labels.data) > 1
    probability = viewer.layers["cells probability"]
    assert 0.0 <= probability.data.min() and probability.data.max() <= 1.0
    assert widget.predict_button.isEnabled()

    # the cell diameter comes from the model (the painted cells); a larger one drops small objects
    assert f"{with_model.metadata['cell_diameter']:.1f} px" in widget.diameter_spin.specialValueText()
    n_before = n_objects(labels.data)
    widget.diameter_spin.setValue(60.0)  # min size 283 px: most of these ~250 px cells go
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert n_objects(viewer.layers["cells prediction"].data) < n_before
    widget.diameter_spin.setValue(0.0)

    # re-running updates the layers instead of adding new ones
    n_layers = len(viewer.layers)
    widget.output_combo.setCurrentIndex(widget.output_combo.findData("classes"))
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(viewer.layers) == n_layers
    assert set(np.unique(viewer.layers["cells prediction"].data)) <= {0, 1}
    assert not notifications.errors


def test_predict_stack_slice_then_whole(viewer, open_widget, qtbot, with_model, cells):
    dim = (cells[0][::-1] * 0.7).astype(cells[0].dtype)  # a dim slice: normalized with the stack
    stack = np.stack([cells[0], dim, cells[0][:, ::-1]])
    viewer.add_image(stack, name="stack")
    widget = open_widget("Predict")
    viewer.dims.set_current_step(0, 1)
    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("slice"))
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    data = viewer.layers["stack prediction"].data
    assert data.shape == stack.shape
    assert n_objects(data[1]) > 1 and not data[0].any() and not data[2].any()
    slice_result = data[1].copy()

    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("stack"))
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    data = viewer.layers["stack prediction"].data
    assert all(n_objects(data[z]) > 1 for z in range(3))
    # the slice alone comes out as it does within the whole stack (same normalization)
    np.testing.assert_array_equal(data[1] > 0, slice_result > 0)
    # ids are unique across the stack
    assert not set(np.unique(data[0])[1:]) & set(np.unique(data[1])[1:])


def test_nothreads_runs_synchronously(viewer, open_widget, with_model, cells, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_NOTHREADS", "1")
    viewer.add_image(cells[0], name="cells")
    widget = open_widget("Predict")
    widget.predict_button.click()
    # no waiting: the generator ran on this thread
    assert widget.worker is None
    assert n_objects(viewer.layers["cells prediction"].data) > 1


def test_cancel(viewer, open_widget, qtbot, with_model):
    big = np.random.default_rng(0).random((12, 256, 256)).astype(np.float32)
    viewer.add_image(big, name="big")
    widget = open_widget("Predict")
    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("stack"))
    widget.predict_button.click()
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert "big prediction" not in viewer.layers
    assert widget.progress.format() == "cancelled"
    assert widget.predict_button.isEnabled()


def test_bad_input_notifies_and_starts_nothing(viewer, open_widget, notifications, trained_model):
    widget = open_widget("Predict")
    widget.predict_button.click()  # no image layer
    assert widget.worker is None
    assert any("image" in m for m in notifications.errors)

    viewer.add_image(np.zeros((64, 64), dtype=np.float32), name="gray")
    widget.predict_button.click()  # no model
    assert widget.worker is None
    assert any("model" in m for m in notifications.errors)

    from napari_unet._widgets.shared.model_box import model_holder

    model_holder(viewer).set_model(trained_model, "test model")
    viewer.layers.clear()
    viewer.add_image(np.zeros((64, 64, 3), dtype=np.uint8), name="rgb", rgb=True)
    n_errors = len(notifications.errors)
    widget.predict_button.click()  # 3 channels for a 1-channel model
    assert widget.worker is None
    assert len(notifications.errors) == n_errors + 1
    assert "channel" in notifications.errors[-1]
    assert "rgb prediction" not in viewer.layers


def test_failed_worker_reenables_buttons(viewer, open_widget, qtbot, with_model, monkeypatch, notifications):
    import napari_unet.predict.tiling as tiling

    def broken(*args, **kwargs):
        yield (0, 1)
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(tiling, "iter_predict_with", broken)  # what labels.segment.iter_segment runs
    viewer.add_image(np.zeros((64, 64), dtype=np.float32), name="gray")
    widget = open_widget("Predict")
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.predict_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert any("simulated failure" in m for m in notifications.errors)


def test_pixel_sizes_resample_and_3d_objects_keep_the_layer_grid(viewer, open_widget, qtbot, trained_model, cells,
                                                                  notifications):
    """A layer at twice the model's pixel size is resampled (said in the widget); the output keeps the
    layer's shape, scale and translate; '3D objects' gives one id per object over the planes."""
    import copy

    from napari_unet._widgets.shared.model_box import model_holder

    model = copy.deepcopy(trained_model)
    model.metadata["pixel_size"] = [0.25, 0.25]
    model_holder(viewer).set_model(model, "test model")
    coarse = cells[0].reshape(96, 2, 96, 2).mean(axis=(1, 3)).astype(np.float32)
    stack = np.stack([coarse] * 4)  # the same nuclei on 4 planes: 3D objects span them
    viewer.add_image(stack, name="stack", scale=(0.5, 0.5, 0.5), translate=(0, 10, 20))
    widget = open_widget("Predict")
    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("stack"))
    assert "image: 0.5 µm/px, resampled x2" in widget.pixel_label.text()
    assert widget.three_d_check.isEnabled()
    widget.three_d_check.setChecked(True)
    widget.show_3d_check.setChecked(True)
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert not notifications.errors, notifications.errors
    labels = viewer.layers["stack prediction"]
    assert labels.data.shape == stack.shape
    assert tuple(labels.scale) == (0.5, 0.5, 0.5) and tuple(labels.translate) == (0, 10, 20)
    ids = [set(np.unique(labels.data[z])) - {0} for z in range(4)]
    assert len(ids[0]) > 1 and ids[0] == ids[1] == ids[2] == ids[3]  # one id per object over the 4 planes
    assert viewer.dims.ndisplay == 3


def test_the_half_scale_pass_and_the_flipped_views_run_as_in_the_api_and_can_be_switched_off(
        viewer, open_widget, qtbot, with_model, cells, monkeypatch, engines):
    import napari_unet.labels.large_cells as large_cells
    from napari_unet import label_options, predict_half_scale, predict_tiled, to_labels
    from napari_unet.labels.options import LabelOptions
    from napari_unet.predict.views import PLUGIN_TTA

    import napari_unet.labels.segment as segment

    calls = []
    real = large_cells.fuse_large_cells
    monkeypatch.setattr(large_cells, "fuse_large_cells", lambda labels, half, options, planes=None:
                        calls.append(dict(**options)) or real(labels, half, options, planes))
    # these clean cells show nothing large: every plane is made to want the pass (half_scale_wanted's own tests)
    monkeypatch.setattr(segment, "half_scale_wanted", lambda p, labels, options: np.ones(labels.shape[:-2], bool))
    viewer.add_image(cells[0], name="cells")
    widget = open_widget("Predict")
    assert widget.large_cells_check.isChecked()  # on by default
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    options = label_options(with_model)
    assert calls == [options]
    assert widget.flips_check.isChecked() and engines == [PLUGIN_TTA, PLUGIN_TTA]  # both passes: flipped views

    def api(tta):  # the half-scale pass not counted in calls
        return real(to_labels(predict_tiled(with_model, cells[0], tta=tta), **options),
                    predict_half_scale(with_model, cells[0], tta=tta), LabelOptions.of(options))

    assert np.array_equal(viewer.layers["cells prediction"].data, api(PLUGIN_TTA))  # what the API gives
    widget.flips_check.setChecked(False)
    del engines[:]
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert engines == [1, 1]
    assert np.array_equal(viewer.layers["cells prediction"].data, api(1))
    widget.large_cells_check.setChecked(False)
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(calls) == 2

    from napari_unet._widgets.predict import predict_job

    job, steps = predict_job(with_model, cells[0], "YX", (), "instances", False, device="cpu"), []
    try:
        while True:
            steps.append(next(job))
    except StopIteration:
        pass
    permille = [done for done, total in steps]  # one bar over both passes: it never jumps back
    assert permille == sorted(permille) and permille[-1] == 1000 and any(600 <= v <= 850 for v in permille)


def test_the_training_preview_becomes_the_prediction_and_a_users_layer_is_left_alone(viewer, open_widget, qtbot,
                                                                                       with_model, cells):
    from napari_unet._widgets.shared.layers import upsert_layer

    stack = np.stack([cells[0], cells[0][:, ::-1]])
    image = viewer.add_image(stack, name="stack")
    stale = np.zeros(stack.shape, np.int32)
    stale[0, :20, :20] = 7  # the preview of another plane, from training
    preview = upsert_layer(viewer, "stack preview", "labels", stale, source_layer=image, opacity=0.5)
    preview.visible = False
    mine = viewer.add_labels(np.full(cells[0].shape, 3, np.int32), name="cells preview")  # the user's own layer
    viewer.add_image(cells[0], name="cells")
    widget = open_widget("Predict")
    widget.image_combo.set_layer(image)
    viewer.dims.set_current_step(0, 1)
    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("slice"))
    n_layers = len(viewer.layers)
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    # no layer added: the preview is now the prediction, emptied of the other planes' preview
    assert len(viewer.layers) == n_layers and "stack preview" not in viewer.layers
    prediction = viewer.layers["stack prediction"]
    assert prediction is preview and prediction.visible and prediction.opacity == 0.7
    assert prediction.metadata["napari_unet_output"] == "stack prediction"
    assert not prediction.data[0].any() and n_objects(prediction.data[1]) > 1

    widget.image_combo.set_layer(viewer.layers["cells"])
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert viewer.layers["cells prediction"] is not mine and "cells preview" in viewer.layers
    assert (mine.data == 3).all()
