"""The ``.unet`` model file: one zip archive of ``model.json`` + ``weights.safetensors``.

``model.json`` holds the format name and version, the package version, the architecture
(:class:`~napari_unet.ModelConfig`) and ``model.metadata`` (mode, class names, normalization,
tile geometry, training summary). Loading parses JSON and safetensors only: no pickle, so a model
file never runs code. A model file is untrusted input: every member's size is bounded by the
architecture before it is read, the architecture is bounded before it is built, the metadata
types are checked and non-finite weights refused; every failure is a :class:`ModelFileError`.
"""

from __future__ import annotations

import io as _io
import json
import logging
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..files.safe_write import atomic_write_bytes, check_output_path

__all__ = [
    "save_model",
    "load_model",
    "model_to_bytes",
    "model_from_bytes",
    "read_model_file",
    "model_source",
    "check_metadata",
    "is_model_file",
    "has_training_state",
    "save_or_rescue",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "ModelFileError",
]

logger = logging.getLogger(__name__)

MODEL_FORMAT = "napari-unet-model"
MODEL_FORMAT_VERSION = 1
_JSON_NAME = "model.json"
_WEIGHTS_NAME = "weights.safetensors"
# refuse absurd members (a zip bomb or a wrong file) before reading them into memory
_MAX_JSON_BYTES = 64 * 1024 * 1024


class ModelFileError(ValueError):
    """A model file is corrupt, truncated, of another format or of a newer format version."""


# --------------------------------------------------------------------------------------------
# small helpers


