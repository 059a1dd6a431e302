#!/usr/bin/env python3
"""Set up a virtual environment and run napari-unet's main job or its tests.

    python3 scripts/dev.py run     # napari with the plugin and its sample data (headless demo without a display)
    python3 scripts/dev.py test    # install the test extras, validate the npe2 manifest, run pytest
    python3 scripts/dev.py demo    # the headless demo, even with a display

Only the standard library is used here, so this works on a fresh Linux, macOS or Windows
machine with Python >= 3.10. The environment lives in ``.venv`` beside this repository (or in
``$NAPARI_UNET_VENV``) and is reused by later calls.

torch: if the environment has no torch yet, ``torch==2.13.0`` is installed first (on Linux CI
machines the CPU wheel lies on disk; set ``NAPARI_UNET_TORCH`` to another requirement, e.g.
``"torch"`` for the newest CUDA build, to change that). A torch you installed yourself is kept.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("NAPARI_UNET_VENV", ROOT / ".venv"))
TORCH = os.environ.get("NAPARI_UNET_TORCH", "torch==2.13.0")
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def say(msg: str) -> None:
    print(f"[napari-unet] {msg}", flush=True)


def sh(*args, check=True, env=None, **kw) -> subprocess.CompletedProcess:
    say("$ " + " ".join(str(a) for a in args))
    return subprocess.run([str(a) for a in args], check=check, env=env, **kw)


def pip(*args):
    return sh(PY, "-m", "pip", "--disable-pip-version-check", *args)


def has_module(name: str) -> bool:
    r = subprocess.run([str(PY), "-c", f"import {name}"], capture_output=True)
    return r.returncode == 0


def ensure_env(extra: str) -> None:
    if not PY.exists():
        say(f"creating the virtual environment {VENV}")
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    if not has_module("torch"):
        say(f"installing {TORCH} first (keeps the download small; see the README for CUDA / Apple)")
        pip("install", "-q", TORCH)
    stamp = VENV / f".napari-unet-{extra}.stamp"
    newest = max(p.stat().st_mtime for p in [ROOT / "pyproject.toml", Path(__file__)])
    if not stamp.exists() or stamp.stat().st_mtime < newest or not has_module("napari_unet"):
        pip("install", "-q", "-e", f"{ROOT}[{extra}]")
        stamp.touch()
    else:
        say(f"environment up to date ({VENV})")


def has_display() -> bool:
    if platform.system() in ("Windows", "Darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_run() -> int:
    ensure_env("all")
    if has_display():
        say("opening napari with the plugin's widgets and its sample data")
        return sh(PY, "-m", "napari_unet", "gui", check=False).returncode
    say("no display found: running the headless demo instead (annotate -> train -> predict)")
    return cmd_demo(setup=False)


def cmd_demo(setup: bool = True) -> int:
    if setup:
        ensure_env("all")
    out = ROOT / "demo_output"
    return sh(PY, "-m", "napari_unet", "demo", "--out", out, check=False).returncode


def validate_wheel() -> None:
    """Build the wheel and run `npe2 validate` against it, not against the editable install."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sh(PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", ROOT)
        wheel = next((tmp / "dist").glob("*.whl"))
        sh(PY, "-m", "pip", "install", "-q", "--no-deps", "--target", tmp / "site", wheel)
        code = (
            "import sys, importlib\n"
            f"site = {str(tmp / 'site')!r}; src = {str(ROOT / 'src')!r}\n"
            "sys.path[:] = [site] + [p for p in sys.path if p.rstrip('/\\\\') != src.rstrip('/\\\\')]\n"
            "import napari_unet\n"
            "assert napari_unet.__file__.startswith(site), napari_unet.__file__\n"
            "from importlib.metadata import distribution\n"
            "d = distribution('napari-scribble-unet')\n"
            "assert str(d.locate_file('')).startswith(site), d.locate_file('')\n"
            "from npe2.cli import app\n"
            "sys.argv = ['npe2', 'validate', 'napari-scribble-unet']\n"
            "app()\n"
        )
        sh(PY, "-c", code)
        say(f"npe2 validate passed for the built wheel {wheel.name}")


def cmd_test(pytest_args: list[str]) -> int:
    t0 = time.time()
    ensure_env("testing")
    sh(BIN / "npe2", "validate", "napari-scribble-unet")
    say("npe2 validate passed for the editable install")
    validate_wheel()
    env = dict(os.environ)
    env.setdefault("NAPARI_UNET_TEST", "1")
    args = [PY, "-m", "pytest", *(pytest_args or [])]
    if platform.system() == "Linux" and not has_display() and not shutil.which("Xvfb"):
        say("WARNING: no display and no Xvfb: widget tests that draw will be skipped or fail; "
            "install Debian's xvfb (see .ci/run)")
    r = sh(*args, check=False, env=env, cwd=ROOT)
    say(f"tests finished in {time.time() - t0:.0f} s with exit code {r.returncode}")
    return r.returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ("run", "test", "demo"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "run":
        return cmd_run()
    if argv[0] == "demo":
        return cmd_demo()
    return cmd_test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
