"""The forward replays: each loss computed in torch's order on tracked numbers, giving the bound on torch's
error per output element."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import reference

from ..dtypes import Dtype
from .tracked import F64, Tracked

# ---------------------------------------------------------------------------------------------
# The losses, replayed in torch's order.
# ---------------------------------------------------------------------------------------------


def _class_dim(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def _class_shape(ndim: int, n_classes: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[_class_dim(ndim)] = n_classes
    return tuple(shape)


def log_softmax(x: Tracked, dim: int) -> Tracked:
    """Two orders appear in torch's kernels: (x - m) - log s and x - (m + log s); bound both."""
    m = np.max(x.value, axis=dim, keepdims=True)
    shifted = x - m
    log_s = shifted.exp().sum(axis=dim).log()
    log_s = log_s.expand_dims(dim)
    return Tracked.larger(shifted - log_s, x - (log_s + m))


def _reduce(losses: Tracked, reduction: str, denominator: Tracked | None) -> Tracked:
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        return total / float(losses.value.size)
    return total / denominator.sum()


def _index_target_parts(case_input: F64, target: F64, weight: F64 | None, ignore_index: int):
    class_dim = _class_dim(case_input.ndim)
    n_classes = case_input.shape[class_dim]
    t = np.asarray(target, dtype=np.int64)
    if case_input.ndim == 1:
        t = t.reshape(())
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)
    return class_dim, n_classes, kept, safe, w


def nll_loss(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tracked:
    return _nll(Tracked.exact(input, dtype), target, weight, ignore_index, reduction, dtype)


def _nll(logp: Tracked, target: F64, weight: F64 | None, ignore_index: int, reduction: str, dtype: Dtype) -> Tracked:
    class_dim, _, kept, safe, w = _index_target_parts(logp.value, target, weight, ignore_index)
    class_weight = Tracked.exact(np.where(kept, w[safe] if w.size else 0.0, 0.0), dtype)
    losses = (-(class_weight * logp.take(safe, class_dim))).where(kept, 0.0)
    return _reduce(losses, reduction, class_weight)


def _cross_entropy_parts(
    dtype: Dtype, input: F64, weight: F64 | None, label_smoothing: float
) -> tuple[Tracked, int, int, Tracked, float, F64]:
    """What the cross-entropy forward and backward replays share: the input, its class layout, its log-softmax,
    the effective smoothing (a negative or NaN value is none) and the class weights as a flat vector."""
    x = Tracked.exact(input, dtype)
    class_dim = _class_dim(x.value.ndim)
    n_classes = x.value.shape[class_dim]
    eps = float(label_smoothing) if label_smoothing > 0 else 0.0
    class_weights = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)
    return x, class_dim, n_classes, log_softmax(x, class_dim), eps, class_weights


