"""The training loss: pixel-wise softmax cross-entropy weighted by the weight map (unannotated
pixels weigh 0 and add neither loss nor gradient)."""

from __future__ import annotations

__all__ = ["weighted_cross_entropy"]


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
