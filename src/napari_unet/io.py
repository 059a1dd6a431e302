"""Model files and image files.

Model files
-----------
A ``.unet`` model file is one zip archive holding

* ``model.json``: format name and version, package version, the architecture
  (:class:`~napari_unet.ModelConfig`), and ``model.metadata`` (mode, class names,
  normalization, tile geometry, training summary);
* ``weights.safetensors``: the weights, in the safetensors format.

Loading parses JSON and safetensors only: no pickle, so a model file never runs code.
Files are written to a temporary file in the target folder and renamed into place
(:func:`os.replace`), so an interrupted save never leaves a half-written model.

Image files
-----------
:func:`read_image` reads TIFF (ImageJ hyperstacks, OME-TIFF, plain) with tifffile and zarr
arrays (plain or OME-Zarr); axes come back as a string over ``"TZCYX"`` in that order.
:func:`write_image` writes TIFF (ImageJ-compatible where the data allow) or zarr (a path
ending in ``.zarr``), never replacing an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__

__all__ = [
    "save_model",
    "load_model",
    "model_to_bytes",
    "model_from_bytes",
    "read_image",
    "write_image",
    "atomic_write_bytes",
    "check_output_path",
    "check_metadata",
    "is_model_file",
    "is_complete_image",
    "save_or_rescue",
    "output_lock",
    "has_training_state",
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


def _default_permissions(path) -> None:
    """mkstemp makes files readable by their owner alone; give them the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:  # pragma: no cover - e.g. file systems without permissions
        pass


_TEMPORARY_SUFFIXES = (".tmp", ".tmp.tif", ".tmp.zarr", ".old")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - no cheap check; keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*`` temporaries left by writers of ``path`` that were killed."""
    try:
        siblings = list(path.parent.glob(f".{glob_escape(path.name)}.*"))
    except OSError:
        return
    for tmp in siblings:
        parts = tmp.name[len(path.name) + 2:].split(".")
        if not tmp.name.endswith(_TEMPORARY_SUFFIXES) or not parts[0].isdigit() or _pid_alive(int(parts[0])):
            continue
        try:
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
            logger.info("removed %s, left by an interrupted write", tmp)
        except OSError:
            pass


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def temporary_sibling(path: Path, suffix: str = ".tmp") -> str:
    """A new empty file beside ``path`` named ``.<name>.<pid>.<random><suffix>`` (removed if stale)."""
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return tmp


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A temporary file left by a writer that was killed (``kill -9``) is removed by the next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def check_output_path(path, *, overwrite: bool = False, what: str = "output") -> Path:
    """Fail now, before any work, if ``path`` cannot be written: a folder where a file must go, a
    file where a folder must go, an existing file without ``overwrite``, no write permission."""
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".zarr":
        raise IsADirectoryError(f"{what} {path} is an existing folder; name a file inside it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(f"{what} {path}: no permission to write in {parent}")
            break
    if path.exists():
        if not overwrite:
            raise _exists_error(path)
        if path.is_file() and (not os.access(path, os.W_OK) or not path.stat().st_mode & stat.S_IWUSR):
            raise PermissionError(f"{what} {path} is read-only; not replacing it")
    return path


@contextlib.contextmanager
def output_lock(path):
    """Hold ``path`` (a lock file) while writing the outputs it guards; a second writer gets a
    FileExistsError instead of interleaving. A lock left by a killed process is taken over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and not _pid_alive(pid):
                path.unlink(missing_ok=True)  # left by a process that was killed
                continue
            raise FileExistsError(f"{path.name[:-len('.lock')].lstrip('.')} is being written by another "
                                  f"napari-unet process (pid {pid or '?'}); wait for it or remove {path} "
                                  "if that process is gone") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


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
        "metadata": _jsonable(dict(getattr(model, "metadata", {}) or {})),
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


def _open_source(path_or_bytes) -> tuple[Any, str]:
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
    source, what = _open_source(bytes(data))
    return _load(source, what, device=device)


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
    for key in ("cell_diameter",):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            bad(key, "a positive number")
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


def _load(source, what: str, *, device=None, with_extra: bool = False):
    import torch

    from .config import ModelConfig
    from .model import UNet

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
        from .tiling import select_device

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
    source, what = _open_source(path)
    return _load(source, what, device=device)


