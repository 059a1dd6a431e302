"""Writing files so that nothing is lost or half-written.

Every file napari-unet writes goes through a temporary name beside the target and a rename
(:func:`atomic_write_bytes`, :func:`temporary_sibling`); temporaries are named
``.<name>.<pid>.*`` and the next write of the same name removes those of processes that no
longer run (a ``kill -9``). :func:`check_output_path` fails before any work when a path cannot be
written; :func:`output_lock` keeps two writers off one output.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

__all__ = [
    "COMPLETE_ATTR",
    "OWNER_ATTR",
    "RUN_DIR",
    "is_ours",
    "check_not_input",
    "atomic_write_bytes",
    "temporary_sibling",
    "check_output_path",
    "output_lock",
    "exists_error",
    "default_permissions",
]

logger = logging.getLogger(__name__)


#: the attribute that marks a zarr output complete (written last, after every chunk)
COMPLETE_ATTR = "napari_unet_complete"
#: the attribute that marks a zarr output as written by napari-unet (written when it is created)
OWNER_ATTR = "napari_unet_output"
#: the folder inside a zarr output that records an interrupted run (its settings, its marks)
RUN_DIR = ".napari-unet-run"


def is_ours(path) -> bool:
    """True when ``path`` is a zarr output napari-unet wrote (it bears :data:`OWNER_ATTR` or
    :data:`COMPLETE_ATTR`, or holds the record of an interrupted run): the only kind of existing
    output that ``overwrite`` may replace."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / RUN_DIR / "run.json").is_file():
        return True
    for name in (".zattrs", "zarr.json"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs) if name == "zarr.json" else attrs
        if isinstance(attrs, dict) and (OWNER_ATTR in attrs or COMPLETE_ATTR in attrs):
            return True
    return False


def check_not_input(out, inputs, what: str = "output") -> None:
    """Refuse an output that is one of the inputs, or lies inside one (or holds one): writing it
    would destroy what it reads."""
    target = Path(out).expanduser().resolve()
    for source in inputs:
        if source is None:
            continue
        src = Path(source).expanduser().resolve()
        if target == src or src in target.parents or target in src.parents:
            relation = "is" if target == src else ("lies inside" if src in target.parents else "holds")
            raise ValueError(f"{what} {out} {relation} the input {source}: choose another output")


def default_permissions(path) -> None:
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
        siblings = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
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
        default_permissions(tmp)
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
            raise exists_error(path)
        if path.is_file() and (not os.access(path, os.W_OK) or not path.stat().st_mode & stat.S_IWUSR):
            raise PermissionError(f"{what} {path} is read-only; not replacing it")
    return path


@contextlib.contextmanager
def output_lock(path):
    """Hold ``path`` (a lock file) while writing the outputs it guards; a second writer gets a
    FileExistsError instead of interleaving. A lock left by a killed process is taken over."""
    path = Path(path)
    made = [d for d in path.parents if not d.exists()]  # removed at the end when nothing was written in them
    path.parent.mkdir(parents=True, exist_ok=True)
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            try:
                unreadable_and_old = not pid and time.time() - path.stat().st_mtime > 60
            except OSError:
                unreadable_and_old = False
            if (pid and not _pid_alive(pid)) or unreadable_and_old:
                path.unlink(missing_ok=True)  # left by a process that was killed (or not a lock of ours)
                continue
            name = path.name.removesuffix(".lock").removesuffix(".napari-unet").lstrip(".")
            raise FileExistsError(f"{name} is being written by another "
                                  f"napari-unet process (pid {pid or '?'}); wait for it or remove {path} "
                                  "if that process is gone") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()



def exists_error(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} already exists; pass overwrite=True (on the command line: --overwrite) to replace it")