def _jsonable(value):
    """Convert numpy scalars/arrays and tuples inside ``value`` into JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value



def is_model_file(path) -> bool:
    """True when ``path`` is a readable napari-unet model file (only its description is read)."""
    try:
        _header, zf = _read_archive(Path(path), str(path))
    except (ModelFileError, OSError):
        return False
    zf.close()
    return True


# --------------------------------------------------------------------------------------------
# model files


def model_to_bytes(model, *, extra_json: dict | None = None, extra_tensors: dict | None = None) -> bytes:
    """Serialize ``model`` (a :class:`~napari_unet.UNet`) into the bytes of a ``.unet`` file.

    ``extra_json`` entries are stored under ``"extra"`` in ``model.json`` and ``extra_tensors``
    (name -> dict of tensors) as further ``<name>.safetensors`` members; checkpoints use both.
    """
    import torch
    from safetensors.torch import save as st_save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    header = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "package_version": __version__,
        "torch_version": torch.__version__,
        "architecture": "UNet",
        "config": config,
        "metadata": _jsonable(check_metadata(getattr(model, "metadata", None) or {}, "the model's metadata")),
    }
    if extra_json:
        header["extra"] = _jsonable(extra_json)
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        # JSON first: a reader can check the format before touching the weights
        zf.writestr(_JSON_NAME, json.dumps(header, indent=2, allow_nan=True))
        zf.writestr(_WEIGHTS_NAME, st_save(state, metadata={"format": MODEL_FORMAT}))
        for name, tensors in (extra_tensors or {}).items():
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            zf.writestr(f"{name}.safetensors", st_save(tensors))
    return buffer.getvalue()


def save_model(model, path, *, overwrite: bool = False) -> Path:
    """Save ``model`` (weights, architecture and metadata) to one ``.unet`` file.

    The file is a zip of ``model.json`` + ``weights.safetensors``, written atomically
    (temporary file + rename). An existing file is replaced only with ``overwrite=True``, only
    if it is a napari-unet model file (never an image or another file given by mistake) and
    only once the new one is complete. Returns the path written.

    Examples
    --------
    >>> from napari_unet import UNet, save_model, load_model
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.unet")
    >>> _ = save_model(UNet(depth=1, base_channels=2), path)
    >>> load_model(path).config.base_channels
    2
    """
    path = check_output_path(path, overwrite=overwrite, what="model file")
    if path.exists() and not is_model_file(path):
        raise FileExistsError(f"{path} exists and is not a napari-unet model file; not replacing it "
                              "(choose another name; model files end in .unet)")
    return atomic_write_bytes(path, model_to_bytes(model))


def save_or_rescue(model, path, *, overwrite: bool = False) -> Path:
    """Save a freshly trained ``model`` to ``path``; if that fails, save it to a fallback file
    (the current folder, else the home folder, else the temporary folder) and return that path,
    so finished training is never lost. The caller tells the user when the path differs."""
    try:
        return save_model(model, path, overwrite=overwrite)
    except (OSError, ValueError) as exc:
        logger.warning("could not save the model to %s (%s); saving it elsewhere", path, exc)
        first_error = exc
    import time

    name = f"napari-unet-rescued-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.unet"
    for folder in (Path.cwd(), Path.home(), Path(tempfile.gettempdir())):
        try:
            return atomic_write_bytes(folder / name, model_to_bytes(model))
        except OSError:
            continue
    raise OSError(f"could not save the trained model anywhere ({first_error})")


def has_training_state(path) -> bool:
    """True when the model file ``path`` is a checkpoint (holds optimizer and progress state)."""
    header, zf = _read_archive(Path(path), f"model file {path}")
    zf.close()
    return bool((header.get("extra") or {}).get("checkpoint"))


def _read_archive(source, what: str) -> tuple[dict, zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        if _starts_like_zip(source):
            raise ModelFileError(f"{what} is truncated or corrupt (its zip directory cannot be read)") from None
        raise ModelFileError(
            f"{what} is not a napari-unet model file (not a zip archive; expected a .unet file written by save_model)"
        ) from None
    names = set(zf.namelist())
    if _JSON_NAME not in names:
        hint = ""
        if any(n.endswith("data.pkl") for n in names):
            hint = " It looks like a pickled torch checkpoint, which napari-unet does not load (pickles can run code)."
        zf.close()
        raise ModelFileError(f"{what} is not a napari-unet model file: it has no {_JSON_NAME}.{hint}")
    try:
        info = zf.getinfo(_JSON_NAME)
        if info.file_size > _MAX_JSON_BYTES:
            raise ModelFileError(f"{what}: {_JSON_NAME} is implausibly large ({info.file_size} bytes)")
        header = json.loads(zf.read(_JSON_NAME).decode("utf-8"))
    except ModelFileError:
        zf.close()
        raise
    except RecursionError:
        zf.close()
        raise ModelFileError(f"{what}: {_JSON_NAME} is nested too deeply to be a model description") from None
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError, zlib_error()) as exc:
        zf.close()
        raise ModelFileError(f"{what}: {_JSON_NAME} is corrupt ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != MODEL_FORMAT:
        zf.close()
        raise ModelFileError(f"{what} is not a napari-unet model file (format {header.get('format')!r} in {_JSON_NAME})"
                             if isinstance(header, dict) else f"{what}: {_JSON_NAME} is not a JSON object")
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        zf.close()
        raise ModelFileError(f"{what}: invalid format_version {version!r}")
    if version > MODEL_FORMAT_VERSION:
        zf.close()
        raise ModelFileError(
            f"{what} has model format version {version}, written by napari-unet "
            f"{header.get('package_version', '?')}; this napari-unet ({__version__}) reads up to version "
            f"{MODEL_FORMAT_VERSION}. Upgrade napari-unet to load it."
        )
    return header, zf


def _starts_like_zip(source) -> bool:
    try:
        if isinstance(source, _io.BytesIO):
            return source.getvalue()[:4] == b"PK\x03\x04"
        with open(source, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def zlib_error():
    import zlib

    return zlib.error


def _read_tensors(zf: zipfile.ZipFile, name: str, what: str, max_bytes: int) -> dict:
    from safetensors.torch import load as st_load

    try:
        size = zf.getinfo(name).file_size
        if size > max_bytes:
            raise ModelFileError(f"{what}: {name} unpacks to {size} bytes, more than the stored architecture "
                                 f"can hold ({max_bytes} bytes); the file is corrupt or hostile")
        raw = zf.read(name)
    except KeyError:
        raise ModelFileError(f"{what} is incomplete: it has no {name}") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib_error()) as exc:
        raise ModelFileError(f"{what}: {name} is corrupt or truncated ({exc})") from None
    try:
        return st_load(raw)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ModelFileError(f"{what}: {name} is not valid safetensors data ({exc})") from None


def model_source(path_or_bytes) -> tuple[Any, str]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return _io.BytesIO(bytes(path_or_bytes)), "model data"
    path = Path(path_or_bytes)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, expected a .unet model file")
    return path, f"model file {path}"


def model_from_bytes(data, device=None):
    """Load a model from the bytes of a ``.unet`` file (see :func:`load_model`)."""
    source, what = model_source(bytes(data))
    return read_model_file(source, what, device=device)


def check_metadata(metadata, what: str = "model metadata") -> dict:
    """``metadata`` of a model file as a dict, its known entries of the right types, or ModelFileError."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{what}: metadata must be a JSON object, got {type(metadata).__name__}")
    meta = dict(metadata)

    def bad(key, expected):
        raise ModelFileError(f"{what}: metadata {key!r} must be {expected}, got {meta[key]!r:.80}")

    if meta.get("mode") is not None and meta["mode"] not in ("instances", "classes"):
        bad("mode", '"instances" or "classes"')
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        bad("class_names", "a list of strings")
    for key, n, names in (("pixel_size", 2, "a [y, x] pair"), ("voxel_size", 3, "[z, y, x]")):
        pixel = meta.get(key)
        if pixel is not None and not (isinstance(pixel, list) and len(pixel) == n and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 1e-4 <= v <= 1e4
                for v in pixel)):
            bad(key, f"{names} of micrometres per pixel, from 0.0001 to 10000")
    for key, lowest in (("cell_diameter", 0.5), ("cell_diameter_um", 1e-4)):  # pixels; micrometres
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or not lowest <= value < 1e5):
            bad(key, f"a number from {lowest:g} to 10^5")
    border = meta.get("border_class")
    if border is not None and (isinstance(border, bool) or not isinstance(border, int) or border < 1):
        bad("border_class", "a class number >= 1")
    for key in ("normalization", "training", "tile"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            bad(key, "a JSON object")
    norm = meta.get("normalization")
    if norm:
        from .normalization import normalization_params

        try:
            normalization_params(np.zeros((2, 2), np.float32), norm)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{what}: invalid normalization in the metadata ({exc})") from None
    return meta


def read_model_file(source, what: str, *, device=None, with_extra: bool = False):
    import torch

    from ..config import ModelConfig
    from .unet import UNet

    header, zf = _read_archive(source, what)
    with zf:
        try:
            config = ModelConfig.from_dict(header["config"])
        except KeyError:
            raise ModelFileError(f"{what}: {_JSON_NAME} has no architecture config") from None
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{what}: incompatible architecture config ({exc})") from None
        if header.get("architecture", "UNet") != "UNet":
            raise ModelFileError(f"{what}: unknown architecture {header.get('architecture')!r}")
        metadata = check_metadata(header.get("metadata"), what)
        # float64 weights at most, plus the safetensors header; extras (optimizer, best, average) a few copies
        limit = 8 * config.parameter_count() + 2**24
        state = _read_tensors(zf, _WEIGHTS_NAME, what, limit)
        extra_tensors = {}
        if with_extra:
            for name in zf.namelist():
                if name.endswith(".safetensors") and name != _WEIGHTS_NAME:
                    extra_tensors[name[: -len(".safetensors")]] = _read_tensors(zf, name, what, 3 * limit)
    model = UNet.from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{what}: the weights do not fit the stored architecture ({exc})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFileError(f"{what}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
                             "the training that wrote it diverged, so it cannot predict anything")
    model.metadata = metadata
    model.eval()
    if device is not None:
        from ..common.devices import select_device

        model.to(select_device(device))
    if with_extra:
        return model, header, extra_tensors
    return model


def load_model(path, device=None):
    """Load a model saved by :func:`save_model`.

    Parameters
    ----------
    path : str or Path
        The ``.unet`` file.
    device : str or torch.device, optional
        Where to put the model ("cpu", "cuda", "mps", or None for the CPU).

    Returns
    -------
    UNet
        In eval mode, with ``model.metadata`` (mode, class names, normalization, ...).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ModelFileError (a ValueError)
        The file is truncated or corrupt, is not a napari-unet model (for example a pickled
        torch checkpoint: never unpickled), or has a newer format version.
    """
    source, what = model_source(path)
    return read_model_file(source, what, device=device)


