"""The forward replays' shared pieces: class layouts, log-softmax in both of torch's orders, the reductions, and
NLL over index targets. Each loss's replay, built from these in torch's order, is in its own module under
``verification/losses/``; the bound on torch's error per output element is its ``.error``."""

from __future__ import annotations

import numpy as np

from ..dtypes import Dtype
from .tracked import F64, Tracked

# The pieces several losses' replays share (each loss's own replay is in its module under verification/losses/).


def class_axis(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def class_shape(ndim: int, n_classes: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[class_axis(ndim)] = n_classes
    return tuple(shape)


def log_softmax(x: Tracked, dim: int) -> Tracked:
    """Two orders appear in torch's kernels: (x - m) - log s and x - (m + log s); bound both."""
    m = np.max(x.value, axis=dim, keepdims=True)
    shifted = x - m
    log_s = shifted.exp().sum(axis=dim).log()
    log_s = log_s.expand_dims(dim)
    return Tracked.larger(shifted - log_s, x - (log_s + m))


def reduce(losses: Tracked, reduction: str, denominator: Tracked | None) -> Tracked:
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        return total / float(losses.value.size)
    return total / denominator.sum()


def index_target_parts(case_input: F64, target: F64, weight: F64 | None, ignore_index: int):
    class_dim = class_axis(case_input.ndim)
    n_classes = case_input.shape[class_dim]
    t = np.asarray(target, dtype=np.int64)
    if case_input.ndim == 1:
        t = t.reshape(())
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)
    return class_dim, n_classes, kept, safe, w


def nll_reduced(
    logp: Tracked, target: F64, weight: F64 | None, ignore_index: int, reduction: str, dtype: Dtype
) -> Tracked:
    class_dim, _, kept, safe, w = index_target_parts(logp.value, target, weight, ignore_index)
    class_weight = Tracked.exact(np.where(kept, w[safe] if w.size else 0.0, 0.0), dtype)
    losses = (-(class_weight * logp.take(safe, class_dim))).where(kept, 0.0)
    return reduce(losses, reduction, class_weight)


def cross_entropy_parts(
    dtype: Dtype, input: F64, weight: F64 | None, label_smoothing: float
) -> tuple[Tracked, int, int, Tracked, float, F64]:
    """What the cross-entropy forward and backward replays share: the input, its class layout, its log-softmax,
    the effective smoothing (a negative or NaN value is none) and the class weights as a flat vector."""
    x = Tracked.exact(input, dtype)
    class_dim = class_axis(x.value.ndim)
    n_classes = x.value.shape[class_dim]
    eps = float(label_smoothing) if label_smoothing > 0 else 0.0
    class_weights = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)
    return x, class_dim, n_classes, log_softmax(x, class_dim), eps, class_weights
