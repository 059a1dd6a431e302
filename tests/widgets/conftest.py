"""Fixtures of the widget tests: a viewer with the synthetic sample, the widgets opened
through the manifest (as a user would from the Plugins menu), and collected notifications."""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-scribble-unet"


class Notes(list):
    """``(severity, message)`` pairs of the notifications shown during a test."""

    def of(self, severity: str) -> list[str]:
        return [m for s, m in self if s == severity]

    @property
    def errors(self) -> list[str]:
        return self.of("error")

    @property
    def warnings(self) -> list[str]:
        return self.of("warning")


@pytest.fixture
def notifications():
    """Notifications shown during the test (a :class:`Notes` list)."""
    from napari.utils.notifications import notification_manager

    seen = Notes()

    def collect(event):
        seen.append((str(event.severity), str(event.message)))

    notification_manager.notification_ready.connect(collect)
    yield seen
    notification_manager.notification_ready.disconnect(collect)


@pytest.fixture(autouse=True)
def checkpoint_root(tmp_path, monkeypatch):
    """Training checkpoints of the widgets go to a temporary folder, not the user's cache."""
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("NAPARI_UNET_CHECKPOINT_DIR", str(root))
    return root


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def open_widget(viewer, qtbot):
    """Open a plugin dock widget by its display name; stops its work at teardown."""
    opened = []

    def _open(name: str):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        opened.append(widget)
        return widget

    yield _open
    for widget in opened:
        job = getattr(widget, "job", None)
        if job is not None:
            job.stop()
        worker = getattr(widget, "worker", None)
        if worker is not None and hasattr(worker, "quit") and job is None:
            worker.quit()
        qtbot.waitUntil(lambda w=widget: getattr(w, "worker", None) is None, timeout=30_000)


@pytest.fixture(scope="session")
def cells():
    """A small synthetic touching-cells sample: image, instances, and annotations of its top half
    (background + one id per cell; the bottom half not annotated)."""
    from napari_unet.annotations.targets import instances_to_annotations
    from napari_unet.samples import make_touching_cells

    image, instances, _ = make_touching_cells((192, 192), seed=0)
    annotations = instances_to_annotations(instances).astype(np.uint16)
    annotations[96:] = 0
    return image, instances, annotations


@pytest.fixture(scope="session")
def trained_model(cells):
    """A tiny model trained on the small sample with the core API (shared by the tests)."""
    from napari_unet import TrainConfig, train

    image, _, annotations = cells
    config = TrainConfig(preset="tiny", iterations=TRAIN_ITERATIONS, batch_size=4, seed=0,
                         validation_fraction=0.0, device="cpu", preview_every=0)
    return train([image], [annotations], config=config).model


# enough for the tiny network to find several cells in the small sample
TRAIN_ITERATIONS = 150


@pytest.fixture
def with_model(viewer, trained_model):
    """Give ``viewer``'s widgets the trained model (as the Train widget would)."""
    from napari_unet._widgets.shared.model_box import model_holder

    model_holder(viewer).set_model(trained_model, "test model")
    return trained_model
