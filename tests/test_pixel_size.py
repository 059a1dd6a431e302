"""Physical space: pixel sizes kept by models and used by prediction; 3D objects from a z-stack."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

import napari_unet.predict.tiling as tiling
from napari_unet import TrainConfig, UNet, load_model, predict_stack, predict_tiled, save_model, to_labels
from napari_unet.common.pixel_size import check_pixel_size, describe_resampling, pixel_size_from_scale, resample_factors
from napari_unet.files.images import read_pixel_size
from napari_unet.labels.instances import label_options
from napari_unet.labels.metrics import match_instances
from napari_unet.model.files import ModelFileError
from napari_unet.samples import make_touching_cells


def threshold_unet(pixel_size=(0.5, 0.5)) -> UNet:
    """A U-Net whose 'cell' probability is the normalized intensity thresholded at 0.5 (no training)."""
    net = UNet(depth=2, base_channels=4)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.inc[0].weight[0, 0, 1, 1] = net.inc[2].weight[0, 0, 1, 1] = 1
        last = net.up[-1].conv
        last[0].weight[0, 0, 1, 1] = last[2].weight[0, 0, 1, 1] = 1
        net.head.weight[1, 0] = 12
        net.head.bias[1] = -6
    net.metadata = {"mode": "instances", "cell_diameter": 22.0, "cell_diameter_um": 11.0,
                    "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8}}
    if pixel_size is not None:
        net.metadata["pixel_size"] = list(pixel_size)
    return net


def test_pixel_size_checks_and_config():
    assert check_pixel_size(0.5) == (0.5, 0.5)
    assert TrainConfig(iterations=1, pixel_size=0.325).pixel_size == (0.325, 0.325)
    assert TrainConfig.from_dict(TrainConfig(iterations=1, pixel_size=(0.3, 0.2)).to_dict()).pixel_size == (0.3, 0.2)
    # a voxel size (z, y, x) for z-stacks
    assert TrainConfig(iterations=1, pixel_size=[2, 0.5, 0.5]).pixel_size == (2.0, 0.5, 0.5)
    for bad in (0, -1, float("nan"), (0.1, 0.2, 0.3, 0.4), (0, 0.5, 0.5), "0.5"):
        with pytest.raises((ValueError, TypeError), match="pixel_size"):
            TrainConfig(iterations=1, pixel_size=bad)
    assert resample_factors((0.52, 0.5), (0.5, 0.5)) is None  # within 5 %: predicted as it is
    assert resample_factors((0.6, 0.5), (0.5, 0.5)) == pytest.approx((1.2, 1.0))
    assert resample_factors(None, (0.5, 0.5)) is None and resample_factors((1, 1), None) is None
    assert pixel_size_from_scale((1.0, 1.0), "YX") is None  # napari's default scale says nothing
    assert pixel_size_from_scale((2.0, 0.65, 0.65), "ZYX") == {"z": 2.0, "y": 0.65, "x": 0.65}
    assert "resampled x2" in describe_resampling(threshold_unet((0.325, 0.325)), 0.65)
    # the widget's line never raises: a factor beyond 16 x is said, and refused when predicting
    assert describe_resampling(threshold_unet((0.325, 0.325)), 65.0).endswith("beyond 16 x: refused")
    net3d = UNet(spatial_dims=3, depth=1, base_channels=2)
    net3d.metadata = {"pixel_size": [0.5, 0.5], "voxel_size": [2.0, 0.5, 0.5]}
    assert describe_resampling(net3d, (1.0, 0.5, 0.5)).endswith("2 x 0.5 x 0.5 µm, image: 1 x 0.5 x 0.5 µm, "
                                                                 "resampled x0.5 x1 x1")
    assert describe_resampling(net3d, (2.0, 0.5, 0.5)).endswith("(same grid)")
    assert describe_resampling(net3d, (200.0, 0.5, 0.5)).endswith("refused")
    assert describe_resampling(net3d, (0.5, 0.5)) == "model: 0.5 µm/px, image: 0.5 µm/px (same grid)"


def test_pixel_size_round_trips_through_model_files(tmp_path):
    net = threshold_unet((0.325, 0.3))
    save_model(net, tmp_path / "m.unet")
    loaded = load_model(tmp_path / "m.unet")
    assert loaded.metadata["pixel_size"] == [0.325, 0.3] and loaded.metadata["cell_diameter_um"] == 11.0
    net.metadata["pixel_size"] = [0.3, -1]
    with pytest.raises(ModelFileError, match="pixel_size"):  # refused at saving, as loading would
        save_model(net, tmp_path / "bad.unet")
    assert not (tmp_path / "bad.unet").exists()


def test_pixel_size_of_tiff_and_ome_metadata(tmp_path):
    image = np.zeros((3, 16, 16), np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", image, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": "um", "spacing": 1.5, "axes": "ZYX"})
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx({"z": 1.5, "y": 0.25, "x": 0.25})
    tifffile.imwrite(tmp_path / "ome.ome.tif", image, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.0})
    assert read_pixel_size(tmp_path / "ome.ome.tif") == pytest.approx({"z": 1.0, "y": 0.2, "x": 0.2})
    tifffile.imwrite(tmp_path / "plain.tif", image, photometric="minisblack")
    assert read_pixel_size(tmp_path / "plain.tif") is None
    # what napari-unet writes keeps the pixel sizes it is given (an output keeps its input's scale)
    from napari_unet.files.images import write_image

    write_image(tmp_path / "out.tif", image, axes="ZYX", pixel_size={"z": 1.5, "y": 0.25, "x": 0.2})
    assert read_pixel_size(tmp_path / "out.tif") == pytest.approx({"z": 1.5, "y": 0.25, "x": 0.2})
    write_image(tmp_path / "plane.tif", image[0], axes="YX", pixel_size={"z": 1.5, "y": 0.25, "x": 0.25})
    assert read_pixel_size(tmp_path / "plane.tif") == pytest.approx({"y": 0.25, "x": 0.25})
    write_image(tmp_path / "none.tif", image, axes="ZYX")
    assert read_pixel_size(tmp_path / "none.tif") is None


def test_a_coarser_image_is_resampled_and_agrees_with_full_resolution(monkeypatch):
    image = make_touching_cells((384, 384), seed=5)[0]
    net = threshold_unet((0.5, 0.5))
    full = to_labels(predict_tiled(net, image, precision="fp32"), **label_options(net, pixel_size=0.5))
    coarse = image.reshape(192, 2, 192, 2).mean(axis=(1, 3))  # 2x downsampled: 1.0 µm per pixel
    calls = []
    original = tiling.resample_image
    monkeypatch.setattr(tiling, "resample_image", lambda *a: calls.append(a[2]) or original(*a))
    probabilities = predict_tiled(net, coarse, precision="fp32", pixel_size=1.0)
    assert calls == [(2.0, 2.0)]  # predicted on the model's grid
    assert probabilities.shape == (2, 192, 192)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    options = label_options(net, pixel_size=1.0)
    assert options["cell_diameter"] == pytest.approx(11.0)  # 11 µm at 1 µm/px
    labels = to_labels(probabilities, **options)
    upsampled = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)
    assert match_instances(full, upsampled)["f1"] >= 0.9
    # the same pixel size as the model, and no pixel size: not resampled
    calls.clear()
    predict_tiled(net, image, precision="fp32", pixel_size=0.51)
    predict_stack(net, np.stack([image, image]), axes="ZYX", precision="fp32")
    assert calls == []


def test_segment_labels_on_the_datas_grid_with_its_pixel_size(monkeypatch):
    """``segment(..., pixel_size=)`` resamples the image to the model's grid and back: the labels are
    made on the image's grid, so the cell diameter must be in its pixels (it was the model's)."""
    import napari_unet.labels.segment as segment_module
    from napari_unet.labels.segment import segment

    net = threshold_unet((0.5, 0.5))
    coarse = make_touching_cells((384, 384), seed=5)[0].reshape(192, 2, 192, 2).mean(axis=(1, 3))  # 1 µm/px
    probabilities, labels = segment(net, coarse, axes="YX", pixel_size=1.0, large_cells=False, precision="fp32")
    right = to_labels(probabilities, **label_options(net, pixel_size=1.0))  # 11 px cells
    wrong = to_labels(probabilities, **label_options(net))  # 22 px: the model's pixels
    assert np.array_equal(labels, right) and not np.array_equal(labels, wrong)
    # a 3D network: its objects of the stack's voxel, not of its own
    net3d = UNet(spatial_dims=3, depth=1, base_channels=2)
    net3d.metadata = {"mode": "instances", "voxel_size": [2.0, 0.5, 0.5], "pixel_size": [0.5, 0.5]}
    stack = np.stack([coarse[:64, :64]] * 6)
    seen = []
    original = segment_module.to_labels_in_blocks
    monkeypatch.setattr(segment_module, "to_labels_in_blocks",
                        lambda p, options: seen.append(options.spacing) or original(p, options))
    segment(net3d, stack, axes="ZYX", pixel_size=(1.0, 0.5, 0.5))
    segment(net3d, stack, axes="ZYX")
    assert seen == [(1.0, 0.5, 0.5), (2.0, 0.5, 0.5)]


def test_a_stack_keeps_its_shape_when_resampled():
    net = threshold_unet((0.5, 0.5))
    stack = np.stack([make_touching_cells((100, 90), seed=s)[0] for s in (1, 2)])
    out = predict_stack(net, stack, axes="ZYX", precision="fp32", pixel_size=(0.8, 0.8))
    assert out.shape == (2, 2, 100, 90)


def _spheres():
    """Anisotropic spheres, the z step twice the xy pixel; spheres 1 and 2 touch."""
    zz, yy, xx = np.mgrid[:40, :96, :96].astype(float)
    zz *= 2.0
    truth = np.zeros(zz.shape, np.int32)
    for i, (cz, cy, cx, r) in enumerate([(40, 30, 30, 14), (40, 30, 57, 14), (30, 70, 50, 12), (54, 66, 72, 11)], 1):
        truth[(np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) < r) & (truth == 0)] = i
    cells = (truth > 0).astype(np.float32)
    return truth, np.stack([1 - cells, cells])


def test_three_d_gives_one_id_per_sphere_and_splits_touching_ones():
    truth, probabilities = _spheres()
    labels = to_labels(probabilities, three_d=True, spacing=(2.0, 1.0, 1.0), cell_diameter=24)
    assert labels.shape == truth.shape and labels.dtype == np.int32
    assert labels.max() == 4
    for i in range(1, 5):
        assert len(np.unique(labels[truth == i])) == 1  # one id over all its planes
    assert labels[truth == 1][0] != labels[truth == 2][0]  # the touching pair split
    planes = to_labels(probabilities, cell_diameter=24)
    assert planes.max() > 20  # plane by plane: a new id on every plane
    # a time series of volumes (T, Z, Y, X): ids unique over all of it
    series = to_labels(np.stack([probabilities, probabilities], axis=1), three_d=True, spacing=(2, 1, 1),
                       cell_diameter=24)
    assert series.shape == (2, *truth.shape) and series.max() == 8
    with pytest.raises(ValueError, match="three_d needs"):
        to_labels(probabilities[:, 0], three_d=True)
    with pytest.raises(ValueError, match="spacing"):
        to_labels(probabilities, three_d=True, spacing=(0, 1, 1))


def test_cli_reads_pixel_sizes_trains_with_them_and_labels_3d_objects(tmp_path):
    from napari_unet.cli.main import main

    image, _, annotations = make_touching_cells((128, 128), seed=3, annotated_fraction=0.08)
    tifffile.imwrite(tmp_path / "img.tif", image, imagej=True, resolution=(1 / 0.4, 1 / 0.4), metadata={"unit": "um"})
    tifffile.imwrite(tmp_path / "ann.tif", annotations.astype(np.uint16), imagej=True)
    assert main(["train", str(tmp_path / "img.tif"), "-a", str(tmp_path / "ann.tif"), "-o", str(tmp_path / "m.unet"),
                 "--preset", "tiny", "--iterations", "2", "-q"]) == 0
    assert load_model(tmp_path / "m.unet").metadata["pixel_size"] == pytest.approx([0.4, 0.4])

    truth, probabilities = _spheres()
    stack = (100 + 900 * probabilities[1]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"unit": "um", "spacing": 1.0, "axes": "ZYX"})
    net = threshold_unet((0.5, 0.5))
    save_model(net, tmp_path / "t.unet")
    out = tmp_path / "out"
    assert main(["predict", "-m", str(tmp_path / "t.unet"), str(tmp_path / "stack.tif"), "-o", str(out), "--3d", "-q"]) == 0
    labels = tifffile.imread(out / "stack_labels.tif")
    assert labels.shape == truth.shape
    assert len(np.unique(labels)) - 1 == 4  # one id per sphere over all its planes, the touching pair split
    assert labels[truth == 1][0] != labels[truth == 2][0]
    assert main(["predict", "-m", str(tmp_path / "t.unet"), str(tmp_path / "img.tif"), "-o", str(out), "--3d", "-q"]) == 2


# -- never answer wrongly in silence (issue 34) ---------------------------------------------------
def _ome_zarr(path, image, axes, datasets_transform, multiscale_transform=None):
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=image.shape, chunks=image.shape, dtype=image.dtype)[...] = image
    ms = {"version": "0.4", "axes": axes,
          "datasets": [{"path": "0", "coordinateTransformations": datasets_transform}]}
    if multiscale_transform is not None:
        ms["coordinateTransformations"] = multiscale_transform
    group.attrs["multiscales"] = [ms]
    return path


def test_ome_zarr_units_and_multiscale_transformations_give_micrometres(tmp_path):
    from napari_unet.files.ngff import ngff_scale

    image = np.zeros((8, 8), np.uint8)
    mm = _ome_zarr(tmp_path / "mm.zarr", image, [{"name": "y", "type": "space", "unit": "millimeter"},
                                                 {"name": "x", "type": "space", "unit": "millimeter"}],
                   [{"type": "scale", "scale": [0.0005, 0.0005]}])
    assert ngff_scale(mm) == pytest.approx({"y": 0.5, "x": 0.5})
    composed = _ome_zarr(tmp_path / "ms.zarr", image, [{"name": "y", "type": "space", "unit": "micrometer"},
                                                       {"name": "x", "type": "space", "unit": "micrometer"}],
                         [{"type": "scale", "scale": [0.25, 0.25]}], [{"type": "scale", "scale": [2.0, 2.0]}])
    assert read_pixel_size(composed) == pytest.approx({"y": 0.5, "x": 0.5})
    odd = _ome_zarr(tmp_path / "odd.zarr", image, [{"name": "y", "type": "space", "unit": "parsec"},
                                                   {"name": "x", "type": "space", "unit": "parsec"}],
                    [{"type": "scale", "scale": [1.0, 1.0]}])
    with pytest.raises(ValueError, match=r"odd\.zarr.*unknown length unit 'parsec'"):
        ngff_scale(odd)


@pytest.mark.parametrize("multiscales, words", [
    ([{}], "names no dataset"),
    ([{"datasets": [{}]}], "names no dataset"),
    ([{"datasets": [{"path": "missing"}]}], "does not hold"),
    ([{"datasets": [{"path": "0"}], "axes": [{"type": "space"}, {"name": "x"}]}], "axis 0 has no name"),
    ("abc", "must be a list"),
])
def test_malformed_ome_zarr_metadata_is_one_clear_error_naming_the_file(tmp_path, multiscales, words):
    import zarr

    from napari_unet.files.images import read_image

    group = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(8, 8), chunks=(8, 8), dtype="uint8")
    group.attrs["multiscales"] = multiscales
    with pytest.raises(ValueError, match=words) as info:
        read_image(tmp_path / "bad.zarr")
    assert "bad.zarr" in str(info.value)


def test_a_pixel_size_far_from_the_models_is_refused_not_shrunk_to_a_dot(tmp_path, caplog):
    net = threshold_unet((0.5, 0.5))
    image = make_touching_cells((96, 96), seed=1)[0]
    with pytest.raises(ValueError, match="beyond 1/16 to 16"):
        predict_tiled(net, image, pixel_size=0.0005)  # a resolution read as 1e5 px/µm
    with pytest.raises(ValueError, match="beyond 1/16 to 16"):
        predict_tiled(net, image, pixel_size=20.0)
    assert predict_tiled(net, image, pixel_size=1.0).shape == (2, 96, 96)  # x2 is served
    # a TIFF whose resolution is absurd (1e5 px/µm): ignored, with a warning naming the file
    path = tmp_path / "tiny_pixels.tif"
    tifffile.imwrite(path, image, imagej=True, resolution=(1e5, 1e5), metadata={"unit": "um"})
    with caplog.at_level("WARNING"):
        assert read_pixel_size(path) is None
    assert "tiny_pixels.tif" in caplog.text and "1e-05" in caplog.text


def test_a_zero_or_nan_pixel_size_in_a_file_is_ignored_with_a_warning(tmp_path, caplog):
    image = np.zeros((8, 8), np.uint8)
    path = _ome_zarr(tmp_path / "zero.zarr", image, [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                     [{"type": "scale", "scale": [0.0, 0.0]}])
    with caplog.at_level("WARNING"):
        assert read_pixel_size(path) is None
    assert "zero.zarr" in caplog.text and "scale of 0.0" in caplog.text


def test_three_d_labelling_refuses_an_absurd_spacing_or_a_volume_beyond_memory():
    p = np.random.default_rng(0).random((2, 4, 32, 32)).astype(np.float32)
    p /= p.sum(axis=0)
    with pytest.raises(ValueError, match="beyond 64 x"):
        to_labels(p, three_d=True, spacing=(1e-6, 1, 1))  # an ImageJ z-spacing of 1e-7 µm never ended
    with pytest.raises(ValueError, match="beyond 64 x"):
        to_labels(p, three_d=True, spacing=(1, 1, 0.001))  # 1000 x between x and y
    with pytest.raises(ValueError, match="beyond 64 x"):
        to_labels(p, three_d=True, spacing=(1e-300, 1, 1))  # no division by zero
    with pytest.raises(ValueError, match="beyond 64 x"):
        to_labels(p, three_d=True, spacing=(1000, 1, 1))
    assert to_labels(p, three_d=True, spacing=(3, 1, 1)).shape == (4, 32, 32)
    import zarr

    huge = zarr.create_array(store={}, shape=(2, 4000, 40000, 40000), chunks=(2, 1, 1000, 1000), dtype="float32")
    with pytest.raises(MemoryError, match="3D objects"):
        to_labels(huge, three_d=True)


def test_ome_zarr_without_a_scale_or_a_unit_has_no_pixel_size_rather_than_one_micrometre(tmp_path, caplog):
    from napari_unet.files.ngff import ngff_scale

    image = np.zeros((8, 8), np.uint8)
    no_scale = _ome_zarr(tmp_path / "v03.zarr", image, ["y", "x"], [{"type": "translation", "translation": [0, 0]}])
    assert ngff_scale(no_scale) is None
    no_unit = _ome_zarr(tmp_path / "nounit.zarr", image, [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                        [{"type": "scale", "scale": [0.3, 0.3]}])
    with caplog.at_level("WARNING"):
        assert read_pixel_size(no_unit) is None
    assert "nounit.zarr" in caplog.text and "without a unit" in caplog.text
    as_dict = _ome_zarr(tmp_path / "dict.zarr", image, [{"name": "y", "type": "space", "unit": "micrometer"},
                                                        {"name": "x", "type": "space", "unit": "micrometer"}],
                        {"type": "scale", "scale": [0.3, 0.3]})
    with pytest.raises(ValueError, match="must be a list"):
        ngff_scale(as_dict)
    for factor in (None, "0.5", True):
        bad = _ome_zarr(tmp_path / "bad.zarr", image, [{"name": "y", "type": "space", "unit": "micrometer"},
                                                       {"name": "x", "type": "space", "unit": "micrometer"}],
                        [{"type": "scale", "scale": [factor, 0.5]}])
        with pytest.raises(ValueError, match="not a number"):
            ngff_scale(bad)
    tiny = _ome_zarr(tmp_path / "tiny.zarr", image, [{"name": "y", "type": "space", "unit": "micrometer"},
                                                     {"name": "x", "type": "space", "unit": "micrometer"}],
                     [{"type": "scale", "scale": [1e-9, 1e-9]}])
    with pytest.raises(ValueError, match="outside"):
        ngff_scale(tiny)
