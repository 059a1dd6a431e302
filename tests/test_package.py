"""The package: a core importable without Qt, a valid npe2 manifest, every python_name importable."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "napari_unet"
CORE_MODULES = [  # every module but the widgets', the CLI's and the napari glue
    ".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in sorted(PACKAGE.rglob("*.py"))
    if not any(part.startswith("_") for part in p.relative_to(PACKAGE).parts) and p.relative_to(PACKAGE).parts[0] != "cli"
]
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")


def test_core_imports_without_qt_or_napari():
    code = (
        "import sys, json, importlib\n"
        "import napari_unet\n"
        "light = 'torch' not in sys.modules\n"
        f"for m in {CORE_MODULES!r}:\n"
        "    importlib.import_module('napari_unet.' + m)\n"
        "for name in napari_unet.__all__:\n"
        "    try:\n"
        "        getattr(napari_unet, name)\n"
        "    except (ImportError, AttributeError) as e:\n"
        "        print('missing', name, e, file=sys.stderr)\n"
        "print(json.dumps({'light': light, 'modules': sorted(sys.modules)}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    info = json.loads(r.stdout.strip().splitlines()[-1])
    loaded = {m.split(".")[0] for m in info["modules"]}
    assert not loaded & set(GUI_MODULES), f"core pulled in GUI modules: {sorted(loaded & set(GUI_MODULES))}"
    assert info["light"], "`import napari_unet` must not import torch (the Plugins menu must open fast)"
    assert "missing" not in r.stderr, r.stderr


def test_public_names_resolve():
    import types

    import napari_unet

    # importing every submodule first: a submodule named like an exported function would
    # replace that function on the package (napari_unet.train must stay the function)
    for module in CORE_MODULES:
        importlib.import_module(f"napari_unet.{module}")
    for name in napari_unet.__all__:
        value = getattr(napari_unet, name)
        assert value is not None
        assert not isinstance(value, types.ModuleType), f"napari_unet.{name} is a module, not the API object"
    assert callable(napari_unet.train) and callable(napari_unet.predict_tiled)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        napari_unet.nope


def test_manifest_is_valid_and_named_as_distribution():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-scribble-unet")
    assert manifest.name == "napari-scribble-unet"
    top = ROOT / "napari.yaml"
    assert top.resolve() == (PACKAGE / "napari.yaml").resolve(), "top-level napari.yaml must link to the package's"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert {"Annotate", "Train", "Predict", "Batch predict"} <= widgets
    assert {s.key for s in manifest.contributions.sample_data} == {"touching_cells", "nuclei"}


def test_every_python_name_in_the_manifest_imports():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(PACKAGE / "napari.yaml")
    names = [c.python_name for c in manifest.contributions.commands if c.python_name]
    assert len(names) >= 6
    for python_name in names:
        module, _, attr = python_name.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        assert callable(obj), python_name


def test_sample_data_commands_return_layer_data():
    from napari_unet import _sample_data

    for fn in (_sample_data.touching_cells, _sample_data.nuclei):
        layers = fn()
        kinds = [kind for _, _, kind in layers]
        assert kinds == ["image", "labels", "labels"]
        image, gt, annotations = (data for data, _, _ in layers)
        assert image.shape == gt.shape == annotations.shape
        assert layers[2][1]["name"] == layers[0][1]["name"] + " annotations"


def _old_names():
    from napari_unet.common.aliases import OLD_PATHS

    return [(old.split(".")[1], name, home.split(".", 1)[1]) for old, names in OLD_PATHS.items()
            for name, home in names.items()]


@pytest.mark.parametrize("old, name, home", _old_names())
def test_the_old_module_paths_still_give_every_name_with_a_deprecation_warning(old, name, home):
    # the paths the README and docs used before the wings: napari_unet.data, .io, .tiling
    module = importlib.import_module(f"napari_unet.{old}")
    with pytest.warns(DeprecationWarning, match=rf"napari_unet\.{old}\.{name} is deprecated: import {name} from napari_unet"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(f"napari_unet.{home}"), name)
    assert name in module.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope


def test_the_old_module_paths_keep_the_names_they_held():
    assert len(_old_names()) == 39 and {old for old, *_ in _old_names()} == {"data", "io", "tiling"}
