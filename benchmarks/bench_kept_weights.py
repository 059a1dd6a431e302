"""Which weights a training run should keep: rules scored on the quality suite, post hoc.

``Trainer`` ends with the weights of the lowest validation loss (``TrainConfig.keep_model="best"``,
a validation every 25 iterations on ~10 % of the painted pixels). The held-out pixels are few and
their loss is noisy, so early weights sometimes win. This benchmark trains every image of the
quality suite (``quality_suite.suite()``, painting style a with ``edge_jitter=1``, the default
``TrainConfig``, a fixed number of iterations: ``--seconds`` x ``--it-per-s``, 60 s x 6.38 it/s =
383 by default, one CPU thread per run) and at every validation (the last iteration validates too)
records the validation loss and the object F1 at IoU 0.5 of THOSE weights, predicted as
``bench_quality.py`` predicts (``predict_tiled`` with the plugin's flipped views, ``to_labels`` and
the half-scale pass for large cells). Every selection rule (:data:`RULES`) is then evaluated from
the same curves: which validation it keeps, and that validation's F1.

Scoring a validation's weights runs in eval mode under ``torch.no_grad()`` and puts the model back
in train mode; ``--check`` trains one short run with and without the scoring and tells whether the
loss histories are identical (they must be: the scoring must not change training).

One JSON line per run (image, kind, style, seed, iterations, tta and the list of ``[iteration,
val_loss, f1]``) is appended to ``--out``; a rerun skips the runs already there, so a long study can
be run in parts. ``--report`` prints, per rule and group of images (real / real-auto / synthetic,
each image first averaged over seeds), the mean F1, the worst image and the mean kept iteration as
a share of the run.

Run::

    python benchmarks/bench_kept_weights.py --check                   # scoring leaves training unchanged
    python benchmarks/bench_kept_weights.py --seeds 0,1 --jobs 2      # the study (resumable)
    python benchmarks/bench_kept_weights.py --seeds 2 --jobs 1        # another seed, appended
    python benchmarks/bench_kept_weights.py --report
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality  # noqa: E402
import quality_suite  # noqa: E402
from napari_unet.cli.args import parse_tta  # noqa: E402
from napari_unet.predict.views import PLUGIN_TTA  # noqa: E402

DEFAULT_OUT = "benchmarks/results/2026-12-06_kept_weights_60s.jsonl"


# ----------------------------------------------------------------------------- training and scoring


def _score(trainer, image, inst, tta):
    """Object F1 of the trainer's current weights on the whole image; leaves the model in train mode."""
    import torch

    model = trainer.model
    try:
        with torch.no_grad():
            model.eval()
            labels = bench_quality._predict(model, image, True, tta)[1]
    finally:
        model.train()
    return bench_quality._scores(inst, labels)["f1"]


def run_one(task):
    """Train one (image, seed) run, scoring every validation's weights (unless ``task["score"]`` is
    false); returns a JSON-able record, with the loss history when ``task["history"]``."""
    import torch

    from napari_unet.training.trainer import Trainer

    torch.set_num_threads(1)
    image, inst = bench_quality._image(task["image"], task["kind"])
    ann = quality_suite.paint(inst, task["style"], seed=task["seed"], edge_jitter=1)
    config = bench_quality.make_config({}, iterations=task["iterations"], time_limit_s=None, seed=task["seed"],
                                       device="cpu")
    trainer = Trainer([image], [ann], config=config, axes="YX")
    validations, score_s = [], 0.0
    t0 = time.perf_counter()
    for event in trainer.run():
        if event.kind == "validation":
            t = time.perf_counter()
            f1 = _score(trainer, image, inst, task["tta"]) if task["score"] else None
            score_s += time.perf_counter() - t
            validations.append([event.iteration, event.val_loss, f1])
    record = {k: task[k] for k in ("image", "kind", "style", "seed", "iterations", "tta")}
    record.update(validations=validations, kept_iteration=trainer.kept_iteration,
                  train_s=round(time.perf_counter() - t0 - score_s, 1), score_s=round(score_s, 1))
    if task.get("history"):
        record["history"] = [[h["iteration"], h["loss"], h.get("val_loss")] for h in trainer.history]
    return record


