"""The scores every benchmark figure rests on, checked against counts made by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.labels.metrics import match_instances, merged_pairs, pixel_iou, separated_pairs


def test_match_counts_true_and_false_positives_by_iou():
    gt = np.zeros((10, 10), int)
    gt[0:4, 0:4] = 1  # 16 px
    gt[0:4, 6:10] = 2  # 16 px
    gt[6:10, 0:4] = 3  # 16 px, missed
    pred = np.zeros_like(gt)
    pred[0:4, 0:4] = 5  # exact: IoU 1
    pred[0:4, 7:10] = 9  # 12 of 16: IoU 0.75
    pred[8:10, 8:10] = 4  # a false positive
    r = match_instances(gt, pred)
    assert (r["tp"], r["fp"], r["fn"], r["n_gt"], r["n_pred"]) == (2, 1, 1, 3, 3)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 2 / 6)
    assert sorted(r["matches"]) == [(1, 5, 1.0), (2, 9, 0.75)]
    assert r["mean_matched_iou"] == pytest.approx(0.875)


def test_iou_below_the_threshold_is_no_match():
    gt = np.zeros((4, 8), int)
    gt[:, :4] = 1
    pred = np.zeros_like(gt)
    pred[:, 2:6] = 1  # overlap 8 of union 24: IoU 1/3
    assert match_instances(gt, pred)["tp"] == 0
    assert match_instances(gt, pred, threshold=0.3)["tp"] == 1


def test_one_object_covering_two_cells_matches_at_most_one():
    gt = np.zeros((4, 10), int)
    gt[:, :5] = 1
    gt[:, 5:] = 2
    pred = (gt > 0).astype(int)  # merged: IoU 0.5 with each, one-to-one
    r = match_instances(gt, pred, threshold=0.5)
    assert r["tp"] == 1 and r["fn"] == 1 and r["fp"] == 0


def test_empty_images_score_as_documented():
    empty = np.zeros((5, 5), int)
    one = empty.copy()
    one[1:3, 1:3] = 1
    assert match_instances(empty, empty)["f1"] == 1.0
    r = match_instances(one, empty)
    assert r["recall"] == 0.0 and r["f1"] == 0.0
    r = match_instances(empty, one)
    assert r["precision"] == 0.0 and r["f1"] == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        match_instances(one, np.zeros((4, 4), int))


def test_separated_pairs_needs_two_different_dominant_objects():
    gt = np.zeros((4, 12), int)
    gt[:, 0:4], gt[:, 4:8], gt[:, 8:12] = 1, 2, 3
    pairs = [(1, 2), (2, 3)]
    apart = gt * 10
    assert separated_pairs(gt, apart, pairs) == (2, 2)
    merged = np.where(gt > 0, 7, 0)
    assert separated_pairs(gt, merged, pairs) == (0, 2)
    missing = apart.copy()
    missing[:, 8:12] = 0  # cell 3 not found: its pair is not separated
    assert separated_pairs(gt, missing, pairs) == (1, 2)
    mostly_background = apart.copy()
    mostly_background[:3, 0:4] = 0  # cell 1 mostly predicted as background
    assert separated_pairs(gt, mostly_background, pairs) == (1, 2)


def test_merged_pairs_counts_one_object_over_both_cells_only():
    gt = np.zeros((4, 12), int)
    gt[:, 0:4], gt[:, 4:8], gt[:, 8:12] = 1, 2, 3
    pairs = [(1, 2), (2, 3)]
    assert merged_pairs(gt, gt * 10, pairs) == (0, 2)
    assert merged_pairs(gt, np.where(gt > 0, 7, 0), pairs) == (2, 2)
    thin = np.zeros_like(gt)
    thin[1:3, 1:3], thin[1:3, 5:7], thin[1:3, 9:11] = 1, 2, 3  # each cell found, a quarter of it
    assert separated_pairs(gt, thin, pairs) == (0, 2)  # too small to count as separated ...
    assert merged_pairs(gt, thin, pairs) == (0, 2)  # ... but not merged either
    half = np.where(gt == 3, 0, np.where(gt > 0, 5, 0))  # cells 1 and 2 one object, cell 3 missed
    assert merged_pairs(gt, half, pairs) == (1, 2)


def test_pixel_iou():
    a = np.zeros((4, 4), int)
    b = np.zeros((4, 4), int)
    a[:, :2] = 1
    b[:, 1:3] = 5
    assert pixel_iou(a, b) == pytest.approx(4 / 12)
    assert pixel_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
