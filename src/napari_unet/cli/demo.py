"""``napari-unet demo``: the whole paint -> train -> predict loop on the synthetic sample, headless."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..labels.render import gray_rgb, overlay, side_by_side, write_png
from .args import CliError, positive_float, positive_int, training_loop

__all__ = ["add_demo", "cmd_demo"]


def add_demo(sub):
    """The ``demo`` sub-command."""
    p = sub.add_parser("demo", help="paint -> train -> predict on the synthetic sample, headless",
                       description="Train the fast network on the synthetic touching-cells sample and its sparse "
                                   "annotation (~2%% of the pixels), predict a fresh image, score it and write the "
                                   "prediction, the model and a side-by-side PNG.")
    p.add_argument("--out", default="napari-unet-demo", help="output folder (default ./napari-unet-demo)")
    p.add_argument("--minutes", type=positive_float, default=1.0, help="training time in minutes (default 1)")
    p.add_argument("--long", action="store_true", help="train for 5 minutes (the benchmarked setting)")
    p.add_argument("--size", type=positive_int, default=384, help="size of the synthetic images (default 384)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training image (the test image uses seed + 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest available)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    """paint -> train -> predict on the synthetic sample, headless; prints the scores."""
    import dataclasses

    from ..config import TrainConfig
    from ..files.images import write_image
    from ..model.files import save_model
    from ..labels.metrics import match_instances, pixel_iou, separated_pairs
    from ..samples import make_touching_cells, touching_pairs
    from ..labels.segment import segment
    from ..training.trainer import Trainer
    from ..predict.views import PLUGIN_TTA

    out = Path(args.out)
    names = {"model": out / "demo.unet", "prediction": out / "prediction_labels.tif",
             "image": out / "test_image.tif", "annotations": out / "train_annotations.tif",
             "train_image": out / "train_image.tif", "png": out / "demo.png"}
    existing = [p for p in names.values() if p.exists()]
    if existing and not args.overwrite:
        raise CliError(f"{existing[0]} already exists; pass --overwrite or choose another --out")
    if args.size < 256:
        raise CliError(f"--size must be >= 256 (smaller synthetic samples have too few painted strokes), got {args.size}")
    minutes = 5.0 if args.long else float(args.minutes)
    if minutes <= 0:
        raise CliError(f"--minutes must be > 0, got {args.minutes}")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    shape = (args.size, args.size)
    image, _, annotations = make_touching_cells(shape, seed=args.seed)
    test_image, test_instances, _ = make_touching_cells(shape, seed=args.seed + 1)
    painted = float((annotations > 0).mean())
    say(f"1/3 annotate: synthetic {shape[0]}x{shape[1]} image, {int(annotations.max()) - 1} cells painted + "
        f"background strokes ({100 * painted:.1f}% of the pixels)")
    base = TrainConfig()
    config = dataclasses.replace(base, preset="fast", iterations=None, time_limit_s=60.0 * minutes,
                                 device=args.device, seed=args.seed)
    try:
        trainer = Trainer([image], [annotations], config=config)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{exc} (try a larger --size)") from None
    say(f"2/3 train: fast U-Net on {trainer.device} for {minutes:g} min")
    training_loop(trainer, quiet=args.quiet, label="train")
    say("3/3 predict: a new synthetic image (never seen in training)")
    _, labels = segment(trainer.model, test_image, axes="YX", device=args.device,
                        tta=PLUGIN_TTA)  # as the Predict widget
    scores = match_instances(test_instances, labels)
    sep, n_pairs = separated_pairs(test_instances, labels, touching_pairs(test_instances))
    out.mkdir(parents=True, exist_ok=True)
    save_model(trainer.model, names["model"], overwrite=args.overwrite)
    write_image(names["train_image"], image, axes="YX", overwrite=args.overwrite)
    write_image(names["annotations"], annotations, axes="YX", overwrite=args.overwrite)
    write_image(names["image"], test_image, axes="YX", overwrite=args.overwrite)
    write_image(names["prediction"], labels, axes="YX", overwrite=args.overwrite)
    # left: training image, middle: its annotation, right: prediction on the new image
    picture = np.concatenate([side_by_side(image, annotations, np.zeros_like(labels))[:, : 2 * shape[1] + 8],
                              np.full((shape[0], 8, 3), 255, np.uint8),
                              overlay(gray_rgb(test_image), labels)], axis=1)
    write_png(names["png"], picture)
    print(f"object F1 (IoU >= 0.5) {scores['f1']:.3f} (precision {scores['precision']:.3f}, recall {scores['recall']:.3f}), "
          f"pixel IoU {pixel_iou(test_instances, labels):.3f}, touching pairs separated {sep}/{n_pairs}")
    say("(a synthetic image like the painted one; on images nobody tuned for, painted with ~10 whole cells, "
        "expect a mean object F1 of about 0.92-0.97 after 1-5 CPU minutes, lower where the painted cells "
        "are not typical of the image: benchmarks/README.md, 'Segmentation quality on unseen images')")
    for key in ("png", "prediction", "model"):
        print(f"{key}: {names[key]}")
    return 0
