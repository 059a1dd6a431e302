"""The 3D U-Net (Çiçek et al. 2016): its geometry, and training from a few painted slices of a
z-stack, where unpainted voxels weigh 0."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import napari_unet as nu
from napari_unet.annotations.weights import weight_map
from napari_unet.config import AugmentConfig, ModelConfig, anisotropic_pools, model_preset
from napari_unet.dataset.volume_data import VolumeData, painted_planes
from napari_unet.model.unet import UNet

TINY3D = ModelConfig(spatial_dims=3, depth=2, base_channels=4, padding="same", batch_norm=True)


def _balls(shape=(24, 48, 48), seed=0, n=6):
    """A stack of bright ellipsoids in noise, their labels, and annotations painting slices 6 and 14."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.int32)
    for k in range(n):
        cz, cy, cx = rng.uniform(4, shape[0] - 4), rng.uniform(8, shape[1] - 8), rng.uniform(8, shape[2] - 8)
        inside = ((z - cz) / 4.0) ** 2 + ((y - cy) / 6.0) ** 2 + ((x - cx) / 6.0) ** 2 < 1
        labels[inside & (labels == 0)] = k + 2
    image = (labels > 0).astype(np.float32) + rng.normal(0, 0.25, shape).astype(np.float32)
    ann = np.zeros(shape, np.int32)
    for s in (6, 14):
        ann[s] = np.where(labels[s] > 0, labels[s], 1)
    return image, labels, ann


def test_the_3d_network_has_the_shapes_its_geometry_says():
    for padding in ("valid", "same"):
        for pools in (0, 1, 2):
            net = UNet(spatial_dims=3, depth=2, base_channels=2, padding=padding, xy_only_pools=pools).eval()
            shape = net.valid_input_shape((20, 45, 47))
            with torch.no_grad():
                out = net(torch.zeros(1, 1, *shape))
            assert tuple(out.shape[2:]) == net.output_shape(shape)
            assert net.input_shape(net.output_shape(shape)) == shape
            assert net.pool_factors == (2 ** (2 - pools), 4, 4)
            real = sum(p.numel() for p in net.parameters())
            real += sum(b.numel() for n, b in net.named_buffers() if "num_batches" not in n)
            assert net.config.parameter_count() == real
    # 2D unchanged: the paper's network
    assert UNet().output_shape((572, 572)) == (388, 388)
    assert UNet().margins() == (92, 92)


