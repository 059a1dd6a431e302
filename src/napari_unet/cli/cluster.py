"""``napari-unet predict --cluster ...``: one large image or stack on a dask cluster, into OME-Zarr.

Called by :mod:`napari_unet.cli.main` (which owns the arguments); the work is
:func:`napari_unet.cluster.distributed.predict_distributed`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

from ..common.progress import ProgressBar, format_seconds
from .args import CliError

__all__ = ["predict_on_cluster"]


def predict_on_cluster(args, paths: list[Path]) -> int:
    """Run ``predict`` with ``--cluster`` / ``--block``."""
    from ..cluster.distributed import iter_predict_distributed
    from ..model.files import load_model
    from ..common.progress import drive

    if len(paths) != 1:
        raise CliError(f"--cluster predicts one image or stack (a zarr, OME-Zarr or TIFF) at a time, got {len(paths)}")
    out = Path(args.output)
    if out.suffix.lower() != ".zarr":
        raise CliError(f"with --cluster, -o names the OME-Zarr to write, e.g. -o {paths[0].stem}_prediction.zarr; got {out}")
    if args.three_d:
        raise CliError("--3d is not available with --cluster: the cluster labels plane by plane (ids unique over the "
                       "volume); predict the stack without --cluster for 3D objects")
    if args.skip_existing:
        raise CliError("--skip-existing is not used with --cluster: a run started again resumes where it stopped")
    if args.quiet:  # dask's own INFO lines too, in this process and in the workers it starts
        os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if importlib.util.find_spec("distributed") is None:
        raise CliError('--cluster needs dask.distributed: pip install "napari-scribble-unet[cluster]"')
    model = load_model(args.model, device="cpu")
    if args.large_cells:
        print("note: the half-scale pass for cells much larger than the painted ones runs in local prediction only; "
              "labels on a cluster equal local ones made with --no-large-cells", file=sys.stderr)
    bar = ProgressBar(f"{paths[0].name} on {args.cluster or 'a local cluster'}", enabled=not args.quiet)
    t0 = time.monotonic()
    result = drive(
        iter_predict_distributed(
            model, paths[0], out, client=args.cluster, block_shape=args.block, axes=args.axes,
            probabilities=args.probabilities, tile_shape=args.tile, device=args.device, overwrite=args.overwrite,
            label_kwargs={"cell_diameter": args.cell_diameter} if args.cell_diameter else None,
            pixel_size=args.pixel_size, tta=args.tta,
        ),
        lambda done, total: bar.update(done, total, f"{done}/{total} tasks {format_seconds(time.monotonic() - t0)}"),
    )
    bar.close(result.summary())
    if args.quiet:
        print(result.summary(), file=sys.stderr)
    return 0
