"""The annotate -> train -> predict loop in a real napari viewer, against the headless engine.

For each image (the quality suite's, or a selection, plus the shipped touching-cells sample) and
each painting seed, in one napari window (Xvfb without a display):

1. paint the simulator's strokes (``quality_suite.paint``, style a: 10 whole cells + 8
   background strokes) stroke by stroke into the layer the Annotate widget creates;
2. **widget**: press Start in the Train widget with its defaults and the time limit typed in
   (``--seconds``); record its iterations/s (iterations / training seconds, from the model's
   metadata), the seconds from Start to the first preview layer, and the pauses of the event
   loop (a 20 ms Qt timer: the gaps between its ticks; the timer itself wakes the main thread 50
   times a second, which a user's napari does not, so it costs the widget a little speed);
3. **headless**: the same configuration (the widget's ``TrainConfig`` without checkpoints or
   previews) with ``Trainer.run()`` in the main thread of the same process, no event loop;
4. press Predict (and Batch predict) in the widgets with each model and score the labels layer
   against the complete reference: object F1 at IoU 0.5 (``bench_quality._scores``).

Widget and headless runs alternate on the same machine, so load affects both alike: the headless
run comes after the widget's on the first, third, ... run and before it on the others, and each
record holds both sides' median step (``widget_step_s``, ``headless_step_s``: slower steps, or
the same steps and fewer of them) and what the thread tuner measured (``widget_threads``). It prints a
line per run and a summary: widget it/s as a share of the headless it/s (mean and worst), time to
the first preview, the F1 of both (suite mean; worst image), and the event loop's longest pause
and 99th percentile gap during training, Predict and Batch.

Run (it starts Xvfb itself when there is no display)::

    python benchmarks/bench_gui_loop.py                                    # 60 s, seeds 0-2, default images
    python benchmarks/bench_gui_loop.py --images "low SNR,touching cells sample" --seeds 0 --seconds 30
    python benchmarks/bench_gui_loop.py --list                             # the images it knows
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SAMPLE = "touching cells sample"
DEFAULT_IMAGES = ("nuclei 3D plane 24", "BBBC007 A9 p7d", "dense clumps", "low SNR", SAMPLE)
PLUGIN = "napari-scribble-unet"


def images(names):
    """``{name: (image, instances)}`` of the chosen images (the suite's and the shipped sample)."""
    import quality_suite

    out = {}
    if SAMPLE in names:
        from napari_unet.samples import make_touching_cells

        image, instances, _ = make_touching_cells((512, 512), seed=0)
        out[SAMPLE] = (image, instances)
    for name, _kind, image, instances in quality_suite.suite():
        if name in names:
            out[name] = (image, instances)
    missing = [n for n in names if n not in out]
    if missing:
        raise SystemExit(f"unknown image(s) {missing}; --list shows the names")
    return out


class PauseMeter:
    """The gaps between the ticks of a ``PERIOD_MS`` Qt timer: how long the event loop was busy."""

    PERIOD_MS = 20

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.gaps: list[float] = []
        self._last = None
        self.timer = QTimer()
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def __enter__(self):
        self.gaps, self._last = [], None
        self.timer.start(self.PERIOD_MS)
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    def figures(self) -> dict:
        gaps = np.asarray(self.gaps or [0.0])
        return {"longest_s": round(float(gaps.max()), 3), "p99_s": round(float(np.percentile(gaps, 99)), 3)}


def pump_until(app, done, timeout_s: float, on_step=None) -> None:
    """Run Qt's event loop (as napari's own: it sleeps until an event comes) until ``done()``,
    checked with ``on_step()`` every 20 ms."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    end = time.perf_counter() + timeout_s
    timed_out = []

    def check():
        if on_step is not None:
            on_step()
        if done():
            loop.quit()
        elif time.perf_counter() > end:
            timed_out.append(True)
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(20)
    if not done():
        loop.exec()
    timer.stop()
    if timed_out:
        raise TimeoutError("the widget did not finish in time")


def paint_through_widget(viewer, annotate, name, annotations):
    """The Annotate widget's layer for ``name``, painted stroke by stroke (paint events fire)."""
    annotate.image_combo.setCurrentIndex(annotate.image_combo.findData(name))
    labels = annotate.create_annotation_layer()
    for value in np.unique(annotations[annotations > 0]):
        ys, xs = np.nonzero(annotations == value)
        labels.data_setitem((ys, xs), int(value))
        labels._commit_staged_history()
    labels.events.paint(value=[])
    return labels


def predict_f1(app, widgets, viewer, name, instances, meter: PauseMeter) -> tuple[float, float, dict]:
    """Press Predict on ``name``; ``(F1 of the labels layer, seconds, pauses)``."""
    import bench_quality

    predict = widgets["Predict"]
    predict.image_combo.setCurrentIndex(predict.image_combo.findData(name))
    t0 = time.perf_counter()
    with meter:
        predict.predict_button.click()
        pump_until(app, lambda: predict.worker is None, 600)
    seconds = time.perf_counter() - t0
    labels = np.asarray(viewer.layers[name + " prediction"].data)
    return bench_quality._scores(instances, labels)["f1"], seconds, meter.figures()


def batch_once(app, widgets, name, meter: PauseMeter) -> tuple[float, dict]:
    batch = widgets["Batch predict"]
    batch.set_checked([name])
    t0 = time.perf_counter()
    with meter:
        batch.run_button.click()
        pump_until(app, lambda: batch.worker is None, 600)
    return time.perf_counter() - t0, meter.figures()


def thread_cpu() -> dict:
    """CPU seconds of this process's threads so far, by thread name (Linux; {} elsewhere)."""
    out: dict = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for task in Path("/proc/self/task").glob("*") if Path("/proc/self/task").exists() else []:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_by_thread(before: dict, after: dict) -> dict:
    """CPU seconds each thread name used between two :func:`thread_cpu` snapshots (>= 0.1 s)."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    return {name: round(v, 1) for name, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.1}


def median_step_s(history) -> float:
    """The median seconds between two iterations of a trainer's history."""
    elapsed = np.array([h["elapsed_s"] for h in history], dtype=float)
    return float(np.median(np.diff(elapsed))) if elapsed.size > 1 else float("nan")


def run_one(app, viewer, widgets, name, image, instances, seed, seconds, meter, headless_first=False) -> dict:
    import dataclasses

    import quality_suite
    from napari_unet.training.trainer import Trainer

    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.add_image(image, name=name)
    annotations = quality_suite.paint(instances, "a", seed=seed)
    labels = paint_through_widget(viewer, widgets["Annotate"], name, annotations)
    train = widgets["Train"]
    train.pair_table.set_checked([name])
    train.iterations_spin.setValue(0)  # no iteration limit: the time limit ends the run
    line = train.time_spin.lineEdit()
    line.setText(f"{seconds:g} s")
    train.time_spin.interpretText()
    assert train.time_spin.value() == int(seconds), train.time_spin.text()
    config = train.settings.train_config(train.pair_table.pairs())
    record = {"image": name, "seed": seed, "seconds": seconds, "cells_painted": int(len(np.unique(annotations[annotations >= 2])))}

    # the engine, same configuration, main thread, no event loop; before the widget on every other
    # run (headless_first), after it on the others, so that a machine slowing down or speeding up
    # during a run does not favour one side
    headless_config = dataclasses.replace(config, checkpoint_dir=None, preview_every=0, preview_every_s=None)

    def headless():
        before = thread_cpu()
        trainer = Trainer([image], [np.asarray(labels.data)], config=headless_config, axes="YX")
        for _ in trainer.run():
            pass
        summary = trainer.model.metadata["training"]
        record.update(headless_iterations=summary["iterations"], headless_it_s=summary["iterations"] / summary["elapsed_s"],
                      headless_kept=summary["kept_iteration"], headless_step_s=median_step_s(trainer.history),
                      headless_cpu_s=cpu_by_thread(before, thread_cpu()))
        return trainer.model

    record["headless_first"] = bool(headless_first)
    headless_model = headless() if headless_first else None

    # the widget
    first_preview, running = [], {}
    t0 = time.perf_counter()

    def watch():
        if train.job is not None and train.job.trainer is not None:  # the widget lets go of both at the end
            running.update(job=train.job, trainer=train.job.trainer)
        if not first_preview and (name + " preview") in viewer.layers:
            first_preview.append(time.perf_counter() - t0)

    cpu_before = thread_cpu()
    with meter:
        train.start_button.click()
        pump_until(app, lambda: train.worker is None, seconds + 300, watch)
    # who used the cores while the widget trained: torch's threads, the main thread (Qt, napari),
    # llvmpipe (the window composed in software OpenGL)
    record["widget_cpu_s"] = cpu_by_thread(cpu_before, thread_cpu())
    training = train.holder.model.metadata["training"]
    record.update(widget_iterations=training["iterations"], widget_it_s=training["iterations"] / training["elapsed_s"],
                  widget_kept=training["kept_iteration"], first_preview_s=first_preview[0] if first_preview else None,
                  train_pauses=meter.figures())
    # where the widget's time went: its median step against the headless one (the steps
    # themselves slower) or the same step and fewer of them (previews, probes: fixed costs)
    record["widget_step_s"] = median_step_s(running["trainer"].history)
    record["widget_threads"] = [[seen, {str(k): round(v, 4) for k, v in medians.items()}]
                                for seen, medians in running["job"].thread_choices]
    record["widget_f1"], record["predict_s"], record["predict_pauses"] = predict_f1(
        app, widgets, viewer, name, instances, meter)
    record["batch_s"], record["batch_pauses"] = batch_once(app, widgets, name, meter)

    if headless_model is None:
        headless_model = headless()
    from napari_unet._widgets.shared.model_box import model_holder

    model_holder(viewer).set_model(headless_model, "headless")
    record["headless_f1"] = predict_f1(app, widgets, viewer, name, instances, meter)[0]
    record["ratio"] = record["widget_it_s"] / record["headless_it_s"]
    return record


def report(records) -> None:
    by_image: dict = {}
    for r in records:
        by_image.setdefault(r["image"], []).append(r)
    print("\n| image | widget it/s | headless it/s | ratio | first preview s | F1 widget | F1 headless |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rs in by_image.items():
        mean = lambda key: float(np.mean([r[key] for r in rs]))  # noqa: E731
        previews = [r["first_preview_s"] for r in rs if r["first_preview_s"] is not None]
        print(f"| {name} | {mean('widget_it_s'):.2f} | {mean('headless_it_s'):.2f} | {mean('ratio'):.2f} | "
              f"{max(previews) if previews else float('nan'):.1f} | {mean('widget_f1'):.3f} | {mean('headless_f1'):.3f} |")
    ratios = [r["ratio"] for r in records]
    suite = [n for n in by_image if n != SAMPLE]
    f1 = {k: [float(np.mean([r[k] for r in by_image[n]])) for n in suite] for k in ("widget_f1", "headless_f1")}
    previews = [r["first_preview_s"] for r in records if r["first_preview_s"] is not None]
    print(f"\nwidget it/s / headless it/s: mean {np.mean(ratios):.3f}, worst {min(ratios):.3f} ({len(records)} runs)")
    steps = [r["headless_step_s"] / r["widget_step_s"] for r in records if "widget_step_s" in r]
    if steps:  # the speed of the steps alone, previews, validations and probes left out
        print(f"median step, headless / widget: mean {np.mean(steps):.3f}, worst {min(steps):.3f}")
    print(f"first preview after Start: mean {np.mean(previews):.1f} s, worst {max(previews):.1f} s"
          f" ({len(records) - len(previews)} runs without one)")
    if suite:
        print(f"suite F1 (mean of {len(suite)} images): widget {np.mean(f1['widget_f1']):.3f} (worst "
              f"{min(f1['widget_f1']):.3f}), headless {np.mean(f1['headless_f1']):.3f} (worst {min(f1['headless_f1']):.3f}),"
              f" difference {np.mean(f1['widget_f1']) - np.mean(f1['headless_f1']):+.3f}")
    if SAMPLE in by_image:
        print(f"{SAMPLE}: widget F1 {[round(r['widget_f1'], 3) for r in by_image[SAMPLE]]}, "
              f"headless {[round(r['headless_f1'], 3) for r in by_image[SAMPLE]]}")
    for phase in ("train", "predict", "batch"):
        longest = max(r[f"{phase}_pauses"]["longest_s"] for r in records)
        p99 = max(r[f"{phase}_pauses"]["p99_s"] for r in records)
        print(f"event loop during {phase}: longest pause {longest:.3f} s, worst p99 gap {1000 * p99:.0f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=",".join(DEFAULT_IMAGES), help="comma-separated image names")
    parser.add_argument("--seeds", default="0,1,2", help="painting seeds")
    parser.add_argument("--seconds", type=float, default=60.0, help="the time limit typed into the Train widget")
    parser.add_argument("--out", default=None, help="append each run's record to this JSON-lines file")
    parser.add_argument("--report", action="store_true", help="print the summary of --out alone")
    parser.add_argument("--list", action="store_true", help="list the image names")
    args = parser.parse_args(argv)
    if args.report:
        report([json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()])
        return 0
    if args.list:
        import quality_suite

        print("\n".join([SAMPLE] + [name for name, *_ in quality_suite.suite()]))
        return 0
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux") and shutil.which("xvfb-run"):
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__,
                                *(argv if argv is not None else sys.argv[1:])])
    import tempfile

    os.environ.setdefault("NAPARI_UNET_CHECKPOINT_DIR", tempfile.mkdtemp(prefix="bench_gui_checkpoints_"))
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    names = [n.strip() for n in args.images.split(",") if n.strip()]
    data = images(names)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    widgets = {}
    for name in ("Annotate", "Train", "Predict", "Batch predict"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    app = QApplication.instance()
    from napari_unet._widgets.shared.workers import wait_for_preloading

    wait_for_preloading()  # a user paints for a minute meanwhile; the painting here takes a second
    meter = PauseMeter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"{args.seconds:g} s per run", flush=True)
    records = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in names:
            image, instances = data[name]
            record = run_one(app, viewer, widgets, name, image, instances, seed, args.seconds, meter,
                             headless_first=len(records) % 2 == 1)
            records.append(record)
            print(json.dumps(record), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")
    report(records)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
