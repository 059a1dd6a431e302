"""Prediction on a dask cluster: exact probabilities and global instance labels, block by block.

The image (or stack) is cut into blocks of ``block_shape`` pixels per plane; every block is one
chunk of the output, so blocks write whole chunks: no locks, no blending. Three kinds of task:

1. **predict**: a block reads its own context from the source (mirrored at the image borders
   exactly as :func:`~napari_unet.predict_tiled` does) and its tiles lie on the pooling grid of
   the whole image (:func:`~napari_unet.predict.tiling.predict_block`), so the probabilities equal
   the whole-image prediction whatever the block shape (fp32: to float rounding, < 1e-6).
2. **label**: once its 3 x 3 neighbours are predicted, a block labels a window of probabilities
   (its core and a halo of context), keeps its core with local ids and records its faces
   (:mod:`napari_unet.labels.merge`).
3. **relabel**: the client merges the faces into one numbering (union-find over the face
   adjacency) and each block writes its final ids (uint32, unique over the whole stack).

Every finished task leaves a mark in ``<out>/.napari-unet-run/`` only after its chunks are
written; a run started again after a crash or Ctrl-C does only what has no mark, and refuses
when the marks belong to another model, input or settings. A lock file keeps a second run
from writing the same output. The result is OME-Zarr (:mod:`napari_unet.files.ngff`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import shutil
import time
import uuid
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator

import numpy as np

from ..common.axes import check_axes, guess_axes
from ..common.checks import as_real_array, check_float, check_pair
from ..common.devices import PRECISIONS
from ..common.pixel_size import check_pixel_size, model_pixel_size, resample_factors
from ..common.progress import Progress, drive
from ..files.images import is_zarr_path, read_image, read_pixel_size
from ..files.ngff import (PROBABILITIES_PATH, create_prediction_group, foreign_entries, mark_complete, open_prediction,
                          write_prediction_metadata)
from ..files.safe_write import RUN_DIR, atomic_write_bytes, check_not_input, exists_error, is_ours, output_lock
from ..labels.instances import label_context, label_options, to_labels
from ..labels.merge import FACES, BlockGrid, block_labels, merge_faces
from ..labels.options import LabelOptions
from ..model.fit import check_channels
from ..model.unet import UNet
from .client import connect, model_digest, source_identity, wait_until_stopped, worker_model, worker_source

__all__ = ["DistributedResult", "iter_predict_distributed", "predict_distributed", "DEFAULT_BLOCK"]

logger = logging.getLogger(__name__)

DEFAULT_BLOCK = 1024
_STAGES = ("predicted", "labelled", "final")


@dataclass
class DistributedResult:
    """What a distributed prediction did: the output group, blocks, objects, time and speed."""

    path: Path
    blocks: int
    computed: int  # blocks predicted by this run (fewer when it resumed an interrupted one)
    objects: int | None
    seconds: float
    megapixels_per_second: float
    block_seconds: float | None  # mean seconds of compute per predicted block, on a worker

    def summary(self) -> str:
        objects = "" if self.objects is None else f", {self.objects} objects"
        return (f"{self.blocks} blocks ({self.computed} computed){objects} in {self.seconds:.1f} s, "
                f"{self.megapixels_per_second:.2f} MP/s -> {self.path}")


# ------------------------------------------------------------------------------ tasks (workers)
def _mark(run_dir: str, stage: str, key) -> Path:
    return Path(run_dir) / stage / BlockGrid.name(key)


def _predict_task(model, digest, source, axes, key, core, norm, out, settings) -> float:
    """Predict one block and write its chunk; returns the seconds it took."""
    from ..predict.tiling import predict_block

    t0 = time.perf_counter()
    net = worker_model(model, digest, settings["device"], settings["threads"])
    try:
        probabilities = predict_block(
            net, worker_source(source, settings.get("source_id")), axes=axes, block=(key[0], *core),
            normalize=norm if norm else False,
            tile_shape=settings["tile_shape"], device=next(net.parameters()).device, precision=settings["precision"],
            tta=settings["tta"],
        )
    except (ValueError, TypeError, OSError, MemoryError):
        raise
    except Exception as exc:  # e.g. a garbled chunk of the source: say which block, in one line
        raise OSError(f"block {BlockGrid.name(key)} of {source if isinstance(source, str) else 'the source'}: "
                      f"{type(exc).__name__}: {exc}") from exc
    arr = open_prediction(out, "r+")["probabilities"]
    arr[(slice(None), *key[0], *core)] = probabilities
    _write_mark(settings["run_dir"], "predicted", key, probabilities.astype(np.float32, copy=False))
    return time.perf_counter() - t0


def _digest(values: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(values).tobytes()).hexdigest()


def _write_mark(run_dir: str, stage: str, key, written: np.ndarray) -> None:
    """The mark of a finished block: the checksum of the chunk it wrote (checked on resume)."""
    atomic_write_bytes(_mark(run_dir, stage, key), _digest(written).encode())


def _damaged_task(out, stage: str, key, core, run_dir) -> tuple | None:
    """``key`` when the chunk its ``stage`` mark vouches for is missing or differs from what was
    written (deleted, truncated, garbled), else None."""
    if stage == "labelled":
        try:
            _saved_faces(run_dir, key)
            return None
        except Exception:  # noqa: BLE001 - a damaged record of the faces: label the block again
            return key
    try:
        expected = _mark(run_dir, stage, key).read_text().strip()
        arrays = open_prediction(out, "r")
        if stage == "predicted":
            found = np.asarray(arrays["probabilities"][(slice(None), *key[0], *core)], dtype=np.float32)
        else:
            found = np.asarray(arrays["labels"][(*key[0], *core)], dtype=np.uint32)
    except Exception:  # noqa: BLE001 - an unreadable chunk (or mark) is a damaged one: redo the block
        return key
    return None if expected and _digest(found) == expected else key


def _label_task(out, key, core, window, options: LabelOptions, run_dir, *_neighbours):
    """Label one block's window; keep the core with local ids and the faces (saved, returned)."""
    arrays = open_prediction(out, "r+")
    probabilities = np.asarray(arrays["probabilities"][(slice(None), *key[0], *window)])
    inside = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, window))
    if options.mode == "classes":
        classes = np.argmax(probabilities[(slice(None), *inside)], axis=0).astype(np.uint32)
        arrays["labels"][(*key[0], *core)] = classes
        _write_mark(run_dir, "final", key, classes)
        return 0, None
    labels = to_labels(probabilities, **options.kwargs())
    local, n, faces = block_labels(labels, inside)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, local=local, n=n, **{f"{f}_ids": faces[f][0] for f in FACES},
                        **{f"{f}_same": faces[f][1] for f in FACES})
    atomic_write_bytes(_mark(run_dir, "labelled", key).with_suffix(".npz"), buffer.getvalue())
    return n, faces


