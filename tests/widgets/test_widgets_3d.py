"""The widgets with a 3D U-Net: the Train widget trains one on z-stacks (voxel size from the layer's
scale) and previews the plane in view from a slab of the stack around it; Predict and Batch
predict volumes into 3D objects, or the slab around the slice in view; images without Z are
refused in plain words."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.config import AugmentConfig, ModelConfig

# a tiny 3D network: every test here trains or predicts in a second or two on a CPU
TINY3D = ModelConfig(spatial_dims=3, depth=2, base_channels=4, padding="same", batch_norm=True)
SHAPE = (16, 48, 48)
SCALE = (2.0, 0.5, 0.5)  # z-step, y, x in µm: the first pooling pools Y and X only
PAINTED = (4, 11)


def select(combo, value):
    index = combo.findData(value)
    assert index >= 0, value
    combo.setCurrentIndex(index)


def balls(shape=SHAPE, seed=0, n=6):
    """A stack of bright ellipsoids in noise, their labels, and annotations painting two slices."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.int32)
    for k in range(n):
        cz, cy, cx = rng.uniform(4, shape[0] - 4), rng.uniform(8, shape[1] - 8), rng.uniform(8, shape[2] - 8)
        inside = ((z - cz) / 4.0) ** 2 + ((y - cy) / 6.0) ** 2 + ((x - cx) / 6.0) ** 2 < 1
        labels[inside & (labels == 0)] = k + 2
    image = (labels > 0).astype(np.float32) + rng.normal(0, 0.25, shape).astype(np.float32)
    annotations = np.zeros(shape, np.uint16)
    for s in PAINTED:
        annotations[s] = np.where(labels[s] > 0, labels[s], 1)
    return image, labels, annotations


@pytest.fixture(scope="module")
def stack():
    return balls()


@pytest.fixture(scope="module")
def model3d(stack):
    """A tiny 3D network trained with the core API on the painted slices (finds the balls)."""
    from napari_unet import TrainConfig, train

    image, _, annotations = stack
    config = TrainConfig(model=TINY3D, iterations=15, tile_shape=(8, 32, 32), batch_size=2, pixel_size=SCALE,
                         validation_fraction=0.0, device="cpu", seed=0, preview_every=0, learning_rate=3e-3,
                         augment=AugmentConfig(enabled=False))
    model = train([image], [annotations], config=config, axes="ZYX").model
    model.eval()
    return model


def spans(objects) -> list[int]:
    """How many slices each object of a labelled stack spans."""
    return [np.unique(np.nonzero(objects == k)[0]).size for k in np.unique(objects) if k]


# ------------------------------------------------------------------------------------------
# the slab (no Qt)


def test_the_slab_around_a_plane_is_centred_and_kept_inside_the_stack():
    from napari_unet.training.job import plane_slab

    data = np.arange(2 * 10 * 3 * 6 * 5).reshape(2, 10, 3, 6, 5)  # T, Z, C, Y, X
    slab, axes, at = plane_slab(data, "TZCYX", (1, 5, 0), 4, box=(slice(1, 4), slice(0, 2)))
    assert axes == "CZYX" and slab.shape == (3, 4, 3, 2) and at == 2
    np.testing.assert_array_equal(slab[:, at], data[1, 5, :, 1:4, 0:2])
    for z, start in [(0, 0), (1, 0), (9, 6), (8, 6)]:  # clipped at both ends
        slab, axes, at = plane_slab(data[0, :, 0], "ZYX", (z,), 4)
        assert axes == "ZYX" and slab.shape == (4, 6, 5) and at == z - start
        np.testing.assert_array_equal(slab, data[0, start:start + 4, 0])
    slab, _, at = plane_slab(data[0, :3, 0], "ZYX", (2,), 16)  # a stack thinner than the slab: all of it
    assert slab.shape == (3, 6, 5) and at == 2
    rgb = np.moveaxis(data[0], 1, -1)  # Z, Y, X, C
    slab, axes, at = plane_slab(rgb, "ZYXC", (5,), 4)
    assert axes == "CZYX" and slab.shape == (3, 4, 6, 5)
    np.testing.assert_array_equal(slab[:, at], data[0, 5])
    with pytest.raises(ValueError, match="z-stack"):
        plane_slab(data[0, 0], "CYX", (), 4)