def check_unchanged(name, kind, iterations, tta):
    """Train ``name`` (seed 0, ``iterations``) with and without the scoring; print whether the loss
    histories (training and validation losses) are identical."""
    task = {"image": name, "kind": kind, "style": "a", "seed": 0, "iterations": iterations, "tta": tta,
            "history": True}
    scored, plain = run_one({**task, "score": True}), run_one({**task, "score": False})
    same = scored["history"] == plain["history"]
    print(f"{name}, {iterations} iterations, {len(scored['validations'])} validations scored "
          f"(F1 {[round(v[2], 3) for v in scored['validations']]}): loss histories with and without the scoring "
          f"{'IDENTICAL' if same else 'DIFFER'}")
    if not same:
        for a, b in zip(scored["history"], plain["history"]):
            if a != b:
                print(f"  first difference: with scoring {a}, without {b}")
                break
    return same


# ----------------------------------------------------------------------------- selection rules


def _argmin(values, allowed=None):
    """Index of the first lowest value (as ``BestWeights``: a later equal loss does not replace it)."""
    idx = [i for i in range(len(values)) if allowed is None or allowed[i]]
    return min(idx, key=lambda i: values[i])


def _ema(values, alpha=0.5):
    out = [values[0]]
    for v in values[1:]:
        out.append(alpha * v + (1 - alpha) * out[-1])
    return out


def _mean3(values):
    """Centred 3-point running mean (2 points at the ends)."""
    return [float(np.mean(values[max(0, i - 1): i + 2])) for i in range(len(values))]


def _last_unless_better(margin, smooth=None):
    def rule(its, losses, n):
        curve = smooth(losses) if smooth else losses
        best = _argmin(curve)
        return best if curve[best] < (1 - margin) * curve[-1] else len(losses) - 1
    return rule


#: name -> rule(iterations, validation losses, run length) -> index of the validation kept.
#: ``oracle`` is no rule: the highest F1 of the run, the ceiling of any selection
RULES = {
    "best": lambda its, losses, n: _argmin(losses),
    "last": lambda its, losses, n: len(losses) - 1,
    "best_after_half": lambda its, losses, n: _argmin(losses, [it >= 0.5 * n for it in its]),
    "best_ema0.5": lambda its, losses, n: _argmin(_ema(losses)),
    "best_mean3": lambda its, losses, n: _argmin(_mean3(losses)),
    "last_unless_5%": _last_unless_better(0.05),
    "last_unless_10%": _last_unless_better(0.10),
    "last_unless_20%": _last_unless_better(0.20),
    # the margin rule with both ends smoothed: one lucky low validation cannot trigger the switch,
    # one unlucky last validation cannot either
    "last_unless_ema_10%": _last_unless_better(0.10, _ema),
    # the dual of the margin rule: among the weights within the margin of the lowest loss (the
    # validation cannot tell them apart), the latest ones, the most annealed
    "latest_within_5%": lambda its, losses, n: max(i for i, v in enumerate(losses) if v <= 1.05 * min(losses)),
    "latest_within_10%": lambda its, losses, n: max(i for i, v in enumerate(losses) if v <= 1.10 * min(losses)),
    "oracle": None,
}


def kept(record, rule):
    """``(f1, share of the run)`` of the validation ``rule`` keeps in ``record``."""
    its, losses, f1s = zip(*record["validations"])
    i = int(np.argmax(f1s)) if RULES[rule] is None else RULES[rule](its, losses, record["iterations"])
    return f1s[i], its[i] / record["iterations"]


# ----------------------------------------------------------------------------- report