def test_model_config_checks_3d_fields_and_old_dicts_load_as_2d():
    with pytest.raises(ValueError, match="xy_only_pools"):
        ModelConfig(xy_only_pools=1)  # a 2D network pools every axis
    with pytest.raises(ValueError, match="xy_only_pools"):
        ModelConfig(spatial_dims=3, depth=2, xy_only_pools=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        ModelConfig(spatial_dims=4)
    old = {k: v for k, v in ModelConfig().to_dict().items() if k not in ("spatial_dims", "xy_only_pools")}
    assert ModelConfig.from_dict(old).spatial_dims == 2
    assert anisotropic_pools((0.3, 0.3, 0.3), 3) == 0 and anisotropic_pools((2.0, 0.5, 0.5), 3) == 1


def test_unpainted_voxels_weigh_zero_and_validation_is_held_out_of_training():
    image, _, ann = _balls()
    config = nu.TrainConfig(model=TINY3D, iterations=1, augment=AugmentConfig(enabled=False), validation_block=16)
    data = VolumeData([image], [ann], ["ZYX"], config=config)
    data.build(seed=0, n_classes=2, borders=False, input_shape=(8, 32, 32), output_shape=(8, 32, 32), batch_size=2,
               device=torch.device("cpu"))
    train = data.sampler.targets[0].weights
    val = data.val_sampler.targets[0].weights
    painted = np.zeros(ann.shape[0], bool)
    painted[[6, 14]] = True
    assert not train[~painted].any() and not val[~painted].any()  # only painted slices weigh
    assert train[painted].any() and val[painted].any()
    assert not ((train > 0) & (val > 0)).any()  # held-out voxels never train
    assert 0.02 < (val > 0).sum() / ((val > 0).sum() + (train > 0).sum()) < 0.4
    # a drawn batch: every voxel that weighs comes from a painted slice, with its painted class
    batch = data.sampler.sample(4)
    assert batch.image.shape == (4, 1, 8, 32, 32) and batch.target.shape == (4, 8, 32, 32)
    assert bool((batch.weights > 0).any())
    for k in range(4):
        weighed = batch.weights[k] > 0
        zs = torch.nonzero(weighed.any(2).any(1)).flatten()
        assert len(zs) <= 2  # at most the two painted slices fall into one 8-slice patch


def test_a_3d_net_trains_from_two_painted_slices_and_segments_3d_objects(tmp_path):
    image, labels, ann = _balls()
    config = nu.TrainConfig(model=TINY3D, iterations=150, tile_shape=(8, 32, 32), batch_size=2,
                            pixel_size=(1.0, 1.0, 1.0), validate_every=20)
    result = nu.train([image], [ann], config=config, axes="ZYX")
    model = result.model
    assert model.config.spatial_dims == 3
    assert model.metadata["axes"] == "ZYX" and model.metadata["voxel_size"] == [1.0, 1.0, 1.0]
    assert model.metadata["tile"]["train_input_shape"] == [8, 32, 32]
    probabilities = nu.predict_tiled(model, image)
    assert probabilities.shape == (2, *image.shape)
    foreground = probabilities[1] > 0.5
    unpainted = np.ones(image.shape[0], bool)
    unpainted[[6, 14]] = False
    truth = labels[unpainted] > 0
    iou = (foreground[unpainted] & truth).sum() / (foreground[unpainted] | truth).sum()
    assert iou > 0.6, iou  # learnt in 3D: the slices nobody painted are found too
    _, objects = nu.segment(model, image, axes="ZYX")
    assert objects.shape == image.shape
    # one id per 3D object: an object spans several slices
    spans = [np.unique(np.nonzero(objects == k)[0]).size for k in np.unique(objects) if k]
    assert spans and np.median(spans) >= 3
    path = nu.save_model(model, tmp_path / "net3d.unet")
    again = nu.load_model(path)
    assert again.config == model.config
    np.testing.assert_allclose(nu.predict_tiled(again, image), probabilities, atol=1e-5)


def test_voxel_size_sets_the_poolings_of_a_3d_preset():
    image, _, ann = _balls()
    config = nu.TrainConfig(preset="fast3d", iterations=1, pixel_size=(2.0, 0.5, 0.5), tile_shape=(8, 32, 32),
                            batch_size=1, validation_fraction=0.0)
    trainer = nu.Trainer([image], [ann], config=config, axes="ZYX")
    assert trainer.model.config.xy_only_pools == 1
    assert trainer.model.pool_factors == (4, 8, 8)
    cubic = nu.Trainer([image], [ann], config=dataclasses.replace(config, pixel_size=None), axes="ZYX")
    assert cubic.model.config.xy_only_pools == 0


def test_a_3d_network_needs_a_z_stack():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    ann = np.ones((32, 32), np.int32)
    ann[10:20, 10:20] = 2
    with pytest.raises(ValueError, match="z-stack"):
        nu.Trainer([image], [ann], config=nu.TrainConfig(preset="fast3d", iterations=1))
    with pytest.raises(ValueError, match="tile_shape"):
        stack_image, _, stack_ann = _balls()
        nu.Trainer([stack_image], [stack_ann], config=nu.TrainConfig(preset="fast3d", iterations=1, tile_shape=(32, 32)),
                   axes="ZYX")
    assert model_preset("fast3d").spatial_dims == 3


def test_a_cluster_run_refuses_a_3d_network_before_writing_anything(tmp_path):
    net = UNet.from_config(TINY3D)
    out = tmp_path / "out.zarr"
    with pytest.raises(ValueError, match="3D U-Net"):
        nu.predict_distributed(net, np.zeros((8, 32, 32), np.float32), out, axes="ZYX")
    assert not out.exists()


def test_an_xz_plane_painted_in_a_transposed_view_teaches_the_gap_between_cells_stacked_in_z():
    ann = np.zeros((12, 20, 20), np.int32)
    ann[:, 10, :] = 1  # the XZ plane at y = 10: background ...
    ann[2:6, 10, 5:16] = 2  # ... a cell ...
    ann[6:10, 10, 5:16] = 3  # ... and the cell just below it, touching along z
    ann[8, 2:18, 2:18] = np.where(ann[8, 2:18, 2:18] == 3, 3, 1)  # and an XY slice painted too
    config = nu.TrainConfig(model=TINY3D, iterations=1)
    image = np.zeros(ann.shape, np.float32)
    data = VolumeData([image], [ann], ["ZYX"], config=config)
    t = data.targets_for(ann, n_classes=2, borders=False)
    plane = t.target[:, 10, 5:16]
    assert (plane[2:5] == 1).all() and (plane[7:10] == 1).all()  # the two cells
    assert (plane[5:7] == 0).any(axis=0).all()  # a background gap between them, along z
    assert (t.weights[5:7, 10, 5:16] > 0).all()
    off_slice = np.r_[0:8, 9:12]  # no ring leaks out of the XZ plane (its neighbours are unpainted)
    assert not (t.weights[off_slice][:, [9, 11]] > 0).any()
    assert (t.weights[8] > 0).sum() > 16 * 16 * 0.9  # the XY slice keeps its own targets


def test_a_cell_painted_in_an_xz_plane_counts_with_its_area_in_xy_pixels():
    # a z-step four times the pixel: a cell 4 slices high and 16 px wide in an XZ plane is as large
    ann = np.zeros((16, 40, 40), np.int32)
    ann[:, 20, :] = 1
    ann[2:6, 20, 4:20] = 2  # 4 x 16 pixels of 4 x 1: 256 XY pixels, a disc of 18.05 px
    ann[8, :, :] = 1
    ann[8, 22:38, 22:38] = 3  # ... and an XY slice's 16 x 16 square of the same area
    spaced = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"],
                        config=nu.TrainConfig(model=TINY3D, iterations=1, pixel_size=(2.0, 0.5, 0.5)))
    assert spaced.cell_diameter() == pytest.approx(2 * np.sqrt(256 / np.pi))
    cubic = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"],
                       config=nu.TrainConfig(model=TINY3D, iterations=1))  # no voxel size: cubic voxels
    assert cubic.cell_diameter() == pytest.approx(2 * np.sqrt(np.median([64, 256]) / np.pi))


