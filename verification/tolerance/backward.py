"""The input gradients, replayed in the order of torch's backward formulas (aten's ``*_backward`` kernels,
and autograd's chain through log_softmax for cross-entropy)."""

from __future__ import annotations

import numpy as np

from ..dtypes import Dtype
from .forward import _class_shape, _cross_entropy_parts, _focal_parts, _index_target_parts
from .tracked import F64, Tracked

# ---------------------------------------------------------------------------------------------
# Gradients with respect to the input, replayed in the order of torch's backward formulas
# (aten's *_backward kernels, and autograd's chain through log_softmax for cross-entropy).
# Products are bounded the same in any order, so only sums and the places where a division
# happens matter; those follow torch.
# ---------------------------------------------------------------------------------------------


def _upstream(dtype: Dtype, grad_output: F64, reduction: str, count: float) -> Tracked:
    """grad_output as the per-element kernels see it: divided by the element count for 'mean'."""
    go = Tracked.exact(grad_output, dtype)
    return go / float(count) if reduction == "mean" else go


def binary_cross_entropy_grad(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, weight: F64 | None = None, reduction: str = "mean"
) -> Tracked:
    """grad * (p - y) / max(p (1 - p), 1e-12) [* w] [/ numel]."""
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    go = Tracked.exact(grad_output, dtype)
    result = (go * (p - y)) / (p * (1.0 - p)).clamp_min(BCE_GRAD_EPSILON)
    if weight is not None:
        result = result * Tracked.exact(weight, dtype)
    if reduction == "mean":
        result = result / float(np.size(target))
    return result.broadcast_to(np.shape(target))


# torch's BCE backward divides by max(p (1 - p), 1e-12): the named divergence in test_gradients.py.
BCE_GRAD_EPSILON = 1e-12


def binary_cross_entropy_with_logits_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    """(sigmoid(x) - y) * grad, or ((pw y + 1 - y) sigmoid(x) - pw y) * grad; [* w] [/ numel]."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    go = Tracked.exact(grad_output, dtype)
    if pos_weight is None:
        result = (x.sigmoid() - y) * go
    else:
        t = Tracked.exact(pos_weight, dtype) * y
        result = (((t + 1.0) - y) * x.sigmoid() - t) * go
    if weight is not None:
        result = result * Tracked.exact(weight, dtype)
    if reduction == "mean":
        result = result / float(np.size(target))
    return result.broadcast_to(np.shape(target))


def _expand(per_position: Tracked, class_dim: int) -> Tracked:
    if per_position.value.ndim == 0:
        return per_position
    return per_position.expand_dims(class_dim)


def _nll_grad(
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
    class_dim, n_classes, kept, safe, w = _index_target_parts(np.zeros(shape), target, weight, ignore_index)
    class_weight = Tracked.exact(np.where(kept, w[safe] if w.size else 0.0, 0.0), dtype)
    go = Tracked.exact(grad_output, dtype)
    if scale != 1.0:
        go = go * go.constant(scale)
    if reduction == "mean":
        go = go / class_weight.sum()
    per_position = -(class_weight * go)
    classes = np.arange(n_classes).reshape(_class_shape(len(shape), n_classes))
    one_hot = (classes == np.expand_dims(safe, class_dim)) & np.expand_dims(kept, class_dim)
    expanded = _expand(per_position, class_dim).broadcast_to(shape)
    return expanded.where(one_hot, 0.0)


def nll_loss_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tracked:
    return _nll_grad(dtype, np.shape(input), target, grad_output, weight, ignore_index, reduction)


def _log_softmax_backward(grad: Tracked, logp: Tracked, class_dim: int) -> Tracked:
    """torch's log_softmax backward: grad - exp(output) * sum(grad) along the class dimension."""
    total = _expand(grad.sum(axis=class_dim), class_dim)
    return grad - logp.exp() * total


