"""Headless command line: ``napari-unet train | predict | export | demo`` (also ``python -m napari_unet``).

Examples
--------
Train on two images and their painted annotations (TIFF), five minutes on the CPU::

    napari-unet train img1.tif img2.tif --annotations ann1.tif ann2.tif -o cells.unet --time-limit 5m

Apply the model to every TIFF / zarr of a folder, writing labels (and probabilities)::

    napari-unet predict -m cells.unet experiment/ -o results/ --probabilities

Export a model to the bioimage.io format (ilastik, deepImageJ, QuPath, the model zoo)::

    napari-unet export -m cells.unet --sample img1.tif -o cells.bioimageio.zip

Run the whole paint -> train -> predict loop on the synthetic sample, without a GUI::

    napari-unet demo --out demo/
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from .axes import to_canonical
from .progress import ProgressBar, format_seconds
from .render import gray_rgb, overlay, side_by_side, write_png

__all__ = ["main", "build_parser", "ProgressBar", "write_png"]  # write_png: from render, kept for scripts

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr")


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


# what bad input, files or paths raise in the core: one line on stderr and exit 2, no traceback
_EXPECTED = (CliError, ValueError, TypeError, OSError, MemoryError)


# ---------------------------------------------------------------------------------------------
# argument helpers


def _parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"1.5h"`` -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?|min)\s*", str(text).lower())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; use seconds or e.g. 90s, 5m, 1.5h")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be > 0, got {text!r}")
    return value


def _parse_tile(text: str) -> tuple[int, int]:
    parts = re.split(r"[x,]", text.lower())
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid tile {text!r}; use e.g. 188 or 188x188") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid tile {text!r}; use e.g. 188 or 188x188")
    return tuple(values)  # type: ignore[return-value]


def _expand_inputs(inputs) -> list[Path]:
    """Files, folders (their TIFF / zarr entries, sorted) and zarr folders -> image paths."""
    from .images import is_zarr_path

    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise CliError(f"input not found: {path}")
        if path.is_dir() and not is_zarr_path(path):
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise CliError(f"folder {path} holds no .tif, .tiff or .zarr image")
            out.extend(found)
        else:
            out.append(path)
    return out


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read(path: Path, axes: str | None):
    from .checks import as_real_array, check_finite_image
    from .images import read_image

    try:
        data, found_axes = read_image(path)
        as_real_array(data, str(path))
        check_finite_image(data, str(path))
    except (ValueError, TypeError, OSError) as exc:
        raise CliError(str(exc)) from None
    if axes is not None:
        axes = axes.upper()
        if len(axes) != data.ndim:
            raise CliError(f"--axes {axes!r} has {len(axes)} letters but {path} has {data.ndim} dimensions {tuple(data.shape)}")
        return data, axes
    return data, found_axes


# ---------------------------------------------------------------------------------------------
# train


def _add_train(sub):
    p = sub.add_parser("train", help="train a model on images and their annotations",
                       description="Train a U-Net on images and painted annotations (TIFF / zarr) and save a .unet model file.")
    p.add_argument("images", nargs="+", help="image files (TIFF or zarr)")
    p.add_argument("-a", "--annotations", nargs="+", required=True,
                   help="annotation files, one per image in the same order (0 = not annotated, 1 = background, 2, 3, ... = cells or classes)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.unet)")
    p.add_argument("--mode", choices=["instances", "classes"], default="instances", help="instances (default) or classes")
    p.add_argument("--preset", choices=["fast", "paper", "tiny"], default="fast",
                   help="network size: fast (CPU, default), paper (the paper's network, for a GPU), tiny (tests)")
    p.add_argument("--iterations", type=_positive_int, default=None, help="number of iterations (default: the preset's budget unless --time-limit)")
    p.add_argument("--time-limit", type=_parse_duration, default=None, help="stop after this long, e.g. 300, 90s, 5m, 1h")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="tiles per iteration")
    p.add_argument("--tile", type=_parse_tile, default=None, help="training input tile, e.g. 188 or 188x188")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=None, help="adam (default) or sgd (the paper's, momentum 0.99)")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: 1e-3 Adam, 0.01 SGD)")
    p.add_argument("--no-augment", action="store_true", help="switch data augmentation off")
    p.add_argument("--validation-fraction", type=float, default=None, help="fraction of annotated pixels held out (default 0.1)")
    p.add_argument("--keep", choices=["best", "last"], default=None,
                   help="weights to end with: best (lowest validation loss; default) or last (the final ones; an "
                        "interrupted run keeps the best)")
    p.add_argument("--ring", type=_non_negative_int, default=None,
                   help="instances: unpainted pixels this close (px) to a painted cell are background, since a "
                        "painted cell is whole (default 1; 0 = the paper's rule, only painted pixels count)")
    p.add_argument("--borders", action="store_true",
                   help="instances: learn a third class, the cell border, and seed one cell per interior")
    p.add_argument("--axes", default=None, help="axes of the images, e.g. YX, CYX, ZYX (default: from the files)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest available)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--continue", dest="continue_from", default=None, help="continue training this model file")
    p.add_argument("--checkpoint-dir", default=None, help="write checkpoints to this folder")
    p.add_argument("--checkpoint-every", type=_parse_duration, default=None, help="time between checkpoints (default 5m)")
    p.add_argument("--resume", default=None, help="resume from this checkpoint file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output model file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _train_config(args):
    import dataclasses

    from .config import TrainConfig

    changes = {"mode": args.mode, "preset": args.preset}
    if args.iterations is not None or args.time_limit is not None:
        changes["iterations"] = args.iterations
        changes["time_limit_s"] = args.time_limit
    for name, value in (("batch_size", args.batch_size), ("tile_shape", args.tile), ("optimizer", args.optimizer),
                        ("learning_rate", args.lr), ("validation_fraction", args.validation_fraction),
                        ("device", args.device), ("seed", args.seed), ("checkpoint_dir", args.checkpoint_dir),
                        ("checkpoint_every_s", args.checkpoint_every), ("keep_model", args.keep),
                        ("ring", args.ring), ("borders", args.borders or None)):
        if value is not None:
            changes[name] = value
    base = TrainConfig()
    config = dataclasses.replace(base, **changes)
    if args.no_augment:
        config = dataclasses.replace(config, augment=dataclasses.replace(config.augment, enabled=False))
    return config


def _training_loop(trainer, *, quiet: bool, label: str = "train") -> bool:
    """Drive the training with a progress bar; False when Ctrl-C stopped it (best weights kept)."""
    bar = ProgressBar(label, enabled=not quiet)
    cfg = trainer.config
    last_val = ""
    events = trainer.run()
    try:
        for event in events:
            if event.kind == "validation" and event.val_loss is not None:
                last_val = f" val {event.val_loss:.3f} IoU {event.val_iou:.2f}"
            if event.kind == "checkpoint":
                logger.info("checkpoint written to %s", event.message)
            if event.kind not in ("step", "validation", "done"):
                continue
            if cfg.iterations is not None:
                done, total = event.iteration, cfg.iterations
                if cfg.time_limit_s is not None:
                    done, total = max(event.iteration / cfg.iterations, event.elapsed_s / cfg.time_limit_s), 1.0
            else:
                done, total = event.elapsed_s, cfg.time_limit_s
            info = (f"it {event.iteration} loss {event.loss if event.loss is not None else float('nan'):.3f}{last_val} "
                    f"{event.it_per_s or 0:.2f} it/s {format_seconds(event.elapsed_s)} ETA {format_seconds(event.eta_s)}")
            bar.update(done, total, info, force=event.kind == "done")
            if event.kind == "done":
                bar.close(f"{label}: {event.message} after {event.iteration} iterations, {format_seconds(event.elapsed_s)}")
    except KeyboardInterrupt:
        # Ctrl-C: end like stop(): the generator's cleanup keeps the best model, stopped: true
        trainer.stop()
        events.close()  # ends like the Stop button: best weights kept, stopped: true
        bar.close(f"{label}: interrupted; keeping the best model so far")
        return False
    return True


def _cmd_train(args) -> int:
    from .model_files import has_training_state, is_model_file, load_model, save_or_rescue
    from .outputs import check_output_path
    from .training import Trainer

    output = check_output_path(args.output, overwrite=args.overwrite, what="model file")
    if output.exists() and not is_model_file(output):
        raise CliError(f"{output} exists and is not a napari-unet model file; not replacing it (choose another name)")
    if len(args.images) != len(args.annotations):
        raise CliError(f"got {len(args.images)} image(s) but {len(args.annotations)} annotation file(s); give one per image")
    if args.resume and args.continue_from:
        raise CliError("give --resume or --continue, not both")
    images, annotations, axes_list = [], [], []
    for image_path, ann_path in zip(args.images, args.annotations):
        image, axes = _read(Path(image_path), args.axes)
        ann, ann_axes = _read(Path(ann_path), None)
        images.append(np.asarray(image))
        annotations.append(np.asarray(ann))
        axes_list.append(axes)
    config = _train_config(args)
    try:
        if args.resume:
            if is_model_file(args.resume) and not has_training_state(args.resume):
                raise CliError(f"{args.resume} is a model without training state (not a checkpoint); "
                               f"train it further with --continue {args.resume}")
            trainer = Trainer.resume(args.resume, images, annotations, config=config, axes=axes_list)
        else:
            model = load_model(args.continue_from) if args.continue_from else None
            trainer = Trainer(images, annotations, config=config, model=model, axes=axes_list)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    if not args.quiet:
        n_params = sum(p.numel() for p in trainer.model.parameters())
        print(f"training a {config.preset if config.model is None else 'custom'} U-Net ({n_params / 1e6:.2f} M parameters) "
              f"on {trainer.device}, tile {trainer.input_shape} -> {trainer.output_shape}, batch {trainer.batch_size}",
              file=sys.stderr)
    finished = _training_loop(trainer, quiet=args.quiet)
    saved = save_or_rescue(trainer.model, output, overwrite=args.overwrite)
    if saved != output:
        raise CliError(f"could not write {output}; the trained model was saved to {saved} instead")
    if not args.quiet:
        print(f"model written to {output}", file=sys.stderr)
    return 0 if finished else 130


# ---------------------------------------------------------------------------------------------
# predict


def _add_predict(sub):
    p = sub.add_parser("predict", help="apply a model to images, folders or zarr arrays",
                       description="Predict labels (and optionally probabilities) for TIFF / zarr images with a .unet model.")
    p.add_argument("inputs", nargs="+", help="image files, folders of images, or zarr arrays")
    p.add_argument("-m", "--model", required=True, help="model file (.unet)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--probabilities", action="store_true", help="also write the class probabilities (float32)")
    p.add_argument("--format", choices=["tif", "zarr"], default="tif", help="output format (default tif)")
    p.add_argument("--axes", default=None, help="axes of the inputs, e.g. YX, CYX, ZYX, TZCYX (default: from the files)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest available)")
    p.add_argument("--tile", type=_parse_tile, default=None, help="prediction input tile, e.g. 572 or 572x572")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="tiles per forward pass")
    p.add_argument("--cell-diameter", type=_positive_float, default=None,
                   help="typical cell diameter in pixels for the split of touching cells and the size filter "
                        "(default: the median diameter of the cells painted for training, kept in the model)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs already exist (resume a batch job)")
    p.add_argument("--cluster", default=None, help="predict on a dask cluster into the OME-Zarr -o out.zarr: local, "
                   "local:N (N worker processes) or a scheduler address tcp://host:8786 (see docs/cluster.md)")
    p.add_argument("--block", type=_parse_tile, default=None, help="with --cluster: block (and chunk) size, e.g. 2048")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from .images import is_complete_image, write_image
    from .model_files import load_model
    from .model_fit import check_channels
    from .outputs import check_output_path, output_lock
    from .postprocess import label_options, to_labels
    from .tiling import drive, iter_predict_stack

    if args.overwrite and args.skip_existing:
        raise CliError("give --overwrite or --skip-existing, not both")
    if args.cluster is not None or args.block is not None:
        from .cli_cluster import predict_on_cluster

        return predict_on_cluster(args, _expand_inputs(args.inputs), CliError)
    paths = _expand_inputs(args.inputs)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise CliError(f"-o {outdir} is a file; predict writes into an output folder")
    check_output_path(outdir / "labels.tif", overwrite=True, what="output folder")
    suffix = ".zarr" if args.format == "zarr" else ".tif"
    jobs = []
    for path in paths:
        outputs = {"labels": outdir / f"{_stem(path)}_labels{suffix}"}
        if args.probabilities:
            outputs["probabilities"] = outdir / f"{_stem(path)}_probabilities{suffix}"
        existing = [o for o in outputs.values() if o.exists()]
        if args.skip_existing and all(is_complete_image(o) for o in outputs.values()):
            continue
        if existing and not (args.overwrite or args.skip_existing):
            raise CliError(f"{existing[0]} already exists; pass --overwrite to replace outputs (or --skip-existing)")
        if existing and args.skip_existing:
            logger.warning("redoing %s: its outputs are incomplete (an interrupted run)", path)
        jobs.append((path, outputs))
    names = [_stem(p) for p in paths]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CliError(f"several inputs would write the same output names: {dup}")
    try:
        model = load_model(args.model, device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    mode = model.metadata.get("mode", "instances")
    options = label_options(model, mode)
    if args.cell_diameter is not None:
        if not (math.isfinite(args.cell_diameter) and args.cell_diameter > 0):
            raise CliError(f"--cell-diameter must be a number of pixels > 0, got {args.cell_diameter}")
        if mode == "instances":
            options["cell_diameter"] = args.cell_diameter
    for number, (path, outputs) in enumerate(jobs, 1):
        data, axes = _read(path, args.axes)
        try:
            check_channels(model, data.shape, axes, str(path))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        bar = ProgressBar(f"[{number}/{len(jobs)}] {path.name}", enabled=not args.quiet)
        kwargs = {}
        if args.tile is not None:
            kwargs["tile_shape"] = args.tile
        if args.batch_size is not None:
            kwargs["batch_size"] = args.batch_size
        replace = args.overwrite or args.skip_existing  # --skip-existing redoes incomplete outputs only
        with output_lock(outdir / f".{_stem(path)}.napari-unet.lock"):
            t0 = time.monotonic()
            probabilities = drive(iter_predict_stack(model, data, axes=axes, device=args.device, **kwargs),
                                  lambda done, total: bar.update(
                                      done, total, f"{done}/{total} tiles {format_seconds(time.monotonic() - t0)}"))
            labels = to_labels(probabilities, **options)
            out_axes = axes.replace("C", "")
            if "probabilities" in outputs:  # labels last: their presence says the job got to its end
                prob, prob_axes = to_canonical(probabilities, "C" + out_axes)
                write_image(outputs["probabilities"], prob, axes=prob_axes, overwrite=replace)
            write_image(outputs["labels"], labels, axes=out_axes, overwrite=replace)
        bar.close(f"{path.name}: {int(labels.max()) if mode == 'instances' else len(np.unique(labels))} "
                  f"{'objects' if mode == 'instances' else 'classes'} -> {outputs['labels']}")
    if not jobs and not args.quiet:
        print("nothing to do: all outputs exist", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# demo


def _add_demo(sub):
    p = sub.add_parser("demo", help="paint -> train -> predict on the synthetic sample, headless",
                       description="Train the fast network on the synthetic touching-cells sample and its sparse "
                                   "annotation (~2%% of the pixels), predict a fresh image, score it and write the "
                                   "prediction, the model and a side-by-side PNG.")
    p.add_argument("--out", default="napari-unet-demo", help="output folder (default ./napari-unet-demo)")
    p.add_argument("--minutes", type=_positive_float, default=1.0, help="training time in minutes (default 1)")
    p.add_argument("--long", action="store_true", help="train for 5 minutes (the benchmarked setting)")
    p.add_argument("--size", type=_positive_int, default=384, help="size of the synthetic images (default 384)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training image (the test image uses seed + 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest available)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    import dataclasses

    from .config import TrainConfig
    from .images import write_image
    from .model_files import save_model
    from .metrics import match_instances, pixel_iou, separated_pairs
    from .postprocess import label_options, to_labels
    from .samples import make_touching_cells, touching_pairs
    from .tiling import predict_tiled
    from .training import Trainer

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
    _training_loop(trainer, quiet=args.quiet, label="train")
    say("3/3 predict: a new synthetic image (never seen in training)")
    probabilities = predict_tiled(trainer.model, test_image, device=args.device)
    labels = to_labels(probabilities, **label_options(trainer.model, "instances"))
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
        "expect a mean object F1 of about 0.88-0.96 after 1-5 CPU minutes, lower where the painted cells "
        "are not typical of the image: benchmarks/README.md, 'Segmentation quality on unseen images')")
    for key in ("png", "prediction", "model"):
        print(f"{key}: {names[key]}")
    return 0


# ---------------------------------------------------------------------------------------------
# export


def _add_export(sub):
    p = sub.add_parser("export", help="export a model to the bioimage.io model format",
                       description="Write a .unet model as a bioimage.io model package (zip: rdf.yaml, TorchScript "
                                   "weights, test tensors, cover), for ilastik, deepImageJ, QuPath and the model zoo.")
    p.add_argument("-m", "--model", required=True, help="model file (.unet)")
    p.add_argument("-o", "--output", required=True, help="package to write, e.g. cells.bioimageio.zip")
    p.add_argument("--sample", default=None,
                   help="an image like those the model is for (TIFF / zarr); its first plane gives the test "
                        "tensors and the cover (default: a synthetic image)")
    p.add_argument("--axes", default=None, help="axes of the sample, e.g. YX, CYX, ZYX (default: from the file)")
    p.add_argument("--name", default=None, help="model name shown in the model zoo")
    p.add_argument("--description", default=None, help="one-sentence description")
    p.add_argument("--author", action="append", default=None, help="an author's name (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights (default CC-BY-4.0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from .bioimageio import export_bioimageio
    from .model_files import load_model

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise CliError(f"{output} exists; pass --overwrite to replace it")
    try:
        model = load_model(args.model, device="cpu")
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    sample = None
    if args.sample:
        data, axes = _read(Path(args.sample), args.axes)
        data, axes = to_canonical(np.asarray(data), axes)
        # the first plane of a stack / time series: (C, Y, X) or (Y, X)
        index = tuple(0 if a in "TZ" else slice(None) for a in axes)
        sample = np.asarray(data[index])
        if "C" not in axes and model.config.in_channels > 1:
            raise CliError(f"the model takes {model.config.in_channels} channels but {args.sample} has axes {axes}")
    try:
        path = export_bioimageio(model, output, sample=sample, name=args.name, description=args.description,
                                 authors=args.author, license=args.license, overwrite=args.overwrite)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None
    print(f"bioimage.io package written to {path}")
    return 0


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation from painted strokes, headless.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,export,demo}")
    _add_train(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except _EXPECTED as exc:
        # a user error (bad input, file, path, memory): one line; --debug shows the traceback
        if args.debug:
            raise
        print(f"napari-unet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-unet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
