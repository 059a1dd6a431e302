"""Prediction on a dask cluster (napari_unet.predict_distributed): exact probabilities, global
labels without seams, resumable after a kill, one writer per output.

The network is a hand-set "threshold" U-Net (a few weights of 1 pass the normalized intensity
through the skip of level 0; the head thresholds it at 0.5), so the cells of the synthetic
image become cells of the probabilities without any training and the labels are those of a
segmentation, touching cells included."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from napari_unet import UNet, predict_tiled, save_model  # noqa: E402
from napari_unet.cluster.distributed import iter_predict_distributed, predict_distributed  # noqa: E402
from napari_unet.labels.merge import BlockGrid, block_labels, merge_faces
from napari_unet.files.images import is_complete_image  # noqa: E402
from napari_unet.files.ngff import open_prediction  # noqa: E402
from napari_unet.labels.instances import label_options, to_labels  # noqa: E402
from napari_unet.labels.metrics import match_instances  # noqa: E402
from napari_unet.samples import make_touching_cells  # noqa: E402

SHAPE = (1500, 1300)
FP32 = {"precision": "fp32"}


def threshold_unet(depth: int = 2) -> UNet:
    net = UNet(depth=depth, base_channels=4)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.inc[0].weight[0, 0, 1, 1] = 1
        net.inc[2].weight[0, 0, 1, 1] = 1
        last = net.up[-1].conv
        last[0].weight[0, 0, 1, 1] = 1
        last[2].weight[0, 0, 1, 1] = 1
        net.head.weight[1, 0] = 12
        net.head.bias[1] = -6
    net.metadata = {"mode": "instances", "cell_diameter": 22.0,
                    "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8}}
    return net


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    image = make_touching_cells(SHAPE, seed=3)[0]
    source = zarr.open_array(str(root / "image.zarr"), mode="w", shape=SHAPE, chunks=(512, 512), dtype=image.dtype)
    source[:] = image
    net = threshold_unet()
    whole = predict_tiled(net, image, **FP32)
    return {"root": root, "image": image, "net": net, "whole": whole,
            "labels": to_labels(whole, **label_options(net)), "source": str(root / "image.zarr")}


def _split_objects(whole: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Ids of whole-image objects whose pixels carry more than one id in ``labels``."""
    both = (whole > 0) & (labels > 0)
    pairs = np.unique(np.stack([whole[both], labels[both]]), axis=1)
    ids, counts = np.unique(pairs[0], return_counts=True)
    return ids[counts > 1]


def test_probabilities_exact_and_labels_global_without_seams(data, client, tmp_path):
    out = tmp_path / "out.zarr"
    result = predict_distributed(data["net"], data["source"], out, client=client, block_shape=512, **FP32)
    arrays = open_prediction(out)
    assert np.abs(arrays["probabilities"][...] - data["whole"]).max() <= 1e-6
    labels = arrays["labels"][...]
    assert labels.dtype == np.uint32 and labels.shape == SHAPE
    # objects cross the block faces at 512 and 1024 in both axes
    crossing = np.unique(data["labels"][:, 510:514])
    assert len(crossing) > 10
    assert _split_objects(data["labels"], labels).size == 0
    assert _split_objects(labels, data["labels"]).size == 0  # nor two objects joined
    assert match_instances(data["labels"], labels)["f1"] >= 0.995
    assert result.objects == len(np.unique(labels)) - 1 == int(labels.max())  # ids 1..K, each used
    assert result.blocks == result.computed == 9
    assert is_complete_image(out) and not (out / ".napari-unet-run").exists()
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["multiscales"][0]["datasets"][0]["path"] == "probabilities"
    assert root["labels"].attrs["labels"] == ["cells"]
    assert [a["name"] for a in root["labels"]["cells"].attrs["multiscales"][0]["axes"]] == ["y", "x"]


def test_any_block_shape_and_an_array_source_give_the_same_result(data, client, tmp_path):
    out = tmp_path / "odd.zarr"
    predict_distributed(data["net"], data["image"], out, client=client, block_shape=(384, 640), **FP32)
    arrays = open_prediction(out)
    assert np.abs(arrays["probabilities"][...] - data["whole"]).max() <= 1e-6
    assert arrays["probabilities"].chunks == (2, 384, 640)
    assert _split_objects(data["labels"], arrays["labels"][...]).size == 0
    assert match_instances(data["labels"], arrays["labels"][...])["f1"] >= 0.995


