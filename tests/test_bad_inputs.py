"""Bad input, faults and hostile files: every case fails with the package's own clear error
(type + a message naming the problem) and leaves what is on disk as it was.

The cases of issue 13 are marked with their number there (L1-L7: lost or wrong results; R: raw
or misleading errors); the rest are our own.
"""

from __future__ import annotations

import io as _io
import json
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_unet import TrainConfig, UNet, load_model, predict_tiled, save_model, to_labels
from napari_unet.cli import main as cli
from napari_unet.config import AugmentConfig, ModelConfig
from napari_unet.files.images import is_complete_image, read_image, write_image
from napari_unet.files.safe_write import output_lock
from napari_unet.model.files import ModelFileError, model_to_bytes
from napari_unet.samples import make_touching_cells
from napari_unet.training.trainer import Trainer


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes (what 'nothing on disk changed' compares)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    image, _, annotations = make_touching_cells((96, 96), seed=2, annotated_fraction=0.1)
    write_image(folder / "img.tif", image)
    write_image(folder / "ann.tif", annotations)
    model = UNet(depth=1, base_channels=2)
    model.metadata = {"mode": "instances"}
    save_model(model, folder / "m.unet")
    return folder, image, annotations


def tiny_config(**kw):
    return TrainConfig(preset="tiny", iterations=kw.pop("iterations", 2), batch_size=2, device="cpu", **kw)


# ------------------------------------------------------------------------- configuration values


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(iterations=None, time_limit_s=float("nan")), ValueError, "time_limit_s must be a finite number"),  # L1
        (dict(time_limit_s=float("inf")), ValueError, "time_limit_s must be a finite number"),
        (dict(w0=-100), ValueError, "w0 must be >= 0"),  # L2
        (dict(sigma=0), ValueError, "sigma must be > 0"),
        (dict(tile_shape=0), ValueError, "tile_shape[0] must be >= 8"),  # R
        (dict(tile_shape="64"), TypeError, "tile_shape must be an int or a (Y, X) pair"),
        (dict(iterations="10"), TypeError, "iterations must be a whole number, got '10'"),  # R
        (dict(iterations=2.5), ValueError, "iterations must be a whole number"),
        (dict(iterations=True), TypeError, "iterations must be a whole number"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(learning_rate=float("nan")), ValueError, "learning_rate must be a finite number"),
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be > 0"),
        (dict(momentum=1.0), ValueError, "momentum must be < 1"),
        (dict(n_classes=10**6), ValueError, "n_classes must be <= 256"),
        (dict(class_weights=[1.0, float("nan")]), ValueError, "class_weights[1] must be a finite number"),
        (dict(class_weights="equal"), ValueError, "class_weights must be"),
        (dict(normalize_low=50, normalize_high=10), ValueError, "normalize_high must be > 50"),
        (dict(gap="no"), TypeError, "gap must be True or False"),
        (dict(lr_schedule="linear"), ValueError, "lr_schedule must be one of"),
        (dict(augment={"flip": False}), TypeError, "augment must be an AugmentConfig"),
    ],
)
def test_train_config_refuses_bad_values(kwargs, error, words):
    with pytest.raises(error) as info:
        TrainConfig(**kwargs)
    assert words in str(info.value)


def test_configs_normalize_what_they_accept():
    assert TrainConfig(tile_shape=96).tile_shape == (96, 96)
    assert TrainConfig(iterations=np.int64(5)).iterations == 5
    with pytest.raises(ValueError, match="elastic_sigma must be >= 0"):
        AugmentConfig(elastic_sigma=-1)
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, float("nan")))


def test_model_config_bounds_the_network_before_building_it():
    with pytest.raises(ValueError, match="billion parameters"):
        ModelConfig(depth=8, base_channels=256)
    with pytest.raises(ValueError, match="depth must be <= 8"):
        ModelConfig(depth=40)
    assert ModelConfig().parameter_count() == sum(p.numel() for p in UNet().parameters())


# ------------------------------------------------------------------------------ data and images


def test_class_mode_with_a_stray_huge_label_names_it(data):
    _, image, annotations = data
    for stray in (10**6, 10**12):
        ann = np.where(annotations > 1, 2, annotations).astype(np.int64)
        ann[0, 0] = stray
        with pytest.raises(ValueError, match=f"class {stray}.*at most 256"):
            Trainer([image], [ann], config=tiny_config(mode="classes"))