def test_the_slice_in_view_gets_the_probabilities_of_the_whole_stack(model3d):
    """Predict's slice in view with a 3D network: the slab around it reads its context from the
    stack (a window of it), not from mirrored copies of itself: the plane's probabilities are the
    whole stack's, at the cost of the slab."""
    from napari_unet._widgets.predict import predict_job, prediction_input
    from napari_unet.common.progress import drive

    deep, _, _ = balls((64, 48, 48), seed=1, n=16)
    whole = drive(predict_job(model3d, deep, "ZYX", None, "instances", True))["probability"]
    for z in (2, 32, 63):
        window, _axes, _normalize, at, (start, stop) = prediction_input(model3d, deep, "ZYX", (z,))
        assert len(window) < len(deep) and stop - start == 8  # a part of the stack; the slab: the training patch's z
        one = drive(predict_job(model3d, deep, "ZYX", (z,), "instances", True))
        assert one["labels"].shape == one["probability"].shape == deep.shape[1:]
        np.testing.assert_allclose(one["probability"], whole[z], atol=1e-5)
    # a stack of half the model's z-step (the layer's scale): resampled to the model's grid, the
    # slab's window reaching as far in the resampled planes (the window is resampled on its own)
    space = {"z": SCALE[0] / 2, "y": SCALE[1], "x": SCALE[2]}
    finer = drive(predict_job(model3d, deep, "ZYX", None, "instances", True, space=space))["probability"]
    assert np.abs(finer - whole).max() > 0.05
    for z in (2, 32, 63):
        one = drive(predict_job(model3d, deep, "ZYX", (z,), "instances", True, space=space))
        np.testing.assert_allclose(one["probability"], finer[z], atol=0.02)


def test_a_3d_jobs_previews_are_the_plane_of_a_slab_around_it(stack):
    from napari_unet import TrainConfig
    from napari_unet.common.progress import drive
    from napari_unet.model.unet import UNet
    from napari_unet.predict.volume import iter_predict_volume, tile_contexts
    from napari_unet.training.job import TrainJob, entropy_map

    image, _, annotations = stack
    config = TrainConfig(model=TINY3D, iterations=2, tile_shape=(8, 32, 32), batch_size=1, device="cpu",
                         preview_every=1, validation_fraction=0.0, augment=AugmentConfig(enabled=False))
    net = UNet.from_config(TINY3D)
    predicted = []  # the network inputs of the previews (nothing else runs in eval mode here)
    net.register_forward_pre_hook(lambda module, args: None if module.training else predicted.append(args[0].shape[2]))
    job = TrainJob([image], [annotations.copy()], ["ZYX"], config, net, preview_target=(0, (PAINTED[0],)),
                   weight_map=True, uncertainty=True, tune_threads=False)
    assert job.three_d
    gen = job.run()
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        trainer = stop.value
    previews = [payload for kind, payload in events if kind == "preview"]
    assert len(previews) >= 2  # during training, and the kept model's at the end
    # each reads the slab with a preview's context: a third of the network's along z
    z_context = -(-tile_contexts(net, "preview")[0] // net.pool_factors[0]) * net.pool_factors[0]
    assert z_context < net.margin(0) and len(predicted) >= 2 and set(predicted) == {8 + 2 * z_context}
    for preview in previews:
        assert preview["index"] == (PAINTED[0],) and preview["labels"].shape == SHAPE[1:]
        assert preview["uncertainty"].shape == SHAPE[1:] and preview["weight_map"].shape == SHAPE[1:]
    # the slab: the training patch's z size around the plane, clipped to the stack
    assert trainer.input_shape[0] == 8 and job.slab_plane == ((0, (PAINTED[0],)), PAINTED[0])
    assert job.preview_region((0, (12,))).shape == (8, *SHAPE[1:]) and job.slab_plane[1] == 4
    # the last preview is the kept model on the slab z 0..7 with a preview's context, of which it shows plane 4
    whole = drive(iter_predict_volume(trainer.model, image[:8], normalize=trainer.intensity_range(0), context="preview"))
    np.testing.assert_allclose(previews[-1]["uncertainty"], entropy_map(whole)[PAINTED[0]], atol=1e-4)


# ------------------------------------------------------------------------------------------
# the Train widget


def test_the_3d_network_on_an_image_without_z_refuses_to_start(viewer, open_widget, notifications):
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((48, 48)).astype(np.float32), name="flat")
    annotations = np.ones((48, 48), np.uint16)
    annotations[10:20, 10:20] = 2
    viewer.add_labels(annotations, name="flat annotations")
    train = open_widget("Train")
    select(train.preset_combo, "fast3d")
    assert "3D U-Net for z-stacks" in train.preset_combo.currentText()
    train.start_button.click()
    assert train.worker is None and train.job is None and train.start_button.isEnabled()
    assert len(notifications.errors) == 1
    assert "z-stack" in notifications.errors[0] and "'flat'" in notifications.errors[0]
    assert "flat preview" not in viewer.layers