def _relabel_task(out, key, core, lut, run_dir) -> None:
    with np.load(_mark(run_dir, "labelled", key).with_suffix(".npz")) as saved:
        local = saved["local"]
    ids = lut[local].astype(np.uint32, copy=False)
    open_prediction(out, "r+")["labels"][(*key[0], *core)] = ids
    _write_mark(run_dir, "final", key, ids)


def _saved_faces(run_dir: str, key) -> tuple[int, dict]:
    with np.load(_mark(run_dir, "labelled", key).with_suffix(".npz")) as saved:
        return int(saved["n"]), {f: (saved[f"{f}_ids"], saved[f"{f}_same"]) for f in FACES}


# ------------------------------------------------------------------------------- the job (client)
@dataclass
class _Job:
    model: UNet
    source: Any  # what workers read: a zarr path or an array
    data: Any  # the same, opened here
    axes: str
    grid: BlockGrid
    out: Path
    norm: Any
    options: LabelOptions
    labels: bool
    probabilities: bool
    settings: dict
    scale: dict | None
    halo: int
    source_path: Path | None = None  # the file or folder read, when the source is one
    source_id: str = ""  # a digest of the source's shape, type and a sample of its content
    marks: dict = field(default_factory=dict)  # stage -> names of the blocks marked done

    @property
    def run_dir(self) -> str:
        return str(self.out / RUN_DIR)

    def load_marks(self) -> None:
        """Read the marks of every stage at once (one listing per stage, not one look per block)."""
        for stage in _STAGES:
            folder = Path(self.run_dir) / stage
            suffix = ".npz" if stage == "labelled" else ""
            try:
                names = {e.name[:len(e.name) - len(suffix)] for e in os.scandir(folder)
                         if e.name.endswith(suffix) and not e.name.startswith(".")}
            except FileNotFoundError:
                names = set()
            if suffix == "":
                names = {n for n in names if "." not in n}
            self.marks[stage] = names

    def done(self, stage: str, key) -> bool:
        return BlockGrid.name(key) in self.marks.get(stage, ())

    def undo(self, stage: str, key) -> None:
        mark = _mark(self.run_dir, stage, key)
        (mark.with_suffix(".npz") if stage == "labelled" else mark).unlink(missing_ok=True)
        self.marks.get(stage, set()).discard(BlockGrid.name(key))


