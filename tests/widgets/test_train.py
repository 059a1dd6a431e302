"""The Train widget, and the whole loop a user goes through:
annotate -> train (live preview, painting meanwhile) -> stop -> predict -> batch -> save / load."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from napari_unet.training.job import TrainJob


def select(combo, value):
    index = combo.findData(value)
    assert index >= 0, value
    combo.setCurrentIndex(index)


def paint_sample(labels, annotations):
    """Paint like a user would, stroke by stroke (each stroke emits a paint event)."""
    for value in np.unique(annotations[annotations > 0]):
        ys, xs = np.nonzero(annotations == value)
        labels.data_setitem((ys, xs), int(value))
        labels._commit_staged_history()
    labels.events.paint(value=[])


def test_full_loop(viewer, open_widget, qtbot, cells, tmp_path, monkeypatch, notifications, checkpoint_root):
    image, _, annotations = cells
    image_layer = viewer.add_image(image, name="cells")

    # annotate
    annotate = open_widget("Annotate")
    labels = annotate.create_annotation_layer()
    assert labels.name == "cells annotations"
    labels.data = annotations.astype(labels.data.dtype)
    qtbot.waitUntil(lambda: "cell(s)" in annotate.stats_label.text(), timeout=3000)

    # train with a live preview, while the event loop keeps running
    train = open_widget("Train")
    assert train.pair_table.pairs() == [(image_layer, labels)]
    select(train.preset_combo, "tiny")
    train.iterations_spin.setValue(0)  # no limit: we press Stop
    train.time_spin.setValue(300)  # seconds
    train.preview_spin.setValue(1)  # a preview about every second
    train.weight_check.setChecked(True)
    train.uncertainty_check.setChecked(True)
    synced = []
    original = TrainJob.set_annotations
    monkeypatch.setattr(TrainJob, "set_annotations",
                        lambda self, i, a: (synced.append(int(a.max())), original(self, i, a)))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)

    train.start_button.click()
    assert train.is_running and not train.start_button.isEnabled() and train.stop_button.isEnabled()
    assert "tiny" in train.preset_combo.currentText()
    qtbot.waitUntil(lambda: "cells preview" in viewer.layers, timeout=60_000)
    preview = viewer.layers["cells preview"]
    assert preview.data.shape == image.shape
    first = preview.data.copy()
    qtbot.waitUntil(lambda: not np.array_equal(preview.data, first), timeout=60_000)
    assert "cells uncertainty" in viewer.layers and "cells weight map" in viewer.layers
    ticks_during = len(ticks)

    # paint a new cell while training: the trainer gets the new annotations
    new_id = int(labels.data.max()) + 1
    labels.paint((5, 5), new_id)
    qtbot.waitUntil(lambda: new_id in synced, timeout=30_000)

    train.stop_button.click()
    qtbot.waitUntil(lambda: train.worker is None, timeout=30_000)
    timer.stop()
    assert ticks_during > 10, "the event loop must keep running during training"
    assert train.holder.model is not None
    assert train.loss_plot.train
    assert "ETA" in train.progress.format() or "done" in train.progress.format()
    assert train.start_button.isEnabled() and train.continue_button.isEnabled()
    # a crash of napari would have cost nothing: the run left a checkpoint, itself a model file
    from napari_unet.model.files import load_model

    runs = sorted(checkpoint_root.glob("run-*/checkpoint.unet"))
    assert len(runs) == 1 and str(runs[0].parent) in train.progress.toolTip()
    assert load_model(runs[0]).config == train.holder.model.config
    # the GUI trains as the API does: the ring a whole painted cell implies is learnt as background,
    # and the weight map shown is the one the loss used
    from napari_unet.config import TrainConfig
    from napari_unet.annotations.targets import cell_ring, insert_gaps

    assert train.holder.model.metadata["training"]["config"]["ring"] == TrainConfig().ring == 1
    ring = cell_ring(insert_gaps(np.asarray(labels.data)), 1)
    assert np.all(np.asarray(viewer.layers["cells weight map"].data)[ring] > 0)

    # continue training from the current weights, a few iterations
    train.iterations_spin.setValue(150)
    train.time_spin.setValue(0)
    before = train.holder.model
    train.continue_button.click()
    qtbot.waitUntil(lambda: train.worker is None, timeout=60_000)
    assert train.holder.model is not before
    assert train.holder.model.metadata["training"]["total_iterations"] > 150

    # predict into a Labels layer with more than one object
    predict = open_widget("Predict")
    predict.predict_button.click()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60_000)
    result = viewer.layers["cells prediction"].data
    assert len(np.unique(result[result > 0])) > 1
    # the preview would show the same cells a second time under the prediction: it became the
    # prediction (filled in place: napari adds no layer while the user waits)
    assert "cells preview" not in viewer.layers

    # batch-predict two layers
    viewer.add_image(image[::-1].copy(), name="flipped")
    batch = open_widget("Batch predict")
    batch.set_checked(["cells", "flipped"])
    batch.run_button.click()
    qtbot.waitUntil(lambda: batch.worker is None, timeout=60_000)
    for name in ("cells", "flipped"):
        assert viewer.layers[f"{name} prediction"].data.max() > 1

    # save and load the model through the (patched) file dialogs
    path = tmp_path / "cells.unet"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    train.save_button.click()
    assert path.exists()
    trained = train.holder.model
    train.load_button.click()
    loaded = train.holder.model
    assert loaded is not trained and "cells.unet" in train.model_label.text()
    for key, value in trained.state_dict().items():
        np.testing.assert_array_equal(value.cpu().numpy(), loaded.state_dict()[key].cpu().numpy())
    assert "cells.unet" in predict.model_label.text()
    assert not notifications.errors


@pytest.mark.parametrize("case", ["no image", "no annotation layer", "empty", "background only", "mismatch"])
def test_bad_input_notifies_and_starts_nothing(viewer, open_widget, notifications, case):
    if case != "no image":
        viewer.add_image(np.zeros((64, 64), dtype=np.float32), name="img")
    if case == "empty":
        viewer.add_labels(np.zeros((64, 64), dtype=np.uint16), name="img annotations")
    elif case == "background only":
        viewer.add_labels(np.ones((64, 64), dtype=np.uint16), name="img annotations")
    elif case == "mismatch":
        ann = np.ones((32, 32), dtype=np.uint16)
        ann[:5, :5] = 2
        viewer.add_labels(ann, name="img annotations")
    train = open_widget("Train")
    train.pair_table.set_checked(["img"])
    train.start_button.click()
    assert train.worker is None and train.start_button.isEnabled()
    assert len(notifications.errors) == 1
    message = notifications.errors[0]
    expected = {"no image": "image", "no annotation layer": "annotation", "empty": "empty",
                "background only": "cell", "mismatch": "(32, 32)"}[case]
    assert expected in message
    assert "img preview" not in viewer.layers


def test_stop_before_first_event_and_device_shown(viewer, open_widget, qtbot, cells):
    image, _, annotations = cells
    viewer.add_image(image, name="cells")
    viewer.add_labels(annotations, name="cells annotations")
    train = open_widget("Train")
    train.device_combo.fill()
    labels = [train.device_combo.itemText(i) for i in range(train.device_combo.count())]
    assert labels[0].startswith("auto") and any(t.startswith("CPU") for t in labels)
    select(train.preset_combo, "tiny")
    train.iterations_spin.setValue(100_000)
    train.start_button.click()
    train.stop_button.click()
    qtbot.waitUntil(lambda: train.worker is None, timeout=30_000)
    assert train.start_button.isEnabled()


def test_pairs_follow_new_annotation_layers(viewer, open_widget):
    image = viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="img")
    train = open_widget("Train")
    assert train.pair_table.pairs() == []
    labels = viewer.add_labels(np.zeros((32, 32), dtype=np.uint16), name="img annotations")
    assert train.pair_table.pairs() == [(image, labels)]
    train.pair_table.set_checked([])
    viewer.add_image(np.zeros((8, 8), dtype=np.float32), name="other")
    assert train.pair_table.pairs() == []  # the user's choice survives a refresh


def test_export_bioimageio_from_the_widget(viewer, open_widget, cells, with_model, tmp_path, monkeypatch,
                                          notifications):
    import zipfile

    image, _, annotations = cells
    viewer.add_image(image, name="cells")
    viewer.add_labels(annotations, name="cells annotations")
    train = open_widget("Train")
    assert train.export_button.isEnabled()
    path = tmp_path / "cells"  # no suffix: the widget adds .zip
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))
    written = train.export_bioimageio()
    assert written == tmp_path / "cells.zip" and written.exists()
    assert any("bioimage.io package written" in m for m in notifications.of("info"))
    with zipfile.ZipFile(written) as zf:
        test_input = np.load(zf.open("test_input.npy"))
    # the test tensor comes from the training image, not from a synthetic one
    assert np.isin(test_input.ravel()[:100], image).all()
    # a given path is never overwritten
    before = written.read_bytes()
    assert train.export_bioimageio(str(written)) is None
    assert written.read_bytes() == before
    assert any("nothing was overwritten" in m for m in notifications.errors)


def test_the_layers_scale_gives_the_models_pixel_size(viewer, open_widget, cells):
    import pytest

    image, _, annotations = cells
    a = viewer.add_image(image, name="a", scale=(0.3, 0.3))
    a_labels = viewer.add_labels(annotations, name="a annotations")
    b = viewer.add_image(image, name="b", scale=(0.6, 0.6))
    b_labels = viewer.add_labels(annotations, name="b annotations")
    widget = open_widget("Train")
    assert widget.settings.train_config([(a, a_labels)]).pixel_size == (0.3, 0.3)
    with pytest.raises(ValueError, match="different pixel sizes"):
        widget.settings.train_config([(a, a_labels), (b, b_labels)])
    plain = viewer.add_image(image, name="plain")  # napari's default scale: unknown
    assert widget.settings.train_config([(plain, a_labels)]).pixel_size is None


def test_time_limit_typed_in_seconds_or_minutes(viewer, open_widget, qtbot, cells):
    image, _, annotations = cells
    a = viewer.add_image(image, name="a")
    a_labels = viewer.add_labels(annotations, name="a annotations")
    train = open_widget("Train")
    line = train.time_spin.lineEdit()
    for typed, seconds in [("45 s", 45), ("1:30", 90), ("2 min", 120), ("0.5", 30), ("no limit", 0)]:
        line.selectAll()
        qtbot.keyClicks(line, typed)
        train.time_spin.interpretText()
        assert train.time_spin.value() == seconds, typed
    train.time_spin.setValue(45)
    assert train.time_spin.text() == "0:45"
    config = train.settings.train_config([(a, a_labels)])
    assert config.time_limit_s == 45.0 and config.preview_every_s == float(train.preview_spin.value())
    # a word the box cannot read leaves the value as it was
    line.selectAll()
    qtbot.keyClicks(line, "soon")
    train.time_spin.interpretText()
    assert train.time_spin.value() == 45


def test_the_widget_trains_the_scripts_network_and_warns_when_it_trained_too_little(
        viewer, open_widget, qtbot, cells, notifications):
    from napari_unet import TrainConfig, Trainer

    image, _, annotations = cells
    viewer.add_image(image, name="cells")
    viewer.add_labels(annotations, name="cells annotations")
    train = open_widget("Train")
    select(train.preset_combo, "fast")
    pairs = train.pair_table.pairs()
    config = train.settings.train_config(pairs)
    # the widget's network and training tile are those of the same preset in a script
    script = Trainer([image], [annotations], config=TrainConfig(preset="fast", iterations=1, device="cpu"))
    widget = Trainer([image], [annotations], config=config)
    assert widget.model.config == script.model.config and widget.input_shape == script.input_shape == (128, 128)

    select(train.preset_combo, "tiny")
    train.iterations_spin.setValue(12)
    train.time_spin.setValue(0)
    train.start_button.click()
    qtbot.waitUntil(lambda: train.worker is None, timeout=60_000)
    training = train.holder.model.metadata["training"]
    assert training["iterations"] == 12
    kept = training["kept_iteration"]
    said = "trained only 12 iteration" if kept == 12 else f"iteration {kept} of the 12"
    assert any(said in m and "Continue" in m for m in notifications.warnings)
    assert f"{kept} of 12" in train.model_label.text() or (kept == 12 and "12 iterations" in train.model_label.text())
    assert train.progress.format().endswith("done") and train.progress.value() == train.progress.maximum()


def test_the_bar_follows_the_budget_that_ends_the_run(viewer, open_widget):
    from napari_unet import TrainConfig
    from napari_unet.training.events import TrainEvent

    train = open_widget("Train")
    view = train.view
    both = TrainConfig(preset="tiny", iterations=2000, time_limit_s=60.0)
    view.start(both)
    # 110 iterations in 30 s of a 60 s limit: the time limit ends the run, the bar is half full
    view.show_progress(TrainEvent("step", iteration=110, total_iterations=2000, loss=0.5, elapsed_s=30.0, eta_s=30.0),
                       both, None)
    view.flush()
    assert train.progress.value() == train.progress.maximum() // 2
    assert "0:30 of 1:00" in train.progress.format() and "ETA 0:30" in train.progress.format()
    # 1500 of 2000 iterations in 10 s: the iterations end it first
    view.show_progress(TrainEvent("step", iteration=1500, total_iterations=2000, loss=0.5, elapsed_s=10.0, eta_s=3.0),
                       both, None)
    view.flush()
    assert train.progress.value() == 3 * train.progress.maximum() // 4
    assert "1500/2000 it." in train.progress.format()


def test_a_large_images_preview_is_the_part_in_view(viewer, open_widget, qtbot):
    from napari_unet._widgets.shared.layers import PREVIEW_MAX_SIDE, visible_box

    small = viewer.add_image(np.zeros((3, 600, 700), dtype=np.float32), name="small")
    assert visible_box(small) is None  # previewed whole
    big = viewer.add_image(np.zeros((3000, 2500), dtype=np.float32), name="big")
    viewer.reset_view()
    box = visible_box(big)
    assert all(s.stop - s.start <= PREVIEW_MAX_SIDE for s in box)
    assert all(0 <= s.start and s.stop <= n for s, n in zip(box, (3000, 2500)))
    # zoomed in on a corner: the box lies over what is shown
    big.corner_pixels = np.array([[2800, 2300], [2999, 2499]])
    box = visible_box(big)
    assert box == (slice(2744, 3000), slice(2244, 2500))


def test_a_refresh_of_the_training_view_lays_out_nothing_paints_once_and_long_status_lines_still_fit(viewer, open_widget, qtbot):
    # Each layout pass repaints much of the napari window: the once-a-second refresh of the bar,
    # the status line and the loss plot must not ask for one while the status keeps its lines.
    from qtpy.QtCore import QEvent, QObject
    from qtpy.QtWidgets import QApplication

    from napari_unet import TrainConfig, TrainEvent

    train = open_widget("Train")
    view, config = train.view, TrainConfig(preset="tiny", iterations=None, time_limit_s=60.0)
    viewer.window._qt_window.show()
    view.start(config)

    class Layouts(QObject):
        count = 0
        paints = []

        def eventFilter(self, obj, event):  # noqa: N802 - Qt API
            if event.type() == QEvent.Type.LayoutRequest:
                self.count += 1
            elif event.type() == QEvent.Type.Paint:
                self.paints.append(obj)
            return False

    ours = {train.progress, train.status_label, train.loss_plot}

    def refresh(iteration, loss):
        layouts.paints.clear()
        view.show_progress(TrainEvent("step", iteration=iteration, total_iterations=None, loss=loss, elapsed_s=iteration / 5,
                                      eta_s=60 - iteration / 5, it_per_s=5.0), config, None)
        view.flush()
        # nothing is painted at once (a repaint there composes the window once more), and the
        # bar, the status line and the plot are painted together at the next turn of the loop
        assert not ours & set(layouts.paints)
        QApplication.processEvents()
        assert ours <= set(layouts.paints)

    qtbot.wait(100)  # the window shown and painted
    layouts = Layouts()
    QApplication.instance().installEventFilter(layouts)
    refresh(10, 0.5)
    qtbot.wait(50)
    layouts.count = 0
    try:
        for i in range(2, 6):
            refresh(10 * i, 0.5 / i)
        assert layouts.count == 0
        assert "loss 0.1000" in train.status_label.text()
        # a message longer than the dock is wide gets the lines it needs
        short = train.status_label.height()
        train.status_label.setText("Training stopped: " + "a long explanation " * 30)
        qtbot.waitUntil(lambda: train.status_label.height() > short, timeout=3000)
        assert train.status_label.height() >= train.status_label.heightForWidth(train.status_label.width())
    finally:
        QApplication.instance().removeEventFilter(layouts)
