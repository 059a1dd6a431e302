"""A large plane labelled block by block on several threads: the objects of one to_labels call."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.labels.blocks import to_labels_in_blocks
from napari_unet.labels.instances import to_labels
from napari_unet.labels.metrics import same_objects
from napari_unet.labels.options import LabelOptions
from napari_unet.samples import make_touching_cells


def _probabilities(shape, seed):
    _, instances, _ = make_touching_cells(shape, seed=seed, mean_radius=6.0)
    cell = ndi.gaussian_filter((instances > 0).astype(np.float32), 1.2)
    cell = np.clip(cell + np.random.default_rng(seed).normal(0, 0.08, shape).astype(np.float32), 0, 1)
    return np.stack([1 - cell, cell])


@pytest.mark.parametrize("workers", [2, 4])
def test_blocks_give_the_objects_of_the_whole_plane(workers):
    p = _probabilities((256, 384), seed=1)
    options = LabelOptions(cell_diameter=12.0)
    whole = to_labels(p, **options)
    blocks = to_labels_in_blocks(p, options, workers=workers, min_pixels=256 * 384 // 4)
    assert whole.max() > 100 and blocks.dtype == np.int32
    assert same_objects(whole, blocks)
    assert sorted(np.unique(blocks)[1:]) == list(range(1, int(blocks.max()) + 1))  # ids 1..n


def test_blocks_of_a_stack_have_ids_unique_over_its_planes_and_the_rest_is_one_call():
    p = np.stack([_probabilities((200, 300), seed=s) for s in (2, 3)], axis=1)  # (2, 2, 200, 300)
    options = LabelOptions(cell_diameter=12.0)
    blocks = to_labels_in_blocks(p, options, workers=2, min_pixels=200 * 300 // 2)
    whole = to_labels(p, **options)
    assert same_objects(whole, blocks)
    assert not set(np.unique(blocks[0])[1:]) & set(np.unique(blocks[1])[1:])
    # small planes: one plane a thread, the same objects
    assert same_objects(whole, to_labels_in_blocks(p, options, workers=2))
    # classes, 3D objects, one plane or one core: exactly to_labels
    for small in (LabelOptions(mode="classes"), options.but(three_d=True)):
        np.testing.assert_array_equal(to_labels_in_blocks(p, small, workers=2), to_labels(p, **small))
    np.testing.assert_array_equal(to_labels_in_blocks(p[:, 0], options, workers=2), to_labels(p[:, 0], **options))
    np.testing.assert_array_equal(to_labels_in_blocks(p, options, workers=1), whole)