def test_the_border_term_of_an_xz_plane_counts_its_z_steps_in_xy_pixels():
    # two cells stacked along z in an XZ plane, one z-step apart; a z-step is 4 pixels
    ann = np.zeros((16, 24, 24), np.int32)
    ann[:, 12, :] = 1
    ann[2:7, 12, 6:18] = 2
    ann[8:13, 12, 6:18] = 3
    config = nu.TrainConfig(model=TINY3D, iterations=1, pixel_size=(2.0, 0.5, 0.5), w0=10.0)
    data = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"], config=config)
    sigma = data.sigma
    t = data.targets_for(ann, n_classes=2, borders=False)
    w_c = t.weights[15, 12, 12]  # background three z-steps below both cells: the class weight alone ...
    square = weight_map(np.where(ann[:, 12] > 0, ann[:, 12], 0), w0=10.0, sigma=sigma, class_weights=None)
    # ... the gap between them is 4 + 4 pixels from both, not 1 + 1 as in a plane of square pixels
    assert t.weights[7, 12, 12] == pytest.approx(w_c + 10 * np.exp(-(8.0**2) / (2 * sigma**2)), rel=1e-4)
    assert square[7, 12] == pytest.approx(1 + 10 * np.exp(-(2.0**2) / (2 * sigma**2)), rel=1e-4)
    # an XY slice keeps square pixels
    ann[5, :, :] = np.where(ann[5] > 0, ann[5], 1)
    ann[5, 2:8, 2:8], ann[5, 2:8, 9:15] = 4, 5
    t = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"], config=config).targets_for(
        ann, n_classes=2, borders=False)
    assert t.weights[5, 4, 8] > t.weights[5, 4, 20] + 5


def test_planes_that_cross_keep_their_own_painting():
    ann = np.zeros((12, 24, 24), np.int32)
    ann[6, 2:22, 2:22] = 1  # an XY slice: background ...
    ann[6, 4:12, 4:12] = 2  # ... and a cell, which the XZ plane below crosses at y = 8
    ann[:, 8, :] = 1  # the XZ plane at y = 8, painted afterwards: background, a new id over the XY cell ...
    ann[3:9, 8, 4:12] = 5
    ann[2:5, 8, 15:20] = 3  # ... and a cell above the XY slice, and one below it that crosses it
    ann[5:9, 8, 15:20] = 4
    ann[6, :, 14:] = 0  # and the slice's right part left unpainted, which the XZ plane's cell crosses
    ann[6, 8, 14:] = np.where((np.arange(14, 24) >= 15) & (np.arange(14, 24) < 20), 4, 1)
    config = nu.TrainConfig(model=TINY3D, iterations=1)
    data = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"], config=config)
    t = data.targets_for(ann, n_classes=2, borders=False)
    # the XY cell is one cell: no gap along the row the XZ plane painted with another id
    assert (t.target[6, 5:11, 5:11] == 1).all()
    # the XZ cell's row in the unpainted part of the slice is no complete cell of the slice: no ring
    # of background beside it, in the slice
    assert not (t.weights[6, [7, 9], 15:20] > 0).any()
    # and the XZ plane's cell stays a cell the whole height it was painted
    assert (t.target[5:9, 8, 16:19] == 1).all() and (t.target[2:4, 8, 16:19] == 1).all()
    # the diameter is measured on each plane's own cells: no 1-pixel line counts as a cell
    assert data.cell_diameter() > 5


