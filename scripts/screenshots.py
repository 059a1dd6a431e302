"""Regenerate the screenshots of docs/quickstart.md from a real napari window.

Opens napari with the synthetic sample, drives the annotate -> train -> predict -> batch loop
through the plugin's widgets (as a user would, but programmatically) and saves PNGs into
docs/images/. On a machine without a display run it under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Options: ``--out`` (folder, default docs/images), ``--iterations`` (training iterations,
default 300), ``--preset`` (default "fast").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-scribble-unet"


def wait_until(app, condition, timeout: float, what: str) -> None:
    """Process Qt events until ``condition()`` holds (the viewer stays live meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def settle(app, seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-unet", show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    app = QApplication.instance()

    def save_window(name: str) -> None:
        settle(app, 0.8)
        path = args.out / name
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        print("wrote", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)

    def save_widget(dock, name: str) -> None:
        """The dock widget, cropped below its content."""
        from qtpy.QtCore import QPoint, QRect

        dock.raise_()
        settle(app, 0.5)
        inner = dock.widget()
        top = inner.mapTo(dock, QPoint(0, 0)).y()
        height = min(dock.height(), top + inner.sizeHint().height() + 6)
        path = args.out / name
        dock.grab(QRect(0, 0, dock.width(), height)).save(str(path))
        print("wrote", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)

    # the sample: image, hidden ground truth, sparse annotations
    viewer.open_sample(PLUGIN, "touching_cells")
    image = viewer.layers["touching cells"]
    sample_annotations = np.asarray(viewer.layers["touching cells annotations"].data).copy()
    viewer.layers.remove("touching cells annotations")
    viewer.layers.remove("touching cells ground truth")

    docks = {}
    widgets = {}
    for name in ("Annotate", "Train", "Predict", "Batch predict"):
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=name != "Annotate")
        docks[name], widgets[name] = dock, widget
    settle(app, 1.0)

    # 1. Annotate: create the layer, "paint" the sample's strokes into it
    docks["Annotate"].raise_()
    viewer.layers.selection.active = image
    annotate = widgets["Annotate"]
    labels = annotate.create_annotation_layer()
    labels.data = sample_annotations.astype(labels.data.dtype)
    annotate.new_cell()
    annotate.update_stats()
    viewer.reset_view()
    save_window("annotate.png")
    save_widget(docks["Annotate"], "annotate_widget.png")

    # 2. Train: live preview, uncertainty, loss plot
    train = widgets["Train"]
    docks["Train"].raise_()
    train.preset_combo.setCurrentIndex(train.preset_combo.findData(args.preset))
    train.iterations_spin.setValue(args.iterations)
    train.preview_spin.setValue(5)  # seconds
    train.uncertainty_check.setChecked(True)
    train.start_button.click()
    started = time.monotonic()
    wait_until(app, lambda: "touching cells preview" in viewer.layers, 600, "the first preview")
    viewer.layers["touching cells uncertainty"].visible = False
    viewer.layers.selection.active = labels
    # a mid-training picture for the README
    wait_until(app, lambda: train.progress.value() >= train.progress.maximum() * 0.5 or not train.is_running,
               900, "half the training")
    save_window("main_window.png")
    wait_until(app, lambda: not train.is_running, 1800, "the end of training")
    print(f"trained {args.iterations} iterations in {time.monotonic() - started:.0f} s")
    viewer.layers["touching cells uncertainty"].visible = True
    viewer.layers["touching cells preview"].visible = False
    save_window("uncertainty.png")
    viewer.layers["touching cells uncertainty"].visible = False
    save_widget(docks["Train"], "train_widget.png")

    # 3. Predict the whole image, with the probability layer
    predict = widgets["Predict"]
    docks["Predict"].raise_()
    predict.image_combo.set_layer(image)
    predict.probability_check.setChecked(True)
    predict.predict_button.click()
    wait_until(app, lambda: not predict.is_running, 600, "the prediction")
    viewer.layers["touching cells probability"].visible = False
    viewer.layers["touching cells preview"].visible = False
    labels.visible = False
    result = viewer.layers["touching cells prediction"]
    result.contour = 0
    result.opacity = 0.6
    viewer.layers.selection.active = result
    save_window("result.png")
    save_widget(docks["Predict"], "predict_widget.png")

    # 4. Batch predict over two open images
    viewer.add_image(np.ascontiguousarray(image.data[:, ::-1]), name="mirrored cells", visible=False)
    batch = widgets["Batch predict"]
    docks["Batch predict"].raise_()
    results = Path(tempfile.mkdtemp(prefix="napari-unet-")) / "results"
    batch.save_check.setChecked(True)
    batch.folder_edit.setText(str(results))
    batch.run_button.click()
    wait_until(app, lambda: not batch.is_running, 600, "the batch prediction")
    save_widget(docks["Batch predict"], "batch_widget.png")

    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