def test_huge_instance_ids_train(data):
    _, image, annotations = data
    ann = np.where(annotations >= 2, annotations.astype(np.int64) + 2**40, annotations.astype(np.int64))
    trainer = Trainer([image], [ann], config=tiny_config(iterations=1))
    for _ in trainer.run():
        pass
    assert trainer.iteration == 1


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_training_names_nan_in_the_image_not_the_learning_rate(data, spatial_dims):  # R
    """A float image with NaN (a masked or registered stack) trained on used to end in "the loss
    became nan ... lower the learning rate": wrong advice. The image is named instead."""
    _, image, annotations = data
    if spatial_dims == 3:
        image, annotations = np.stack([image] * 4), np.stack([np.zeros_like(annotations)] * 3 + [annotations])
    config = TrainConfig(preset="tiny" if spatial_dims == 2 else "fast3d", iterations=2, batch_size=1, device="cpu")
    bad = image.astype(np.float32)
    bad[..., 5:7, 5:7] = np.nan  # every plane: the percentiles are not finite
    with pytest.raises(ValueError, match="percentiles are not finite"):
        Trainer([bad], [annotations], config=config)
    bad = image.astype(np.float32)
    bad[..., -1, 5:7] = np.inf  # a few pixels of the painted plane only: the percentiles stay finite
    with pytest.raises(ValueError, match=r"image 0: the (image|stack) holds \d+ NaN or infinite"):
        Trainer([bad], [annotations], config=config)


@pytest.mark.parametrize(
    "image, error, words",
    [
        (np.zeros((64, 64, 3), np.float32), ValueError, "looks like an RGB image"),  # R
        ([[1.0, 2.0], [3.0]], ValueError, "must be a rectangular array"),  # R
        (np.zeros((64, 64), np.complex64), TypeError, "complex numbers"),
        (np.full((64, 64), np.nan, np.float32), ValueError, "NaN or infinite"),
        (np.zeros((0, 64), np.float32), ValueError, "is empty"),
        (np.array(["a", "b"]), TypeError, "must hold real numbers"),
    ],
)
def test_prediction_refuses_bad_images(image, error, words):
    with pytest.raises(error, match=words):
        predict_tiled(UNet(depth=1, base_channels=2), image)


def test_prediction_takes_a_torch_tensor_and_checks_tile_and_batch():
    import torch

    net = UNet(depth=1, base_channels=2)
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    np.testing.assert_allclose(predict_tiled(net, torch.from_numpy(image), precision="fp32"),
                               predict_tiled(net, image, precision="fp32"))
    with pytest.raises(TypeError, match="tile_shape must be an int or a .Y, X. pair of ints, got the string '64'"):
        predict_tiled(net, image, tile_shape="64")  # R: was read as (6, 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        predict_tiled(net, image, batch_size=0)


def test_a_tile_or_batch_too_large_for_the_memory_is_refused(monkeypatch):
    import napari_unet.common.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 64 * 2**20)  # a machine with 64 MiB free
    net = UNet(depth=2, base_channels=8)
    image = np.zeros((600, 600), np.float32)
    with pytest.raises(MemoryError, match="give a smaller tile_shape or batch_size"):
        predict_tiled(net, image, tile_shape=572, batch_size=16, device="cpu")


def test_training_refuses_a_batch_that_cannot_fit(data, monkeypatch):
    import napari_unet.common.memory as memory

    _, image, annotations = data
    monkeypatch.setattr(memory, "available_memory", lambda: 16 * 2**20)
    with pytest.raises(MemoryError, match="lower batch_size or tile_shape"):
        Trainer([image], [annotations], config=tiny_config(tile_shape=1024))


def test_a_huge_lazy_array_is_refused_before_allocating():
    zarr = pytest.importorskip("zarr")
    big = zarr.create_array(store={}, shape=(200_000, 200_000), chunks=(4096, 4096), dtype="uint8")
    with pytest.raises(MemoryError, match="GiB of memory.*pass out="):  # R
        predict_tiled(UNet(depth=1, base_channels=2), big)


def test_to_labels_refuses_bad_options():
    prob = np.zeros((2, 16, 16), np.float32)
    prob[0] = 1
    with pytest.raises(ValueError, match="cell_diameter"):
        to_labels(prob, cell_diameter=float("inf"))
    with pytest.raises(ValueError, match="min_size must be >= 0"):
        to_labels(prob, min_size=-1)
    with pytest.raises(ValueError, match="split_h must be a finite number"):
        to_labels(prob, split_h=float("nan"))
    prob[:, 3, 3] = np.nan  # a broken model's output: never labelled silently (L3)
    with pytest.raises(ValueError, match="NaN or infinite values"):
        to_labels(prob)


