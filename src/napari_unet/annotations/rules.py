"""The rules a painting must meet, in one list: training raises the first error
(:func:`~napari_unet.validate_annotations`), the Annotate and Train widgets show every error and
warning (:func:`~napari_unet.annotations.summary.annotation_problems`), in the same words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.checks import check_integer_labels
from ..config import MAX_CLASSES

__all__ = ["Finding", "label_counts", "painting_findings"]


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a painting: ``level`` "error" (it cannot train) or "warning" (it
    trains weakly), and what to do, in plain words."""

    level: str
    message: str


def label_counts(anns, mode: str) -> tuple[np.ndarray, int]:
    """Pixels per label over all ``anns`` (index 0: unpainted, 1: background, 2..: cells or
    classes) and the largest label; TypeError / ValueError for labels that are not painting
    (not integers, negative, a class beyond the most a model has). Huge instance ids are counted
    as one cell label (index 2)."""
    counts = np.zeros(2, dtype=np.int64)
    top = 0
    for ann in anns:
        check_integer_labels(ann)
        if ann.size == 0:
            continue
        low = int(ann.min())
        if low < 0:
            raise ValueError(f"annotations must not contain negative labels, got {low}")
        high = int(ann.max())
        if mode == "classes" and high > MAX_CLASSES:
            raise ValueError(f"annotations hold class {high}; class mode numbers classes 1..K with K at most "
                             f"{MAX_CLASSES} (for one id per cell use mode='instances')")
        if high >= counts.size:
            counts = np.pad(counts, (0, high + 1 - counts.size)) if mode == "classes" or high < 2**20 else counts
        if mode == "classes" or high < 2**20:
            counts += np.bincount(ann.ravel(), minlength=counts.size)[: counts.size]
        else:  # huge instance ids: only background / cell presence matters
            counts[1] += int(np.count_nonzero(ann == 1))
            counts = np.pad(counts, (0, max(0, 3 - counts.size)))
            counts[2] += int(np.count_nonzero(ann >= 2))
        top = max(top, high)
    return counts, top


def painting_findings(counts: np.ndarray, mode: str, name: str = "the painting") -> list[Finding]:
    """What stops a painting with ``counts`` (of :func:`label_counts`) from training, and what
    makes it weak; ``name`` is how the messages call it (e.g. a layer's name, quoted).

    >>> counts = np.bincount([0, 1, 1, 2, 2, 3])
    >>> [f.message for f in painting_findings(counts, "instances")]
    ['only 2 cell(s) painted: a few more make a much better model.']
    >>> painting_findings(np.bincount([0, 2, 3]), "instances")[0].message
    'the painting has no background (label 1): paint some background too.'
    """
    painted = counts[1:]
    if not painted.any():
        what = "some cells (2, 3, ...)" if mode == "instances" else "at least two classes (1, 2, ...)"
        return [Finding("error", f"{name} is empty: paint background (label 1) and {what} first.")]
    if mode != "instances":
        present = np.flatnonzero(painted) + 1
        if present.size < 2:
            return [Finding("error", f"{name} has one class only ({int(present[0])}): paint at least two classes.")]
        return []
    findings = []
    if counts[1] == 0:
        findings.append(Finding("error", f"{name} has no background (label 1): paint some background too."))
    cells = int(np.count_nonzero(counts[2:]))
    if cells == 0:
        findings.append(Finding("error", f"{name} has background only: paint at least one cell (label 2 or more)."))
    elif cells < 3:
        findings.append(Finding("warning", f"only {cells} cell(s) painted: a few more make a much better model."))
    return findings
