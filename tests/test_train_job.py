"""The Qt-free job behind the Train widget: progress, previews of the slice in view, stop."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet import TrainConfig
from napari_unet.samples import make_touching_cells
from napari_unet.train_job import TrainJob, entropy_map


def test_entropy_map_is_zero_when_certain_and_one_when_uniform():
    p = np.zeros((3, 2, 2), np.float32)
    p[0] = 1.0
    p[:, 1, 1] = 1 / 3
    e = entropy_map(p)
    assert e.dtype == np.float32 and e[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert e[1, 1] == pytest.approx(1.0, abs=1e-5)


def test_job_yields_progress_and_previews_of_the_target_plane():
    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    stack = np.stack([image, image])
    anns = np.stack([np.zeros_like(annotations), annotations])  # only plane 1 painted
    config = TrainConfig(preset="tiny", iterations=4, batch_size=2, device="cpu", preview_every=2)
    job = TrainJob([stack], [anns], ["ZYX"], config, None, preview_target=(0, (1,)), weight_map=True,
                   uncertainty=True)
    events = []
    gen = job.run()
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        trainer = stop.value
    kinds = [k for k, _ in events]
    assert kinds[0] == "started" and "progress" in kinds
    previews = [v for k, v in events if k == "preview"]
    assert previews and all(p["pair"] == 0 and p["index"] == (1,) for p in previews)
    last = previews[-1]
    assert last["labels"].shape == (96, 96) and last["uncertainty"].shape == (96, 96)
    np.testing.assert_array_equal(last["weight_map"], trainer.targets_for(annotations).weights)
    assert trainer.iteration == 4


def test_stop_before_the_first_iteration_ends_the_job():
    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    job = TrainJob([image], [annotations], ["YX"], TrainConfig(preset="tiny", iterations=50, device="cpu"), None,
                   preview_target=None, weight_map=False, uncertainty=False)
    job.stop()
    gen = job.run()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        trainer = stop.value
    assert trainer.iteration == 0 and trainer.stopped
