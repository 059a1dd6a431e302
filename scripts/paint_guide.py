"""Draw docs/images/how_to_paint.png: the three habits of painting that train well.

A crop of a real nuclei image (BBBC007, vendored in benchmarks/data/) with its reference labels:
(1) complete cells, touching ones with different ids, and the thin ring of background training
infers around each of them; (2) background strokes, in open space and close to cells; (3) a
correction: where a prediction merged two touching cells, paint both as new cells. Panel 3 shows
an illustrative error (two reference cells joined), not a run.

    .venv/bin/python scripts/paint_guide.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SCALE = 3
COLORS = [(255, 80, 200), (80, 220, 255), (255, 200, 40), (140, 255, 120)]
BACKGROUND = (70, 110, 255)
RING = (255, 255, 255)


def _gray(image):
    f = image.astype(np.float32)
    lo, hi = np.percentile(f, (1, 99.8))
    g = np.clip((f - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.stack([g * 255] * 3, -1)


def _paint(rgb, mask, color, alpha=0.55):
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(color, np.float32)


def _outline(labels):
    return (labels != np.roll(labels, 1, 0)) | (labels != np.roll(labels, 1, 1))


def _panel(rgb, title):
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).resize(
        (rgb.shape[1] * SCALE, rgb.shape[0] * SCALE), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 28), (24, 24, 24))
    canvas.paste(img, (0, 28))
    ImageDraw.Draw(canvas).text((8, 8), title, fill=(235, 235, 235))
    return canvas


def main(argv=None):
    import tifffile
    from scipy import ndimage as ndi

    from napari_unet.annotations.targets import cell_ring, insert_gaps
    from napari_unet.samples import touching_pairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "how_to_paint.png")
    args = parser.parse_args(argv)
    data = ROOT / "benchmarks" / "data"
    image = tifffile.imread(data / "BBBC007_A9_p5d_image.tif")
    labels = tifffile.imread(data / "BBBC007_A9_p5d_labels.tif").astype(np.int32)
    # a crop around a touching pair away from the border
    pairs = sorted(touching_pairs(labels))
    sizes = np.bincount(labels.ravel())
    centres = ndi.center_of_mass(np.ones(labels.shape), labels, range(labels.max() + 1))
    pair = next(p for p in pairs if all(20 < c < 430 for c in centres[p[0]]) and sizes[p[0]] > 120 and sizes[p[1]] > 120)
    cy, cx = (int(v) for v in centres[pair[0]])
    y0, x0 = max(0, cy - 50), max(0, cx - 50)
    crop = (slice(y0, y0 + 100), slice(x0, x0 + 100))
    img, lab = image[crop], labels[crop]
    ids = [int(i) for i in np.unique(lab) if i > 0]
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist())
    whole = [i for i in ids if i not in border and i not in pair]
    painted = list(pair) + whole[:2]

    ann = np.zeros(lab.shape, np.uint16)
    for k, c in enumerate(painted):
        ann[lab == c] = 2 + k
    gapped = insert_gaps(ann)
    ring = cell_ring(gapped, 1)

    one = _gray(img)
    for k in range(len(painted)):
        _paint(one, gapped == 2 + k, COLORS[k % len(COLORS)])
    _paint(one, ring, RING, 0.8)

    far = ndi.distance_transform_edt(lab == 0)
    strokes = np.zeros(lab.shape, bool)
    ys, xs = np.nonzero((far >= 3) & (far <= 6))
    rng = np.random.default_rng(1)
    for i in rng.choice(len(ys), size=min(6, len(ys)), replace=False):
        strokes[max(0, ys[i] - 1): ys[i] + 2, max(0, xs[i] - 6): xs[i] + 7] = True
    strokes &= far >= 2
    two = _gray(img)
    _paint(two, strokes, BACKGROUND, 0.8)
    for k in range(len(painted)):
        _paint(two, gapped == 2 + k, COLORS[k % len(COLORS)])

    merged = np.isin(lab, pair)
    three = _gray(img)
    _paint(three, _outline(np.where(merged, 1, 0)) & ndi.binary_dilation(merged), (255, 60, 60), 0.9)
    for k, c in enumerate(pair):
        _paint(three, gapped == 2 + k, COLORS[(k + 2) % len(COLORS)])

    panels = [_panel(one, "1. complete cells, one id each"), _panel(two, "2. background, near cells too"),
              _panel(three, "3. fix a merge: paint both cells")]
    out = Image.new("RGB", (sum(p.width for p in panels) + 16 * (len(panels) - 1), panels[0].height), (255, 255, 255))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 16
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