def test_a_3d_network_keeps_its_averaged_last_weights_unless_told_otherwise():
    from napari_unet.model.fit import EMA_DECAY_3D, kept_weights

    image, _, ann = _balls()
    three_d = nu.Trainer([image], [ann], config=nu.TrainConfig(model=TINY3D, iterations=2), axes="ZYX")
    assert (three_d.keep_model, three_d.average.decay) == ("last", EMA_DECAY_3D)
    list(three_d.run())
    assert three_d.kept == "last" and three_d.kept_iteration == 2
    told = nu.TrainConfig(model=TINY3D, iterations=2, keep_model="best", ema_decay=0.0)
    assert kept_weights(three_d.model, told) == ("best", 0.0)
    flat = nu.Trainer([image[6]], [ann[6]], config=nu.TrainConfig(preset="tiny", iterations=2))
    assert (flat.keep_model, flat.average.decay) == ("best", 0.0)  # a 2D network: as before


def test_cells_painted_through_consecutive_slices_get_their_gap_and_border_term_in_3d():
    # a painted volume: slices 4-11 painted whole, two cells stacked along z that touch over their whole face
    ann = np.zeros((16, 24, 24), np.int32)
    ann[4:12] = 1
    ann[4:8, 6:14, 6:14] = 2
    ann[8:12, 6:14, 6:14] = 3
    config = nu.TrainConfig(model=TINY3D, iterations=1, pixel_size=(2.0, 0.5, 0.5), w0=10.0, ring=1)
    data = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"], config=config)
    t = data.targets_for(ann, n_classes=2, borders=False)
    # the gap: the lower cell's top slice is background, one z-step thick (slice by slice, no slice saw it)
    assert t.mask[7, 10, 10] and t.target[7, 10, 10] == 0
    assert t.target[6, 10, 10] == 1 and t.target[8, 10, 10] == 1
    # its border term: one z-step (4 pixels) from each cell
    sigma, w_c = data.sigma, t.weights[11, 23, 0]  # background far from both: the class weight alone
    assert t.weights[7, 10, 10] == pytest.approx(w_c + 10 * np.exp(-(8.0**2) / (2 * sigma**2)), rel=1e-4)
    # the ring stays in the painted slices: the cells may go on in the unpainted slices above and below
    assert not t.mask[3].any() and not t.mask[12].any()
    # the painted volume's cells count in the cell diameter
    assert data.cell_diameter() == pytest.approx(8.0, rel=0.15)


def test_a_painted_volume_beside_painted_slices_is_told_apart_from_them():
    # an XY slice painted flat, and cells painted through four consecutive slices with background
    # strokes of their own in each slice (most of each slice's painted voxels have no painted
    # neighbour along z, as in a painted slice)
    ann = np.zeros((16, 32, 32), np.int32)
    ann[2, :, 26:] = 1
    ann[2, 4:10, 4:10] = 2
    for k, z in enumerate(range(8, 12)):
        ann[z, 28 - 2 * k: 30 - 2 * k, :] = 1
        ann[z, :, 28 - 2 * k: 30 - 2 * k] = 1
    ann[8:10, 4:12, 4:12] = 3  # a cell and, above it, one that touches it over its whole face
    ann[10:12, 4:12, 4:12] = 4
    assert painted_planes(ann) == [(0, 2)]
    config = nu.TrainConfig(model=TINY3D, iterations=1, pixel_size=(2.0, 0.5, 0.5), w0=10.0, ring=1)
    t = VolumeData([np.zeros(ann.shape, np.float32)], [ann], ["ZYX"], config=config).targets_for(
        ann, n_classes=2, borders=False)
    assert t.target[9, 8, 8] == 0 and t.target[8, 8, 8] == 1 and t.target[10, 8, 8] == 1  # the gap along z
    assert t.target[2, 7, 7] == 1 and t.mask[2, 3, 7] and t.target[2, 3, 7] == 0  # the slice: its cell and ring
