"""Segmentation scores used by the demo and the benchmarks (plain numpy).

* :func:`match_instances`: object precision / recall / F1, instances matched one-to-one by
  IoU >= a threshold (0.5 by default; above 0.5 a match is necessarily unique).
* :func:`separated_pairs`: how many touching ground-truth pairs come out as two objects.
* :func:`merged_pairs`: how many come out as one object (the failure the weight map fights).
* :func:`pixel_iou`: foreground IoU.
"""

from __future__ import annotations

import numpy as np

__all__ = ["match_instances", "separated_pairs", "merged_pairs", "pixel_iou", "same_objects"]


def _overlaps(gt: np.ndarray, pred: np.ndarray):
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in size: {gt.size} vs {pred.size}")
    n_pred = int(pred.max()) + 1 if pred.size else 1
    both = (gt > 0) & (pred > 0)
    keys, inter = np.unique(gt[both] * n_pred + pred[both], return_counts=True)
    g, p = keys // n_pred, keys % n_pred
    gt_ids, gt_sizes = np.unique(gt[gt > 0], return_counts=True)
    pred_ids, pred_sizes = np.unique(pred[pred > 0], return_counts=True)
    gt_size = dict(zip(gt_ids.tolist(), gt_sizes.tolist()))
    pred_size = dict(zip(pred_ids.tolist(), pred_sizes.tolist()))
    return g, p, inter, gt_size, pred_size


def match_instances(gt, pred, threshold: float = 0.5) -> dict:
    """Match instances one-to-one by IoU >= ``threshold`` (greedy, best IoU first).

    Works on 2D images or stacks (ids must be unique across the stack).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``mean_matched_iou``,
        ``n_gt``, ``n_pred`` and ``matches`` (list of (gt id, pred id, IoU)).

    Examples
    --------
    >>> a = np.array([[1, 1, 0, 2, 2]])
    >>> match_instances(a, a)["f1"]
    1.0
    """
    g, p, inter, gt_size, pred_size = _overlaps(gt, pred)
    union = np.array([gt_size[a] + pred_size[b] for a, b in zip(g.tolist(), p.tolist())], dtype=np.float64) - inter
    iou = inter / np.maximum(union, 1)
    order = np.argsort(-iou, kind="stable")
    used_g, used_p, matches = set(), set(), []
    for i in order:
        if iou[i] < threshold:
            break
        a, b = int(g[i]), int(p[i])
        if a in used_g or b in used_p:
            continue
        used_g.add(a)
        used_p.add(b)
        matches.append((a, b, float(iou[i])))
    tp = len(matches)
    n_gt, n_pred = len(gt_size), len(pred_size)
    fp, fn = n_pred - tp, n_gt - tp
    precision = tp / n_pred if n_pred else (1.0 if n_gt == 0 else 0.0)
    recall = tp / n_gt if n_gt else 1.0
    f1 = 2 * tp / (n_gt + n_pred) if (n_gt + n_pred) else 1.0
    return {
        "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
        "mean_matched_iou": float(np.mean([m[2] for m in matches])) if matches else 0.0,
        "n_gt": n_gt, "n_pred": n_pred, "matches": matches,
    }


def _largest_objects(g, p, inter) -> dict[int, tuple[int, int]]:
    """For each reference cell overlapped by a prediction: (predicted id overlapping it most, overlap)."""
    best: dict[int, tuple[int, int]] = {}
    for a, b, n in zip(g.tolist(), p.tolist(), inter.tolist()):
        if n > best.get(a, (0, 0))[1]:
            best[a] = (b, n)
    return best


def separated_pairs(gt, pred, pairs) -> tuple[int, int]:
    """How many of the touching ground-truth ``pairs`` come out as two different objects.

    A cell's predicted object is the predicted id covering most of it (0 if mostly
    background); a pair counts as separated when both cells have a predicted object and the
    two differ. Returns ``(separated, total)``.
    """
    g, p, inter, gt_size, _ = _overlaps(gt, pred)
    best = _largest_objects(g, p, inter)
    covered = dict.fromkeys(best, 0)
    for a, n in zip(g.tolist(), inter.tolist()):
        covered[a] += n
    # the dominant label must beat the background predicted inside the cell
    dominant = {a: b for a, (b, n) in best.items() if n >= gt_size[a] - covered[a]}
    separated = 0
    pairs = list(pairs)
    for a, b in pairs:
        pa, pb = dominant.get(int(a), 0), dominant.get(int(b), 0)
        if pa and pb and pa != pb:
            separated += 1
    return separated, len(pairs)


def merged_pairs(gt, pred, pairs) -> tuple[int, int]:
    """How many of the touching ground-truth ``pairs`` come out merged into one object.

    A cell's object here is the predicted id overlapping it most, however little of the cell
    it covers; a pair is merged when both cells have the same one. A pair that is neither
    separated (:func:`separated_pairs`) nor merged has a cell that was missed or found mostly
    smaller than its reference (e.g. reference labels that fill the gaps of a clump).
    Returns ``(merged, total)``.
    """
    obj = {a: b for a, (b, _) in _largest_objects(*_overlaps(gt, pred)[:3]).items()}
    pairs = list(pairs)
    merged = sum(1 for a, b in pairs if obj.get(int(a), 0) and obj.get(int(a)) == obj.get(int(b)))
    return merged, len(pairs)


def pixel_iou(gt, pred) -> float:
    """IoU of the foregrounds (``> 0``) of two label images."""
    a, b = np.asarray(gt) > 0, np.asarray(pred) > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def same_objects(a, b) -> bool:
    """Whether labels ``a`` and ``b`` hold the same objects (the same pixel sets), whatever their
    ids.

    >>> same_objects(np.array([[1, 1, 0, 2]]), np.array([[5, 5, 0, 3]]))
    True
    >>> same_objects(np.array([[1, 1]]), np.array([[1, 2]]))
    False
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    pairs = pairs[:, (pairs[0] > 0) | (pairs[1] > 0)]
    return bool((pairs > 0).all()) and len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
