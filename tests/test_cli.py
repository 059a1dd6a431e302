"""`napari-unet train | predict | demo`, in-process (cli.main) and once as a subprocess."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_unet.cli import main as cli
from napari_unet.cli.args import parse_duration
from napari_unet.files.images import read_image, write_image
from napari_unet.labels.render import write_png
from napari_unet.model.files import load_model
from napari_unet.samples import make_touching_cells


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    write_image(folder / "img.tif", image)
    write_image(folder / "ann.tif", annotations)
    model = folder / "m.unet"
    code = cli.main(["train", str(folder / "img.tif"), "--annotations", str(folder / "ann.tif"), "-o", str(model),
                     "--preset", "tiny", "--iterations", "3", "--batch-size", "2", "--device", "cpu", "-q"])
    assert code == 0
    return folder, image, annotations, model


def test_train_writes_a_model_and_refuses_to_overwrite(files, capsys):
    folder, image, annotations, model = files
    net = load_model(model)
    assert net.metadata["mode"] == "instances" and net.metadata["training"]["iterations"] == 3
    assert net.metadata["training"]["kept"] == "best"
    code = cli.main(["train", str(folder / "img.tif"), "-a", str(folder / "ann.tif"), "-o", str(model),
                     "--preset", "tiny", "--iterations", "1", "-q"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    last = folder / "last.unet"
    code = cli.main(["train", str(folder / "img.tif"), "-a", str(folder / "ann.tif"), "-o", str(last),
                     "--preset", "tiny", "--iterations", "2", "--batch-size", "2", "--keep", "last", "-q"])
    assert code == 0 and load_model(last).metadata["training"]["kept"] == "last"
    assert load_model(model).metadata["training"]["config"]["ring"] == 1  # the default


def test_train_ring_and_borders_options(files, capsys):
    folder, *_ = files
    out = folder / "borders.unet"
    code = cli.main(["train", str(folder / "img.tif"), "-a", str(folder / "ann.tif"), "-o", str(out),
                     "--preset", "tiny", "--iterations", "1", "--batch-size", "2", "--ring", "0", "--borders", "-q"])
    net = load_model(out)
    assert code == 0 and net.config.n_classes == 3 and net.metadata["border_class"] == 2
    assert net.metadata["training"]["config"]["ring"] == 0
    with pytest.raises(SystemExit) as exit_info:  # argparse: one line and exit 2
        cli.main(["train", str(folder / "img.tif"), "-a", str(folder / "ann.tif"), "-o", str(folder / "x.unet"),
                  "--ring", "-1", "-q"])
    assert exit_info.value.code == 2 and "--ring: must be >= 0" in capsys.readouterr().err


def test_predict_files_folders_and_zarr(files, tmp_path, capsys):
    folder, image, _, model = files
    inputs = tmp_path / "inputs"
    write_image(inputs / "a.tif", image)
    write_image(inputs / "stack.tif", np.stack([image, image[::-1]]), axes="ZYX")
    write_image(tmp_path / "z.zarr", image, axes="YX")
    out = tmp_path / "out"
    args = ["predict", "-m", str(model), str(inputs), str(tmp_path / "z.zarr"), "-o", str(out), "--probabilities", "-q",
            "--device", "cpu"]
    assert cli.main(args) == 0
    labels, axes = read_image(out / "a_labels.tif")
    assert axes == "YX" and labels.shape == image.shape
    stack, axes = read_image(out / "stack_labels.tif")
    assert axes == "ZYX" and stack.shape == (2, *image.shape)
    prob, axes = read_image(out / "stack_probabilities.tif")
    assert axes == "ZCYX" and prob.shape == (2, 2, *image.shape)
    np.testing.assert_allclose(prob.sum(1), 1.0, atol=1e-4)
    assert (out / "z_labels.tif").exists()
    # never overwrite unless asked
    assert cli.main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(args + ["--skip-existing"]) == 0
    assert cli.main(args + ["--overwrite", "--format", "zarr"]) == 0
    assert read_image(out / "a_labels.zarr")[1] == "YX"


def test_predict_uses_the_models_cell_diameter_unless_given(files, tmp_path, capsys, monkeypatch):
    import napari_unet.labels.segment as segmentation

    folder, image, _, model = files
    diameter = load_model(model).metadata["cell_diameter"]
    seen = []
    real = segmentation.to_labels_in_blocks  # the full-scale labels of the Predict path
    monkeypatch.setattr(segmentation, "to_labels_in_blocks", lambda p, options: seen.append(dict(**options))
                        or real(p, options))
    base = ["predict", "-m", str(model), str(folder / "img.tif"), "-q", "--device", "cpu"]
    assert cli.main(base + ["-o", str(tmp_path / "a")]) == 0
    assert cli.main(base + ["-o", str(tmp_path / "b"), "--cell-diameter", "31.5"]) == 0
    assert seen == [{"mode": "instances", "cell_diameter": diameter}, {"mode": "instances", "cell_diameter": 31.5}]
    for bad in ("0", "inf", "nan"):
        with pytest.raises(SystemExit) as exit_:
            cli.main(base + ["-o", str(tmp_path / "c"), "--cell-diameter", bad])
        assert exit_.value.code == 2
        assert "--cell-diameter: must be a finite number > 0" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_bad_inputs_give_clear_errors_and_no_model(files, tmp_path, capsys):
    folder, image, annotations, _ = files
    one_class = tmp_path / "one.tif"
    write_image(one_class, np.where(annotations > 0, 1, 0).astype(np.uint8))
    out = tmp_path / "never.unet"
    code = cli.main(["train", str(folder / "img.tif"), "-a", str(one_class), "-o", str(out), "--preset", "tiny", "-q"])
    assert code == 2 and "background only" in capsys.readouterr().err and not out.exists()
    code = cli.main(["predict", "-m", str(tmp_path / "missing.unet"), str(folder / "img.tif"), "-o", str(tmp_path)])
    assert code == 2 and "not found" in capsys.readouterr().err
    bogus = tmp_path / "bogus.unet"
    bogus.write_bytes(b"not a model")
    code = cli.main(["predict", "-m", str(bogus), str(folder / "img.tif"), "-o", str(tmp_path)])
    assert code == 2 and "not a napari-unet model file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", str(folder / "img.tif"), "-a", str(folder / "ann.tif"), "-o", str(out),
                  "--time-limit", "soon"])


def test_demo_writes_prediction_model_and_picture(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--minutes", "0.03", "--size", "256", "-q", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "object F1" in printed
    for name in ("demo.png", "prediction_labels.tif", "demo.unet"):
        assert (out / name).exists()
    png = (out / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert cli.main(["demo", "--out", str(out), "--minutes", "0.03", "-q"]) == 2  # no silent overwrite


def test_png_writer_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3)).astype(np.uint8)
    path = write_png(tmp_path / "x.png", rgb)
    imageio = pytest.importorskip("imageio.v3")
    np.testing.assert_array_equal(imageio.imread(path), rgb)


def test_duration_parser():
    assert parse_duration("90") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("1.5h") == 5400


def test_console_entry_point_in_a_subprocess(files, tmp_path):
    folder, _, _, model = files
    result = subprocess.run(
        [sys.executable, "-m", "napari_unet", "predict", "-m", str(model), str(folder / "img.tif"), "-o",
         str(tmp_path), "-q", "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "img_labels.tif").exists()


def test_export_writes_a_bioimageio_package(files, tmp_path, capsys):
    import zipfile

    import yaml

    folder, image, annotations, model = files
    out = tmp_path / "cells.bioimageio.zip"
    assert cli.main(["export", "-m", str(model), "-o", str(out), "--sample", str(folder / "img.tif"),
                     "--name", "my cells", "--author", "Ada Lovelace"]) == 0
    assert "bioimage.io package written" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    assert rdf["name"] == "my cells" and rdf["authors"] == [{"name": "Ada Lovelace"}]
    assert rdf["weights"]["torchscript"]["source"] == "weights.pt"
    before = out.read_bytes()
    assert cli.main(["export", "-m", str(model), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    bad = tmp_path / "bad.unet"
    bad.write_bytes(b"not a model")
    assert cli.main(["export", "-m", str(bad), "-o", str(tmp_path / "x.zip")]) == 2
    assert "error" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()


def test_predict_refuses_an_output_that_is_one_of_its_inputs(files, tmp_path, capsys):
    folder, image, _, model = files
    write_image(tmp_path / "a.tif", image)
    write_image(tmp_path / "a_labels.tif", image)  # an input that a.tif's labels would replace
    before = (tmp_path / "a_labels.tif").read_bytes()
    code = cli.main(["predict", "-m", str(model), str(tmp_path / "a.tif"), str(tmp_path / "a_labels.tif"),
                     "-o", str(tmp_path), "--overwrite", "-q", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "is the input" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "a_labels.tif").read_bytes() == before


def test_block_without_cluster_is_one_clear_error(files, tmp_path, capsys):
    folder, _, _, model = files
    code = cli.main(["predict", "-m", str(model), str(folder / "img.tif"), "-o", str(tmp_path / "o.zarr"),
                     "--block", "512", "-q"])
    assert code == 2
    assert "add --cluster" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()


def test_a_failed_prediction_leaves_no_empty_output_folder(files, tmp_path, capsys):
    _, image, _, model = files
    bad = image.astype(np.float32)
    bad[3, 3] = np.nan
    write_image(tmp_path / "nan.tif", bad)
    out = tmp_path / "new" / "folder"
    assert cli.main(["predict", "-m", str(model), str(tmp_path / "nan.tif"), "-o", str(out), "-q", "--device", "cpu"]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_sigterm_ends_a_run_as_ctrl_c_does_and_save_refuses_what_load_would(tmp_path):
    import os
    import signal

    from napari_unet import UNet, save_model
    from napari_unet.model.files import ModelFileError

    previous = signal.getsignal(signal.SIGTERM)
    try:
        cli._interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt):  # the finally blocks run: locks released, cluster closed
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs at the next bytecode
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    net = UNet(depth=2, base_channels=4)
    net.metadata = {"cell_diameter": "22"}
    with pytest.raises(ModelFileError, match="cell_diameter"):
        save_model(net, tmp_path / "never.unet")
    assert not (tmp_path / "never.unet").exists()


def test_train_a_3d_net_on_a_stack_with_its_voxel_size(tmp_path, capsys):
    import tifffile

    rng = np.random.default_rng(0)
    stack = rng.normal(0, 0.2, (16, 48, 48)).astype(np.float32)
    stack[4:12, 10:26, 10:26] += 1
    ann = np.zeros(stack.shape, np.uint16)
    for z in (6, 9):
        ann[z] = 1
        ann[z, 10:26, 10:26] = 2
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    tifffile.imwrite(tmp_path / "ann.tif", ann)
    out = tmp_path / "net3d.unet"
    args = ["train", "--3d-net", str(tmp_path / "stack.tif"), "-a", str(tmp_path / "ann.tif"), "-o", str(out),
            "--iterations", "2", "--tile", "8x32x32", "--pixel-size", "2x0.5x0.5", "--axes", "ZYX", "-q"]
    assert cli.main(args) == 0
    model = load_model(out)
    assert model.config.spatial_dims == 3 and model.config.xy_only_pools == 1
    assert model.metadata["voxel_size"] == [2.0, 0.5, 0.5] and model.metadata["axes"] == "ZYX"
    assert cli.main(args[:-1] + ["--preset", "fast", "-q", "-o", str(tmp_path / "x.unet")]) == 2
    assert "--3d-net trains a 3D network" in capsys.readouterr().err
    # predicted with a voxel size of its own (z y x): resampled to the network's grid, not refused
    # (it used to stop on "pixel_size must be a (y, x) pair")
    for name, size in (("same", "2x0.5x0.5"), ("finer", "1x0.25x0.25")):
        assert cli.main(["predict", "-m", str(out), str(tmp_path / "stack.tif"), "-o", str(tmp_path / name),
                         "--pixel-size", size, "--probabilities", "--axes", "ZYX", "-q"]) == 0
    same, finer = (tifffile.imread(next((tmp_path / name).glob("*prob*"))) for name in ("same", "finer"))
    assert same.shape == finer.shape and np.abs(same - finer).max() > 1e-3
    from napari_unet.files.images import read_pixel_size  # the outputs keep the input's voxel

    assert read_pixel_size(tmp_path / "finer" / "stack_labels.tif") == pytest.approx({"z": 1.0, "y": 0.25, "x": 0.25})
