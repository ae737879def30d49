"""The forward replays' shared pieces: class layouts, log-softmax in both of torch's orders, the reductions, and
NLL over index targets. Each loss's replay, built from these in torch's order, is in its own module under
``verification/losses/``; the bound on torch's error per output element is its ``.error``. Like every replay they take
a batch of cases, along each array's last axis (``tracked.py``)."""

from __future__ import annotations

import numpy as np

from ..dtypes import Dtype
from .summation import NLL_CASCADE, SOFTMAX_LAST_DIM, SOFTMAX_OTHER_DIM, TENSOR_MEAN, TENSOR_SUM, Summation
from .tracked import F64, Tracked, case_ndim

# The pieces several losses' replays share (each loss's own replay is in its module under verification/losses/).


def class_axis(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def class_shape(ndim: int, n_classes: int) -> tuple[int, ...]:
    """The shape that lays one value per class along the class dimension of a case of rank ``ndim``, for every case
    of a batch (a last axis of 1 that broadcasts over them)."""
    shape = [1] * (ndim + 1)
    shape[class_axis(ndim)] = n_classes
    return tuple(shape)


def along_classes(class_weights: F64, ndim: int) -> F64:
    """Per-case class weights (C, K) laid along the class dimension of cases of rank ``ndim``."""
    n_classes, cases = class_weights.shape
    return class_weights.reshape((*class_shape(ndim, n_classes)[:-1], cases))


def softmax_summation(x: Tracked, dim: int) -> Summation:
    """How torch's (log-)softmax kernels add along ``dim``: vectorised along a last dimension, else per position."""
    return SOFTMAX_LAST_DIM if dim == x.ndim - 1 else SOFTMAX_OTHER_DIM


def log_softmax(x: Tracked, dim: int) -> Tracked:
    """Two orders appear in torch's kernels: (x - m) - log s and x - (m + log s); bound both."""
    m = np.max(x.value, axis=dim, keepdims=True)
    shifted = x - m
    log_s = shifted.exp().sum(axis=dim, order=softmax_summation(x, dim)).log()
    log_s = log_s.expand_dims(dim)
    return Tracked.larger(shifted - log_s, x - (log_s + m))


def reduce(losses: Tracked, reduction: str, denominator: Tracked | None, order: Summation = TENSOR_SUM) -> Tracked:
    """'sum' or 'mean' (over the element count, or over ``denominator``'s sum), each sum added as ``order`` says:
    ``Tensor.sum`` and ``Tensor.mean`` unless the loss's kernel has its own."""
    if reduction == "none":
        return losses
    if reduction == "mean" and denominator is None and order is TENSOR_SUM:
        return tensor_mean(losses)
    total = losses.sum(order=order)
    if reduction == "sum":
        return total
    if denominator is None:
        return total / float(losses.size)
    return total / denominator.sum(order=order)


def tensor_mean(losses: Tracked) -> Tracked:
    """``Tensor.mean``: float16 and bfloat16 summed and divided in float32, then rounded once to the dtype (the
    double rounding every float16 operation's u allows for); float32 and float64 sum and divide in their own
    precision."""
    return losses.sum(order=TENSOR_MEAN) / float(losses.size)


def index_target_parts(case_input: F64, target: F64, weight: F64 | None, ignore_index: int):
    """The class dimension, the number of classes, which targets are kept (not ignore_index), each target as a
    class that can be indexed (0 where ignored) and each target's class weight (0 where ignored)."""
    class_dim = class_axis(case_ndim(case_input))
    n_classes = case_input.shape[class_dim]
    cases = case_input.shape[-1]
    t = np.asarray(target, dtype=np.int64)
    if case_ndim(case_input) == 1:
        t = t.reshape(cases)  # an unbatched input's target, () or (1,), for each case
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    w = (
        np.ones((n_classes, 1))
        if weight is None
        else np.asarray(weight, dtype=np.float64).reshape(n_classes, np.shape(weight)[-1])
    )
    at_target = np.where(kept, w[safe, np.arange(w.shape[-1])] if w.size else 0.0, 0.0)
    return class_dim, n_classes, kept, safe, at_target


def nll_reduced(
    logp: Tracked, target: F64, weight: F64 | None, ignore_index: int, reduction: str, dtype: Dtype
) -> Tracked:
    class_dim, _, kept, safe, at_target = index_target_parts(logp.value, target, weight, ignore_index)
    class_weight = Tracked.exact(at_target, dtype)
    losses = (-(class_weight * logp.take(safe, class_dim))).where(kept, 0.0)
    return reduce(losses, reduction, class_weight, NLL_CASCADE)


def cross_entropy_parts(
    dtype: Dtype, input: F64, weight: F64 | None, label_smoothing: float
) -> tuple[Tracked, int, int, Tracked, float, F64]:
    """What the cross-entropy forward and backward replays share: the input, its class layout, its log-softmax,
    the effective smoothing (a negative or NaN value is none) and the class weights (C, K), one column per case."""
    x = Tracked.exact(input, dtype)
    class_dim = class_axis(x.ndim)
    n_classes = x.value.shape[class_dim]
    eps = float(label_smoothing) if label_smoothing > 0 else 0.0
    class_weights = (
        np.ones((n_classes, 1))
        if weight is None
        else np.asarray(weight, dtype=np.float64).reshape(n_classes, np.shape(weight)[-1])
    )
    return x, class_dim, n_classes, log_softmax(x, class_dim), eps, class_weights
