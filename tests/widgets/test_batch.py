"""The Batch predict widget: checked layers, one progress bar, TIFF output, never overwrite silently."""

from __future__ import annotations

import numpy as np
import tifffile
from qtpy.QtWidgets import QMessageBox


def test_batch_two_layers_and_save(viewer, open_widget, qtbot, with_model, cells, tmp_path, notifications):
    viewer.add_image(cells[0], name="a")
    viewer.add_image(np.stack([cells[0][::-1], cells[0]]), name="b", scale=(2.0, 1.0, 1.0), metadata={"axes": "ZYX"})
    viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="c")
    widget = open_widget("Batch predict")
    assert [layer.name for layer in widget.checked_layers()] == ["a", "b", "c"]  # all by default
    widget.set_checked(["a", "b"])
    widget.save_check.setChecked(True)
    widget.folder_edit.setText(str(tmp_path / "out"))
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)

    assert "c prediction" not in viewer.layers
    for name, shape in (("a", cells[0].shape), ("b", (2, *cells[0].shape))):
        layer = viewer.layers[f"{name} prediction"]
        assert layer.data.shape == shape
        assert len(np.unique(layer.data)) > 2
        saved = tifffile.imread(tmp_path / "out" / f"{name}_labels.tif")
        np.testing.assert_array_equal(saved, layer.data)
    # the files keep the layers' scale: b's z-step and pixels, nothing where the layer says nothing
    from napari_unet.files.images import read_pixel_size

    assert read_pixel_size(tmp_path / "out" / "b_labels.tif") == {"z": 2.0, "y": 1.0, "x": 1.0}
    assert read_pixel_size(tmp_path / "out" / "a_labels.tif") is None
    assert widget.progress.value() == widget.progress.maximum()
    assert not notifications.errors


def test_existing_files_are_not_overwritten_without_asking(viewer, open_widget, qtbot, with_model, cells,
                                                          tmp_path, monkeypatch):
    viewer.add_image(cells[0], name="a")
    viewer.add_image(cells[0][::-1].copy(), name="b")
    existing = tmp_path / "a_labels.tif"
    tifffile.imwrite(existing, np.full((4, 4), 7, dtype=np.uint16))
    widget = open_widget("Batch predict")
    widget.save_check.setChecked(True)
    widget.folder_edit.setText(str(tmp_path))

    asked = []

    def answer(result):
        def exec_(box):
            asked.append(box.text())
            return result
        return exec_

    # Cancel: nothing runs
    monkeypatch.setattr(QMessageBox, "exec", answer(QMessageBox.StandardButton.Cancel))
    widget.run_button.click()
    assert widget.worker is None and len(asked) == 1 and "a_labels.tif" in asked[0]
    assert "a prediction" not in viewer.layers

    # No: keep the existing file, save the others
    monkeypatch.setattr(QMessageBox, "exec", answer(QMessageBox.StandardButton.No))
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(asked) == 2
    np.testing.assert_array_equal(tifffile.imread(existing), np.full((4, 4), 7))
    assert (tmp_path / "b_labels.tif").exists()
    assert "a prediction" in viewer.layers and "b prediction" in viewer.layers

    # Yes: overwrite
    monkeypatch.setattr(QMessageBox, "exec", answer(QMessageBox.StandardButton.Yes))
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert len(asked) == 3
    assert tifffile.imread(existing).shape == cells[0].shape


def test_bad_input(viewer, open_widget, notifications, trained_model):
    widget = open_widget("Batch predict")
    widget.run_button.click()
    assert widget.worker is None and any("model" in m for m in notifications.errors)
    from napari_unet._widgets.shared.model_box import model_holder

    model_holder(viewer).set_model(trained_model, "test model")
    widget.run_button.click()
    assert widget.worker is None and any("checked" in m for m in notifications.errors)
    viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="x")
    widget.save_check.setChecked(True)
    widget.folder_edit.setText("")
    widget.run_button.click()
    assert widget.worker is None and any("folder" in m for m in notifications.errors)


def test_batch_on_a_dask_cluster_matches_local_and_saves_ome_zarr(viewer, open_widget, qtbot, with_model, cells,
                                                                  tmp_path, notifications, monkeypatch):
    """'run on a dask cluster': the same labels as here (one worker process), saved as OME-Zarr;
    the cluster averages four flipped views ("auto" is decided per whole image), so here too."""
    import pytest

    pytest.importorskip("distributed")
    import napari_unet.predict.views as views
    from napari_unet.files.images import is_complete_image
    from napari_unet.files.ngff import open_prediction

    monkeypatch.setattr(views, "PLUGIN_TTA", 4)
    viewer.add_image(cells[0], name="a")
    widget = open_widget("Batch predict")
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    here = np.asarray(viewer.layers["a prediction"].data).copy()

    widget.cluster_check.setChecked(True)
    widget.cluster_edit.setText("local:1")
    widget.save_check.setChecked(True)
    widget.folder_edit.setText(str(tmp_path))
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert not notifications.errors, notifications.errors
    out = tmp_path / "a_prediction.zarr"
    assert is_complete_image(out)
    on_cluster = np.asarray(viewer.layers["a prediction"].data)
    np.testing.assert_array_equal(on_cluster, open_prediction(out)["labels"][...])
    # one image, one block: the same segmentation (ids may be numbered alike; compare as partitions)
    assert on_cluster.max() == here.max()
    assert np.array_equal(on_cluster > 0, here > 0)


def test_batch_3d_objects_over_the_planes_of_a_stack(viewer, open_widget, qtbot, with_model, cells, notifications):
    stack = np.stack([cells[0]] * 3)
    viewer.add_image(stack, name="stack", scale=(2.0, 1.0, 1.0))
    widget = open_widget("Batch predict")
    widget.three_d_check.setChecked(True)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert not notifications.errors, notifications.errors
    labels = viewer.layers["stack prediction"].data
    ids = [set(np.unique(labels[z])) - {0} for z in range(3)]
    assert len(ids[0]) > 1 and ids[0] == ids[1] == ids[2]