def test_stop_then_resume_equals_an_uninterrupted_run(data, client, tmp_path):
    out = tmp_path / "resumed.zarr"
    run = iter_predict_distributed(data["net"], data["source"], out, client=client, block_shape=512, **FP32)
    for done, total in run:
        if done >= 5:
            break
    run.close()  # Stop: the finished blocks keep their marks, the rest is cancelled
    assert not is_complete_image(out)
    marks = list((out / ".napari-unet-run" / "predicted").iterdir())
    assert 0 < len(marks) < 9
    # a second run with other settings must not mix with the marks of the first
    with pytest.raises(ValueError, match="interrupted run with another block"):
        predict_distributed(data["net"], data["source"], out, client=client, block_shape=256, **FP32)
    result = predict_distributed(data["net"], data["source"], out, client=client, block_shape=512, **FP32)
    # blocks already running at the Stop finish and count as done too
    assert result.computed <= 9 - len(marks)
    arrays = open_prediction(out)
    assert np.abs(arrays["probabilities"][...] - data["whole"]).max() <= 1e-6
    assert _split_objects(data["labels"], arrays["labels"][...]).size == 0
    with pytest.raises(FileExistsError):  # finished: never replaced without overwrite
        predict_distributed(data["net"], data["source"], out, client=client, block_shape=512, **FP32)


def test_a_second_run_on_the_same_output_refuses(data, client, tmp_path):
    out = tmp_path / "busy.zarr"
    first = iter_predict_distributed(data["net"], data["source"], out, client=client, block_shape=512, **FP32)
    next(first)  # holds the output's lock
    try:
        with pytest.raises(FileExistsError, match="being written by another"):
            predict_distributed(data["net"], data["source"], out, client=client, block_shape=512, **FP32)
    finally:
        first.close()


def test_killed_client_resumes_from_its_finished_blocks(data, tmp_path):
    """kill -9 of the process that drives the run (its local cluster dies with it)."""
    model = tmp_path / "threshold.unet"
    save_model(data["net"], model)
    out = tmp_path / "killed.zarr"
    script = textwrap.dedent(f"""
        import os
        from napari_unet import load_model
        from napari_unet.cluster.distributed import predict_distributed
        def progress(done, total):
            if done >= 4:
                os._exit(9)
        if __name__ == "__main__":
            predict_distributed(load_model({str(model)!r}), {data['source']!r}, {str(out)!r}, client="local:1",
                                block_shape=512, progress=progress)
    """)
    path = tmp_path / "run.py"
    path.write_text(script)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert not is_complete_image(out)
    lock = out.parent / f".{out.name}.napari-unet.lock"
    assert lock.exists()  # left by the killed process: taken over, as its pid is gone
    env = dict(os.environ)
    cli = subprocess.run([sys.executable, "-m", "napari_unet", "predict", "-m", str(model), data["source"], "-o", str(out),
                          "--cluster", "local:1", "--block", "512", "--probabilities", "-q",
                          "--tta", "1"],  # the killed run had the API's one view (other views would not resume)
                         capture_output=True, text=True, timeout=300, env=env)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "9 blocks (" in cli.stderr and "objects" in cli.stderr
    assert "INFO" not in cli.stderr  # -q: dask's own log lines too
    assert "half-scale pass" in cli.stderr and "--no-large-cells" in cli.stderr  # said, not silently left out
    computed = int(cli.stderr.split("9 blocks (")[1].split(" computed")[0])
    assert computed < 9
    arrays = open_prediction(out)
    probabilities = arrays["probabilities"][...]
    assert np.abs(probabilities - predict_tiled(data["net"], data["image"])).max() < 1e-2  # "auto" precision
    whole = to_labels(probabilities, **label_options(data["net"]))
    assert _split_objects(whole, arrays["labels"][...]).size == 0
    assert match_instances(whole, arrays["labels"][...])["f1"] >= 0.995