#: the most blocks one run takes (each is up to three tasks the client tracks)
MAX_BLOCKS = 100_000


def _open_source(source, axes):
    """(what workers read, the array here, its axes, its pixel scale)."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        data, file_axes = read_image(path)
        scale = read_pixel_size(path)  # a file's pixel size (OME-Zarr, OME-TIFF, ImageJ), warned when unusable
        lazy = is_zarr_path(path) and not isinstance(data, np.ndarray)
        return (str(path) if lazy else data), data, (axes or file_axes), scale
    data = as_real_array(source, "source")
    return data, data, (axes or guess_axes(data.shape)), None


def _block_shape(block_shape, model: UNet) -> tuple[int, int]:
    g = model.pool_factor
    if block_shape is None:
        block_shape = DEFAULT_BLOCK
    by, bx = check_pair("block_shape", block_shape, minimum=g, maximum=1 << 20)
    return -(-by // g) * g, -(-bx // g) * g  # blocks start on the pooling grid


def _prepare(model, source, out, *, block_shape, axes, labels, probabilities, precision, tile_shape, device,
             label_kwargs=None, pixel_size=None, tta=1):
    from ..predict.tiling import normalization_range
    from ..predict.views import AUTO, check_tta

    if not isinstance(model, UNet):
        raise TypeError(f"model must be a napari_unet.UNet, got {type(model).__name__}")
    if model.config.spatial_dims != 2:
        raise ValueError("predict_distributed predicts with 2D networks for now; a 3D U-Net predicts a stack "
                         "with predict_tiled / segment (one machine, seamless 3D tiles)")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not (labels or probabilities):
        raise ValueError("nothing to write: labels and probabilities are both False")
    ref, data, axes, scale = _open_source(source, axes)
    scale = _checked_scale(model, scale, pixel_size)
    shape = tuple(int(s) for s in data.shape)
    axes = check_axes(axes, shape, "source")
    check_channels(model, shape, axes, "source")
    plane_shape = tuple(shape[i] for i, ax in enumerate(axes) if ax not in "CYX")
    grid = BlockGrid(plane_shape, shape[axes.index("Y")], shape[axes.index("X")], _block_shape(block_shape, model))
    blocks = int(np.prod(plane_shape, dtype=np.float64)) * grid.counts[0] * grid.counts[1]
    if blocks > MAX_BLOCKS:
        side = int(np.ceil(np.sqrt(grid.height * grid.width * max(1, int(np.prod(plane_shape, dtype=np.float64)))
                                   / MAX_BLOCKS) / 64) * 64)
        raise ValueError(f"the source of shape {shape} makes {blocks:,} blocks of {grid.block}, over the "
                         f"{MAX_BLOCKS:,} one run can track: choose larger blocks (block_shape={side} or more) "
                         "or predict a part of the image")
    options = LabelOptions.of({**label_options(model), **(dict(label_kwargs) if label_kwargs else {})})
    if options.mode == "classes":
        options = LabelOptions(mode="classes")
    diameter = options.cell_diameter
    if diameter is not None:
        diameter = check_float("cell_diameter", diameter, above=0.0, below=1e5)
        options = options.but(cell_diameter=diameter)
    context = label_context(diameter)
    if labels and options.mode != "classes" and min(grid.block) < context:
        raise ValueError(f"blocks of {grid.block} px are smaller than the {context} px of context that labelling "
                         f"cells of {diameter or 'unknown'} px needs: the labels would differ from the whole image's; "
                         f"choose block_shape={-(-context // 64) * 64} or more")
    halo = min(min(grid.block), context)
    norm = normalization_range(model, data, axes=axes)
    tta = 4 if check_tta(tta) == AUTO else tta  # "auto" is decided per whole image, which no block sees
    settings = {"precision": precision, "tile_shape": tile_shape, "device": device, "threads": None, "tta": tta}
    source_path = Path(source).expanduser() if isinstance(source, (str, Path)) else None
    try:
        identity = source_identity(data, source_path)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # e.g. a garbled chunk: one line that names the source
        raise OSError(f"cannot read the source {source_path or ''}: {type(exc).__name__}: {exc}") from exc
    return _Job(model, ref, data, axes, grid, Path(out).expanduser(), norm, options, bool(labels), bool(probabilities),
                settings, scale, halo, source_path=source_path, source_id=identity)


def _checked_scale(model, scale: dict | None, pixel_size) -> dict | None:
    """The pixel scale of the output; refuses an image whose pixel size is not the model's."""
    given = check_pixel_size(pixel_size)
    if given is not None:
        scale = {**(scale or {}), "y": given[0], "x": given[1]}
    factors = resample_factors((scale["y"], scale["x"]), model_pixel_size(model)) if scale and "y" in scale else None
    if factors is not None:
        raise ValueError(f"the image has {scale['x']:.3g} µm per pixel and the model {model_pixel_size(model)[1]:.3g}: "
                         "on a cluster, resample the image to the model's pixel size first (predict_tiled / "
                         "predict_stack resample by themselves)")
    return scale


