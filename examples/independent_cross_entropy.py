"""A cross-entropy written from the formula with torch tensor operations, as a port or a fused kernel would be,
and checked by the suite exactly as torch's own is:

    python3 -m pytest tests/test_parity.py tests/test_gradients.py -k "cross_entropy and matches_reference" \\
        --impl cross_entropy=examples.independent_cross_entropy:cross_entropy

It implements torch's documented semantics (class weights, ignore_index, label smoothing, probability targets,
K-dimensional and unbatched inputs, the three reductions) but none of torch's argument validation, so the error-parity
checks in tests/test_rejections.py would report every rejection it lacks.
"""

from __future__ import annotations

import torch
from torch import Tensor


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """-sum_c w_c t_c log softmax(x)_c per position, with torch's reductions."""
    class_dim = 0 if input.dim() == 1 else 1
    n_classes = input.shape[class_dim]
    log_p = input - torch.logsumexp(input, dim=class_dim, keepdim=True)
    eps = label_smoothing if label_smoothing > 0 else 0.0  # torch reads a negative or NaN smoothing as none
    along_classes = [1] * input.dim()
    along_classes[class_dim] = n_classes
    w = torch.ones(n_classes, dtype=input.dtype, device=input.device) if weight is None else weight.reshape(n_classes)

    if target.shape == input.shape:  # class probabilities
        t = target * (1 - eps) + eps / n_classes if eps else target
        losses = -(log_p * t * w.reshape(along_classes)).sum(class_dim)
        return _reduce(losses, reduction, torch.tensor(float(losses.numel()), dtype=input.dtype))

    index = target.long().reshape(()) if input.dim() == 1 else target.long()
    kept = index != ignore_index
    safe = torch.where(kept, index, torch.zeros_like(index))
    zero = torch.zeros((), dtype=input.dtype, device=input.device)
    class_weight = torch.where(kept, w[safe], zero)
    picked = log_p.gather(class_dim, safe.unsqueeze(class_dim)).squeeze(class_dim)
    losses = torch.where(kept, -class_weight * picked, zero)
    if eps:
        smooth = torch.where(kept, -(log_p * w.reshape(along_classes)).sum(class_dim), zero)
        if reduction == "mean":  # each term over the same total weight, as documented
            total = class_weight.sum()
            return (1 - eps) * (losses.sum() / total) + (eps / n_classes) * (smooth.sum() / total)
        losses = (1 - eps) * losses + (eps / n_classes) * smooth
    return _reduce(losses, reduction, class_weight.sum())


def _reduce(losses: Tensor, reduction: str, denominator: Tensor) -> Tensor:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / denominator