def report(records):
    """Per rule: mean F1, worst image and mean kept share per group (each image averaged over seeds
    first), the runs it scores above / below ``best`` and its mean difference to ``best`` over the
    images (+- the standard error); then the worst images, the per-image table and every run's curves."""
    images = list(dict.fromkeys((r["kind"], r["image"]) for r in records))
    seeds = sorted({r["seed"] for r in records})
    print(f"{len(records)} runs: {len(images)} images, seeds {seeds}, "
          f"{sorted({r['iterations'] for r in records})} iterations, tta {sorted({r['tta'] for r in records})}")
    agree = sum(round(kept(r, "best")[1] * r["iterations"]) == r["kept_iteration"] for r in records)
    print(f"the trainer kept the iteration the rule 'best' picks in {agree}/{len(records)} runs")
    by_image = {key: [r for r in records if (r["kind"], r["image"]) == key] for key in images}
    f1 = {rule: {key: float(np.mean([kept(r, rule)[0] for r in rs])) for key, rs in by_image.items()} for rule in RULES}
    groups = [(kind, [k for k in images if k[0] == kind]) for kind in quality_suite.KINDS] + [("all", images)]
    groups = [(g, keys) for g, keys in groups if keys]
    print("\nobject F1 at IoU 0.5 of the kept weights: mean over images / worst image; "
          "kept iteration, mean share of the run")
    print(f"{'rule':<20}" + "".join(f" {g + f' ({len(keys)})':>26}" for g, keys in groups)
          + f" {'runs +/-':>11} {'all - best':>15}")
    for rule in RULES:
        cells = []
        for _, keys in groups:
            values = [f1[rule][k] for k in keys]
            share = np.mean([kept(r, rule)[1] for k in keys for r in by_image[k]])
            cells.append(f"{np.mean(values):.3f} / {min(values):.3f}, {share:4.0%}")
        diffs = [kept(r, rule)[0] - kept(r, "best")[0] for r in records]
        better, worse = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
        per_image = [f1[rule][k] - f1["best"][k] for k in images]
        se = np.std(per_image, ddof=1) / np.sqrt(len(images)) if len(images) > 1 else float("nan")
        print(f"{rule:<20}" + "".join(f" {c:>26}" for c in cells)
              + f" {better:>5}/{worse:<5} {np.mean(per_image):+.3f} +- {se:.3f}")
    print("\nworst image per group: the rules for which it is the worst")
    for g, keys in groups:
        worst = {}
        for rule in RULES:
            worst.setdefault(min(keys, key=lambda k: f1[rule][k])[1], []).append(rule)
        print(f"  {g:<10} " + "; ".join(f"{name}: {', '.join(rules)}" for name, rules in worst.items()))
    print(f"\nper image (mean over seeds):\n{'image':<24} {'kind':<9}" + "".join(f" {r[:11]:>11}" for r in RULES))
    for key in images:
        print(f"{key[1]:<24} {key[0]:<9}" + "".join(f" {f1[r][key]:11.3f}" for r in RULES))
    print("\nper run, best vs last: iterations kept (best), validation losses, F1 at each validation")
    for r in records:
        its, losses, f1s = zip(*r["validations"])
        i = RULES["best"](its, losses, r["iterations"])
        print(f"{r['image']:<24} s{r['seed']} best it {its[i]:>3} F1 {f1s[i]:.3f}, last F1 {f1s[-1]:.3f}; "
              f"loss {' '.join(f'{v:.3f}' for v in losses)}; F1 {' '.join(f'{v:.2f}' for v in f1s)}")


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="", help="only these images (comma-separated names)")
    parser.add_argument("--seeds", default="0,1", help="painting and training seeds (comma-separated)")
    parser.add_argument("--seconds", type=float, default=60.0, help="training budget in seconds on 2 CPU cores")
    parser.add_argument("--it-per-s", type=float, default=6.38,
                        help="iterations per second of 2-core training (the suite's reference speed)")
    parser.add_argument("--tta", type=parse_tta, default=PLUGIN_TTA,
                        help="flipped views averaged in prediction (default: the plugin's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (2 only on an idle machine)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON-lines results file")
    parser.add_argument("--check", action="store_true",
                        help="train one short run (the first image, 60 iterations) with and without the scoring, "
                             "compare the loss histories and stop")
    parser.add_argument("--report", action="store_true", help="print the tables from --out and stop")
    args = parser.parse_args(argv)
    out = Path(args.out)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    if args.report:
        report(records)
        return
    items = [(n, k) for n, k, _, _ in quality_suite.suite()]
    if args.images:
        wanted = [w.strip() for w in args.images.split(",")]
        items = [(n, k) for n, k in items if n in wanted]
    if args.check:
        sys.exit(0 if check_unchanged(*items[0], iterations=60, tta=args.tta) else 1)
    iterations = int(round(args.seconds * args.it_per_s))
    done = {(r["image"], r["style"], r["seed"], r["iterations"], r["tta"]) for r in records}
    tasks = [{"image": n, "kind": k, "style": "a", "seed": seed, "iterations": iterations, "tta": args.tta,
              "score": True}
             for seed in (int(s) for s in args.seeds.split(",") if s) for n, k in items
             if (n, "a", seed, iterations, args.tta) not in done]
    print(f"{len(tasks)} runs to do ({len(records)} already in {out}), {iterations} iterations each; "
          f"{args.jobs} at once, 1 thread each", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, t) for t in tasks]
        for k, future in enumerate(cf.as_completed(futures), start=1):
            record = future.result()
            records.append(record)
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            its, losses, f1s = zip(*record["validations"])
            print(f"[{k}/{len(tasks)} {time.perf_counter() - t0:6.0f} s] {record['image']:<24} s{record['seed']}: "
                  f"best it {record['kept_iteration']} F1 {f1s[int(np.argmin(losses))]:.3f}, last F1 {f1s[-1]:.3f} "
                  f"(train {record['train_s']} s, scoring {record['score_s']} s)", flush=True)
    report(records)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
