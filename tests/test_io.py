"""Model files (safetensors + JSON in a zip, never pickle) and TIFF / zarr images."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from napari_unet.files.images import read_image, write_image
from napari_unet.model.files import (
    MODEL_FORMAT_VERSION,
    ModelFileError,
    load_model,
    model_to_bytes,
    save_model,
)
from napari_unet.model.unet import UNet


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4, n_classes=3)
    net.metadata = {
        "mode": "classes",
        "class_names": ["background", "nucleus", "debris"],
        "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
        "training": {"iterations": 3, "best_val_loss": np.float32(0.25)},
        "cell_diameter": 23.25,
    }
    return net.eval()


def test_round_trip_identical_predictions(model, tmp_path):
    path = save_model(model, tmp_path / "m.unet")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.metadata["class_names"] == ["background", "nucleus", "debris"]
    assert loaded.metadata["training"]["best_val_loss"] == pytest.approx(0.25)
    assert loaded.metadata["cell_diameter"] == 23.25  # prediction scales its cell split with it
    assert not loaded.training
    x = torch.randn(2, 1, 92, 92)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_file_layout_is_json_and_safetensors(model, tmp_path):
    path = save_model(model, tmp_path / "m.unet")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["model.json", "weights.safetensors"]
        header = json.loads(zf.read("model.json"))
    assert header["format"] == "napari-unet-model"
    assert header["format_version"] == MODEL_FORMAT_VERSION
    assert header["config"]["n_classes"] == 3
    assert "package_version" in header


def test_save_is_atomic_and_leaves_no_temporary_file(model, tmp_path, monkeypatch):
    path = tmp_path / "m.unet"
    save_model(model, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(UNet(depth=1, base_channels=2), path, overwrite=True)
    assert path.read_bytes() == before  # the old model survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.unet"]


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.parametrize("inside_zip", [False, True])
def test_malicious_pickle_is_never_executed(tmp_path, inside_zip):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    path = tmp_path / "evil.unet"
    if inside_zip:
        # a torch.save()-style archive, and a model.json pointing at a pickled "weights" member
        torch.save({"weights": _Evil()}, path)
        with pytest.raises(ModelFileError, match="pickle"):
            load_model(path)
        with zipfile.ZipFile(tmp_path / "evil2.unet", "w") as zf:
            zf.writestr("model.json", model_to_bytes_header())
            zf.writestr("weights.safetensors", pickle.dumps(_Evil()))
        with pytest.raises(ModelFileError, match="safetensors"):
            load_model(tmp_path / "evil2.unet")
    else:
        path.write_bytes(pickle.dumps(_Evil()))
        with pytest.raises(ModelFileError, match="not a napari-unet model file"):
            load_model(path)
    assert not marker.exists()


def model_to_bytes_header() -> str:
    return json.dumps({"format": "napari-unet-model", "format_version": 1,
                       "config": UNet(depth=1, base_channels=2).config.to_dict(), "metadata": {}})


def test_corrupt_truncated_incompatible_and_newer_files(model, tmp_path):
    data = model_to_bytes(model)
    cases = {
        "truncated": (data[: len(data) // 2], "truncated or corrupt"),
        "empty": (b"", "not a napari-unet model file"),
        "text": (b"hello", "not a napari-unet model file"),
    }
    for name, (content, message) in cases.items():
        p = tmp_path / f"{name}.unet"
        p.write_bytes(content)
        with pytest.raises(ModelFileError, match=message):
            load_model(p)

    # a flipped byte inside the weights: the zip CRC catches it
    flipped = bytearray(data)
    flipped[len(data) - 400] ^= 0xFF
    (tmp_path / "flipped.unet").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(tmp_path / "flipped.unet")

    # weights that are not safetensors data
    with zipfile.ZipFile(tmp_path / "ok.unet", "w") as zf:
        zf.writestr("model.json", json.dumps(_header(model)))
        zf.writestr("weights.safetensors", b"\x00" * 64)
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(tmp_path / "ok.unet")

    header = _header(model)
    header["format_version"] = MODEL_FORMAT_VERSION + 1
    _write_with_header(tmp_path / "newer.unet", data, header)
    with pytest.raises(ModelFileError, match="Upgrade napari-unet"):
        load_model(tmp_path / "newer.unet")

    header = _header(model)
    header["config"]["base_channels"] = 8  # weights no longer fit
    _write_with_header(tmp_path / "mismatch.unet", data, header)
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(tmp_path / "mismatch.unet")

    header = _header(model)
    header["config"]["colour"] = "blue"
    _write_with_header(tmp_path / "unknown.unet", data, header)
    with pytest.raises(ModelFileError, match="incompatible architecture"):
        load_model(tmp_path / "unknown.unet")

    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.unet")


def _header(model) -> dict:
    return json.loads(zipfile.ZipFile(__import__("io").BytesIO(model_to_bytes(model))).read("model.json"))


def _write_with_header(path, data, header):
    import io as _io

    with zipfile.ZipFile(_io.BytesIO(data)) as src, zipfile.ZipFile(path, "w") as dst:
        dst.writestr("model.json", json.dumps(header))
        dst.writestr("weights.safetensors", src.read("weights.safetensors"))


# ------------------------------------------------------------------------------------- images


def test_tiff_round_trip_imagej_hyperstack(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (3, 2, 16, 20)).astype(np.uint16)
    path = write_image(tmp_path / "a.tif", data, axes="ZCYX")
    back, axes = read_image(path)
    assert axes == "ZCYX"
    np.testing.assert_array_equal(back, data)
    import tifffile

    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej


def test_labels_and_floats_are_stored_losslessly(tmp_path):
    labels = np.arange(16 * 20, dtype=np.int32).reshape(16, 20)
    back, axes = read_image(write_image(tmp_path / "l.tif", labels))
    assert axes == "YX" and back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
    big = labels * 1000  # beyond uint16: a plain TIFF keeps the values
    back, _ = read_image(write_image(tmp_path / "big.tif", big))
    np.testing.assert_array_equal(back, big)
    prob = np.random.default_rng(1).random((2, 16, 20))
    back, axes = read_image(write_image(tmp_path / "p.tif", prob, axes="CYX"))
    assert axes == "CYX" and back.dtype == np.float32
    np.testing.assert_allclose(back, prob.astype(np.float32))


def test_ome_tiff_and_rgb_axes(tmp_path):
    import tifffile

    data = np.zeros((2, 3, 16, 20), np.uint16)
    tifffile.imwrite(tmp_path / "x.ome.tif", data, metadata={"axes": "TCYX"}, ome=True)
    assert read_image(tmp_path / "x.ome.tif")[1] == "TCYX"
    rgb = np.zeros((16, 20, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    back, axes = read_image(tmp_path / "rgb.tif")
    assert axes == "CYX" and back.shape == (3, 16, 20)


def test_never_overwrites_unless_asked(tmp_path):
    path = write_image(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image(path, np.ones((8, 8), np.uint8))
    write_image(path, np.ones((8, 8), np.uint8), overwrite=True)
    assert read_image(path)[0].max() == 1
    with pytest.raises(ValueError, match="axes"):
        write_image(tmp_path / "b.tif", np.zeros((8, 8)), axes="ZYX")


def test_zarr_round_trip(tmp_path):
    pytest.importorskip("zarr")
    data = np.random.default_rng(0).integers(0, 9, (2, 16, 20)).astype(np.int32)
    path = write_image(tmp_path / "a.zarr", data, axes="ZYX")
    back, axes = read_image(path)
    assert axes == "ZYX"
    np.testing.assert_array_equal(np.asarray(back[...]), data)
    with pytest.raises(FileExistsError):
        write_image(path, data, axes="ZYX")
    write_image(path, data + 1, axes="ZYX", overwrite=True)
    np.testing.assert_array_equal(np.asarray(read_image(path)[0][...]), data + 1)


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from napari_unet.files.safe_write import atomic_write_bytes
    from napari_unet.files.images import write_image

    umask = os.umask(0o022)
    try:
        a = atomic_write_bytes(tmp_path / "m.unet", b"x")
        b = write_image(tmp_path / "l.tif", np.zeros((4, 4), np.uint16))
    finally:
        os.umask(umask)
    for p in (a, b):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644, oct(os.stat(p).st_mode)
