"""The Annotate widget: annotation layer creation, the paint buttons, counts and warnings."""

from __future__ import annotations

import numpy as np


def test_no_image_shows_error_and_adds_nothing(viewer, open_widget, notifications):
    widget = open_widget("Annotate")
    widget.create_button.click()
    assert len(viewer.layers) == 0
    assert any("image" in m.lower() for m in notifications.errors)
    assert not widget.cell_button.isEnabled()


def test_create_layer_paint_and_count(viewer, open_widget, qtbot, notifications):
    image = viewer.add_image(np.random.default_rng(0).random((2, 40, 50)), name="cells",
                             scale=(2.0, 0.5, 0.5), translate=(0.0, 10.0, 20.0))
    widget = open_widget("Annotate")
    assert widget.image_combo.layer() is image
    widget.create_button.click()

    labels = viewer.layers["cells annotations"]
    assert labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert viewer.layers.selection.active is labels
    assert labels.mode == "paint"
    assert widget.create_button.text().startswith("Select")
    # a second click selects the existing layer, it does not add one
    widget.create_button.click()
    assert len(viewer.layers) == 2

    widget.background_button.click()
    assert labels.selected_label == 1 and labels.mode == "paint"
    widget.cell_button.click()
    assert labels.selected_label == 2
    widget.erase_button.click()
    assert labels.mode == "erase"

    # background only: a warning that training cannot work yet
    labels.paint((0, 5, 5), 1)
    qtbot.waitUntil(lambda: "background only" in widget.warning_label.text(), timeout=3000)

    data = labels.data.copy()
    data[0, 20:25, 20:25] = 2
    data[0, 30:35, 30:35] = 3
    labels.data = data
    widget.cell_button.click()
    assert labels.selected_label == 4  # next free id
    qtbot.waitUntil(lambda: "2 cell(s)" in widget.stats_label.text(), timeout=3000)
    assert "1 of 2 slices" in widget.stats_label.text()
    assert "background only" not in widget.warning_label.text()
    assert not notifications.errors


def test_mismatched_annotation_layer_warns(viewer, open_widget):
    viewer.add_image(np.zeros((32, 32)), name="img")
    viewer.add_labels(np.zeros((16, 16), dtype=np.uint8), name="img annotations")
    widget = open_widget("Annotate")
    widget.image_combo.set_layer(viewer.layers["img"])
    widget.update_stats()
    assert "must match" in widget.warning_label.text()


def test_rgb_image_gets_2d_annotations(viewer, open_widget):
    viewer.add_image(np.zeros((24, 30, 3), dtype=np.uint8), name="rgb", rgb=True)
    widget = open_widget("Annotate")
    labels = widget.create_annotation_layer()
    assert labels.data.shape == (24, 30)