# --------------------------------------------------------------------------------------------
# images

_CANONICAL = "TZCYX"


def _canonical_axes(axes: str, shape) -> str:
    """Map tifffile / OME axis letters onto ``TZCYX`` (S -> C, I/Q/... -> Z or T)."""
    axes = axes.upper()
    out = []
    for letter in axes:
        if letter == "S":
            letter = "C" if "C" not in axes and "C" not in out else "Q"
        out.append(letter)
    # leftover letters (I: image sequence, Q: unknown, R, E, ...) become Z, then T, if free
    for i, letter in enumerate(out):
        if letter not in _CANONICAL or letter in out[:i]:
            for candidate in "ZT":
                if candidate not in out:
                    out[i] = candidate
                    break
            else:
                raise ValueError(f"cannot map axes {axes!r} of an image of shape {tuple(shape)} onto {_CANONICAL!r}")
    return "".join(out)


def _to_canonical(data, axes: str):
    axes = _canonical_axes(axes, data.shape)
    # drop singleton non-spatial axes that tifffile adds (e.g. S=1)
    order = sorted(range(len(axes)), key=lambda i: _CANONICAL.index(axes[i]))
    new_axes = "".join(axes[i] for i in order)
    if order != list(range(len(axes))):
        data = np.transpose(np.asarray(data), order)
    return data, new_axes


def _default_axes(ndim: int) -> str:
    if ndim < 2 or ndim > 5:
        raise ValueError(f"expected an image with 2 to 5 dimensions, got {ndim}")
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}[ndim]


def _is_zarr_path(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any(
        (path / name).exists() for name in (".zarray", ".zgroup", "zarr.json")))


