"""The Qt-free job behind the Train widget: progress, previews of the slice in view, stop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_unet import TrainConfig
from napari_unet.samples import make_touching_cells
from napari_unet.training.job import TrainJob, entropy_map


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


def test_training_waits_for_the_main_thread_to_show_its_first_preview_only():
    # napari adding the first preview layer while training holds Python's lock paused its window
    # for half a second: the worker waits (at most FIRST_PREVIEW_WAIT_S) until the widget says
    # the first preview is shown, and never again
    from napari_unet.training.job import FIRST_PREVIEW_WAIT_S

    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    config = TrainConfig(preset="tiny", iterations=6, batch_size=2, device="cpu", preview_every=2)
    job = TrainJob([image], [annotations], ["YX"], config, None, preview_target=(0, ()), weight_map=False,
                   uncertainty=False)
    order = []

    class Shown:
        def wait(self, timeout):
            order.append(("wait", timeout))
            return True

    job.first_preview_shown = Shown()
    for kind, _ in job.run():
        order.append(kind)
    previews = [i for i, k in enumerate(order) if k == "preview"]
    assert len(previews) >= 2 and order[previews[0] + 1] == ("wait", FIRST_PREVIEW_WAIT_S)
    assert order.count(("wait", FIRST_PREVIEW_WAIT_S)) == 1
    # stopping releases a worker that waits
    stopping = threading.Event()
    job = TrainJob([image], [annotations], ["YX"], config, None, preview_target=(0, ()), weight_map=False,
                   uncertainty=False)
    job.first_preview_shown = stopping
    job.stop()
    assert stopping.is_set()


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


def _run(job):
    events, gen = [], job.run()
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        return events, stop.value


def test_a_preview_of_a_box_predicts_and_labels_only_that_part():
    image, _, annotations = make_touching_cells((96, 128), seed=2, annotated_fraction=0.1)
    box = (slice(16, 80), slice(40, 104))
    config = TrainConfig(preset="tiny", iterations=3, batch_size=2, device="cpu", preview_every=1)
    job = TrainJob([image], [annotations], ["YX"], config, None, preview_target=(0, (), box), weight_map=True,
                   uncertainty=False)
    events, trainer = _run(job)
    previews = [v for k, v in events if k == "preview"]
    assert previews and all(p["box"] == box and p["labels"].shape == (64, 64) for p in previews)
    np.testing.assert_array_equal(previews[-1]["weight_map"], trainer.targets_for(annotations[box]).weights)


class _Clock:
    """A training clock that advances ``step`` seconds at each reading (``now`` can be moved on)."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_previews_by_time_come_early_then_every_few_seconds_and_cost_at_most_a_twentieth():
    from napari_unet import Trainer
    from napari_unet.training.schedule import PreviewClock

    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    config = TrainConfig(preset="tiny", iterations=200, batch_size=1, device="cpu", preview_every_s=3.0,
                         validation_fraction=0.0)
    trainer = Trainer([image], [annotations], config=config, preview=image[:48, :48])
    trainer.clock = _Clock(0.05)
    seen = [event.elapsed_s for event in trainer.run() if event.kind == "preview"]
    # the first about 2 s into training, then about every 3 s (none forced at the end)
    # (an event's elapsed time is read a clock tick or two before the preview is found due)
    assert PreviewClock.FIRST_S - 0.3 <= seen[0] < PreviewClock.FIRST_S + 1
    gaps = np.diff(seen)
    assert len(gaps) >= 3 and np.all((gaps >= 3.0 - 0.3) & (gaps < 4.0))

    # a preview that costs 1 s spaces them out to 20 s (5 %) apart
    slow = Trainer([image], [annotations], config=config, preview=image[:48, :48])
    slow.clock = _Clock(0.05)
    predict = slow._predict_preview

    def costly():
        slow.clock.now += 1.0
        return predict()

    slow._predict_preview = costly
    seen = [event.elapsed_s for event in slow.run() if event.kind == "preview"]
    assert len(seen) >= 2 and np.all(np.diff(seen) >= 1.0 / PreviewClock.SHARE - 0.3)


def _tune(step_seconds, threads=2, steps=40, every_s=30.0):
    """Feed a ThreadTuner steps whose seconds ``step_seconds(threads now)`` gives; returns it and
    the thread counts set."""
    from napari_unet.common.devices import ThreadTuner

    now = [0.0]
    calls = []
    tuner = ThreadTuner(threads, clock=lambda: now[0], set_threads=calls.append)
    tuner.EVERY_S = every_s
    for _ in range(steps):
        seconds = step_seconds(tuner.threads)
        now[0] += seconds
        tuner.observe(seconds)
    return tuner, calls