def test_touching_objects_across_a_face_stay_apart_and_cut_objects_join():
    image = np.zeros((8, 8), int)
    image[1:4, 2:6] = 1  # crosses the face x = 4
    image[5:7, 2:4] = 2  # touches object 3 exactly at the face
    image[5:7, 4:7] = 3
    grid = BlockGrid((), 8, 8, (8, 4))
    counts, faces, locals_ = {}, {}, {}
    for key in grid.keys():
        ys, xs = grid.core(key)
        wy, wx = grid.window(key, 2)
        inside = (slice(ys.start - wy.start, ys.stop - wy.start), slice(xs.start - wx.start, xs.stop - wx.start))
        locals_[key], counts[key], faces[key] = block_labels(image[wy, wx], inside)
    luts = merge_faces(counts, faces)
    merged = np.zeros_like(image)
    for key in grid.keys():
        merged[grid.core(key)] = luts[key][locals_[key]]
    assert len(np.unique(merged[image == 1])) == 1
    assert merged[5, 3] != merged[5, 4] and merged[5, 3] > 0 and merged[5, 4] > 0
    assert sorted(np.unique(merged).tolist()) == [0, 1, 2, 3]


def test_flipped_views_on_a_cluster_equal_the_whole_image(data, client, tmp_path):
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4)  # random weights: its flipped views differ
    net.metadata = dict(data["net"].metadata)
    image = data["image"][:600, :500]
    whole = predict_tiled(net, image, tta=2, **FP32)
    assert np.abs(whole - predict_tiled(net, image, **FP32)).max() > 1e-3
    out = tmp_path / "tta.zarr"
    predict_distributed(net, image, out, client=client, block_shape=256, labels=False, tta=2, **FP32)
    assert np.abs(open_prediction(out)["probabilities"][...] - whole).max() <= 1e-5
    # "auto" decides per whole image, which no block sees: the cluster averages all four views
    four = predict_tiled(net, image, tta=4, **FP32)
    predict_distributed(net, image, tmp_path / "auto.zarr", client=client, block_shape=256, labels=False,
                        tta="auto", **FP32)
    assert np.abs(open_prediction(tmp_path / "auto.zarr")["probabilities"][...] - four).max() <= 1e-5


# -- never destroy what is not ours, never mix two runs (issue 34) --------------------------------
def _small_zarr(path, image):
    arr = zarr.open_array(str(path), mode="w", shape=image.shape, chunks=(128, 128), dtype=image.dtype)
    arr[:] = image
    return str(path)


def test_an_output_that_is_the_input_or_not_ours_is_never_removed(data, client, tmp_path):
    image = data["image"][:256, :256]
    source = _small_zarr(tmp_path / "in.zarr", image)
    before = zarr.open_array(source, mode="r")[...]
    for out in (source, tmp_path / "in.zarr" / "inside.zarr"):
        with pytest.raises(ValueError, match="the input"):
            predict_distributed(data["net"], source, out, client=client, overwrite=True)
    np.testing.assert_array_equal(zarr.open_array(source, mode="r")[...], before)
    keep = tmp_path / "keep.tif"
    keep.write_bytes(b"the user's own file")
    with pytest.raises(ValueError, match=r"\.zarr folder"):
        predict_distributed(data["net"], source, keep, client=client, overwrite=True)
    assert keep.read_bytes() == b"the user's own file"
    mine = tmp_path / "mine.zarr"  # a folder of the user's, named like an output
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="no mark of napari-unet"):
        predict_distributed(data["net"], source, mine, client=client, overwrite=True)
    assert (mine / "notes.txt").read_text() == "precious"
    # nothing is created when the cluster cannot be reached
    with pytest.raises(Exception):
        predict_distributed(data["net"], source, tmp_path / "never.zarr", client="local:abc")
    assert not (tmp_path / "never.zarr").exists() and not list(tmp_path.glob(".never.zarr*"))
    # our own finished output is replaced with overwrite
    ours = tmp_path / "ours.zarr"
    predict_distributed(data["net"], source, ours, client=client, labels=False, **FP32)
    predict_distributed(data["net"], source, ours, client=client, labels=False, overwrite=True, **FP32)
    assert is_complete_image(ours)


def _interrupt_after(run, blocks):
    for done, _total in run:
        if done >= blocks:
            break
    run.close()


