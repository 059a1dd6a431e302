"""The quality benchmark's images and painting simulator paint as people paint (benchmarks/quality_suite.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
quality_suite = pytest.importorskip("quality_suite")


@pytest.fixture(scope="module")
def clumps():
    return quality_suite.dense_clumps((192, 192), seed=3)


@pytest.mark.parametrize("name", sorted(quality_suite.SYNTHETIC))
def test_synthetic_images_are_deterministic_camera_images_with_complete_labels(name):
    make = quality_suite.SYNTHETIC[name]
    image, instances = make((128, 128), seed=5)
    again, _ = make((128, 128), seed=5)
    assert image.dtype == np.uint16 and instances.dtype == np.int32 and image.shape == instances.shape
    np.testing.assert_array_equal(image, again)
    ids = np.unique(instances)
    assert ids[0] == 0 and ids[-1] == len(ids) - 1 >= 5  # consecutive ids, several cells
    # every instance is one connected piece
    for i in ids[1:]:
        assert ndi.label(instances == i)[1] == 1


@pytest.mark.parametrize("style", ["a", "b"])
def test_painting_keeps_strokes_in_open_space_and_paints_whole_cells(clumps, style):
    _, instances = clumps
    ann = quality_suite.paint(instances, style, seed=1)
    strokes = ann == 1
    assert strokes.any()
    # no stroke hugs a cell: every stroke pixel is >= 4 px from any cell
    assert ndi.distance_transform_edt(instances == 0)[strokes].min() >= quality_suite.STROKE_MARGIN
    cells = [int(c) for c in np.unique(ann) if c >= 2]
    eligible = len(set(np.unique(instances)) - {0} - quality_suite._border_ids(instances))
    assert len(cells) == min(quality_suite.STYLES[style], max(3, round(0.25 * eligible)))
    for c in cells:  # each painted id is exactly one complete ground-truth cell
        gt = np.unique(instances[ann == c])
        assert gt.size == 1 and gt[0] > 0
        np.testing.assert_array_equal(ann == c, instances == gt[0])
    # touching pairs come first, as people paint the hard places
    painted = {int(np.unique(instances[ann == c])[0]) for c in cells}
    assert any(p in painted and q in painted for p, q in quality_suite.touching_pairs(instances))
    np.testing.assert_array_equal(ann, quality_suite.paint(instances, style, seed=1))
    assert not np.array_equal(ann, quality_suite.paint(instances, style, seed=2))


def test_corrections_paint_the_largest_errors(clumps):
    _, instances = clumps
    ann = quality_suite.paint(instances, "a", seed=0)
    predicted = instances.copy()
    ids = [i for i in np.unique(instances) if i > 0 and not (ann[instances == i] >= 2).any()
           and i not in quality_suite._border_ids(instances)]
    sizes = {i: int((instances == i).sum()) for i in ids}
    missed = sorted(ids, key=lambda i: -sizes[i])[:2]
    for i in missed:
        predicted[instances == i] = 0
    predicted[2:12, 2:40][instances[2:12, 2:40] == 0] = instances.max() + 1  # a false object on background
    fixed = quality_suite.paint_corrections(instances, predicted, ann, n=3)
    # the two largest missed cells are painted complete; the false object painted over as background
    for i in missed:
        new = np.unique(fixed[instances == i])
        assert new.size == 1 and new[0] >= 2 and not (ann == new[0]).any()
    false = (predicted == instances.max() + 1) & (ndi.distance_transform_edt(instances == 0) >= 2) & (ann == 0)
    assert np.all(fixed[false] == 1)
    # nothing painted before is changed
    np.testing.assert_array_equal(fixed[ann > 0], ann[ann > 0])


def test_edge_jitter_paints_each_cell_within_a_pixel_of_its_edge(clumps):
    _, instances = clumps
    exact = quality_suite.paint(instances, "a", seed=4)
    rough = quality_suite.paint(instances, "a", seed=4, edge_jitter=1)
    cross = ndi.generate_binary_structure(2, 1)
    changed = 0
    for c in [int(c) for c in np.unique(exact) if c >= 2]:
        ref, got = exact == c, rough == c
        assert got.any()
        assert np.all(ndi.binary_erosion(ref, cross) <= got) and np.all(got <= ndi.binary_dilation(ref, cross))
        changed += not np.array_equal(ref, got)
    assert changed >= 3


def test_rescore_labels_relabels_saved_probabilities_with_each_variant(tmp_path):
    rescore_labels = pytest.importorskip("rescore_labels")
    assert rescore_labels.parse_variant("fill_holes=False, split_h=2.5") == {"fill_holes": False, "split_h": 2.5}
    assert rescore_labels.parse_variant("") == {}
    name, kind, image, inst = quality_suite.suite("synthetic")[0]
    cell = (inst > 0).astype(np.float32) * 0.9 + 0.05
    cell[::7, ::7] = 0.4  # pin holes the defaults fill
    np.savez(tmp_path / f"{name.replace(' ', '_')}_a_s0_60.npz", probabilities=np.stack([1 - cell, cell]),
             annotations=np.zeros(inst.shape, np.uint16), options='{"mode": "instances", "cell_diameter": 20.0}')
    rows = rescore_labels.rescore(tmp_path, ["", "split=None", "fill_holes=False"])
    scores = {variant: f1 for variant, (f1,) in rows[(kind, name)].items()}
    assert scores[""] > 0.75  # the reference cells with their pin holes filled, split
    assert scores["split=None"] < scores[""] - 0.2  # touching cells merged without the split
    assert scores["fill_holes=False"] < scores[""] - 0.2  # pin holes cut the cells apart


def test_style_c_scores_the_first_half_and_sets_the_second_half_apart(monkeypatch):
    """Style c: corrections painted after a first half; ``--continue-set`` steers only the second."""
    bench_quality = pytest.importorskip("bench_quality")
    image, instances = quality_suite.dense_clumps((96, 96), seed=3)
    monkeypatch.setattr(bench_quality, "_image", lambda name, kind: (image, instances))
    trained = []

    class Trained:
        def __init__(self, ann, config, model):
            self.ann, self.config, self.model, self.iteration = ann, config, model or object(), config.iterations

    monkeypatch.setattr(bench_quality, "_train", lambda img, ann, config, model=None: trained.append(
        Trained(ann.copy(), config, model)) or trained[-1])
    first_prediction = np.where(instances > 0, 1, 0).astype(np.int32)  # every touching clump merged
    monkeypatch.setattr(bench_quality, "_predict", lambda model, img, large_cells=True, tta=1: (
        None, first_prediction, first_prediction))
    task = {"label": "t", "image": "x", "kind": "synthetic", "style": "c", "seed": 0, "seconds": 1.0,
            "overrides": {}, "continue_overrides": bench_quality.parse_overrides(["learning_rate=3e-4"]),
            "threads": 1, "save": None, "edge_jitter": 0, "iterations": 8}
    record = bench_quality.run_one(task)
    first, second = trained
    assert first.config.learning_rate is None and second.config.learning_rate == 3e-4
    assert first.config.iterations == second.config.iterations == 4 and record["iterations"] == 8
    assert second.model is first.model  # the second half trains on from the first
    assert (second.ann >= 2).sum() > (first.ann >= 2).sum()  # the corrections painted merged cells
    assert 0 <= record["f1_first"] < 0.5  # the merged first prediction, scored
    assert record["pairs"] > 0 and record["merged"] == record["pairs"] and record["sep"] == 0  # all merged


def test_nuclei_sample_errors_leave_out_only_edge_objects_without_reference_and_the_dividing_cell():
    errors = pytest.importorskip("nuclei_sample_errors")
    reference = np.zeros((1, 40, 40), np.int32)
    reference[0, 10:20, 10:20] = 1  # a nucleus, found
    reference[0, 24:36, 8:20] = errors.DIVIDING  # the dividing cell, found as two pieces (IoU 0.42 each)
    reference[0, 16:24, 30:40] = 2  # a nucleus at the border, found too small (IoU 0.4)
    labels = np.zeros_like(reference)
    labels[0, 10:20, 10:20] = 5
    labels[0, 24:29, 8:20], labels[0, 31:36, 8:20] = 6, 7
    labels[0, 0:4, 26:32] = 8  # at the border, no reference nucleus under it: the reference lacks it
    labels[0, 26:32, 24:30] = 9  # inside the image, no reference nucleus: a real false object
    labels[0, 16:24, 36:40] = 10  # at the border, on a reference nucleus: a real false object too
    scored, edge, no_dividing = errors.three_scores(reference, labels)
    assert scored[1:] == (1, 5, 2)  # tp the nucleus; fp pieces, 8, 9, 10; fn the dividing cell and nucleus 2
    assert edge[1:] == (1, 4, 2)  # only the border object with no reference nucleus under it is left out
    assert errors.edge_objects_without_reference(reference, labels) == 1
    assert no_dividing[1:] == (1, 2, 1)  # the pieces and the dividing cell left out; the real errors stay
    assert errors.dividing_cell_pieces(reference, labels) == [(144, [(60, 60), (60, 60)])]
