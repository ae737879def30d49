"""Binary cross-entropy on probabilities and on logits."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._fast import in_leading_blocks
from ._reduction import reduce

F64 = NDArray[np.float64]

# torch clamps each log term of BCE at -100 so that p = 0 or p = 1 gives a finite loss.
LOG_CLAMP = -100.0


def binary_cross_entropy(
    input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None, reduction: str = "mean"
) -> F64:
    """Binary cross-entropy of probabilities ``input`` against ``target``.

    l = -w * [y * max(log p, -100) + (1 - y) * max(log1p(-p), -100)]

    ``weight`` broadcasts to the target's shape and may not enlarge it. 'mean' is
    sum(l) / numel: the weights are not in the denominator. Both ``input`` and ``target``
    must lie in [0, 1] (NaN included in the rejection), have the same shape and dtype.
    """
    p, y, w = _checked_binary_cross_entropy(input, target, weight, reduction)

    def kernel(p: F64, y: F64, w: F64, out: F64) -> None:
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), LOG_CLAMP)
            log_1mp = np.maximum(np.log1p(-p), LOG_CLAMP)
        out[...] = -w * (y * log_p + (1.0 - y) * log_1mp)

    return reduce(in_leading_blocks(kernel, y.shape, p, y, w), reduction)


def _checked_binary_cross_entropy(
    input: ArrayLike, target: ArrayLike, weight: ArrayLike | None, reduction: str
) -> tuple[F64, F64, F64]:
    """Every check of a BCE call, in the order torch makes them, raised as torch raises it (the loss and its
    gradient both start here, so they reject alike): p, y and w in float64."""
    v.check_reduction(reduction)
    p_in, y_in = v.as_array(input), v.as_array(target)
    if y_in.shape != p_in.shape:
        raise ValueError(
            f"Using a target size ({y_in.shape}) that is different to the input size ({p_in.shape}) "
            "is deprecated. Please ensure they have the same size."
        )
    v.check_floating("input", p_in, "binary_cross_entropy")
    v.check_same_dtype("target", y_in, p_in)
    w = np.asarray(1.0 if weight is None else weight, dtype=np.float64)
    v.check_broadcasts_without_enlarging("weight", w.shape, y_in.shape)
    p, y = p_in.astype(np.float64), y_in.astype(np.float64)
    v.check_in_unit_interval("input", p)
    v.check_in_unit_interval("target", y)
    return p, y, w


def _times_unless_zero(coefficient: F64, value: F64) -> F64:
    """coefficient * value, with 0 * inf taken as 0: a term with a zero coefficient is absent."""
    with np.errstate(invalid="ignore"):
        return np.where(coefficient == 0, 0.0, coefficient * value)


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: ArrayLike | None = None,
) -> F64:
    """Binary cross-entropy of logits ``input`` against ``target``.

    l = w * [pw * y * softplus(-x) + (1 - y) * softplus(x)]

    which is torch's documented ``w * [(1 - y) x - ((pw - 1) y + 1) log sigmoid(x)]``
    rearranged so that no two large terms cancel. ``weight`` and ``pos_weight`` broadcast
    right-aligned (a pos_weight of shape (C,) meets the last dimension) and may not enlarge
    the output. The target is not range-checked. 'mean' is sum(l) / numel. At infinite
    logits this gives the mathematical limit (0 or inf), where torch gives NaN.
    """
    x, y, w, pw = _checked_binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight)

    def kernel(x: F64, y: F64, w: F64, pw: F64, out: F64) -> None:
        # softplus(x) and softplus(-x) share log1p(e^-|x|) (see activations.softplus).
        shared = np.log1p(np.exp(-np.abs(x)))
        with np.errstate(invalid="ignore"):
            softplus_of_minus_x, softplus_of_x = np.maximum(-x, 0.0) + shared, np.maximum(x, 0.0) + shared
        # The target multiplies last: a tiny y then rounds once, instead of rounding to a subnormal
        # that a large softplus would magnify.
        positive_term = _times_unless_zero(y, _times_unless_zero(pw, softplus_of_minus_x))
        negative_term = _times_unless_zero(1.0 - y, softplus_of_x)
        out[...] = _times_unless_zero(w, positive_term + negative_term)

    return reduce(in_leading_blocks(kernel, y.shape, x, y, w, pw), reduction)


def _checked_binary_cross_entropy_with_logits(
    input: ArrayLike, target: ArrayLike, weight: ArrayLike | None, reduction: str, pos_weight: ArrayLike | None
) -> tuple[F64, F64, F64, F64]:
    """Every check of a BCEWithLogits call, in the order torch makes them, raised as torch raises it (the loss and
    its gradient both start here, so they reject alike): x, y, w and pw in float64."""
    v.check_reduction(reduction)
    x_in, y_in = v.as_array(input), v.as_array(target)
    if y_in.shape != x_in.shape:
        raise ValueError(f"Target size ({y_in.shape}) must be the same as input size ({x_in.shape})")
    v.check_floating("input", x_in, "binary_cross_entropy_with_logits")
    w = np.asarray(1.0 if weight is None else weight, dtype=np.float64)
    pw = np.asarray(1.0 if pos_weight is None else pos_weight, dtype=np.float64)
    v.check_broadcasts_without_enlarging("pos_weight", pw.shape, y_in.shape)
    v.check_broadcasts_without_enlarging("weight", w.shape, y_in.shape)
    return x_in.astype(np.float64), y_in.astype(np.float64), w, pw
