"""Export a trained model to the bioimage.io model format (model spec 0.5).

The package is one zip that bioimage.io-compatible programs open without napari-unet:
ilastik, deepImageJ (Fiji), QuPath, ``bioimageio.core`` and the bioimage.io model zoo. It holds

* ``rdf.yaml``: the description (axes, sizes, pre- and post-processing, authors, licence, ...);
* ``weights.pt``: the network as TorchScript (no Python code of this package needed), with a
  softmax at the end, so the output is class probabilities;
* ``test_input.npy`` / ``test_output.npy``: a tile and the probabilities the network gives,
  which consumers use to check they run the model correctly (``sample_input.tif`` /
  ``sample_output.tif``: the same as TIFF, for people);
* ``README.md`` (documentation) and ``cover.png`` (input beside the predicted cells);
* ``model.unet``: the napari-unet model file itself, so napari-unet users lose nothing.

Preprocessing is the model's own normalization, written in the spec's words: the per-image
percentile normalization becomes ``scale_range`` over the spatial axes (per channel), so a
consumer normalizes a whole image the way training did. A padding="valid" network (the paper's)
gives an output smaller than its input: the output axes say so (offset = -2 x margin) and a
consumer tiles with overlap; a padding="same" network states a halo to crop instead.

The YAML is written with no dependency beyond PyYAML (which napari brings);
``bioimageio.spec``, where installed, validates the package (see the tests).

Examples
--------
>>> from napari_unet import UNet, export_bioimageio   # doctest: +SKIP
>>> export_bioimageio(model, "cells.bioimageio.zip", sample=image)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import io as _io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._version import __version__

__all__ = ["export_bioimageio", "BIOIMAGEIO_FORMAT_VERSION", "bioimageio_description"]

#: the bioimage.io model description version written
BIOIMAGEIO_FORMAT_VERSION = "0.5.4"

_PAPER_CITATION = {
    "text": "Ronneberger, O., Fischer, P. & Brox, T. U-Net: Convolutional Networks for Biomedical Image "
            "Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def _exportable(model):
    """A TorchScript-able copy of ``model`` (eval mode, on the CPU) that ends in a softmax."""
    import copy
    from typing import List

    import torch
    from torch import nn

    from ..model.unet import center_crop, center_crop_3d

    class _Exported(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.inc = net.inc
            self.down = net.down
            self.dropout = net.dropout
            self.up = net.up
            self.head = net.head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips: List[torch.Tensor] = []
            x = self.inc(x)
            for down in self.down:
                skips.append(x)
                x = down(x)
            x = self.dropout(x)
            i = len(skips) - 1
            for up in self.up:
                skip = skips[i]
                x = up.up(x)
                if x.dim() == 5:
                    skip = center_crop_3d(skip, x.shape[-3], x.shape[-2], x.shape[-1])
                else:
                    skip = center_crop(skip, x.shape[-2], x.shape[-1])
                x = up.conv(torch.cat([skip, x], dim=1))
                i -= 1
            return torch.softmax(self.head(x), dim=1)

    net = copy.deepcopy(model).to("cpu").float().eval()
    with warnings.catch_warnings():
        # torch >= 2.10 calls TorchScript deprecated; it is still the format bioimage.io consumers run
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(_Exported(net))


def _geometry(model, axis: int = -1) -> dict:
    """Input sizes the network takes along spatial ``axis`` (min + n * step) and how the output
    relates to the input; a 3D network's also holds ``"z"``, the same for its Z axis."""
    cfg = model.config
    step = model.pool_factors[axis]
    minimum = model.valid_input_shape(1)[axis]
    if cfg.padding == "valid":
        offset = model.output_size_1d(minimum, axis) - minimum  # the same for every valid size
        halo = 0
    else:
        # output pixels nearer a tile border than the receptive field see zero padding instead
        # of image: a consumer crops this halo when it tiles (napari-unet's own tiling does the
        # same, so tiled results are seamless)
        offset = 0
        halo = -(-model.margin(axis) // step) * step
        minimum = 2 * halo + step
    geometry = {"min": int(minimum), "step": int(step), "offset": int(offset), "halo": int(halo)}
    if cfg.spatial_dims == 3 and axis == -1:
        geometry["z"] = _geometry(model, 0)
    return geometry


def _sample_volume(channels: int) -> np.ndarray:
    """A synthetic (C, Z, Y, X) stack of cells for the test tensor of a 3D network: touching-cells
    planes whose cells grow and shrink along Z."""
    from ..samples import make_touching_cells

    image = make_touching_cells((256, 256), seed=0)[0].astype(np.float32)
    profile = np.sin(np.linspace(0, 3 * np.pi, 32)) ** 2
    volume = image[None] * (0.3 + 0.7 * profile[:, None, None])
    return np.repeat(volume[None], channels, axis=0).astype(np.float32)


def _test_tile(model, sample, geometry) -> np.ndarray:
    """A (1, C, H, W) float32 test input: the centre of ``sample`` or a synthetic image, of a valid size."""
    channels = model.config.in_channels
    dims = model.config.spatial_dims
    if sample is None:
        if dims == 3:
            image = _sample_volume(channels)
        else:
            from ..samples import make_touching_cells

            image = make_touching_cells((256, 256), seed=0)[0].astype(np.float32)
            image = np.repeat(image[None], channels, axis=0)
    else:
        image = np.asarray(sample, dtype=np.float32)
        if image.ndim == dims:
            image = image[None]
        if image.ndim != dims + 1 or image.shape[0] != channels:
            kind = "a (Z, Y, X) stack or (C, Z, Y, X)" if dims == 3 else "a (Y, X) image or (C, Y, X)"
            raise ValueError(f"sample must be {kind} with C = {channels} channel(s) of the model, "
                             f"got shape {tuple(np.shape(sample))}")
    # the smallest valid size of at least 256 (or the whole sample, if smaller) along each axis; a
    # volume: the smallest valid size (a package of 256^3 float32 tensors would weigh 100s of MB)
    axes = [geometry["z"], geometry, geometry] if dims == 3 else [geometry, geometry]
    size = [max(g["min"], min(256 if dims == 2 else 1, s)) for g, s in zip(axes, image.shape[1:])]
    size = [g["min"] + -(-(s - g["min"]) // g["step"]) * g["step"] for g, s in zip(axes, size)]
    pad = [(0, 0)] + [(0, max(0, t - s)) for t, s in zip(size, image.shape[1:])]
    if any(p[1] for p in pad):
        image = np.pad(image, pad, mode="reflect" if min(image.shape[1:]) > 1 else "edge")
    starts = [(have - want) // 2 for have, want in zip(image.shape[1:], size)]
    tile = image[(slice(None), *(slice(a, a + n) for a, n in zip(starts, size)))]
    return np.ascontiguousarray(tile, dtype=np.float32)[None]


def _preprocessing(model) -> list[dict]:
    norm = (getattr(model, "metadata", None) or {}).get("normalization")
    steps: list[dict] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if isinstance(norm, dict) and norm.get("kind", "percentile") == "percentile":
        steps.append({
            "id": "scale_range",
            "kwargs": {
                # per channel and per image, as napari-unet normalizes
                "axes": ["z", "y", "x"] if model.config.spatial_dims == 3 else ["y", "x"],
                "min_percentile": float(norm.get("low", 1.0)),
                "max_percentile": float(norm.get("high", 99.8)),
            },
        })
    return steps


def _normalize_like_model(tile: np.ndarray, model) -> np.ndarray:
    """Apply the model's normalization to a (1, C, H, W) tile (per channel, as ``scale_range`` does)."""
    from ..model.normalization import apply_normalization, normalization_params

    norm = (getattr(model, "metadata", None) or {}).get("normalization")
    if not isinstance(norm, dict):
        return tile.astype(np.float32)
    lows, highs = normalization_params(tile[0], norm, channel_axis=0)
    return apply_normalization(tile, lows, highs, channel_axis=1)


def _class_names(model) -> list[str]:
    meta = getattr(model, "metadata", None) or {}
    names = meta.get("class_names")
    n = model.config.n_classes
    if not names or len(names) != n:
        names = ["background", "cell"] if n == 2 else ["background"] + [f"class {k}" for k in range(2, n + 1)]
    return [str(x) for x in names]


def _axis_names(names: Sequence[str]) -> list[str]:
    """Channel names as the spec wants them (no spaces at the ends, unique)."""
    out, seen = [], set()
    for k, name in enumerate(names):
        name = str(name).strip() or f"channel{k}"
        while name in seen:
            name = f"{name}_{k}"
        seen.add(name)
        out.append(name)
    return out


def _cover(model, tile_in: np.ndarray, probabilities: np.ndarray) -> bytes:
    """PNG bytes: the (first channel of the) input beside the predicted cells (or classes)."""
    from ..labels.render import gray_rgb, overlay, png_bytes
    from ..labels.instances import label_options, to_labels

    gray = tile_in[0, 0]
    if gray.ndim == 3:  # a stack: its middle slice
        gray, probabilities = gray[gray.shape[0] // 2], probabilities[:, :, probabilities.shape[2] // 2]
    dy, dx = ((a - b) // 2 for a, b in zip(gray.shape, probabilities.shape[-2:]))
    left = gray_rgb(gray[dy : dy + probabilities.shape[-2], dx : dx + probabilities.shape[-1]])
    labels = to_labels(probabilities[0], **label_options(model))
    right = overlay(left, labels)
    gap = np.full((left.shape[0], 8, 3), 255, np.uint8)
    return png_bytes(np.concatenate([left, gap, right], axis=1))


def _readme(model, name: str, description: str, geometry: dict) -> str:
    meta = getattr(model, "metadata", None) or {}
    cfg = model.config
    training = meta.get("training") or {}
    lines = [
        f"# {name}",
        "",
        description,
        "",
        "A U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) trained with "
        f"[napari-unet](https://github.com/napari-unet/napari-unet) {__version__} from sparse painted "
        "annotations (unpainted pixels ignored by the loss, touching cells separated by the border "
        "weight map of the paper).",
        "",
        "## Inputs and outputs",
        "",
        f"- input: {cfg.in_channels} channel(s), (batch, channel, y, x); each side "
        f"{geometry['min']} + n x {geometry['step']} pixels. Normalized per image: "
        "percentiles mapped to 0 and 1 (see `rdf.yaml`, `scale_range`).",
        *([f"- a 3D U-Net (Çiçek et al., MICCAI 2016, 3x3x3 convolutions): (batch, channel, z, y, x); z "
           f"{geometry['z']['min']} + n x {geometry['z']['step']} slices"
           + (f", crop a halo of {geometry['z']['halo']} slices when tiling." if geometry["z"]["halo"] else ".")]
          if "z" in geometry else []),
        f"- output: probabilities of the classes {', '.join(_class_names(model))} (softmax), "
        + (f"{-geometry['offset']} pixels smaller than the input along each axis (unpadded convolutions: "
           "predict large images with overlapping tiles)." if geometry["offset"] else
           f"the size of the input; crop a halo of {geometry['halo']} pixels when tiling."),
        "",
        "## Architecture",
        "",
        f"depth {cfg.depth}, {cfg.base_channels} channels in the first level, padding {cfg.padding!r}, "
        f"batch norm {cfg.batch_norm}, {sum(p.numel() for p in model.parameters()):,} parameters.",
    ]
    if meta.get("mode") == "instances":
        lines += [
            "",
            "## From probabilities to cells",
            "",
            "Cells are the pixels where the class `cell` is the most probable; touching cells are split "
            "by a watershed on the distance transform"
            + (f" (typical cell diameter {float(meta['cell_diameter']):.1f} px)." if meta.get("cell_diameter") else ".")
            + " `napari_unet.to_labels` does this; the `model.unet` file in this package opens in napari-unet.",
        ]
    lines += [
        "",
        "## Validation",
        "",
        "During training, blocks of the painted pixels were held out and never trained on; the loss and "
        "the foreground IoU there are reported below"
        + _validation_text(training),
        "Painted strokes are few and near each other: before relying on the model, paint or load the complete "
        "ground truth of an image it never saw and compare, e.g. with `napari_unet.labels.metrics.match_instances` "
        "(object precision, recall and F1 at IoU >= 0.5).",
    ]
    if training:
        lines += ["", "## Training", "", "```json", json.dumps(training, indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"


def bioimageio_description(
    model,
    *,
    name: str,
    description: str,
    authors: Sequence[dict] | None,
    license: str,
    tags: Sequence[str],
    geometry: dict,
    test_input_sha256: str,
    test_output_sha256: str,
    sample_input_sha256: str,
    sample_output_sha256: str,
    weights_sha256: str,
    documentation: str = "README.md",
    cover: str | None = "cover.png",
) -> dict:
    """The ``rdf.yaml`` content (a dict) of an exported model; see :func:`export_bioimageio`."""
    import torch

    cfg = model.config
    meta = getattr(model, "metadata", None) or {}
    descr: dict[str, Any] = {
        "type": "model",
        "format_version": BIOIMAGEIO_FORMAT_VERSION,
        "name": name,
        "description": description,
        "authors": list(authors) if authors else [{"name": "napari-unet user"}],
        "cite": [_PAPER_CITATION],
        "license": license,
        "documentation": documentation,
        "tags": list(tags),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "version": "0.1.0",
        "inputs": [_input_description(model, geometry, test_input_sha256, sample_input_sha256)],
        "outputs": [_output_description(model, geometry, test_output_sha256, sample_output_sha256)],
        "weights": {
            "torchscript": {
                "source": "weights.pt",
                "sha256": weights_sha256,
                "pytorch_version": torch.__version__.split("+")[0],
            },
        },
        "config": {"napari-unet": {
            "version": __version__,
            "model_file": "model.unet",
            "mode": meta.get("mode"),
            "cell_diameter": meta.get("cell_diameter"),
            "architecture": cfg.to_dict(),
        }},
    }
    if cover:
        descr["covers"] = [cover]
    return descr


def _input_description(model, geometry: dict, test_sha256: str, sample_sha256: str) -> dict:
    """The ``inputs`` entry of the description: the raw image, normalized by the preprocessing."""
    step, minimum = geometry["step"], geometry["min"]
    return {
        "id": "input",
        "description": "raw image (normalized by the preprocessing)",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": [f"channel{k}" for k in range(model.config.in_channels)]},
            *([{"type": "space", "id": "z", "size": {"min": geometry["z"]["min"], "step": geometry["z"]["step"]}}]
              if "z" in geometry else []),
            {"type": "space", "id": "y", "size": {"min": minimum, "step": step}},
            {"type": "space", "id": "x", "size": {"min": minimum, "step": step}},
        ],
        "test_tensor": {"source": "test_input.npy", "sha256": test_sha256},
        "sample_tensor": {"source": "sample_input.tif", "sha256": sample_sha256},
        "data": {"type": "float32"},
        "preprocessing": _preprocessing(model),
    }


def _output_description(model, geometry: dict, test_sha256: str, sample_sha256: str) -> dict:
    """The ``outputs`` entry of the description: class probabilities, sized after the input."""
    spatial_out = []
    for axis in ("z", "y", "x") if "z" in geometry else ("y", "x"):
        g = geometry["z"] if axis == "z" else geometry
        entry: dict[str, Any] = {"type": "space", "id": axis,
                                 "size": {"tensor_id": "input", "axis_id": axis, "offset": g["offset"]}}
        if g["halo"]:
            entry["halo"] = g["halo"]
        spatial_out.append(entry)
    return {
        "id": "probabilities",
        "description": "class probabilities (softmax over the channel axis)",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": _axis_names(_class_names(model))},
            *spatial_out,
        ],
        "test_tensor": {"source": "test_output.npy", "sha256": test_sha256},
        "sample_tensor": {"source": "sample_output.tif", "sha256": sample_sha256},
        "data": {"type": "float32", "range": [0.0, 1.0]},
    }


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = _io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _tif_bytes(array: np.ndarray) -> bytes:
    import tifffile

    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(np.squeeze(array)), photometric="minisblack")
    return buffer.getvalue()


def _validation_text(training: dict) -> str:
    """" (validation loss ..., IoU ... of these weights)." from the training summary, or "."."""
    def number(key):
        value = training.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    loss, iou = number("kept_val_loss"), number("kept_val_iou")
    which = "these weights"
    if loss is None or iou is None:  # a model trained before the "kept" fields existed
        loss, iou, which = number("best_val_loss"), number("best_val_iou"), "the best weights"
    if loss is None or iou is None:
        return "."
    return f" (validation loss {loss:.4f}, IoU {iou:.3f}, of {which})."


def export_bioimageio(
    model,
    path,
    *,
    sample=None,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[dict] | Sequence[str] | None = None,
    license: str = "CC-BY-4.0",
    tags: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a zip; see the module docstring).

    Parameters
    ----------
    model : UNet
        A trained model (its ``metadata`` supplies normalization, class names, mode).
    path : str or Path
        The zip to write, conventionally ``NAME.bioimageio.zip``.
    sample : array, optional
        A raw 2D image ``(Y, X)`` or ``(C, Y, X)`` like the ones the model is meant for: its
        centre becomes the test tensor and the cover. Default: a synthetic touching-cells image.
    name, description : str, optional
        Shown in the model zoo and in consumers (defaults describe a napari-unet U-Net).
    authors : list of dicts (``{"name": ..., "affiliation": ..., "orcid": ...}``) or of names
    license : str
        SPDX identifier of the weights' licence (default ``"CC-BY-4.0"``).
    tags : list of str, optional
    overwrite : bool
        Replace an existing file (otherwise FileExistsError).

    Returns
    -------
    Path of the written package. The write is atomic (temporary file + rename).
    """
    from ..model.files import model_to_bytes
    from ..files.safe_write import atomic_write_bytes
    from ..model.unet import UNet

    if not isinstance(model, UNet):
        raise TypeError(f"model must be a napari_unet.UNet, got {type(model).__name__}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as cells.bioimageio.zip")
    name, description, authors, tags = _package_texts(model, name, description, authors, tags)
    geometry = _geometry(model)
    scripted = _exportable(model)
    weights_bytes = _torchscript_bytes(scripted)

    tile = _test_tile(model, sample, geometry)
    output = _scripted_output(scripted, model, tile)
    test_in, test_out = _npy_bytes(tile), _npy_bytes(output)
    sample_in, sample_out = _tif_bytes(tile[0]), _tif_bytes(output[0])
    descr = bioimageio_description(
        model, name=name, description=description, authors=authors, license=license, tags=tags,
        geometry=geometry, test_input_sha256=_sha256(test_in), test_output_sha256=_sha256(test_out),
        sample_input_sha256=_sha256(sample_in), sample_output_sha256=_sha256(sample_out),
        weights_sha256=_sha256(weights_bytes),
    )
    import yaml

    members = {
        "rdf.yaml": yaml.safe_dump(descr, sort_keys=False, allow_unicode=True).encode("utf-8"),
        "weights.pt": weights_bytes,
        "test_input.npy": test_in,
        "test_output.npy": test_out,
        "sample_input.tif": sample_in,
        "sample_output.tif": sample_out,
        "README.md": _readme(model, name, description, geometry).encode("utf-8"),
        "cover.png": _cover(model, tile, output),
        "model.unet": model_to_bytes(model),
    }
    return atomic_write_bytes(path, _zip_bytes(members))


def _package_texts(model, name, description, authors, tags):
    """``(name, description, authors, tags)`` of the package: those given (authors as dicts),
    else defaults that describe the model's mode."""
    mode = (getattr(model, "metadata", None) or {}).get("mode", "instances")
    name = name or f"napari-unet {'cell' if mode == 'instances' else 'class'} segmentation U-Net"
    description = description or (
        "U-Net trained in napari-unet from a few painted strokes; outputs class probabilities "
        + ("(background, cell) for cell instance segmentation." if mode == "instances" else "for semantic segmentation.")
    )
    if authors:
        authors = [a if isinstance(a, dict) else {"name": str(a)} for a in authors]
    dims = "3d" if model.config.spatial_dims == 3 else "2d"
    tags = list(tags) if tags else ["unet", "segmentation", dims, "fluorescence-light-microscopy", "napari-unet",
                                     "instance-segmentation" if mode == "instances" else "semantic-segmentation"]
    return name, description, authors, tags


def _scripted_output(scripted, model, tile: np.ndarray) -> np.ndarray:
    """What the exported network gives for the raw ``tile``, normalized as ``model`` normalizes."""
    import torch

    with torch.no_grad():
        return scripted(torch.from_numpy(_normalize_like_model(tile, model))).numpy().astype(np.float32)


def _torchscript_bytes(scripted) -> bytes:
    """A TorchScript module saved to bytes (``weights.pt``)."""
    import torch

    weights = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, weights)
    return weights.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip of ``{member name: bytes}``, in that order."""
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return buffer.getvalue()