def _fingerprint(job: _Job, digest: str) -> dict:
    norm = None if job.norm is None else [np.asarray(v).tolist() for v in job.norm]
    return {
        "format": 2, "model": digest, "shape": [int(s) for s in job.data.shape], "dtype": str(job.data.dtype),
        "source": {"path": None if job.source_path is None else str(job.source_path.resolve()),
                   "content": job.source_id},
        "axes": job.axes, "block": list(job.grid.block), "labels": job.labels, "probabilities": job.probabilities,
        "options": job.options.kwargs(), "normalization": norm, "precision": job.settings["precision"],
        **({"tta": job.settings["tta"]} if job.settings["tta"] != 1 else {}),  # runs without it resume as before
        "tile_shape": None if job.settings["tile_shape"] is None else list(job.settings["tile_shape"]),
    }


def _check_output(job: _Job, digest: str, overwrite: bool) -> dict | None:
    """Every check of the output, before anything is created or removed: the recorded run to
    resume (None: a new output)."""
    out, run = job.out, Path(job.run_dir)
    if out.suffix.lower() != ".zarr":
        raise ValueError(f"out must be a .zarr folder (an OME-Zarr group), got {out}")
    check_not_input(out, [job.source_path])
    if out.is_symlink():
        raise ValueError(f"out {out} is a link: name the folder itself")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"out {out}: {parent} is a file, not a folder")
            break
    if not out.exists():
        return None
    if not is_ours(out):
        raise FileExistsError(f"{out} exists and bears no mark of napari-unet: not replacing it, even with "
                              "overwrite (it may hold your data); choose another output")
    try:
        found = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else None
    except ValueError:
        found = {}  # a damaged record: another run's for all we know
    wanted = _fingerprint(job, digest)
    if found is None and not overwrite:
        raise exists_error(out)  # a finished output
    foreign = foreign_entries(out)
    if foreign and found != wanted:  # overwrite would remove them
        raise FileExistsError(f"{out} holds what napari-unet did not write ({', '.join(foreign[:5])}): not "
                              "replacing it; move those out, or choose another output")
    if found == wanted:
        _check_arrays(job)
    if found is not None and found != wanted and not overwrite:
        changed = sorted(k for k in wanted if found.get(k) != wanted[k]) or ["the run record"]
        raise ValueError(f"{out} holds an interrupted run with another {', '.join(changed)}; pass overwrite=True "
                         "(--overwrite) to start again, or choose another output")
    return found