def test_a_resumed_run_redoes_a_missing_or_damaged_block_and_refuses_another_input(data, client, tmp_path):
    image = data["image"][:768, :768]
    a = _small_zarr(tmp_path / "a.zarr", image)
    clean = tmp_path / "clean.zarr"
    predict_distributed(data["net"], a, clean, client=client, block_shape=256, **FP32)
    out = tmp_path / "out.zarr"
    _interrupt_after(iter_predict_distributed(data["net"], a, out, client=client, block_shape=256, **FP32), 6)
    marks = sorted(p.name for p in (out / ".napari-unet-run" / "predicted").iterdir() if not p.name.startswith("."))
    assert len(marks) >= 2
    # one finished block's chunk deleted, another's garbled
    chunks = sorted(p for p in (out / "probabilities").iterdir() if not p.name.startswith("."))
    by_block = {BlockGrid.name(((), int(c.name.split(".")[1]), int(c.name.split(".")[2]))): c for c in chunks}
    done = [by_block[m] for m in marks if m in by_block]
    done[0].unlink()
    done[1].write_bytes(b"garbage" * 10)
    # another file with the same pixels: another input, refused
    b = _small_zarr(tmp_path / "b.zarr", image)
    with pytest.raises(ValueError, match="interrupted run with another source"):
        predict_distributed(data["net"], b, out, client=client, block_shape=256, **FP32)
    predict_distributed(data["net"], a, out, client=client, block_shape=256, **FP32)
    resumed, reference = open_prediction(out), open_prediction(clean)
    np.testing.assert_array_equal(resumed["probabilities"][...], reference["probabilities"][...])
    np.testing.assert_array_equal(resumed["labels"][...], reference["labels"][...])
    # the same path changed in one corner only (same shape, type and intensities): refused
    other = tmp_path / "other.zarr"
    _interrupt_after(iter_predict_distributed(data["net"], a, other, client=client, block_shape=256, **FP32), 3)
    changed = zarr.open_array(a, mode="r+")
    changed[0:128, 640:768] = changed[0:128, 640:768][::-1, ::-1]
    with pytest.raises(ValueError, match="interrupted run with another source"):
        predict_distributed(data["net"], a, other, client=client, block_shape=256, **FP32)
    # the arrays of an interrupted run changed under it (another dtype): refused, not mixed
    a2 = _small_zarr(tmp_path / "a2.zarr", image)
    third = tmp_path / "third.zarr"
    _interrupt_after(iter_predict_distributed(data["net"], a2, third, client=client, block_shape=256, **FP32), 3)
    meta = third / "probabilities" / ".zarray"
    meta.write_text(meta.read_text().replace("<f4", "<f2"))
    with pytest.raises(ValueError, match="changed type, shape or chunks"):
        predict_distributed(data["net"], a2, third, client=client, block_shape=256, **FP32)


def test_a_long_lived_cluster_reads_a_source_rewritten_under_the_same_path(data, client, tmp_path):
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4)  # random weights: every pixel depends on its context
    net.metadata = dict(data["net"].metadata)
    path = tmp_path / "src.zarr"
    first = data["image"][:256, :256]
    _small_zarr(path, first)
    # blocks of 128 px: every worker opens (and keeps) the first file
    predict_distributed(net, str(path), tmp_path / "one.zarr", client=client, labels=False,
                        block_shape=128, **FP32)
    second = np.ascontiguousarray(data["image"][300:500, 300:500])
    _small_zarr(path, second)
    predict_distributed(net, str(path), tmp_path / "two.zarr", client=client, labels=False,
                        block_shape=128, **FP32)
    got = open_prediction(tmp_path / "two.zarr")["probabilities"][...]
    assert np.abs(got - predict_tiled(net, second, **FP32)).max() <= 1e-6


def test_a_grid_too_large_to_track_is_refused_at_once(data, client, tmp_path):
    huge = zarr.open_array(str(tmp_path / "huge.zarr"), mode="w", shape=(10**6, 10**6), chunks=(1024, 1024),
                           dtype="uint8")  # declared, never written
    with pytest.raises(ValueError, match="choose larger blocks"):
        predict_distributed(data["net"], str(tmp_path / "huge.zarr"), tmp_path / "out.zarr", client=client,
                            block_shape=1024)
    assert not (tmp_path / "out.zarr").exists()
    assert huge.shape == (10**6, 10**6)