# ------------------------------------------------------------------------------ model files


def _model_bytes_with(header_change=None, weights: bytes | None = None, config=None) -> bytes:
    net = UNet(depth=1, base_channels=2)
    raw = model_to_bytes(net)
    with zipfile.ZipFile(_io.BytesIO(raw)) as zf:
        header = json.loads(zf.read("model.json"))
        members = {n: zf.read(n) for n in zf.namelist()}
    if config is not None:
        header["config"].update(config)
    if header_change is not None:
        header_change(header)
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.json", json.dumps(header))
        zf.writestr("weights.safetensors", weights if weights is not None else members["weights.safetensors"])
    return buffer.getvalue()


def test_a_model_with_nan_weights_is_refused(tmp_path):  # L3
    import torch

    net = UNet(depth=1, base_channels=2)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.unet"
    path.write_bytes(model_to_bytes(net))
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model(path)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: _model_bytes_with(lambda h: h.update(metadata=[1, 2])), "metadata must be a JSON object"),
        (lambda: _model_bytes_with(lambda h: h["metadata"].update(mode=7)), "'mode' must be"),
        (lambda: _model_bytes_with(lambda h: h["metadata"].update(cell_diameter="big")), "'cell_diameter' must be"),
        (lambda: _model_bytes_with(lambda h: h["metadata"].update(normalization={"kind": "percentile", "low": 90, "high": 5})),
         "invalid normalization"),
        (lambda: _model_bytes_with(config={"depth": 8, "base_channels": 1024}), "incompatible architecture config"),
        (lambda: _model_bytes_with(weights=b"\0" * 50_000_000), "more than the stored architecture can hold"),
    ],
)
def test_hostile_or_wrong_model_files(tmp_path, make, words):  # R
    path = tmp_path / "bad.unet"
    path.write_bytes(make())
    with pytest.raises(ModelFileError, match=words):
        load_model(path)


def test_deeply_nested_model_json_is_refused(tmp_path):  # R: was a RecursionError traceback
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("model.json", "[" * 200_000 + "]" * 200_000)
    path = tmp_path / "deep.unet"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ModelFileError, match="nested too deeply|not a JSON object"):
        load_model(path)