def cross_entropy_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tracked:
    x, class_dim, n_classes, logp, eps, class_weights = _cross_entropy_parts(dtype, input, weight, label_smoothing)
    w_along = Tracked.exact(class_weights.reshape(_class_shape(x.value.ndim, n_classes)), dtype)
    go = _expand(Tracked.exact(grad_output, dtype), class_dim)
    if np.shape(target) == np.shape(input):
        t = Tracked.exact(target, dtype)
        if eps > 0:
            t = t * t.constant(1.0 - eps) + t.constant(eps / n_classes)
        if reduction == "mean":
            go = go / float(x.value.size // n_classes if n_classes else 0)
        grad = ((-go) * w_along) * t if weight is not None else (-go) * t
        return _log_softmax_backward(grad.broadcast_to(np.shape(input)), logp, class_dim)

    grad = _nll_grad(
        dtype, np.shape(input), target, grad_output, weight, ignore_index, reduction, scale=1.0 - eps if eps else 1.0
    )
    if eps > 0:
        _, _, kept, safe, w_plain = _index_target_parts(x.value, target, weight, ignore_index)
        smooth_go = go * go.constant(eps / n_classes)
        if reduction == "mean":
            smooth_go = smooth_go / Tracked.exact(np.where(kept, w_plain[safe], 0.0), dtype).sum()
        smooth = (-(smooth_go * w_along)).broadcast_to(np.shape(input))
        grad = grad + smooth.where(np.expand_dims(kept, class_dim) if kept.ndim else kept, 0.0)
    return _log_softmax_backward(grad, logp, class_dim)


def kl_div_grad(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, reduction: str = "mean", log_target: bool = False
) -> Tracked:
    """Autograd through kl_div's formula: -(g * t), or -(g * exp(t)), with g = grad_output divided first by the
    mean's element count or the batchmean's first size; summed over the dimensions the input was broadcast along."""
    shape = np.broadcast_shapes(np.shape(input), np.shape(target))
    t = Tracked.exact(target, dtype).broadcast_to(shape)
    go = Tracked.exact(grad_output, dtype)
    if reduction == "mean":
        go = go / float(int(np.prod(shape)))
    elif reduction == "batchmean" and np.ndim(input):
        go = go / float(np.shape(input)[0])
    gradient = -(go * (t.exp() if log_target else t))
    return _sum_to_shape(gradient.broadcast_to(shape), np.shape(input))


def _sum_to_shape(gradient: Tracked, shape: tuple[int, ...]) -> Tracked:
    """Autograd's reduction of a broadcast gradient back to the input's shape (a sum per input element)."""
    for _ in range(gradient.value.ndim - len(shape)):
        gradient = gradient.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and gradient.value.shape[axis] != 1:
            summed = gradient.sum(axis=axis)
            gradient = summed.expand_dims(axis)
    return gradient


def sigmoid_focal_loss_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tracked:
    """Autograd back through torchvision's graph: g (/ numel) [* alpha_t]; then to ce, g m, and to the modulating
    factor, g ce, through pow's backward g (gamma q^(gamma - 1)) (exactly 0 for gamma = 0), through 1 - p_t and
    p_t = p y + (1 - p)(1 - y) to g_p = g_pt y - g_pt (1 - y), through sigmoid's backward g_p (1 - p) p; the
    BCEWithLogits branch adds (sigmoid(x) - y) g_ce."""
    parts = _focal_parts(dtype, input, target, alpha, gamma)
    x, y, p = parts.x, parts.y, parts.p
    g = _upstream(dtype, grad_output, reduction, float(np.size(target))).broadcast_to(np.shape(target))
    if parts.alpha_t is not None:
        g = g * parts.alpha_t
    through_ce = (x.sigmoid() - y) * (g * parts.modulating)
    if gamma == 0:
        return through_ce
    in_unit_interval = bool(np.all((target >= 0) & (target <= 1)))
    g_pt = -((g * parts.ce) * (parts.miss.power(gamma - 1.0, base_nonnegative=in_unit_interval) * gamma))
    g_p = g_pt * y - g_pt * (1.0 - y)
    return (g_p * (1.0 - p)) * p + through_ce
