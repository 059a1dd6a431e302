"""Training benchmarks: accuracy vs CPU training time, and iterations/s per preset.

Part 1 (``--part accuracy``): the default CPU preset trained for 1, 2, 5 (and 10) minutes on
  (a) the synthetic touching-cells sample with its sparse annotation (~2 % of the pixels),
      scored on the training image itself (the interactive use: paint, segment the same image)
      and on a fresh synthetic image (seed + 1) it never saw;
  (b) the real nuclei sample (6 slices; ~9 complete nuclei + background strokes painted on
      2 of them, < 5 % of the pixels), scored on all 6 slices (``nuclei_sample_errors.py``
      breaks its errors down, for networks kept with ``--save-models``).
  Labels as the Predict widget makes them (the plugin's flipped views, the half-scale pass for
  large cells; ``--tta 1 --large-cells off``: the network's output once, as before 2026-12-01).
  Pixel IoU of the foreground, object precision / recall / F1 (instances matched one-to-one at
  IoU >= 0.5), and touching ground-truth pairs that come out as two objects. Baselines on the
  same strokes: Otsu + connected components, and scikit-image's random-forest trainable
  segmentation (``skimage.future.fit_segmenter``, needs scikit-learn) + connected components.

Part 2 (``--part speed``): iterations/s of each preset at its default tile and batch size with
  augmentation on, and the split of one iteration into tile sampling + augmentation vs the
  network's forward + backward + optimizer step.

The training budget is wall time by default (``--clock wall``): what a user waits, on a quiet
machine. On a machine shared with other jobs, ``--clock cpu`` counts process CPU time divided by
the number of threads instead; that is generous (2 threads keep 2 cores busy only ~80 % of the
time, so a "5 minute" run then takes ~6 wall minutes). The ``train_s`` column is the wall time.

Run (2 CPU threads, as on a laptop)::

    python benchmarks/bench_train.py --threads 2                      # both parts, 1/2/5 min
    python benchmarks/bench_train.py --part accuracy --minutes 1,2,5,10
    python benchmarks/bench_train.py --part speed --presets tiny,fast,paper
    python benchmarks/bench_train.py --part accuracy --datasets nuclei --minutes 5 --seeds 0,1,2  # spread
    python benchmarks/bench_train.py --part accuracy --datasets nuclei --iterations 1800 --seeds 0,1,2  # busy machine
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np


def _scores(gt, pred, per_plane: bool):
    from napari_unet.labels.metrics import match_instances, pixel_iou, separated_pairs
    from napari_unet.samples import touching_pairs

    gt = np.asarray(gt)
    pred = np.asarray(pred)
    planes = range(gt.shape[0]) if per_plane else [None]
    tp = fp = fn = sep = pairs = 0
    for z in planes:
        g = gt if z is None else gt[z]
        p = pred if z is None else pred[z]
        s = match_instances(g, p)
        tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
        a, b = separated_pairs(g, p, touching_pairs(g))
        sep, pairs = sep + a, pairs + b
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return {"iou": pixel_iou(gt, pred), "f1": f1, "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
            "sep": sep, "pairs": pairs}


def _checksum(model):
    return float(sum(float(p.detach().double().abs().sum()) for p in model.parameters()))


def _row(dataset, method, seconds, s):
    print(f"{dataset:<22} {method:<26} {seconds:7.1f} {s['iou']:7.3f} {s['f1']:6.3f} {s['precision']:6.3f} "
          f"{s['recall']:6.3f} {s['sep']:4d}/{s['pairs']:<4d}", flush=True)


def _header():
    print(f"{'dataset':<22} {'method':<26} {'train_s':>7} {'pixIoU':>7} {'F1':>6} {'prec':>6} {'recall':>6} sep/pairs")


def _otsu(image, per_plane):
    from scipy import ndimage as ndi
    from skimage.filters import gaussian, threshold_otsu

    planes = image if per_plane else image[None]
    out = np.zeros(planes.shape, np.int32)
    offset = 0
    for z, plane in enumerate(planes):
        smooth = gaussian(plane.astype(np.float32), 1.0, preserve_range=True)
        labels, n = ndi.label(smooth > threshold_otsu(smooth))
        out[z] = np.where(labels > 0, labels + offset, 0)
        offset += n
    return out if per_plane else out[0]


def _random_forest(image, annotations, per_plane):
    """fit_segmenter on the painted strokes (1 = background, cells -> class 2) + connected components."""
    from functools import partial

    from scipy import ndimage as ndi
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    planes = image if per_plane else image[None]
    anns = annotations if per_plane else annotations[None]
    features_fn = partial(multiscale_basic_features, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16)
    feats = [features_fn(p.astype(np.float32)) for p in planes]
    training = np.zeros(anns.shape, np.uint8)
    training[anns == 1] = 1
    training[anns >= 2] = 2
    annotated = [z for z in range(len(planes)) if training[z].any()]
    clf = RandomForestClassifier(n_estimators=50, n_jobs=2, max_depth=10, max_samples=0.05, random_state=0)
    t0 = time.perf_counter()
    # fit on all annotated planes at once: stack their features side by side
    stacked_f = np.concatenate([feats[z] for z in annotated], axis=1)
    stacked_l = np.concatenate([training[z] for z in annotated], axis=1)
    clf = fit_segmenter(stacked_l, stacked_f, clf)
    fit_s = time.perf_counter() - t0
    out = np.zeros(planes.shape, np.int32)
    offset = 0
    for z in range(len(planes)):
        classes = predict_segmenter(feats[z], clf)
        labels, n = ndi.label(classes == 2)
        out[z] = np.where(labels > 0, labels + offset, 0)
        offset += n
    return (out if per_plane else out[0]), fit_s


def _predict_labels(model, image, axes, *, tta=None, large_cells=True):
    """Labels as the Predict widget makes them: ``tta`` flipped views averaged (default the
    plugin's), ``to_labels`` with the options the model implies (the split of touching cells and
    the size filter scale with the painted cells' diameter) and the half-scale pass for cells
    larger than the painted ones (planes of a stack labelled one by one, as Predict does)."""
    from napari_unet.labels.segment import segment
    from napari_unet.predict.views import PLUGIN_TTA

    return segment(model, image, axes=axes, tta=PLUGIN_TTA if tta is None else tta, large_cells=large_cells)[1]


def accuracy(args):
    from napari_unet.config import TrainConfig
    from napari_unet.samples import load_nuclei, make_touching_cells
    from napari_unet.training.trainer import Trainer

    datasets = []
    if "synthetic" in args.datasets:
        image, inst, ann = make_touching_cells((args.size, args.size), seed=0)
        test_image, test_inst, _ = make_touching_cells((args.size, args.size), seed=1)
        print(f"synthetic: {image.shape}, {100 * (ann > 0).mean():.2f}% annotated, {int(ann.max()) - 1} cells painted, "
              f"{int(inst.max())} cells")
        datasets.append(("synthetic", image, inst, ann, "YX", [("synthetic (same image)", image, inst),
                                                                ("synthetic (new image)", test_image, test_inst)]))
    if "nuclei" in args.datasets:
        image, inst, ann = load_nuclei()
        print(f"nuclei: {image.shape}, {100 * (ann > 0).mean():.2f}% annotated "
              f"({100 * (ann[ann.reshape(len(ann), -1).any(1)] > 0).mean():.2f}% of the annotated slices)")
        datasets.append(("nuclei", image, inst, ann, "ZYX", [("nuclei (6 slices)", image, inst)]))
    _header()
    for name, image, inst, ann, axes, evals in datasets:
        per_plane = axes != "YX"
        for label, img, gt in evals:
            _row(label, "Otsu + components", 0.0, _scores(gt, _otsu(img, per_plane), per_plane))
        if args.baselines:
            try:
                import sklearn  # noqa: F401
            except ImportError:
                print(f"{name:<22} random forest: skipped (scikit-learn is not installed)")
            else:
                for label, img, gt in evals:
                    if img is image:
                        labels, fit_s = _random_forest(image, ann, per_plane)
                    else:  # the classifier is trained on the training image only
                        labels, fit_s = _random_forest_transfer(image, ann, img, per_plane)
                    _row(label, "fit_segmenter (RF)", fit_s, _scores(gt, labels, per_plane))
        for budget, limits in args.budgets:
            runs: dict[str, list] = {}
            for seed in args.seeds:
                config = dataclasses.replace(TrainConfig(), seed=seed, device="cpu", **limits)
                trainer = Trainer([image], [ann], config=config, axes=axes)
                if args.clock == "cpu":
                    # a shared machine: budget in process CPU time / threads (= wall time on free cores)
                    trainer.clock = lambda: time.process_time() / args.threads
                t0 = time.perf_counter()
                for _ in trainer.run():
                    pass
                train_s = time.perf_counter() - t0
                seed_text = f" s{seed}" if len(args.seeds) > 1 else ""
                if args.save_models:
                    from napari_unet.model.files import save_model

                    args.save_models.mkdir(parents=True, exist_ok=True)
                    save_model(trainer.model, args.save_models / f"{name}_{budget.replace(' ', '')}_s{seed}.unet",
                               overwrite=True)
                for label, img, gt in evals:
                    labels = _predict_labels(trainer.model, img, axes, tta=args.tta,
                                             large_cells=args.large_cells == "on")
                    scores = _scores(gt, labels, per_plane)
                    runs.setdefault(label, []).append(scores)
                    _row(label, f"U-Net fast {budget}{seed_text} ({trainer.iteration} it)", train_s, scores)
                    if args.also_plain:  # the same weights, labelled from one view without the half-scale pass
                        plain = _scores(gt, _predict_labels(trainer.model, img, axes, tta=1, large_cells=False),
                                        per_plane)
                        runs.setdefault(label + " plain", []).append(plain)
                        _row(label, f"  same, 1 view, no half scale{seed_text}", train_s, plain)
                    if args.verbose:
                        print(f"    kept the {trainer.kept} weights (iteration {trainer.kept_iteration}); lowest "
                              f"validation loss {trainer.best_val_loss} at iteration {trainer.best_iteration}; "
                              f"weights checksum {_checksum(trainer.model):.6f}", flush=True)
            if len(args.seeds) > 1:
                for label, all_scores in runs.items():
                    f1 = [s["f1"] for s in all_scores]
                    mean = {k: (float(np.mean([s[k] for s in all_scores])) if k not in ("sep", "pairs")
                                else int(round(np.mean([s[k] for s in all_scores])))) for k in all_scores[0]}
                    seconds = limits["time_limit_s"] or float("nan")
                    _row(label, f"U-Net {budget} mean of {len(f1)}", seconds, mean)
                    print(f"{label:<22} F1 over seeds {args.seeds}: min {min(f1):.3f} mean {np.mean(f1):.3f} "
                          f"max {max(f1):.3f}", flush=True)


def _random_forest_transfer(train_image, train_ann, image, per_plane):
    from functools import partial

    from scipy import ndimage as ndi
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    features_fn = partial(multiscale_basic_features, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16)
    training = np.zeros(train_ann.shape, np.uint8)
    training[train_ann == 1] = 1
    training[train_ann >= 2] = 2
    clf = RandomForestClassifier(n_estimators=50, n_jobs=2, max_depth=10, max_samples=0.05, random_state=0)
    t0 = time.perf_counter()
    clf = fit_segmenter(training, features_fn(train_image.astype(np.float32)), clf)
    fit_s = time.perf_counter() - t0
    labels, _ = ndi.label(predict_segmenter(features_fn(image.astype(np.float32)), clf) == 2)
    return labels, fit_s


def speed(args):
    import torch

    from napari_unet.config import PRESETS_3D, TrainConfig
    from napari_unet.samples import make_touching_cells
    from napari_unet.training.trainer import Trainer
    from napari_unet.training.loss import weighted_cross_entropy

    image, _, ann = make_touching_cells((512, 512), seed=0)
    print(f"{'preset':<7} {'tile':>9} {'out':>9} {'batch':>5} {'params':>8} {'it/s':>7} {'px/s':>9} "
          f"{'sample+aug ms':>13} {'net ms':>8} {'aug share':>9}")
    for preset in args.presets:
        n_it = {"paper": 2, "fast": 20, "tiny": 40, "fast3d": 20}.get(preset, 10)
        data, where = ([image], [ann]), {}
        if preset in PRESETS_3D:  # the vendored nuclei stack, three painted XY slices (bench_unet3d.py)
            from bench_unet3d import load, paint

            stack, truth, voxel = load("nuclei", 0)
            data, where = ([stack], [paint(truth, 0)[0]]), {"pixel_size": voxel}
        config = dataclasses.replace(TrainConfig(), preset=preset, iterations=n_it + 2, validation_fraction=0.0,
                                     seed=0, device=args.device, **where)
        trainer = Trainer(*data, config=config, axes="ZYX" if where else None)
        gen = trainer.run()
        for _ in range(2):  # warm-up
            next(gen)
        t0 = time.perf_counter()
        for event in gen:
            if event.kind == "step" and event.iteration == n_it + 2:
                break
        it_s = n_it / (time.perf_counter() - t0)
        # split one iteration: sampling + augmentation alone, then the network alone
        sampler, dev = trainer.sampler, trainer.device
        t0 = time.perf_counter()
        for _ in range(n_it):
            batch = sampler.sample(trainer.batch_size, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        aug_ms = 1000 * (time.perf_counter() - t0) / n_it
        model = trainer.model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        fmt = getattr(trainer.training_step, "memory_format", None) or torch.contiguous_format
        t0 = time.perf_counter()
        for _ in range(n_it):
            opt.zero_grad()
            loss = weighted_cross_entropy(model(batch.image.contiguous(memory_format=fmt)), batch.target, batch.weights)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        net_ms = 1000 * (time.perf_counter() - t0) / n_it
        n_params = sum(p.numel() for p in model.parameters())
        out = trainer.output_shape
        print(f"{preset:<7} {'x'.join(map(str, trainer.input_shape)):>9} {'x'.join(map(str, out)):>9} "
              f"{trainer.batch_size:>5} {n_params / 1e6:7.2f}M {it_s:7.2f} {it_s * trainer.batch_size * np.prod(out):9.0f} "
              f"{aug_ms:13.1f} {net_ms:8.1f} {aug_ms / (aug_ms + net_ms):9.1%}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["accuracy", "speed", "all"], default="all")
    parser.add_argument("--minutes", default="1,2,5", help="training times for part 1 (comma-separated)")
    parser.add_argument("--iterations", default="",
                        help="part 1: train for these numbers of iterations instead of --minutes (comma-separated): "
                             "the same figure on a machine busy with other jobs")
    parser.add_argument("--datasets", default="synthetic,nuclei")
    parser.add_argument("--presets", default="tiny,fast,paper")
    parser.add_argument("--size", type=int, default=512, help="synthetic image size")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2 = a laptop)")
    parser.add_argument("--device", default="cpu", help="device for part 2")
    parser.add_argument("--seeds", default="0", help="training seeds (comma-separated); several print their mean")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="wall",
                        help="training budget in wall time (default: what a user waits) or in process CPU time / "
                             "threads (for a shared machine; generous)")
    parser.add_argument("--verbose", action="store_true", help="print the kept iteration and a weights checksum")
    parser.add_argument("--tta", type=int, default=None,
                        help="flipped views averaged in prediction (default: the plugin's)")
    parser.add_argument("--large-cells", choices=["on", "off"], default="on",
                        help="the half-scale pass for cells larger than the painted ones (default on, as Predict)")
    parser.add_argument("--also-plain", action="store_true",
                        help="also score the same weights from one view without the half-scale pass")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false", help="skip the random forest")
    parser.add_argument("--save-models", type=Path, default=None, metavar="DIR",
                        help="part 1: save each trained model in DIR (to label again without training)")
    args = parser.parse_args(argv)
    args.minutes = [float(m) for m in args.minutes.split(",") if m]
    iterations = [int(n) for n in args.iterations.split(",") if n]
    # (name, TrainConfig limits): an iteration budget gives the same figure on a busy machine
    args.budgets = ([(f"{n} it", dict(iterations=n, time_limit_s=None)) for n in iterations] if iterations else
                    [(f"{m:g} min", dict(iterations=None, time_limit_s=60.0 * m)) for m in args.minutes])
    args.datasets = args.datasets.split(",")
    args.presets = args.presets.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.clock == "cpu":
        # idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs,
        # spinning would count as CPU time and eat the budget without training
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if args.part in ("speed", "all"):
        speed(args)
    if args.part in ("accuracy", "all"):
        accuracy(args)


if __name__ == "__main__":
    main()