def test_a_source_with_infinite_values_fails_and_leaves_nothing(data, client, tmp_path):
    image = data["image"][:256, :256].astype(np.float32)
    image[200, 100] = np.inf  # a lazy source is not scanned whole first: a worker finds it
    source = _small_zarr(tmp_path / "inf.zarr", image)
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict_distributed(data["net"], source, tmp_path / "out.zarr", client=client, block_shape=128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inf.zarr"]


def test_a_cancelled_task_that_still_runs_is_waited_for(client, tmp_path):
    import time

    from napari_unet.cluster.client import executing_keys, wait_until_stopped

    def _sleep_then_write(path, seconds):  # local: sent to the workers by value
        import pathlib
        import time

        time.sleep(seconds)
        pathlib.Path(path).write_text("written")
        return path

    path = tmp_path / "late.txt"
    future = client.submit(_sleep_then_write, str(path), 1.0, pure=False)
    deadline = time.monotonic() + 30
    while not any(future.key in keys for keys in client.run(executing_keys).values()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    client.cancel([future])
    assert not path.exists()  # the thread goes on although the task is cancelled ...
    assert wait_until_stopped(client, [future])
    assert path.read_text() == "written"  # ... and has finished when the wait returns


@pytest.mark.parametrize("address, error", [
    ("", ValueError), ("not a cluster!", ValueError), ("tcp://127.0.0.1:99999", ValueError),
    ("http://host:80", ValueError), ("local:0", ValueError), ("local:abc", ValueError),
    ("tcp://127.0.0.1:1", OSError), (123, TypeError),
])
def test_a_bad_cluster_address_is_refused_before_anything_is_written(data, tmp_path, address, error):
    with pytest.raises(error, match="cluster|scheduler"):
        predict_distributed(data["net"], data["image"][:128, :128], tmp_path / "out.zarr", client=address)
    assert list(tmp_path.iterdir()) == []


def test_a_scheduler_that_never_answers_is_given_up_on(data, tmp_path, monkeypatch):
    import socket
    import threading

    import napari_unet.cluster.client as cluster

    monkeypatch.setattr(cluster, "CONNECT_S", 2.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in range(5)], daemon=True).start()
    try:
        with pytest.raises(OSError, match="scheduler"):
            predict_distributed(data["net"], data["image"][:128, :128], tmp_path / "out.zarr",
                                client=f"127.0.0.1:{server.getsockname()[1]}")
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


def test_user_data_in_or_around_an_output_is_never_removed(data, client, tmp_path):
    import tifffile

    image = data["image"][:256, :256]
    source = _small_zarr(tmp_path / "in.zarr", image)
    ours = tmp_path / "ours.zarr"
    predict_distributed(data["net"], source, ours, client=client, **FP32)
    corrected = zarr.open_group(str(ours / "labels"), mode="a", zarr_format=2)
    corrected.create_array("corrected", shape=(256, 256), chunks=(256, 256), dtype="uint32")
    with pytest.raises(FileExistsError, match="labels/corrected"):
        predict_distributed(data["net"], source, ours, client=client, overwrite=True, **FP32)
    assert (ours / "labels" / "corrected").is_dir()
    link = tmp_path / "link.zarr"
    link.symlink_to(ours)
    with pytest.raises(ValueError, match="is a link"):
        predict_distributed(data["net"], source, link, client=client, overwrite=True, **FP32)
    (tmp_path / "file.zarr").write_text("a file")
    with pytest.raises(NotADirectoryError, match="is a file"):
        predict_distributed(data["net"], source, tmp_path / "file.zarr" / "out.zarr", client=client, **FP32)
    # a TIFF's pixel size counts on a cluster too: 1 µm against a 0.5 µm model is refused
    net = threshold_unet()
    net.metadata["pixel_size"] = [0.5, 0.5]
    tifffile.imwrite(tmp_path / "coarse.tif", image, imagej=True, resolution=(1, 1), metadata={"unit": "micron"})
    with pytest.raises(ValueError, match="resample the image"):
        predict_distributed(net, str(tmp_path / "coarse.tif"), tmp_path / "t.zarr", client=client, **FP32)
    assert not (tmp_path / "t.zarr").exists()


def test_the_identity_of_a_lazy_array_reads_a_sample_not_the_whole(monkeypatch):
    from napari_unet.cluster import client as cluster

    da = pytest.importorskip("dask.array")
    lazy = da.zeros((4000, 4000), chunks=(500, 500), dtype="float32")
    other = lazy + 1
    reads = []
    original = np.asarray

    def counting(a, *args, **kwargs):
        out = original(a, *args, **kwargs)
        reads.append(out.size)
        return out

    monkeypatch.setattr(cluster.np, "asarray", counting)
    first, second = cluster.source_identity(lazy), cluster.source_identity(other)
    assert first != second
    assert max(reads) <= 64 * 64
