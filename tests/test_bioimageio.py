"""bioimage.io export: the package is valid, and the exported network computes what napari-unet computes."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import yaml

from napari_unet.export.bioimageio import export_bioimageio
from napari_unet.model.files import load_model
from napari_unet.model.unet import UNet
from napari_unet.predict.tiling import predict_tiled
from napari_unet.samples import make_touching_cells

# a bioimage.io consumer loads TorchScript (deprecated in torch 2.13, still what the format ships)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

NORMALIZATION = {"kind": "percentile", "low": 1.0, "high": 99.8}


def _net(padding: str, n_classes: int = 2, in_channels: int = 1) -> UNet:
    torch.manual_seed(3)
    net = UNet(in_channels=in_channels, n_classes=n_classes, depth=2, base_channels=4, padding=padding,
               batch_norm=padding == "same")
    net.metadata = {"mode": "instances" if n_classes == 2 else "classes", "normalization": dict(NORMALIZATION),
                    "cell_diameter": 12.0,
                    "training": {"iterations": 5, "best_val_loss": 0.3, "best_val_iou": 0.7}}
    if padding == "same":  # give batch norm non-trivial statistics, as after training
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _read(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _scale_range(tile: np.ndarray, low: float, high: float) -> np.ndarray:
    """The spec's scale_range over (y, x), per sample and channel: what a consumer applies."""
    lo = np.percentile(tile, low, axis=(-2, -1), keepdims=True)
    hi = np.percentile(tile, high, axis=(-2, -1), keepdims=True)
    return ((tile - lo) / (hi - lo + 1e-6)).astype(np.float32)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_exported_network_computes_what_napari_unet_computes(padding, tmp_path):
    net = _net(padding)
    image = make_touching_cells((150, 170), seed=4)[0]
    path = export_bioimageio(net, tmp_path / "m.bioimageio.zip", sample=image)
    files = _read(path)
    assert {"rdf.yaml", "weights.pt", "test_input.npy", "test_output.npy", "README.md", "cover.png",
            "model.unet"} <= set(files)
    assert "(validation loss 0.3000, IoU 0.700, of the best weights)" in files["README.md"].decode()
    rdf = yaml.safe_load(files["rdf.yaml"])
    test_in = np.load(io.BytesIO(files["test_input.npy"]))
    test_out = np.load(io.BytesIO(files["test_output.npy"]))
    # the declared input geometry admits the test tile
    size = rdf["inputs"][0]["axes"][2]["size"]
    assert all((s - size["min"]) % size["step"] == 0 and s >= size["min"] for s in test_in.shape[-2:])
    out_axis = rdf["outputs"][0]["axes"][2]
    assert test_out.shape[-2:] == tuple(s + out_axis["size"]["offset"] for s in test_in.shape[-2:])
    assert test_out.shape[1] == 2 and np.allclose(test_out.sum(1), 1, atol=1e-5)

    # a consumer: the rdf's preprocessing, then the TorchScript weights, reproduces the test output
    pre = rdf["inputs"][0]["preprocessing"][-1]
    assert pre["id"] == "scale_range" and pre["kwargs"]["axes"] == ["y", "x"]
    scripted = torch.jit.load(io.BytesIO(files["weights.pt"]))
    x = _scale_range(test_in, pre["kwargs"]["min_percentile"], pre["kwargs"]["max_percentile"])
    with torch.no_grad():
        consumer = scripted(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(consumer, test_out, atol=1e-5)

    # ... and napari-unet's own tiled prediction of the same raw tile agrees (away from the halo,
    # where napari-unet mirrors the border and a consumer pads)
    ours = predict_tiled(net, test_in[0], device="cpu", precision="fp32")
    dy = (ours.shape[-2] - test_out.shape[-2]) // 2
    ours = ours[:, dy : dy + test_out.shape[-2], dy : dy + test_out.shape[-1]]
    halo = out_axis.get("halo", 0)
    inner = (slice(None), slice(halo, test_out.shape[-2] - halo), slice(halo, test_out.shape[-1] - halo))
    np.testing.assert_allclose(ours[inner], test_out[0][inner], atol=2e-4)

    # the napari-unet model file inside is the model itself
    (tmp_path / "inner.unet").write_bytes(files["model.unet"])
    again = load_model(tmp_path / "inner.unet")
    assert again.config == net.config and again.metadata["cell_diameter"] == 12.0


def test_the_exported_network_takes_other_sizes(tmp_path):
    net = _net("valid")
    files = _read(export_bioimageio(net, tmp_path / "m.zip"))
    rdf = yaml.safe_load(files["rdf.yaml"])
    size = rdf["inputs"][0]["axes"][3]["size"]
    scripted = torch.jit.load(io.BytesIO(files["weights.pt"]))
    for n in (0, 1, 5):
        side = size["min"] + n * size["step"]
        x = torch.rand(1, 1, side, side + size["step"])
        with torch.no_grad():
            want = torch.softmax(net(x), 1)
            got = scripted(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_package_is_valid_for_the_bioimageio_validator(tmp_path):
    spec = pytest.importorskip("bioimageio.spec")
    for padding in ("valid", "same"):
        net = _net(padding, n_classes=3, in_channels=2)
        sample = np.stack([make_touching_cells((90, 100), seed=s)[0] for s in (1, 2)])
        path = export_bioimageio(net, tmp_path / f"{padding}.bioimageio.zip", sample=sample, authors=["Ada Lovelace"])
        descr = spec.load_description(path, perform_io_checks=True)
        summary = descr.validation_summary
        errors = [e for d in summary.details for e in d.errors]
        assert summary.status in ("valid-format", "passed"), errors
        assert not errors
        assert type(descr).__name__ == "ModelDescr"
        assert [str(c) for c in descr.outputs[0].axes[1].channel_names] == ["background", "class 2", "class 3"]
        assert [str(c) for c in descr.inputs[0].axes[1].channel_names] == ["channel0", "channel1"]


def test_refuses_to_overwrite_and_checks_its_inputs(tmp_path):
    net = _net("valid")
    path = export_bioimageio(net, tmp_path / "m.zip")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_bioimageio(net, path)
    assert path.read_bytes() == before
    export_bioimageio(net, path, overwrite=True, name="renamed")
    assert yaml.safe_load(_read(path)["rdf.yaml"])["name"] == "renamed"
    with pytest.raises(ValueError, match="channel"):
        export_bioimageio(net, tmp_path / "rgb.zip", sample=np.zeros((3, 64, 64)))
    with pytest.raises(TypeError, match="UNet"):
        export_bioimageio(object(), tmp_path / "x.zip")
    assert not (tmp_path / "rgb.zip").exists()


def test_a_3d_network_exports_a_valid_3d_package_that_computes_what_napari_unet_computes(tmp_path):
    torch.manual_seed(5)
    net = UNet(spatial_dims=3, depth=2, base_channels=2, padding="valid", xy_only_pools=1).eval()
    net.metadata = {"mode": "instances", "normalization": dict(NORMALIZATION), "axes": "ZYX"}
    stack = np.stack([make_touching_cells((70, 80), seed=1)[0]] * 30) * np.linspace(0.5, 1, 30)[:, None, None]
    path = export_bioimageio(net, tmp_path / "v.bioimageio.zip", sample=stack.astype(np.float32))
    files = _read(path)
    rdf = yaml.safe_load(files["rdf.yaml"])
    assert [a.get("id") for a in rdf["inputs"][0]["axes"][2:]] == ["z", "y", "x"]
    assert "3d" in rdf["tags"] and rdf["inputs"][0]["preprocessing"][-1]["kwargs"]["axes"] == ["z", "y", "x"]
    test_in = np.load(io.BytesIO(files["test_input.npy"]))
    test_out = np.load(io.BytesIO(files["test_output.npy"]))
    assert test_in.ndim == 5 and test_out.shape[1] == 2
    for axis, size_in, size_out in zip(rdf["inputs"][0]["axes"][2:], test_in.shape[2:], test_out.shape[2:]):
        size = axis["size"]
        assert (size_in - size["min"]) % size["step"] == 0 and size_in >= size["min"]
    offsets = [a["size"]["offset"] for a in rdf["outputs"][0]["axes"][2:]]
    assert tuple(i + o for i, o in zip(test_in.shape[2:], offsets)) == test_out.shape[2:]
    # a consumer's TorchScript run reproduces the test output, and it is napari-unet's network
    scripted = torch.jit.load(io.BytesIO(files["weights.pt"]))
    x = torch.rand(1, 1, *test_in.shape[2:])
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), torch.softmax(net(x), 1), atol=1e-5, rtol=1e-5)
    spec = pytest.importorskip("bioimageio.spec")
    summary = spec.load_description(path, perform_io_checks=True).validation_summary
    assert summary.status in ("valid-format", "passed"), [e for d in summary.details for e in d.errors]
