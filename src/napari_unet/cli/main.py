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
import sys
import time
from pathlib import Path

import numpy as np

from ..common.axes import to_canonical
from ..config import MODEL_PRESETS
from ..common.pixel_size import prediction_pixel_size, voxel_spacing
from ..common.progress import ProgressBar, drive, format_seconds
from ..files.safe_write import check_not_input
from ..labels.options import LabelOptions
from ..predict.views import PLUGIN_TTA, describe_tta
from .args import (CliError, non_negative_int, parse_duration, parse_pixel_size, parse_tile, parse_tta, positive_float,
                   positive_int, training_loop)
from .demo import add_demo

__all__ = ["main", "build_parser"]  # write_png: from render, kept for scripts

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr")


# what bad input, files or paths raise in the core: one line on stderr and exit 2, no traceback
_EXPECTED = (CliError, ValueError, TypeError, OSError, MemoryError)


# ---------------------------------------------------------------------------------------------
# argument helpers


def _expand_inputs(inputs) -> list[Path]:
    """Files, folders (their TIFF / zarr entries, sorted) and zarr folders -> image paths."""
    from ..files.images import is_zarr_path

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
    from ..common.checks import as_real_array, check_finite_image
    from ..files.images import read_image

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
    p.add_argument("--preset", choices=list(MODEL_PRESETS), default=None,
                   help="network size: fast (CPU, default), paper (the paper's network, for a GPU), tiny (tests), "
                        "fast3d (a 3D U-Net, as --3d-net), paper3d (Çiçek et al.'s 3D U-Net, for a GPU)")
    p.add_argument("--3d-net", dest="net3d", action="store_true",
                   help="train a 3D U-Net (3x3x3 convolutions) on z-stacks from their painted slices "
                        "(the fast3d preset; the images need a Z axis)")
    p.add_argument("--iterations", type=positive_int, default=None, help="number of iterations (default: the preset's budget unless --time-limit)")
    p.add_argument("--time-limit", type=parse_duration, default=None, help="stop after this long, e.g. 300, 90s, 5m, 1h")
    p.add_argument("--batch-size", type=positive_int, default=None, help="tiles per iteration")
    p.add_argument("--tile", type=parse_tile, default=None, help="training input tile, e.g. 188 or 188x188")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=None, help="adam (default) or sgd (the paper's, momentum 0.99)")
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: 1e-3 Adam, 0.01 SGD)")
    p.add_argument("--no-augment", action="store_true", help="switch data augmentation off")
    p.add_argument("--validation-fraction", type=float, default=None, help="fraction of annotated pixels held out (default 0.1)")
    p.add_argument("--keep", choices=["best", "last"], default=None,
                   help="weights to end with: best (lowest validation loss; the default of a 2D network) or last "
                        "(the final ones, averaged for a 3D network: its default; an interrupted run keeps the best)")
    p.add_argument("--ring", type=non_negative_int, default=None,
                   help="instances: unpainted pixels this close (px) to a painted cell are background, since a "
                        "painted cell is whole (default 1; 0 = the paper's rule, only painted pixels count)")
    p.add_argument("--borders", action="store_true",
                   help="instances: learn a third class, the cell border, and seed one cell per interior")
    p.add_argument("--axes", default=None, help="axes of the images, e.g. YX, CYX, ZYX (default: from the files)")
    p.add_argument("--pixel-size", type=parse_pixel_size, default=None,
                   help="micrometres per pixel, e.g. 0.325 or 0.3x0.25 (default: from the files' metadata)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest available)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--continue", dest="continue_from", default=None, help="continue training this model file")
    p.add_argument("--checkpoint-dir", default=None, help="write checkpoints to this folder")
    p.add_argument("--checkpoint-every", type=parse_duration, default=None, help="time between checkpoints (default 5m)")
    p.add_argument("--resume", default=None, help="resume from this checkpoint file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output model file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _train_config(args):
    import dataclasses

    from ..config import PRESETS_3D, TrainConfig

    preset = args.preset or ("fast3d" if args.net3d else "fast")
    if args.net3d and preset not in PRESETS_3D:
        raise CliError(f"--3d-net trains a 3D network: give --preset {' or '.join(PRESETS_3D)}, or leave --preset out")
    changes = {"mode": args.mode, "preset": preset}
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


def _pixel_size(paths, given, *, voxels: bool = False) -> tuple[float, ...] | None:
    """``--pixel-size``, else the one recorded in the files (they must agree), else None; with
    ``voxels`` (a 3D network) the voxel size (z, y, x) where the files record the z-step."""
    from ..files.images import read_pixel_size
    from ..common.pixel_size import resample_factors

    if given is not None:
        return given
    found = [read_pixel_size(path) for path in paths]
    known = [(f["y"], f["x"]) for f in found if f]
    steps = [f.get("z") for f in found if f]
    if voxels and known and len(known) == len(found) and all(steps) and len(set(steps)) == 1:
        if not any(resample_factors(k, known[0]) for k in known):
            return (steps[0], *known[0])
    if not known:
        return None
    if len(known) != len(found) or any(resample_factors(k, known[0]) for k in known):
        raise CliError(f"the images record different pixel sizes ({', '.join(str(f) for f in found)}): give "
                       "--pixel-size, or train on images of one pixel size")
    return known[0]


def _cmd_train(args) -> int:
    from ..model.files import has_training_state, is_model_file, load_model, save_or_rescue
    from ..files.safe_write import check_output_path
    from ..model.fit import spatial_dims_for
    from ..training.trainer import Trainer

    output = check_output_path(args.output, overwrite=args.overwrite, what="model file")
    if output.exists() and not is_model_file(output):
        raise CliError(f"{output} exists and is not a napari-unet model file; not replacing it (choose another name)")
    if len(args.images) != len(args.annotations):
        raise CliError(f"got {len(args.images)} image(s) but {len(args.annotations)} annotation file(s); give one per image")
    if args.resume and args.continue_from:
        raise CliError("give --resume or --continue, not both")
    config = _train_config(args)
    pixel_size = _pixel_size(args.images, args.pixel_size, voxels=spatial_dims_for(config) == 3)
    images, annotations, axes_list = [], [], []
    for image_path, ann_path in zip(args.images, args.annotations):
        image, axes = _read(Path(image_path), args.axes)
        ann, ann_axes = _read(Path(ann_path), None)
        images.append(np.asarray(image))
        annotations.append(np.asarray(ann))
        axes_list.append(axes)
    if pixel_size is not None:
        import dataclasses

        config = dataclasses.replace(config, pixel_size=pixel_size)
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
    finished = training_loop(trainer, quiet=args.quiet)
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
    p.add_argument("--tile", type=parse_tile, default=None, help="prediction input tile, e.g. 572 or 572x572")
    p.add_argument("--batch-size", type=positive_int, default=None, help="tiles per forward pass")
    p.add_argument("--cell-diameter", type=positive_float, default=None,
                   help="typical cell diameter in pixels for the split of touching cells and the size filter "
                        "(default: the median diameter of the cells painted for training, kept in the model)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs already exist (resume a batch job)")
    p.add_argument("--pixel-size", type=parse_pixel_size, default=None,
                   help="micrometres per pixel of the inputs (default: from their metadata); an image whose pixel "
                   "size differs from the model's by > 5%% is resampled to it, the outputs keep the input's shape")
    p.add_argument("--3d", dest="three_d", action="store_true",
                   help="label 3D objects in z-stacks (one id per object over its planes; voxel size from the "
                   "files' metadata); default: plane by plane")
    p.add_argument("--no-large-cells", dest="large_cells", action="store_false",
                   help="leave out the half-scale pass that finds cells more than twice the painted diameter "
                   "(napari_unet.labels.large_cells; it adds a third to a half to the prediction time; local prediction only)")
    p.add_argument("--tta", type=parse_tta, default=PLUGIN_TTA,
                   help=f"flipped views of each tile averaged: 1 (the network's output once), 2, 4, or auto (2, and 4 "
                   f"on the images where the first two disagree); default {PLUGIN_TTA} ({describe_tta(PLUGIN_TTA)}): "
                   "steadier on noisy images, at up to that many times the network's time")
    p.add_argument("--cluster", default=None, help="predict on a dask cluster into the OME-Zarr -o out.zarr: local, "
                   "local:N (N worker processes) or a scheduler address tcp://host:8786 (see docs/cluster.md)")
    p.add_argument("--block", type=parse_tile, default=None, help="with --cluster: block (and chunk) size, e.g. 2048")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _physical_options(path: Path, args, axes: str, model, options: LabelOptions) -> tuple:
    """(the input's pixel sizes ``{"z", "y", "x"}`` (--pixel-size, else the file's), to_labels
    options for it): the cell diameter in the input's pixels when both pixel sizes are known; with
    --3d (or a 3D network) the voxel spacing (z from the file, else isotropic)."""
    from ..files.images import read_pixel_size
    from ..labels.instances import label_options

    found = read_pixel_size(path) or {}
    space = {**found, **dict(zip("zyx"[-len(args.pixel_size):], args.pixel_size))} if args.pixel_size else found
    pixel = (space["y"], space["x"]) if "y" in space and "x" in space else None
    if pixel is not None and args.cell_diameter is None and options.mode == "instances":
        diameter = label_options(model, "instances", pixel_size=pixel).get("cell_diameter")
        if diameter:
            options = options.but(cell_diameter=diameter)
    if args.three_d:
        if "Z" not in axes or options.mode != "instances":
            raise CliError(f"--3d labels 3D objects of a z-stack in instance mode; {path} has axes {axes}"
                           + ("" if "Z" in axes else " (give --axes ZYX if its first axis is z)"))
        if "z" not in space:
            logger.warning("%s records no z step: 3D objects assume cubic voxels", path)
    if (args.three_d or model.config.spatial_dims == 3 and "z" in space) and options.mode == "instances":
        options = options.but(three_d=True, spacing=voxel_spacing(space))  # a 3D network: the stack's voxel
    return space, options


def _predict_file(model, data, axes: str, args, pixel, options: LabelOptions, bar) -> tuple:
    """(probabilities, labels) of one input, with the half-scale pass unless --no-large-cells."""
    from ..labels.segment import iter_segment

    t0 = time.monotonic()
    return drive(iter_segment(model, data, axes=axes, options=options, device=args.device, pixel_size=pixel,
                              tta=args.tta, large_cells=args.large_cells, tile_shape=args.tile,
                              batch_size=args.batch_size),
                 lambda done, total: bar.update(done, total, format_seconds(time.monotonic() - t0)))


def _cmd_predict(args) -> int:
    from ..files.images import is_complete_image, write_image
    from ..model.files import load_model
    from ..model.fit import check_channels
    from ..files.safe_write import check_output_path, output_lock
    from ..labels.instances import label_options

    if args.overwrite and args.skip_existing:
        raise CliError("give --overwrite or --skip-existing, not both")
    if args.block is not None and args.cluster is None:
        raise CliError("--block sets the blocks of a cluster run: add --cluster local (or local:N, or a scheduler "
                       "address), or leave --block out to predict here")
    if args.cluster is not None:
        from .cluster import predict_on_cluster

        return predict_on_cluster(args, _expand_inputs(args.inputs))
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
        for output in outputs.values():
            check_not_input(output, paths)  # a ValueError: one line, exit 2
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
    options = LabelOptions.of(label_options(model, mode))
    if args.cell_diameter is not None:
        if not (math.isfinite(args.cell_diameter) and args.cell_diameter > 0):
            raise CliError(f"--cell-diameter must be a number of pixels > 0, got {args.cell_diameter}")
        if mode == "instances":
            options = options.but(cell_diameter=args.cell_diameter)
    for number, (path, outputs) in enumerate(jobs, 1):
        data, axes = _read(path, args.axes)
        try:
            check_channels(model, data.shape, axes, str(path))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        bar = ProgressBar(f"[{number}/{len(jobs)}] {path.name}", enabled=not args.quiet)
        replace = args.overwrite or args.skip_existing  # --skip-existing redoes incomplete outputs only
        with output_lock(outdir / f".{_stem(path)}.napari-unet.lock"):
            space, input_options = _physical_options(path, args, axes, model, options)
            probabilities, labels = _predict_file(model, data, axes, args, prediction_pixel_size(space, model),
                                                  input_options, bar)
            out_axes = axes.replace("C", "")
            if "probabilities" in outputs:  # labels last: their presence says the job got to its end
                prob, prob_axes = to_canonical(probabilities, "C" + out_axes)
                write_image(outputs["probabilities"], prob, axes=prob_axes, overwrite=replace, pixel_size=space)
            write_image(outputs["labels"], labels, axes=out_axes, overwrite=replace, pixel_size=space)
        bar.close(f"{path.name}: {int(labels.max()) if mode == 'instances' else len(np.unique(labels))} "
                  f"{'objects' if mode == 'instances' else 'classes'} -> {outputs['labels']}")
    if not jobs and not args.quiet:
        print("nothing to do: all outputs exist", file=sys.stderr)
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
    from ..export.bioimageio import export_bioimageio
    from ..model.files import load_model

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
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation from painted strokes, headless.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,export,demo}")
    _add_train(sub)
    _add_predict(sub)
    _add_export(sub)
    add_demo(sub)
    return parser


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a batch scheduler's cancel, ``kill``) ends a run as Ctrl-C does: locks released,
    the cluster closed, the finished blocks kept for a resume."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):  # pragma: no cover - a platform without SIGTERM
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-unet`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _interrupt_on_sigterm()
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
