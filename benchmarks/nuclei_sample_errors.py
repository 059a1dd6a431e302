"""What the shipped nuclei sample's errors are, for saved networks (no training).

``bench_train.py --datasets nuclei --save-models DIR`` keeps each trained network; this script
labels the sample with each one as Predict does (``napari_unet.segment``: four flipped views, the
half-scale pass, planes one by one) and scores it three ways, object F1 at IoU 0.5 per plane as
``bench_train.py`` scores it:

1. as scored (against the vendored reference);
2. objects touching the image border that overlap no reference nucleus (under 30 % of their
   pixels) left out: nuclei cut by the crop's edges that the vendored reference does not label;
3. also the dividing cell (reference id 4, in anaphase: two sets of chromosomes moving apart)
   left out of the reference, with the objects lying mostly (> 70 %) inside it: the reference
   outlines the whole figure as one object, a network sees its two chromatin sets.

It also prints how many objects rule 2 leaves out and, per plane, the objects that make up the
dividing cell; ``--figure PNG`` draws it
(top row the reference, bottom row the labels of the first network given) and ``--edges-figure
PNG`` two whole planes (reference outlines cyan, the first network's objects at the border that no
reference nucleus lies under yellow)::

    python benchmarks/bench_train.py --part accuracy --datasets nuclei --iterations 1800 --seeds 0 \\
        --threads 1 --no-baselines --save-models models
    python benchmarks/nuclei_sample_errors.py models/nuclei_1800it_s0.unet --figure dividing_cell.png \\
        --edges-figure edges.png

``--labels A.npy B.npy`` scores label arrays of the sample made by any code instead, e.g. by an
older commit of this package (``benchmarks/results/2026-12-02_nuclei_sample_old_code_fifteenth.txt``
has the script that made those of 2026-11-25).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DIVIDING = 4  # the reference id of the dividing cell
NO_REFERENCE = 0.3  # an object with less of its pixels on reference nuclei has none
INSIDE = 0.7  # an object with more of its pixels on the dividing cell lies inside it


def f1(reference, labels):
    """``(F1, tp, fp, fn)`` summed over the planes."""
    from napari_unet.labels.metrics import match_instances

    tp = fp = fn = 0
    for g, p in zip(reference, labels):
        s = match_instances(g, p)
        tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
    return 2 * tp / max(2 * tp + fp + fn, 1), tp, fp, fn


def without(labels, drop):
    """``labels`` with the objects ``drop(plane_index, object_mask)`` says to leave out set to 0."""
    out = labels.copy()
    for z, plane in enumerate(out):
        for i in np.unique(plane):
            if i and drop(z, plane == i):
                plane[plane == i] = 0
    return out


def edge_without_reference(reference):
    def drop(z, mask):
        edges = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        return edges and (reference[z][mask] > 0).mean() < NO_REFERENCE

    return drop


def edge_objects_without_reference(reference, labels) -> int:
    """How many objects the edge rule leaves out (nuclei at the border the reference does not label)."""
    drop = edge_without_reference(reference)
    return sum(bool(i) and drop(z, plane == i) for z, plane in enumerate(labels) for i in np.unique(plane))


def three_scores(reference, labels):
    edge = without(labels, edge_without_reference(reference))
    inside = without(edge, lambda z, mask: (reference[z][mask] == DIVIDING).mean() > INSIDE)
    return f1(reference, labels), f1(reference, edge), f1(np.where(reference == DIVIDING, 0, reference), inside)


def dividing_cell_pieces(reference, labels):
    """Per plane: ``(reference area, [(object area, pixels on the dividing cell), ...])``."""
    out = []
    for g, p in zip(reference, labels):
        cell = g == DIVIDING
        ids, counts = np.unique(p[cell], return_counts=True)
        out.append((int(cell.sum()), [(int((p == i).sum()), int(c)) for i, c in zip(ids, counts) if i]))
    return out


def _gray(plane, background):
    """A plane scaled from its background's median (0) to its 99.9th percentile (1)."""
    plane = plane.astype(np.float64)
    low = np.median(plane[background])
    return np.clip((plane - low) / (np.percentile(plane, 99.9) - low), 0, 1)


def _save_rgb(path, rgb):
    from skimage.io import imsave

    imsave(path, (rgb * 255).astype(np.uint8), check_contrast=False)


