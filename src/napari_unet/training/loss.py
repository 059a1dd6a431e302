"""The training loss: pixel-wise softmax cross-entropy weighted by the weight map (unannotated
pixels weigh 0 and add neither loss nor gradient), and the scores of the held-out pixels."""

from __future__ import annotations

__all__ = ["weighted_cross_entropy", "validation_scores"]


def weighted_cross_entropy(logits, target, weights):
    """Pixel-wise softmax + cross-entropy, weighted, divided by the sum of the weights.

    Parameters
    ----------
    logits : torch.Tensor (B, K, H, W)
    target : torch.Tensor (B, H, W) int64
    weights : torch.Tensor (B, H, W) float
        0 for unannotated pixels: they contribute neither to the loss nor to the gradient.

    Returns
    -------
    torch.Tensor
        A scalar; 0 (with a zero gradient) when no pixel has a weight.
    """
    import torch.nn.functional as F

    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size")
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    weights = weights.to(ce.dtype)
    # where() rather than a product: a 0 weight must not let an inf/nan through
    weighted = (ce * weights).where(weights > 0, ce.new_zeros(()))
    return weighted.sum() / weights.sum().clamp_min(1e-8)


def validation_scores(model, batches, n_classes: int, *, amp_dtype=None, stop=lambda: False):
    """``(loss, foreground IoU)`` of ``model`` over validation ``batches`` (their weights weigh the
    loss; the IoU is the mean over the foreground classes present), or None when ``stop()``
    turns true on the way. The model is evaluated in eval mode and left in train mode."""
    import numpy as np
    import torch

    total_loss, total_weight = 0.0, 0.0
    inter = np.zeros(n_classes)
    union = np.zeros(n_classes)
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                if stop():
                    return None
                if amp_dtype is not None:
                    with torch.autocast(device_type="cuda", dtype=amp_dtype):
                        logits = model(batch.image)
                else:
                    logits = model(batch.image)
                logits = logits.float()
                w = batch.weights
                ce = torch.nn.functional.cross_entropy(logits, batch.target, reduction="none")
                total_loss += float((ce * w).where(w > 0, ce.new_zeros(())).sum())
                total_weight += float(w.sum())
                m = w > 0
                predicted = logits.argmax(1)[m]
                target = batch.target[m]
                for k in range(n_classes):
                    p, t = predicted == k, target == k
                    inter[k] += float((p & t).sum())
                    union[k] += float((p | t).sum())
    finally:
        model.train()
    fg = [k for k in range(1, n_classes) if union[k] > 0]
    return total_loss / max(total_weight, 1e-8), float(np.mean([inter[k] / union[k] for k in fg])) if fg else float("nan")