def _check_arrays(job: _Job) -> None:
    """The arrays of an interrupted run, as it created them (a changed type, shape or chunking
    would mix values of two kinds)."""
    expected = {"probabilities": ((job.model.config.n_classes, *job.grid.plane_shape, job.grid.height, job.grid.width),
                                  np.float32),
                "labels": ((*job.grid.plane_shape, job.grid.height, job.grid.width), np.uint32)}
    try:
        arrays = open_prediction(job.out)
        problems = []
        for name, (shape, dtype) in expected.items():
            if name == "labels" and not job.labels:
                continue
            arr = arrays.get(name)
            block = tuple(min(b, n) for b, n in zip(job.grid.block, shape[-2:]))
            if arr is None or tuple(arr.shape) != shape or arr.dtype != dtype or tuple(arr.chunks[-2:]) != block:
                problems.append(name)
    except Exception as exc:  # noqa: BLE001 - unreadable metadata: say which output, and the way out
        raise ValueError(f"{job.out}: the interrupted run's arrays cannot be read ({type(exc).__name__}: {exc}); "
                         "pass overwrite=True (--overwrite) to start again") from None
    if problems:
        raise ValueError(f"{job.out}: the interrupted run's {' and '.join(problems)} changed type, shape or chunks "
                         "since; pass overwrite=True (--overwrite) to start again")


def _open_output(job: _Job, digest: str, overwrite: bool) -> None:
    """Create the output, or keep an existing one that is this run's to resume (checked by
    :func:`_check_output`, again now that the lock is held)."""
    out, run = job.out, Path(job.run_dir)
    found = _check_output(job, digest, overwrite)
    wanted = _fingerprint(job, digest)
    if out.exists() and found != wanted:  # overwrite, of a folder that bears our mark and holds only ours
        shutil.rmtree(out)
    create_prediction_group(out, n_classes=job.model.config.n_classes, plane_shape=job.grid.plane_shape,
                            image_shape=(job.grid.height, job.grid.width), block_shape=job.grid.block,
                            labels=job.labels)
    for stage in _STAGES:
        (run / stage).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run / "run.json", json.dumps(wanted, sort_keys=True).encode())
    job.load_marks()


def _redo_damaged(client, job: _Job) -> int:
    """Check, on the cluster, every chunk a mark vouches for; undo the marks of the missing or
    damaged ones (and what depends on them) so that this run does them again. Returns how many."""
    checks = [(stage, key) for stage in ("predicted", "labelled", "final") for key in job.grid.keys()
              if job.done(stage, key)]
    if not checks:
        return 0
    futures = [client.submit(_damaged_task, str(job.out), stage, key, job.grid.core(key), job.run_dir, pure=False)
               for stage, key in checks]
    damaged = [(stage, key) for (stage, key), f in zip(checks, futures) if f.result() is not None]
    for stage, key in damaged:
        logger.warning("block %s of %s is missing or damaged (%s): doing it again", BlockGrid.name(key), job.out, stage)
        job.undo(stage, key)
        if stage == "predicted":  # the labels of its neighbours read its probabilities
            for k in job.grid.neighbours(key):
                job.undo("labelled", k)
    instances = job.labels and job.options.mode == "instances"
    if instances and any(not job.done("labelled", k) for k in job.grid.keys()):
        for key in job.grid.keys():  # new faces: the numbering of every block may change
            job.undo("final", key)
    return len(damaged)


def _wait(futures, counter, total):
    """Yield (done, total) as ``futures`` finish; raise the first task error."""
    from distributed import as_completed

    if not futures:
        return
    # the client's own loop: ours is not dask's default client (a user's dask work is not sent to it)
    for future in as_completed(futures, loop=futures[0].client.loop):
        future.result()  # raises the task's error here
        counter[0] += 1
        yield counter[0], total