def read_image(path) -> tuple[Any, str]:
    """Read an image file and name its axes.

    Parameters
    ----------
    path : str or Path
        A TIFF file (ImageJ hyperstack, OME-TIFF or plain) or a zarr array / group
        (``.zarr``; for a group the first array, e.g. level ``"0"`` of an OME-Zarr).

    Returns
    -------
    data : np.ndarray or zarr.Array
        The image, axes ordered as in ``"TZCYX"`` (RGB samples become ``C``). A zarr array
        whose axes are already in that order is returned lazily.
    axes : str
        E.g. ``"YX"``, ``"CYX"``, ``"ZYX"``, ``"TZCYX"``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if _is_zarr_path(path):
        return _read_zarr(path)
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            data = series.asarray()
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        if path.suffix.lower() not in (".tif", ".tiff", ".btf", ".tf8"):
            raise ValueError(f"cannot read {path}: expected a TIFF file or a .zarr folder ({exc})") from None
        raise ValueError(f"cannot read TIFF {path}: {exc}") from None
    if len(axes) != data.ndim:
        axes = _default_axes(data.ndim)
    return _to_canonical(data, axes)


def _read_zarr(path: Path):
    import zarr

    node = zarr.open(str(path), mode="r")
    axes = None
    if not hasattr(node, "shape"):  # a group
        attrs = dict(node.attrs)
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        name = None
        if multiscales:
            ms = multiscales[0]
            name = ms["datasets"][0]["path"]
            ms_axes = ms.get("axes")
            if ms_axes:
                axes = "".join((a["name"] if isinstance(a, dict) else a)[0].upper() for a in ms_axes)
        if name is None:
            arrays = sorted(k for k, _ in node.arrays())
            if not arrays:
                raise ValueError(f"zarr group {path} holds no array")
            name = arrays[0]
        node = node[name]
    if axes is None:
        axes = node.attrs.get("axes") or node.attrs.get("_ARRAY_DIMENSIONS")
        if isinstance(axes, (list, tuple)):
            axes = "".join(str(a)[0].upper() for a in axes)
    if not axes or len(axes) != node.ndim:
        axes = _default_axes(node.ndim)
    canonical = _canonical_axes(axes, node.shape)
    if sorted(canonical, key=_CANONICAL.index) == list(canonical):
        return node, canonical
    return _to_canonical(np.asarray(node[...]), axes)


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} already exists; pass overwrite=True (on the command line: --overwrite) to replace it")


def write_image(path, data, axes: str | None = None, overwrite: bool = False) -> Path:
    """Write an image as TIFF (ImageJ-compatible where possible) or zarr (``.zarr`` path).

    Parameters
    ----------
    path : str or Path
        ``*.tif`` / ``*.tiff`` or ``*.zarr``.
    data : array-like
        The image (labels, probabilities, ...).
    axes : str, optional
        Axis names, e.g. ``"ZYX"`` or ``"CYX"``; default from the number of dimensions.
    overwrite : bool
        Replace an existing file; otherwise a :class:`FileExistsError` is raised.

    Notes
    -----
    TIFF: ImageJ hyperstacks hold 8/16-bit integers and 32-bit floats in ``TZCYX`` order, so
    integer labels are stored as ``uint16`` when they fit (else a plain TIFF with the axes in
    its metadata), float64 as float32. The file is written to a temporary name and renamed.
    """
    path = Path(path)
    data = np.asarray(data) if not hasattr(data, "dtype") else data
    axes = (axes or _default_axes(len(data.shape))).upper()
    if len(axes) != len(data.shape):
        raise ValueError(f"axes {axes!r} do not match an image of shape {tuple(data.shape)}")
    if path.exists() and not overwrite:
        raise _exists_error(path)
    if path.suffix.lower() == ".zarr":
        return _write_zarr(path, data, axes, overwrite)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"unsupported output format {path.suffix!r}; use .tif, .tiff or .zarr")
    import tifffile

    data = np.asarray(data)
    imagej = all(a in _CANONICAL for a in axes) and list(axes) == sorted(axes, key=_CANONICAL.index)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    elif data.dtype.kind in "iu":
        lo = int(data.min()) if data.size else 0
        hi = int(data.max()) if data.size else 0
        if 0 <= lo and hi <= 255 and data.dtype.itemsize == 1:
            data = data.astype(np.uint8, copy=False)
        elif 0 <= lo and hi <= 65535:
            data = data.astype(np.uint16, copy=False)
        else:
            imagej = False
    elif data.dtype.kind == "f":
        data = data.astype(np.float32, copy=False)
    else:
        imagej = False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, ".tmp.tif")
    try:
        kwargs: dict[str, Any] = {"metadata": {"axes": axes}}
        if imagej:
            kwargs["imagej"] = True
        if data.nbytes > 2**32 - 2**25:
            kwargs["bigtiff"] = True
            kwargs.pop("imagej", None)
        kwargs["compression"] = None
        tifffile.imwrite(tmp, data, **kwargs)
        if path.exists() and not overwrite:  # appeared meanwhile
            raise _exists_error(path)
        _default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_COMPLETE = "napari_unet_complete"


def _write_zarr(path: Path, data, axes: str, overwrite: bool) -> Path:
    """Write into a hidden folder beside ``path``, mark it complete, then rename it into place:
    a reader (or ``--skip-existing``) never sees a half-written array."""
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(temporary_sibling(path, ".tmp.zarr"))
    tmp.unlink()
    old = None
    try:
        shape = tuple(int(s) for s in data.shape)
        chunks = tuple(min(s, 1 if i < len(shape) - 2 else 512) for i, s in enumerate(shape))
        arr = zarr.open_array(str(tmp), mode="w", shape=shape, dtype=np.dtype(data.dtype), chunks=chunks)
        arr[...] = np.asarray(data)
        arr.attrs["axes"] = axes
        arr.attrs[_COMPLETE] = True
        if path.exists():
            if not overwrite:
                raise _exists_error(path)
            old = Path(temporary_sibling(path, ".old"))
            old.unlink()
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    return path


def is_complete_image(path) -> bool:
    """True when ``path`` is an image written completely (a TIFF that opens, a zarr marked complete)."""
    path = Path(path)
    if not path.exists():
        return False
    if path.suffix.lower() == ".zarr":
        try:
            import zarr

            return bool(zarr.open(str(path), mode="r").attrs.get(_COMPLETE, False))
        except Exception:  # any unreadable zarr is incomplete
            return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return len(tif.series) > 0 and all(s > 0 for s in tif.series[0].shape)
    except Exception:  # any unreadable TIFF is incomplete
        return False