def test_the_gpu_preset_is_ciceks_network_at_the_layers_voxel_size(viewer, open_widget, stack):
    image, _, annotations = stack
    viewer.add_image(image, name="stack", scale=SCALE)
    viewer.add_labels(annotations, name="stack annotations", scale=SCALE)
    train = open_widget("Train")
    select(train.preset_combo, "paper3d")
    assert "Çiçek" in train.preset_combo.currentText() and "GPU" in train.preset_combo.currentText()
    config = train.settings.train_config(train.pair_table.pairs())
    net = config.model
    assert (net.spatial_dims, net.padding, net.base_channels, net.depth, net.batch_norm) == (3, "valid", 64, 3, True)
    assert net.xy_only_pools == 1 and config.pixel_size == SCALE  # a z-step 4 pixels long: Y and X pooled first


def test_the_train_widget_trains_a_3d_network_of_the_layers_voxel_size_and_previews_the_plane_in_view(
        viewer, open_widget, qtbot, stack, monkeypatch, notifications):
    from napari_unet import config as config_module

    monkeypatch.setitem(config_module.MODEL_PRESETS, "fast3d", TINY3D)  # the 3D preset, tiny
    image, _, annotations = stack
    layer = viewer.add_image(image, name="stack", scale=SCALE)
    viewer.add_labels(annotations, name="stack annotations", scale=SCALE)
    train = open_widget("Train")
    select(train.preset_combo, "fast3d")
    config = train.settings.train_config(train.pair_table.pairs())
    assert config.pixel_size == SCALE
    assert config.model.spatial_dims == 3 and config.model.xy_only_pools == 1
    train.iterations_spin.setValue(3)
    train.time_spin.setValue(0)
    train.batch_spin.setValue(1)
    train.augment_check.setChecked(False)
    train.uncertainty_check.setChecked(True)
    plane = 6
    viewer.dims.set_current_step(0, plane)
    from napari_unet._widgets.shared.layers import current_plane_index

    assert current_plane_index(viewer, layer) == (plane,)
    shown = []
    original = train.view.show_preview
    monkeypatch.setattr(train.view, "show_preview", lambda preview, pairs: (shown.append(preview),
                                                                             original(preview, pairs)))
    train.start_button.click()
    assert train.is_running
    qtbot.waitUntil(lambda: train.worker is None, timeout=60_000)
    assert not notifications.errors
    model = train.holder.model
    assert model.config.spatial_dims == 3 and model.config.xy_only_pools == 1
    assert model.metadata["voxel_size"] == list(SCALE)
    # the preview: labels of the plane in view, (Y, X), written into that plane of the layers
    assert shown and all(p["index"] == (plane,) and p["labels"].shape == SHAPE[1:] for p in shown)
    preview = viewer.layers["stack preview"]
    assert preview.data.shape == SHAPE
    uncertainty = viewer.layers["stack uncertainty"].data
    assert uncertainty.shape == SHAPE and np.all(uncertainty[plane] > 0)
    others = np.delete(np.arange(SHAPE[0]), plane)
    assert not np.any(uncertainty[others]) and not np.any(preview.data[others])


