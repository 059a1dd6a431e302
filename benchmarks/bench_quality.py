"""Segmentation quality on images nobody tuned for, painted the way people paint.

For every image of the suite (``quality_suite.py``: real labelled images and synthetic ones made
hard in the ways microscopy is hard), every painting style and every seed: paint a sparse
annotation with the painting simulator, train with the default settings (or those given with
``--set``), predict the whole image with ``predict_tiled`` and make instances with
``to_labels(probabilities, **label_options(model))`` and the half-scale pass for cells larger than
the painted ones (``napari_unet.labels.large_cells``; ``f1_full`` keeps the F1 without it, ``--large-cells
off`` leaves it out), averaging the plugin's flipped views (``--tta``, default
``napari_unet.predict.views.PLUGIN_TTA``; ``f1_one_view`` keeps the F1 of one view, the network's output
once, as every run before the flipped views), then score against the complete ground truth:
object F1 at IoU 0.5 (one-to-one matching), pixel IoU of the foreground, touching ground-truth
pairs that come out as two objects, and those merged into one (``merged``; a pair neither separated
nor merged has a cell missed or found much smaller than its reference). Real and synthetic images
are reported apart, as the mean over images (each image first averaged over seeds) and the worst
image.

The training budget is given in seconds of training on 2 CPU cores. By default it is turned into
a number of iterations with the speed of this configuration measured at the start on 2 threads
(``--it-per-s`` fixes it instead), so that runs are deterministic for a seed and several runs can
share the machine (``--jobs``). ``--budget wall`` uses the wall clock instead (only with
``--jobs 1`` on a quiet machine).

Results are appended to a JSON-lines file (``--out``); a rerun skips the runs already there, so a
long suite can be run in parts, and ``--report`` prints the tables from the file alone.

Run::

    python benchmarks/bench_quality.py                                  # style a, 60 and 300 s, 3 seeds
    python benchmarks/bench_quality.py --styles a,b,c --seconds 30,60,120,300
    python benchmarks/bench_quality.py --set w0=5 --out /tmp/w0.jsonl   # a variant of the defaults
    python benchmarks/bench_quality.py --styles c --continue-set learning_rate=3e-4  # Continue at another rate
    python benchmarks/bench_quality.py --report --out quality.jsonl
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_suite  # noqa: E402
from napari_unet.cli.args import parse_tta  # noqa: E402
from napari_unet.predict.views import PLUGIN_TTA  # noqa: E402

_CACHE: dict = {}


def _image(name, kind):
    key = (name, kind)
    if key not in _CACHE:
        items = quality_suite.suite(kind)
        for n, k, img, inst in items:
            _CACHE[(n, k)] = (img, inst)
    return _CACHE[key]


def parse_overrides(pairs):
    """``["w0=5", "augment.elastic=False"]`` -> ``{"w0": 5, "augment": {"elastic": False}}``."""
    out: dict = {}
    for pair in pairs or []:
        key, _, text = pair.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def make_config(overrides, **fields):
    from napari_unet.config import AugmentConfig, TrainConfig

    overrides = dict(overrides)
    augment = overrides.pop("augment", None)
    config = dataclasses.replace(TrainConfig(), **overrides, **fields)
    if augment:
        config = dataclasses.replace(config, augment=dataclasses.replace(AugmentConfig(), **augment))
    return config


def _predict(model, image, large_cells=True, tta=1):
    """``(probabilities, labels, full-scale labels)`` of a whole image, as the plugin predicts it
    (``large_cells``: with the half-scale pass; else both labels are the full-scale ones; ``tta``:
    flipped views averaged)."""
    from napari_unet.common.progress import drive
    from napari_unet.labels.instances import label_options, to_labels
    from napari_unet.labels.large_cells import half_scale_wanted, iter_large_cells
    from napari_unet.labels.options import LabelOptions
    from napari_unet.predict.options import PredictOptions
    from napari_unet.predict.tiling import predict_tiled

    probabilities = predict_tiled(model, image, tta=tta)
    options = label_options(model)
    labels = to_labels(probabilities, **options)
    if not large_cells:
        return probabilities, labels, labels
    options = LabelOptions.of(options)
    half = drive(iter_large_cells(model, image, labels, options, PredictOptions(normalize=None, tta=tta), axes="YX",
                                  planes=half_scale_wanted(probabilities, labels, options)))
    return probabilities, half, labels


def _scores(gt, pred):
    from napari_unet.labels.metrics import match_instances, merged_pairs, pixel_iou, separated_pairs

    s = match_instances(gt, pred)
    touching = quality_suite.touching_pairs(gt)
    sep, pairs = separated_pairs(gt, pred, touching)
    return {"f1": s["f1"], "precision": s["precision"], "recall": s["recall"], "iou": pixel_iou(gt, pred),
            "sep": sep, "pairs": pairs, "merged": merged_pairs(gt, pred, touching)[0],
            "n_gt": s["n_gt"], "n_pred": s["n_pred"]}


def _train(image, ann, config, model=None):
    from napari_unet.training.trainer import Trainer

    trainer = Trainer([image], [ann], config=config, model=model, axes="YX")
    for _ in trainer.run():
        pass
    return trainer


def run_one(task):
    """Train and score one (image, style, seed, seconds) run; returns a JSON-able record."""
    import torch

    torch.set_num_threads(task["threads"])
    image, inst = _image(task["image"], task["kind"])
    style, seed = task["style"], task["seed"]
    ann = quality_suite.paint(inst, "a" if style == "c" else style, seed=seed, edge_jitter=task["edge_jitter"])
    budget = {"iterations": task["iterations"]} if task["iterations"] else {"iterations": None,
                                                                           "time_limit_s": task["seconds"]}
    t0 = time.perf_counter()
    extra = {}
    if style == "c":  # a first half, the correction round, the second half
        half = ({"iterations": max(1, budget["iterations"] // 2)} if budget["iterations"]
                else {"iterations": None, "time_limit_s": budget["time_limit_s"] / 2})
        first = _train(image, ann, make_config(task["overrides"], seed=seed, device="cpu", **half))
        first_labels = _predict(first.model, image, task.get("large_cells", True), task.get("tta", 1))[1]
        extra["f1_first"] = _scores(inst, first_labels)["f1"]  # before the correction round
        ann = quality_suite.paint_corrections(inst, first_labels, ann, n=3, seed=seed)
        second = task.get("continue_overrides") or task["overrides"]  # --continue-set: the second half only
        trainer = _train(image, ann, make_config(second, seed=seed + 1, device="cpu", **half), model=first.model)
        iterations = first.iteration + trainer.iteration
    else:
        trainer = _train(image, ann, make_config(task["overrides"], seed=seed, device="cpu", **budget))
        iterations = trainer.iteration
    train_s = time.perf_counter() - t0
    tta = task.get("tta", 1)
    probabilities, labels, full = _predict(trainer.model, image, task.get("large_cells", True), tta)
    scores = _scores(inst, labels)
    extra["f1_full"] = scores["f1"] if full is labels else _scores(inst, full)["f1"]  # without the half-scale pass
    extra["tta"] = tta
    if tta != 1:  # the network's output once, as every run before the flipped views
        extra["f1_one_view"] = _scores(inst, _predict(trainer.model, image, task.get("large_cells", True))[1])["f1"]
    for views, key in ((2, "f1_two_views"), (4, "f1_four_views")):  # the same model: what each view buys
        if tta != 1 and tta != views:
            extra[key] = _scores(inst, _predict(trainer.model, image, task.get("large_cells", True), views)[1])["f1"]
    if task.get("save"):  # for studies of the post-processing without training again
        from napari_unet.labels.instances import label_options

        folder = Path(task["save"])
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{task['image'].replace(' ', '_')}_{style}_s{seed}_{task['seconds']:g}"
        np.savez_compressed(folder / f"{stem}.npz", probabilities=probabilities.astype(np.float16), annotations=ann,
                            options=json.dumps(label_options(trainer.model)))
        from napari_unet.model.files import save_model

        save_model(trainer.model, folder / f"{stem}.unet", overwrite=True)  # to predict again (e.g. at other scales)
    return {**{k: task[k] for k in ("label", "image", "kind", "style", "seed", "seconds")}, **scores,
            "iterations": iterations, "train_s": round(train_s, 1), "painted": round(float((ann > 0).mean()), 4),
            "cells_painted": int(len(np.unique(ann[ann >= 2]))), **extra}


def calibrate(overrides, threads):
    """Training iterations per second of this configuration on ``threads`` threads (validation included)."""
    import torch

    from napari_unet.samples import make_touching_cells

    torch.set_num_threads(threads)
    image, _, ann = make_touching_cells((384, 384), seed=0)
    from napari_unet.training.trainer import Trainer

    trainer = Trainer([image], [ann], config=make_config(overrides, iterations=110, seed=0, device="cpu"))
    t_start = None
    for event in trainer.run():
        if event.kind == "step" and event.iteration == 10:
            t_start = time.perf_counter()
    return 100 / (time.perf_counter() - t_start)


def _merged(records):
    """Touching pairs merged into one object over ``records`` (None if a record predates the count)."""
    return None if any("merged" not in r for r in records) else sum(r["merged"] for r in records)


def _mean(values):
    return float(np.mean(values)) if values else float("nan")


def report(records, label, metric="f1"):
    """Print the per-image table and, per suite and budget, the mean and the worst image
    (``metric``: the F1 to report, e.g. ``f1_full`` for the labels without the half-scale pass)."""
    records = [{**r, "f1": r[metric]} for r in records if r["label"] == label and metric in r]
    if not records:
        print(f"no results for {label!r}")
        return {}
    summary = {}
    keys = sorted({(r["style"], r["seconds"]) for r in records})
    print(f"\n== {label}: object F1 at IoU 0.5 (mean over seeds; min-max), pixel IoU, touching pairs separated")
    print(f"{'image':<26} {'kind':<9} {'style':<5} {'s':>4} {'seeds':>5} {'F1':>6} {'range':>11} {'pixIoU':>6} "
          f"{'prec':>5} {'rec':>5} {'sep':>9} {'merged':>6} {'it':>5}")
    for style, seconds in keys:
        for kind in quality_suite.KINDS:
            rows = [r for r in records if r["style"] == style and r["seconds"] == seconds and r["kind"] == kind]
            per_image = {}
            for r in rows:
                per_image.setdefault(r["image"], []).append(r)
            f1s, ious, sep, pairs, merged = [], [], 0, 0, 0
            for name, rs in per_image.items():
                f1 = [r["f1"] for r in rs]
                f1s.append(_mean(f1))
                ious.append(_mean([r["iou"] for r in rs]))
                s, p = sum(r["sep"] for r in rs), sum(r["pairs"] for r in rs)
                sep, pairs = sep + s, pairs + p
                m = _merged(rs)
                merged = merged + m if m is not None and merged is not None else None
                print(f"{name:<26} {kind:<9} {style:<5} {seconds:>4g} {len(rs):>5} {_mean(f1):6.3f} "
                      f"{min(f1):5.3f}-{max(f1):5.3f} {ious[-1]:6.3f} {_mean([r['precision'] for r in rs]):5.2f} "
                      f"{_mean([r['recall'] for r in rs]):5.2f} {s:>4}/{p:<4} {'-' if m is None else m:>6} "
                      f"{int(_mean([r['iterations'] for r in rs])):>5}")
            if f1s:
                worst = min(per_image, key=lambda n: _mean([r["f1"] for r in per_image[n]]))
                summary[(kind, style, seconds)] = {"mean_f1": _mean(f1s), "worst_f1": min(f1s), "worst": worst,
                                                   "mean_iou": _mean(ious), "sep": sep, "pairs": pairs,
                                                   "merged": merged}
    print(f"\n{'suite':<10} {'style':<5} {'s':>4} {'images':>6} {'mean F1':>8} {'worst F1':>9} {'worst image':<24} "
          f"{'pixIoU':>6} {'pairs separated':>16} {'merged':>6}")
    for (kind, style, seconds), s in sorted(summary.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        n = len({r["image"] for r in records if r["kind"] == kind})
        share = s["sep"] / s["pairs"] if s["pairs"] else float("nan")
        print(f"{kind:<10} {style:<5} {seconds:>4g} {n:>6} {s['mean_f1']:8.3f} {s['worst_f1']:9.3f} {s['worst']:<24} "
              f"{s['mean_iou']:6.3f} {s['sep']:>6}/{s['pairs']:<5} {share:5.0%} {'-' if s['merged'] is None else s['merged']:>6}")
    return summary


def compare(records, metric="f1"):
    """A markdown table: one row per image, one column per configuration (label, style, seconds)."""
    columns = list(dict.fromkeys((r["label"], r["style"], r["seconds"]) for r in records))
    images = list(dict.fromkeys((r["kind"], r["image"]) for r in records))
    cell = {}
    for r in (r for r in records if metric in r):
        cell.setdefault(((r["kind"], r["image"]), (r["label"], r["style"], r["seconds"])), []).append(r[metric])
    print("| image | kind | " + " | ".join(f"{lab}, {style}, {sec:g} s" for lab, style, sec in columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for key in images:
        values = [cell.get((key, c)) for c in columns]
        print(f"| {key[1]} | {key[0]} | " + " | ".join(f"{_mean(v):.3f}" if v else "" for v in values) + " |")
    for kind in quality_suite.KINDS:
        keys = [k for k in images if k[0] == kind]
        if not keys:
            continue
        means, worsts = [], []
        for c in columns:
            per_image = [_mean(cell[(k, c)]) for k in keys if (k, c) in cell]
            means.append(f"**{_mean(per_image):.3f}**" if per_image else "")
            worsts.append(f"{min(per_image):.3f}" if per_image else "")
        print(f"| mean | {kind} | " + " | ".join(means) + " |")
        print(f"| worst | {kind} | " + " | ".join(worsts) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=",".join(quality_suite.KINDS),
                        help="kinds of images: real (curated labels), real-auto (algorithm labels), synthetic")
    parser.add_argument("--images", default="", help="only these images (comma-separated names)")
    parser.add_argument("--styles", default="a", help="painting styles a, b, c (comma-separated)")
    parser.add_argument("--seconds", default="60,300", help="training budgets in seconds on 2 CPU cores")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field (augment.FIELD for augmentation); repeatable")
    parser.add_argument("--continue-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="style c: override a TrainConfig field for the training after the corrections only")
    parser.add_argument("--label", default="", help="name of this configuration in the results (default: the --set text)")
    parser.add_argument("--budget", choices=["iterations", "wall"], default="iterations")
    parser.add_argument("--it-per-s", type=float, default=None, help="iterations per second of 2-core training "
                        "(default: measured at the start)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (threads are shared out: 2 cores in all)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all")
    parser.add_argument("--out", default="benchmarks/quality_results.jsonl", help="JSON-lines results file")
    parser.add_argument("--edge-jitter", type=int, default=1, metavar="PX",
                        help="paint each cell up to PX pixels short of or over its edge, at random (a brush "
                             "is not exact; 0 = the reference cells exactly)")
    parser.add_argument("--save-probs", default=None, metavar="DIR",
                        help="also save each run's probabilities and annotation here (.npz)")
    parser.add_argument("--large-cells", choices=["on", "off"], default="on",
                        help="the half-scale pass for cells larger than the painted ones (as the plugin: on)")
    parser.add_argument("--tta", type=parse_tta, default=PLUGIN_TTA,
                        help="flipped views averaged in prediction (default: the plugin's)")
    parser.add_argument("--metric", default="f1", choices=["f1", "f1_full", "f1_first", "f1_one_view", "f1_two_views",
                                                         "f1_four_views"],
                        help="--report / --compare: the F1 to show (f1_full: without the half-scale pass; "
                             "f1_one_view: without the flipped views)")
    parser.add_argument("--report", action="store_true", help="print the tables from --out and stop")
    parser.add_argument("--compare", default="", metavar="FILE,FILE",
                        help="print a markdown table of F1 per image from these results files and stop")
    parser.add_argument("--list", action="store_true", help="list the suite's images and stop")
    args = parser.parse_args(argv)
    label = args.label or (" ".join(sorted(args.set) + [f"continue {c}" for c in sorted(args.continue_set)])
                           or "defaults") + (" no half scale" if args.large_cells == "off" else "") \
        + ("" if args.tta == PLUGIN_TTA else f" {args.tta} view{'' if args.tta == 1 else 's'}")
    out = Path(args.out)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    if args.compare:
        compare([json.loads(line) for f in args.compare.split(",") for line in Path(f).read_text().splitlines()
                 if line.strip()], args.metric)
        return
    if args.report:
        for lab in dict.fromkeys(r["label"] for r in records):
            report(records, lab, args.metric)
        return
    kinds = [k for k in args.suite.split(",") if k]
    items = [(n, k) for n, k, _, _ in quality_suite.suite(kinds)]
    if args.images:
        wanted = [w.strip() for w in args.images.split(",")]
        items = [(n, k) for n, k in items if n in wanted]
    if args.list:
        for n, k in items:
            img, inst = _image(n, k)
            print(f"{k:<9} {n:<26} {img.shape} {img.dtype} {int(inst.max())} cells, "
                  f"{len(quality_suite.touching_pairs(inst))} touching pairs")
        return
    overrides = parse_overrides(args.set)
    seconds = [float(s) for s in args.seconds.split(",") if s]
    it_per_s = None
    if args.budget == "iterations":
        it_per_s = args.it_per_s or calibrate(overrides, args.threads)
        print(f"budget: {it_per_s:.2f} iterations per second of 2-core training "
              f"({'given' if args.it_per_s else 'measured now'})", flush=True)
    threads = max(1, args.threads // max(1, args.jobs))
    done = {(r["label"], r["image"], r["style"], r["seed"], r["seconds"]) for r in records
            if r.get("tta", 1) == args.tta}  # runs from before the flipped views had one view
    tasks = []
    for s in seconds:
        for style in args.styles.split(","):
            for seed in (int(x) for x in args.seeds.split(",") if x):
                for name, kind in items:
                    if (label, name, style, seed, s) in done:
                        continue
                    tasks.append({"label": label, "image": name, "kind": kind, "style": style, "seed": seed,
                                  "seconds": s, "overrides": overrides,
                                  "continue_overrides": parse_overrides(args.set + args.continue_set),
                                  "threads": threads, "save": args.save_probs,
                                  "edge_jitter": args.edge_jitter, "large_cells": args.large_cells == "on",
                                  "tta": args.tta,
                                  "iterations": int(round(s * it_per_s)) if it_per_s else None})
    print(f"{len(tasks)} runs to do ({len(done)} already in {out}); {args.jobs} at once, {threads} thread(s) each",
          flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, t): t for t in tasks}
        for k, future in enumerate(cf.as_completed(futures), start=1):
            record = future.result()
            records.append(record)
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"[{k}/{len(tasks)} {time.perf_counter() - t0:6.0f} s] {record['image']:<24} {record['style']} "
                  f"s{record['seed']} {record['seconds']:g}s: F1 {record['f1']:.3f} IoU {record['iou']:.3f} "
                  f"sep {record['sep']}/{record['pairs']} ({record['iterations']} it)", flush=True)
    report(records, label, args.metric)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