def figure(path, image, reference, labels, margin=15, zoom=3):
    from skimage.segmentation import find_boundaries

    zz, yy, xx = np.nonzero(reference == DIVIDING)
    y0, x0 = max(yy.min() - margin, 0), max(xx.min() - margin, 0)
    y1, x1 = yy.max() + margin + 1, xx.max() + margin + 1
    palette = np.array([(1, 0.2, 0.2), (0.2, 0.9, 1), (1, 0.85, 0.1), (0.4, 1, 0.3), (1, 0.4, 1), (0.6, 0.6, 1)])
    rows = []
    for objects in (reference, labels):
        tiles = []
        for z in range(len(image)):
            gray = _gray(image[z], reference[z] == 0)[y0:y1, x0:x1]
            rgb = np.repeat(np.kron(gray, np.ones((zoom, zoom)))[..., None], 3, axis=2)
            lab = np.kron(objects[z][y0:y1, x0:x1], np.ones((zoom, zoom), np.int64))
            edge = find_boundaries(lab, mode="inner")
            for k, i in enumerate(np.unique(lab[edge])):
                rgb[edge & (lab == i)] = palette[k % len(palette)]
            tiles.append(np.pad(rgb, ((2, 2), (2, 2), (0, 0)), constant_values=1))
        rows.append(np.concatenate(tiles, axis=1))
    _save_rgb(path, np.concatenate(rows, axis=0))


def edges_figure(path, image, reference, labels, planes=(2, 3)):
    """Whole planes: reference outlines in cyan, objects at the border without a reference nucleus in yellow."""
    from skimage.segmentation import find_boundaries

    tiles = []
    for z in planes:
        rgb = np.repeat(_gray(image[z], reference[z] == 0)[..., None], 3, axis=2)
        rgb[find_boundaries(reference[z], mode="inner")] = (0.2, 0.9, 1)
        lacking = labels[z] - without(labels[z:z + 1], edge_without_reference(reference[z:z + 1]))[0]
        rgb[find_boundaries(lacking, mode="inner")] = (1, 0.85, 0.1)
        tiles.append(np.pad(rgb, ((2, 2), (2, 2), (0, 0)), constant_values=1))
    _save_rgb(path, np.concatenate(tiles, axis=1))


def _label_sets(paths, labels_paths, image):
    """``(name, labels)`` of each saved network (labelled as Predict does) and each saved ``.npy`` labels array."""
    from napari_unet.model.files import load_model
    from napari_unet.labels.segment import segment
    from napari_unet.predict.views import PLUGIN_TTA

    for path in paths:
        yield path.name, segment(load_model(path), image, axes="ZYX", tta=PLUGIN_TTA, large_cells=True)[1]
    for path in labels_paths:
        labels = np.load(path)
        if labels.shape != image.shape:
            raise SystemExit(f"{path}: labels of shape {labels.shape}, the sample is {image.shape}")
        yield path.name, labels


def main():
    from napari_unet.samples import load_nuclei

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path, help=".unet files trained on the nuclei sample")
    parser.add_argument("--labels", nargs="+", type=Path, default=[],
                        help=".npy label arrays of the sample (6 x 256 x 256) made by any code, e.g. an older commit")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the dividing cell, first model")
    parser.add_argument("--edges-figure", type=Path, default=None,
                        help="PNG of planes 2 and 3 with the edge nuclei the reference lacks, first model")
    args = parser.parse_args()
    if not args.models and not args.labels:
        parser.error("give saved networks, --labels arrays or both")

    image, reference, _ = load_nuclei()
    print("model                          as scored                  edge nuclei the reference lacks left out"
          "   and the dividing cell left out")
    for k, (name, labels) in enumerate(_label_sets(args.models, args.labels, image)):
        print(f"{name:<30} " + "   ".join(f"F1 {s[0]:.3f} (tp {s[1]} fp {s[2]} fn {s[3]})"
                                         for s in three_scores(reference, labels)), flush=True)
        print(f"    objects at the border with no reference nucleus under them: "
              f"{edge_objects_without_reference(reference, labels)}")
        for z, (area, pieces) in enumerate(dividing_cell_pieces(reference, labels)):
            print(f"    plane {z}: dividing cell {area} px; objects on it (area, px on it): {pieces}")
        if k == 0 and args.figure:
            figure(args.figure, image, reference, labels)
        if k == 0 and args.edges_figure:
            edges_figure(args.edges_figure, image, reference, labels)


if __name__ == "__main__":
    main()