def test_the_thread_tuner_drops_to_half_the_threads_only_when_clearly_faster():
    # a busy machine: all threads wait for each other, half of them run ten times faster
    tuner, calls = _tune(lambda t: 1.0 if t == 2 else 0.1)
    assert tuner.threads == 1 and calls == [1]
    assert tuner.choices and tuner.choices[0][1] == {2: 1.0, 1: 0.1}
    # a quiet machine: all threads are faster; and a tie keeps them all
    for seconds in (lambda t: 0.1 if t == 2 else 0.18, lambda t: 0.1 if t == 2 else 0.095):
        tuner, calls = _tune(seconds)
        assert tuner.threads == 2 and calls == [1, 2]
    # it probes again as the load changes, and restore() puts the count back
    load = {"busy": True}
    tuner, calls = _tune(lambda t: (1.0 if t == 2 else 0.1) if load["busy"] else (0.1 if t == 2 else 0.2),
                         steps=20, every_s=1.0)
    assert tuner.threads == 1
    load["busy"] = False
    for _ in range(30):
        seconds = 0.1 if tuner.threads == 2 else 0.2
        tuner.clock = lambda s=seconds, c=tuner.clock: c() + s
        tuner.observe(seconds)
    assert tuner.threads == 2 and len(tuner.choices) >= 2
    tuner.restore()
    assert tuner.threads == 2
    one, calls = _tune(lambda t: 1.0, threads=1)
    assert one.threads == 1 and calls == []


def test_the_thread_tuner_probes_a_quiet_machine_rarely_and_a_newly_busy_one_at_once():
    from napari_unet.common.devices import ThreadTuner

    # a quiet machine (all threads twice as fast): after the first probe, the next one waits
    # CALM_S, not EVERY_S: each probe costs its half-thread steps
    load = {"busy": False}

    def seconds(threads):
        if load["busy"]:  # other work: all threads wait for each other, half of them do not
            return 1.0 if threads == 2 else 0.3
        return 0.1 if threads == 2 else 0.2

    tuner, _ = _tune(seconds, steps=1000)  # 100+ s of training
    assert tuner.threads == 2
    assert len(tuner.choices) == 1 and ThreadTuner.EVERY_S < 100 < ThreadTuner.CALM_S
    # other work starts: within a few steps the tuner probes again and drops to half the threads
    load["busy"] = True
    steps = 0
    while len(tuner.choices) < 2 and steps < 50:
        s = seconds(tuner.threads)
        tuner.clock = lambda s=s, c=tuner.clock: c() + s
        tuner.observe(s)
        steps += 1
    assert tuner.threads == 1 and len(tuner.choices) == 2
    assert steps <= 3 * ThreadTuner.PROBE + 1  # the slow steps noticed, then the probe


def test_the_job_restores_the_thread_count_after_training():
    import torch

    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    before = torch.get_num_threads()
    job = TrainJob([image], [annotations], ["YX"], TrainConfig(preset="tiny", iterations=30, device="cpu"), None,
                   preview_target=None, weight_map=False, uncertainty=False)
    _, trainer = _run(job)
    assert trainer.iteration == 30 and torch.get_num_threads() == before
    if before > 1:
        assert job.thread_choices  # the tuner probed


def test_preload_imports_what_a_first_training_with_previews_imports():
    # In a fresh interpreter: after preload(), a first job (optimizer steps, previews with their
    # labels) imports nothing more of ours, torch's compiler, scipy or scikit-image; those
    # imports would otherwise run in the widget's worker at Start and stall the window.
    script = (
        "import sys\n"
        "from napari_unet import TrainConfig\n"
        "from napari_unet.samples import make_touching_cells\n"
        "from napari_unet.training.job import TrainJob, preload\n"
        "image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)\n"
        "preload()\n"
        "before = set(sys.modules)\n"
        "config = TrainConfig(preset='tiny', iterations=2, batch_size=2, device='cpu', preview_every=1)\n"
        "job = TrainJob([image], [annotations], ['YX'], config, None, preview_target=(0, ()),\n"
        "               weight_map=True, uncertainty=True)\n"
        "assert any(kind == 'preview' for kind, _ in job.run())\n"
        "roots = ('napari_unet', 'scipy', 'skimage', 'sympy', 'torch._dynamo')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith(roots)))\n"
    )
    assert _last_line_printed(script) == "[]"


def _last_line_printed(script: str) -> str:
    """The last line ``script`` prints in a fresh interpreter (which must succeed)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_predict_widgets_preload_covers_a_first_segmentation():
    # In a fresh interpreter: after the Predict widget's preload, a first segmentation (flipped
    # views, labels, the half-scale pass) imports nothing more of ours, scipy, scikit-image or edt
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from napari_unet import UNet\n"
        "from napari_unet.samples import make_touching_cells\n"
        "from napari_unet.training.job import preload\n"
        "from napari_unet._widgets.shared.workers import PREDICT_MODULES\n"
        "from napari_unet.labels.segment import segment\n"
        "model = UNet(depth=2, base_channels=4).eval()\n"
        "model.metadata = {'mode': 'instances', 'cell_diameter': 8.0}\n"
        "image = make_touching_cells((96, 96), seed=2)[0]\n"
        "preload(PREDICT_MODULES)\n"
        "before = set(sys.modules)\n"
        "segment(model, image, axes='YX', tta='auto')\n"
        "roots = ('napari_unet', 'scipy', 'skimage', 'edt', 'pandas')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith(roots)))\n"
    )
    assert _last_line_printed(script) == "[]"