def cross_entropy(
    dtype: Dtype,
    input: F64,
    target: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tracked:
    x, class_dim, n_classes, logp, eps, class_weights = _cross_entropy_parts(dtype, input, weight, label_smoothing)
    w_along_classes = Tracked.exact(class_weights.reshape(_class_shape(x.value.ndim, n_classes)), dtype)
    if np.shape(target) == np.shape(input):
        t = Tracked.exact(target, dtype)
        if eps > 0:
            t = t * t.constant(1.0 - eps) + t.constant(eps / n_classes)
        losses = -((logp * t) * w_along_classes).sum(axis=class_dim)
        return _reduce(losses, reduction, None)

    nll = _nll(logp, target, weight, ignore_index, reduction, dtype)
    if eps == 0:
        return nll
    _, _, kept, safe, w_plain = _index_target_parts(x.value, target, weight, ignore_index)
    smooth = (-(logp * w_along_classes).sum(axis=class_dim)).where(kept, 0.0)
    class_weight = Tracked.exact(np.where(kept, w_plain[safe], 0.0), dtype)
    smooth = _reduce(smooth, reduction, class_weight)
    return nll * nll.constant(1.0 - eps) + smooth * smooth.constant(eps / n_classes)


def binary_cross_entropy(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, reduction: str = "mean"
) -> Tracked:
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    log_p = p.log().clamp_min(reference.LOG_CLAMP)
    log_1mp = (-p).log1p().clamp_min(reference.LOG_CLAMP)
    losses = (y - 1.0) * log_1mp - y * log_p
    if weight is not None:
        losses = losses * Tracked.exact(weight, dtype)
    return _reduce(losses.broadcast_to(np.shape(target)), reduction, None)


def binary_cross_entropy_with_logits(
    dtype: Dtype,
    input: F64,
    target: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    log_sigmoid = x.minimum(0.0) - (-(x.abs())).exp().log1p()
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((Tracked.exact(pos_weight, dtype) - 1.0) * y + 1.0)
    losses = (1.0 - y) * x - log_sigmoid
    if weight is not None:
        losses = losses * Tracked.exact(weight, dtype)
    return _reduce(losses.broadcast_to(np.shape(target)), reduction, None)


def kl_div(dtype: Dtype, input: F64, target: F64, reduction: str = "mean", log_target: bool = False) -> Tracked:
    """xlogy(t, t) - t * x, or exp(t) * (t - x) with log_target; 'batchmean' divides by the input's first size."""
    shape = np.broadcast_shapes(np.shape(input), np.shape(target))
    x = Tracked.exact(input, dtype).broadcast_to(shape)
    t = Tracked.exact(target, dtype).broadcast_to(shape)
    if log_target:
        losses = t.exp() * (t - x)
    else:
        t_log_t = t.log() * t
        zero = t.value == 0  # xlogy(0, y) is exactly 0
        losses = t_log_t.where(~zero, 0.0) - t * x
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / float(losses.value.size)
    return total / float(np.shape(input)[0]) if np.ndim(input) else total


@dataclass(frozen=True)
class _FocalParts:
    """torchvision's intermediate tensors, tracked: its backward reuses them."""

    x: Tracked
    y: Tracked
    p: Tracked
    ce: Tracked
    miss: Tracked  # 1 - p_t
    modulating: Tracked  # (1 - p_t) ** gamma
    alpha_t: Tracked | None
    loss: Tracked  # per element, before the reduction


def _focal_parts(dtype: Dtype, input: F64, target: F64, alpha: float, gamma: float) -> _FocalParts:
    """torchvision.ops.sigmoid_focal_loss's order: p = sigmoid(x); ce = BCEWithLogits(x, y, 'none');
    p_t = p y + (1 - p)(1 - y); loss = ce (1 - p_t)^gamma; then alpha_t = alpha y + (1 - alpha)(1 - y) times it."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    p = x.sigmoid()
    ce = binary_cross_entropy_with_logits(dtype, input, target, reduction="none")
    miss = 1.0 - (p * y + (1.0 - p) * (1.0 - y))
    # For targets in [0, 1] and p in [0, 1], p y + (1 - p)(1 - y) cannot round above 1 (rounding is monotone and
    # y + fl(1 - y) exceeds 1 by at most half an ulp, which rounds back to 1): torch's 1 - p_t is never negative.
    in_unit_interval = bool(np.all((target >= 0) & (target <= 1)))
    modulating = miss.power(gamma, base_nonnegative=in_unit_interval)
    loss = ce * modulating
    alpha_t = None
    if alpha >= 0:  # Python floats, rounded to the dtype when they meet the tensors
        alpha_t = y * x.constant(alpha) + (1.0 - y) * x.constant(1.0 - alpha)
        loss = alpha_t * loss
    return _FocalParts(x, y, p, ce, miss, modulating, alpha_t, loss)


def sigmoid_focal_loss(
    dtype: Dtype, input: F64, target: F64, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tracked:
    return _reduce(_focal_parts(dtype, input, target, alpha, gamma).loss, reduction, None)