# ------------------------------------------------------------------------------------------
# Predict and Batch


def test_predict_with_a_3d_network_gives_3d_objects_or_the_slice_in_view(viewer, open_widget, qtbot, stack,
                                                                        model3d, notifications):
    from napari_unet._widgets.shared.model_box import model_holder

    image, _, _ = stack
    model_holder(viewer).set_model(model3d, "3D test model")
    layer = viewer.add_image(image, name="stack", scale=SCALE)
    predict = open_widget("Predict")
    predict.image_combo.set_layer(layer)
    # a 3D network always makes 3D objects: the check says so, and cannot be unchecked
    assert predict.three_d_check.isChecked() and not predict.three_d_check.isEnabled()

    # the current slice: predicted in the slab around it, its labels in that slice only
    plane = 8
    viewer.dims.set_current_step(0, plane)
    select(predict.scope_combo, "slice")
    predict.predict_button.click()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60_000)
    labels = viewer.layers["stack prediction"].data
    assert labels.shape == SHAPE and np.any(labels[plane])
    assert not np.any(np.delete(labels, plane, axis=0))
    in_slice = labels[plane] > 0

    # the whole stack: one id per 3D object, over several slices
    select(predict.scope_combo, "stack")
    predict.predict_button.click()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60_000)
    objects = viewer.layers["stack prediction"].data
    assert objects.shape == SHAPE
    assert spans(objects) and np.median(spans(objects)) >= 3
    whole = objects[plane] > 0  # the slab saw the slice much as the whole stack does
    assert (whole & in_slice).sum() / max(1, (whole | in_slice).sum()) > 0.8
    assert not notifications.errors


def test_a_3d_network_on_an_image_without_z_is_refused_in_plain_words(viewer, open_widget, stack, model3d,
                                                                      notifications):
    from napari_unet._widgets.shared.model_box import model_holder

    model_holder(viewer).set_model(model3d, "3D test model")
    flat = viewer.add_image(stack[0][PAINTED[0]], name="flat")
    predict = open_widget("Predict")
    predict.image_combo.set_layer(flat)
    predict.predict_button.click()
    assert predict.worker is None and predict.predict_button.isEnabled()
    assert len(notifications.errors) == 1 and "z-stack" in notifications.errors[0]
    assert "flat prediction" not in viewer.layers

    batch = open_widget("Batch predict")
    batch.set_checked(["flat"])
    batch.run_button.click()
    assert batch.worker is None and len(notifications.errors) == 2 and "z-stack" in notifications.errors[1]
    assert "flat prediction" not in viewer.layers


def test_batch_predicts_z_stacks_with_a_3d_network_into_3d_objects(viewer, open_widget, qtbot, stack, model3d,
                                                                  notifications):
    from napari_unet._widgets.shared.model_box import model_holder

    model_holder(viewer).set_model(model3d, "3D test model")
    viewer.add_image(stack[0], name="stack", scale=SCALE)
    batch = open_widget("Batch predict")
    assert batch.three_d_check.isChecked() and not batch.three_d_check.isEnabled()
    batch.set_checked(["stack"])
    batch.run_button.click()
    qtbot.waitUntil(lambda: batch.worker is None, timeout=60_000)
    objects = viewer.layers["stack prediction"].data
    assert objects.shape == SHAPE and spans(objects) and np.median(spans(objects)) >= 3
    assert not notifications.errors
    # back to a 2D network: the user's own choice of 3D objects comes back
    from napari_unet import UNet

    model_holder(viewer).set_model(UNet(depth=2, base_channels=4).eval(), "2D")
    assert not batch.three_d_check.isChecked() and batch.three_d_check.isEnabled()