def _submit_blocks(client, job: _Job, model_ref, source_ref, digest: str, run_id: str):
    """Submit the predict and label tasks still to do: ({key: predict future}, {key: label future})."""
    keys = job.grid.keys()
    predicted = {}
    for key in keys:
        if not job.done("predicted", key):
            predicted[key] = client.submit(
                _predict_task, model_ref, digest, source_ref, job.axes, key, job.grid.core(key), job.norm,
                str(job.out), job.settings, key=f"napari-unet-predict-{run_id}-{BlockGrid.name(key)}", pure=False)
    labelled = {}
    if job.labels:
        for key in keys:
            if not job.done("labelled" if job.options.mode == "instances" else "final", key):
                deps = [predicted[k] for k in job.grid.neighbours(key) if k in predicted]
                labelled[key] = client.submit(
                    _label_task, str(job.out), key, job.grid.core(key), job.grid.window(key, job.halo), job.options,
                    job.run_dir, *deps, key=f"napari-unet-label-{run_id}-{BlockGrid.name(key)}", pure=False)
    return predicted, labelled


def _merge(job: _Job, labelled: dict) -> tuple[dict, int]:
    counts, faces = {}, {}
    for key in job.grid.keys():
        if key in labelled:
            counts[key], faces[key] = labelled[key].result()
        else:
            counts[key], faces[key] = _saved_faces(job.run_dir, key)
    luts = merge_faces(counts, faces)
    objects = max((int(lut.max()) for lut in luts.values() if lut.size > 1), default=0)
    return luts, objects


def _finish(job: _Job) -> None:
    write_prediction_metadata(job.out, axes=job.axes.replace("C", ""), scale=job.scale,
                              probabilities=job.probabilities, labels=job.labels,
                              attrs={"napari_unet": {"blocks": list(job.grid.block), "halo": job.halo}})
    if not job.probabilities:
        shutil.rmtree(job.out / PROBABILITIES_PATH, ignore_errors=True)
    mark_complete(job.out)
    shutil.rmtree(job.run_dir, ignore_errors=True)


def iter_predict_distributed(model, source, out, *, client=None, block_shape=None, axes=None, labels=True,
                             probabilities=True, precision="auto", tile_shape=None, device=None,
                             overwrite=False, label_kwargs=None,
                             pixel_size=None, tta=1) -> Generator[tuple[int, int], None, DistributedResult]:
    """Generator form of :func:`predict_distributed`: yields ``(done, total)`` tasks; closing it
    cancels the tasks not yet finished (a later run resumes from the finished blocks)."""
    t0 = time.monotonic()
    job = _prepare(model, source, out, block_shape=block_shape, axes=axes, labels=labels,
                   probabilities=probabilities, precision=precision, tile_shape=tile_shape, device=device,
                   label_kwargs=label_kwargs, pixel_size=pixel_size, tta=tta)
    digest = model_digest(model)
    _check_output(job, digest, overwrite)  # before the cluster starts or anything is written
    futures: list = []
    stack = contextlib.ExitStack()  # the lock (its folders go with it when nothing was written), the cluster
    try:
        stack.enter_context(output_lock(job.out.parent / f".{job.out.name}.napari-unet.lock"))
        connection = connect(client)
        stack.callback(connection.close)
    except BaseException:
        stack.close()
        raise
    with stack:
        created = not job.out.exists()
        _open_output(job, digest, overwrite)
        job.settings.update(run_dir=job.run_dir, source_id=job.source_id, threads=connection.threads)
        dask_client = connection.client
        try:
            _redo_damaged(dask_client, job)
            model_ref = dask_client.scatter(copy.deepcopy(model).cpu(), broadcast=True, hash=False)
            source_ref = job.source if isinstance(job.source, str) else dask_client.scatter(
                job.source, broadcast=True, hash=False)
            run_id = uuid.uuid4().hex[:8]
            predicted, labelled = _submit_blocks(dask_client, job, model_ref, source_ref, digest, run_id)
            futures = [*predicted.values(), *labelled.values()]
            keys = job.grid.keys()
            relabel_todo = [k for k in keys if job.labels and not job.done("final", k)]
            total, counter = len(futures) + len(relabel_todo), [0]
            yield 0, total
            yield from _wait(futures, counter, total)
            objects = None
            if job.labels and job.options.mode == "instances":
                luts, objects = _merge(job, labelled)
                futures = [dask_client.submit(_relabel_task, str(job.out), k, job.grid.core(k), luts[k], job.run_dir,
                                              key=f"napari-unet-relabel-{run_id}-{BlockGrid.name(k)}", pure=False)
                           for k in relabel_todo]
                yield from _wait(futures, counter, total)
            block_seconds = [f.result() for f in predicted.values()]
        except BaseException as exc:
            if futures:
                dask_client.cancel(futures)
            # an output this run created is removed when there is nothing to resume in it, or
            # when the input itself is at fault (NaN, a bad value): a crash, a kill or Stop keep it
            if created and (isinstance(exc, (ValueError, TypeError))
                            or not any(Path(job.run_dir, "predicted").glob("[!.]*"))):
                wait_until_stopped(dask_client, futures)  # a block still running would write after
                shutil.rmtree(job.out, ignore_errors=True)
            raise
        _finish(job)
    seconds = time.monotonic() - t0
    pixels = max(int(np.prod(job.grid.plane_shape)), 1) * job.grid.height * job.grid.width
    return DistributedResult(job.out, len(keys), len(predicted), objects, seconds, pixels / 1e6 / max(seconds, 1e-9),
                             float(np.mean(block_seconds)) if block_seconds else None)


