"""npe2 sample data: thin glue over :mod:`napari_unet.samples`."""

from __future__ import annotations


def touching_cells():
    """Synthetic touching cells (512 x 512) with ground truth and a sparse annotation."""
    from .samples import make_touching_cells

    image, instances, annotations = make_touching_cells((512, 512), seed=0)
    return [
        (image, {"name": "touching cells"}, "image"),
        (instances, {"name": "touching cells ground truth", "visible": False}, "labels"),
        (annotations, {"name": "touching cells annotations"}, "labels"),
    ]


def nuclei():
    """Six slices of a real 3D nuclei image with ground truth and a sparse annotation."""
    from .samples import load_nuclei

    image, instances, annotations = load_nuclei()
    return [
        (image, {"name": "nuclei"}, "image"),
        (instances, {"name": "nuclei ground truth", "visible": False}, "labels"),
        (annotations, {"name": "nuclei annotations"}, "labels"),
    ]