def test_save_model_never_replaces_an_image_or_a_read_only_model(data, tmp_path):  # L4
    folder, image, _ = data
    tif = tmp_path / "image.tif"
    write_image(tif, image)
    before = snapshot(tmp_path)
    net = UNet(depth=1, base_channels=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(net, tif)
    with pytest.raises(FileExistsError, match="not a napari-unet model file"):
        save_model(net, tif, overwrite=True)
    assert snapshot(tmp_path) == before
    model = tmp_path / "m.unet"
    save_model(net, model)
    model.chmod(0o444)
    try:  # marked read-only: refused even for a user (root) who may write it
        with pytest.raises(PermissionError, match="read-only"):
            save_model(net, model, overwrite=True)
    finally:
        model.chmod(0o644)
    save_model(net, model, overwrite=True)  # a model file is replaced when asked


def test_an_interrupted_write_leaves_no_temporary_for_long(tmp_path):  # R: kill during a checkpoint write
    path = tmp_path / "checkpoint.unet"
    stale = tmp_path / f".checkpoint.unet.{_dead_pid()}.abc123.tmp"
    stale.write_bytes(b"half a model")
    save_model(UNet(depth=1, base_channels=2), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.unet"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------ the CLI


def _train_args(folder, out, *extra):
    return ["train", str(folder / "img.tif"), "-a", str(folder / "ann.tif"), "-o", str(out),
            "--preset", "tiny", "--iterations", "2", "--batch-size", "2", "--device", "cpu", "-q", *extra]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--iterations", "0"], "--iterations: must be >= 1"),
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--lr", "nan"], "--lr: must be a finite number > 0"),
    ],
)
def test_cli_train_refuses_bad_numbers_in_one_line(data, tmp_path, capsys, extra, words):  # R
    folder, *_ = data
    with pytest.raises(SystemExit) as exit_:
        cli.main(_train_args(folder, tmp_path / "m.unet", *extra))
    assert exit_.value.code == 2 and words in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "content, words",
    [
        (np.zeros((32, 32), np.complex64), "complex numbers"),
        (np.full((32, 32), np.nan, np.float32), "NaN or infinite"),
    ],
)
def test_cli_refuses_bad_image_files_in_one_line(data, tmp_path, capsys, content, words):  # R
    folder, *_ = data
    bad = tmp_path / "bad.tif"
    import tifffile

    tifffile.imwrite(bad, content)
    code = cli.main(["train", str(bad), "-a", str(folder / "ann.tif"), "-o", str(tmp_path / "m.unet"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    code = cli.main(["predict", "-m", str(folder / "m.unet"), str(bad), "-o", str(tmp_path / "out"), "-q"])
    assert code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "m.unet").exists() and not (tmp_path / "out").exists()


def test_cli_refuses_an_empty_tiff_and_wrong_axes(data, tmp_path, capsys):  # R
    folder, *_ = data
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    code = cli.main(["predict", "-m", str(folder / "m.unet"), str(empty), "-o", str(tmp_path / "out"), "-q"])
    assert code == 2 and "empty.tif" in capsys.readouterr().err
    code = cli.main(_train_args(folder, tmp_path / "m.unet", "--axes", "XYZ"))
    err = capsys.readouterr().err
    assert code == 2 and "--axes 'XYZ'" in err and "Traceback" not in err
    code = cli.main(_train_args(folder, tmp_path / "m.unet", "--axes", "XY"))
    err = capsys.readouterr().err
    assert code == 2 and "axes" in err and "Traceback" not in err
    assert not (tmp_path / "m.unet").exists()


def test_cli_train_checks_the_output_before_training(data, tmp_path, capsys, monkeypatch):  # L5
    folder, *_ = data
    monkeypatch.setattr(Trainer, "run", lambda self: pytest.fail("trained although the output is unwritable"))
    code = cli.main(_train_args(folder, folder / "img.tif" / "model.unet"))
    assert code == 2 and "is a file, not a folder" in capsys.readouterr().err
    code = cli.main(_train_args(folder, tmp_path, "--overwrite"))
    assert code == 2 and "is an existing folder" in capsys.readouterr().err
    before = snapshot(folder)
    code = cli.main(_train_args(folder, folder / "img.tif", "--overwrite"))
    assert code == 2 and "not a napari-unet model file" in capsys.readouterr().err
    assert snapshot(folder) == before


def test_cli_train_rescues_the_model_when_the_final_save_fails(data, tmp_path, capsys, monkeypatch):  # L5
    folder, *_ = data
    import napari_unet.model.files as nio

    real = nio.save_model

    def fail_once(model, path, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(nio, "save_model", fail_once)
    monkeypatch.chdir(tmp_path)
    code = cli.main(_train_args(folder, tmp_path / "out" / "m.unet"))
    err = capsys.readouterr().err
    rescued = list(tmp_path.glob("napari-unet-rescued-*.unet"))
    assert code == 2 and len(rescued) == 1 and str(rescued[0].name) in err
    monkeypatch.setattr(nio, "save_model", real)
    assert load_model(rescued[0]).metadata["training"]["iterations"] == 2


def test_cli_ctrl_c_during_training_stops_like_the_stop_button(data, tmp_path, monkeypatch):  # R
    folder, *_ = data
    calls = []

    def interrupt(self, done, total, info="", force=False):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.ProgressBar, "update", interrupt)
    out = tmp_path / "m.unet"
    args = _train_args(folder, out)
    args.remove("-q")
    args[args.index("--iterations") + 1] = "50"
    assert cli.main(args) == 130
    meta = load_model(out).metadata["training"]
    assert meta["stopped"] is True and meta["iterations"] < 50


def test_cli_resume_of_a_plain_model_points_to_continue(data, tmp_path, capsys):  # R
    folder, *_ = data
    code = cli.main(_train_args(folder, tmp_path / "m.unet", "--resume", str(folder / "m.unet")))
    err = capsys.readouterr().err
    assert code == 2 and "--continue" in err and not (tmp_path / "m.unet").exists()


def test_cli_predict_refuses_a_file_as_output_folder_before_predicting(data, tmp_path, capsys, monkeypatch):  # R
    folder, *_ = data
    import napari_unet.predict.tiling as tiling

    monkeypatch.setattr(tiling, "iter_predict_with", lambda *a, **k: pytest.fail("predicted first"))
    target = tmp_path / "file"
    target.write_text("keep me")
    code = cli.main(["predict", "-m", str(folder / "m.unet"), str(folder / "img.tif"), "-o", str(target), "-q"])
    assert code == 2 and "is a file" in capsys.readouterr().err and target.read_text() == "keep me"


def test_cli_debug_shows_the_traceback_of_an_error(data, tmp_path):
    folder, *_ = data
    bad = tmp_path / "nan.tif"
    write_image(bad, np.full((32, 32), np.nan, np.float32))
    args = ["predict", "-m", str(folder / "m.unet"), str(bad), "-o", str(tmp_path / "o"), "-q"]
    assert cli.main(args) == 2
    with pytest.raises(cli.CliError, match="NaN or infinite"):
        cli.main(["--debug", *args])


# ------------------------------------------------------------------------ outputs: resumable, safe


def test_skip_existing_redoes_incomplete_outputs(data, tmp_path, capsys):  # L6
    folder, *_ = data
    out = tmp_path / "out"
    base = ["predict", "-m", str(folder / "m.unet"), str(folder / "img.tif"), "-o", str(out), "-q", "--probabilities"]
    # a zarr left by a killed run: no chunks, no axes, no completion mark
    zarr = pytest.importorskip("zarr")
    zarr.open_array(str(out / "img_probabilities.zarr"), mode="w", shape=(2, 96, 96), chunks=(1, 32, 32), dtype="f4")
    zarr.open_array(str(out / "img_labels.zarr"), mode="w", shape=(96, 96), chunks=(32, 32), dtype="i4")
    assert not is_complete_image(out / "img_labels.zarr")
    assert cli.main(base + ["--format", "zarr", "--skip-existing"]) == 0
    assert is_complete_image(out / "img_labels.zarr") and is_complete_image(out / "img_probabilities.zarr")
    labels, axes = read_image(out / "img_labels.zarr")
    assert axes == "YX" and labels.shape == (96, 96)
    # TIFF: only the labels got written (a stand-in with label 7 everywhere)
    write_image(out / "img_labels.tif", np.full((96, 96), 7, np.uint16))
    assert cli.main(base + ["--skip-existing"]) == 0
    assert (out / "img_probabilities.tif").exists() and not (read_image(out / "img_labels.tif")[0] == 7).all()
    stamp = snapshot(out)
    assert cli.main(base + ["--skip-existing"]) == 0  # complete now: nothing redone
    assert snapshot(out) == stamp


_KILL_DURING_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import zarr
    from napari_unet.cli import main as cli
    real = zarr.Array.__setitem__
    def die(self, key, value):
        real(self, key, value)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after the first array's data
    zarr.Array.__setitem__ = die
    sys.exit(cli.main(sys.argv[1:]))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_during_zarr_output_is_redone_by_skip_existing(data, tmp_path):  # L6, as a subprocess
    folder, *_ = data
    out = tmp_path / "out"
    args = ["predict", "-m", str(folder / "m.unet"), str(folder / "img.tif"), "-o", str(out), "-q",
            "--probabilities", "--format", "zarr", "--device", "cpu"]
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_WRITE, *args], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert all(is_complete_image(out / name) for name in visible)  # nothing half-written in sight
    assert "img_labels.zarr" not in visible
    assert cli.main(args + ["--skip-existing"]) == 0
    assert is_complete_image(out / "img_labels.zarr") and is_complete_image(out / "img_probabilities.zarr")
    assert sorted(p.name for p in out.iterdir()) == ["img_labels.zarr", "img_probabilities.zarr"]  # no leftovers


_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from napari_unet.files.safe_write import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="process signals")
def test_two_writers_to_one_output_cannot_both_succeed(data, tmp_path, capsys):  # L7, as a subprocess
    folder, *_ = data
    out = tmp_path / "out"
    lock = out / ".img.napari-unet.lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = cli.main(["predict", "-m", str(folder / "m.unet"), str(folder / "img.tif"), "-o", str(out), "-q",
                         "--overwrite", "--format", "zarr"])
        assert code == 2 and f"pid {holder.pid}" in capsys.readouterr().err
        assert not (out / "img_labels.zarr").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock is stale and the next run takes it over
    assert cli.main(["predict", "-m", str(folder / "m.unet"), str(folder / "img.tif"), "-o", str(out), "-q",
                     "--format", "zarr"]) == 0
    assert is_complete_image(out / "img_labels.zarr") and not lock.exists()


def test_output_lock_is_exclusive_within_a_process(tmp_path):
    lock = tmp_path / ".x.lock"
    with output_lock(lock):
        with pytest.raises(FileExistsError, match="being written by another napari-unet process"):
            with output_lock(lock):
                pass
    assert not lock.exists()
