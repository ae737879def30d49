"""The gradient replays' shared pieces. Each loss's input gradient is replayed in the order of torch's backward
formulas (aten's ``*_backward`` kernels, and autograd's chain through log_softmax for cross-entropy), in its own
module under ``verification/losses/``, from these: grad_output through the reduction, the expansion along the
class dimension, NLL's backward, log-softmax's backward, and the sum back to a broadcast input's shape."""

from __future__ import annotations

import numpy as np

from ..dtypes import Dtype
from .forward import class_shape, index_target_parts, softmax_summation
from .summation import NLL_CASCADE, TENSOR_SUM
from .tracked import F64, Tracked

# Products are bounded the same in any order, so only sums and the places where a division happens matter; those
# follow torch.


def upstream(dtype: Dtype, grad_output: F64, reduction: str, count: float) -> Tracked:
    """grad_output as the per-element kernels see it: divided by the element count for 'mean'."""
    go = Tracked.exact(grad_output, dtype)
    return go / float(count) if reduction == "mean" else go


def expand(per_position: Tracked, class_dim: int) -> Tracked:
    if per_position.ndim == 0:
        return per_position
    return per_position.expand_dims(class_dim)


def nll_grad(
    dtype: Dtype,
    shape: tuple[int, ...],
    target: F64,
    grad_output: F64,
    weight: F64 | None,
    ignore_index: int,
    reduction: str,
    scale: float = 1.0,
) -> Tracked:
    """-(w[y] * (grad [* scale] / total_weight)) at the target class, exact 0 elsewhere and where ignored."""
    class_dim, n_classes, kept, safe, at_target = index_target_parts(np.zeros(shape), target, weight, ignore_index)
    class_weight = Tracked.exact(at_target, dtype)
    go = Tracked.exact(grad_output, dtype)
    if scale != 1.0:
        go = go * go.constant(scale)
    if reduction == "mean":
        go = go / class_weight.sum(order=NLL_CASCADE)  # the forward's total weight
    per_position = -(class_weight * go)
    classes = np.arange(n_classes).reshape(class_shape(len(shape) - 1, n_classes))
    one_hot = (classes == np.expand_dims(safe, class_dim)) & np.expand_dims(kept, class_dim)
    expanded = expand(per_position, class_dim).broadcast_to(shape)
    return expanded.where(one_hot, 0.0)


def log_softmax_backward(grad: Tracked, logp: Tracked, class_dim: int) -> Tracked:
    """torch's log_softmax backward: grad - exp(output) * sum(grad) along the class dimension."""
    total = expand(grad.sum(axis=class_dim, order=softmax_summation(grad, class_dim)), class_dim)
    return grad - logp.exp() * total


def sum_to_shape(gradient: Tracked, shape: tuple[int, ...]) -> Tracked:
    """Autograd's reduction of a broadcast gradient back to the input's shape (a sum per input element)."""
    for _ in range(gradient.value.ndim - len(shape)):
        gradient = gradient.sum(axis=0, order=TENSOR_SUM)
    for axis, size in enumerate(shape):
        if size == 1 and gradient.value.shape[axis] != 1:
            summed = gradient.sum(axis=axis, order=TENSOR_SUM)
            gradient = summed.expand_dims(axis)
    return gradient