def predict_distributed(model, source, out, *, client=None, block_shape=None, axes=None, labels=True,
                        probabilities=True, precision="auto", progress: Progress | None = None, tile_shape=None,
                        device=None, overwrite=False, label_kwargs=None, pixel_size=None, tta=1) -> DistributedResult:
    """Predict a large image or stack on a dask cluster into an OME-Zarr group.

    Parameters
    ----------
    model : UNet
    source : str, Path or array
        A zarr array or group path (OME-Zarr: its first resolution level), or any array (numpy,
        zarr, dask). A path is opened by each worker and read block by block, so it may be larger
        than any worker's memory; an array is sent to each worker once.
    out : str or Path
        The ``.zarr`` group to write: ``probabilities`` (float32, ``(n_classes, ..., Y, X)``)
        and ``labels/cells/0`` (uint32 ids unique over the whole stack), see :mod:`napari_unet.files.ngff`;
        :func:`napari_unet.files.ngff.open_prediction` opens them.
    client : None, str or distributed.Client
        None: a local cluster of processes sized to the machine (one per GPU); ``"local:N"``; a
        scheduler address ``"tcp://host:8786"``; or a client.
    block_shape : int or (int, int)
        Pixels (Y, X) per block and output chunk (default 1024; rounded up to the pooling factor).
    axes : str, optional
        Axes of ``source`` (default: from the file, else YX / ZYX / TZYX / TZCYX).
    labels, probabilities : bool
        What to keep (the probabilities are written anyway when labels are asked for, then removed).
    precision : {"auto", "fp32", "bf16", "fp16"}
        As in :func:`~napari_unet.predict_tiled`; "fp32" makes the probabilities equal to its.
    progress : callable, optional
        ``progress(done, total)`` after every finished task; raising in it cancels the run.
    tile_shape, device :
        As in :func:`~napari_unet.predict_tiled`, for every worker (default: each worker's own).
    overwrite : bool
        Replace a finished output or an interrupted run with other settings.
    label_kwargs : dict, optional
        Keywords of :func:`~napari_unet.to_labels` over those of ``label_options(model)``, e.g.
        ``{"cell_diameter": 30}`` or ``{"mode": "classes"}``.
    pixel_size : float or (float, float), optional
        Micrometres per pixel (y, x) of the source (default: an OME-Zarr's own), written to the
        output's metadata; a source whose pixel size differs from the model's by more than 5 %
        is refused (resample it first).
    tta : {1, 2, 4, "auto"}
        Flipped views of each tile averaged, as in :func:`~napari_unet.predict_tiled`; the result
        still equals the whole-image prediction with the same ``tta`` (``"auto"``: four views).

    Returns
    -------
    DistributedResult
        Blocks, objects, seconds, megapixels per second (``.summary()``).
    """
    return drive(iter_predict_distributed(
        model, source, out, client=client, block_shape=block_shape, axes=axes, labels=labels,
        probabilities=probabilities, precision=precision, tile_shape=tile_shape, device=device, overwrite=overwrite,
        label_kwargs=label_kwargs, pixel_size=pixel_size, tta=tta,
    ), progress)
