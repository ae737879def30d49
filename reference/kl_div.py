"""The Kullback-Leibler divergence loss, with torch's semantics (nn.KLDivLoss, F.kl_div)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v
from ._scaled import Scaled

F64 = NDArray[np.float64]

KL_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def _xlogx(t: F64) -> F64:
    """t log t, with 0 log 0 = 0 (its limit); a negative t has no logarithm: NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, t * np.log(t))


def kl_div(input: ArrayLike, target: ArrayLike, reduction: str = "mean", log_target: bool = False) -> F64:
    """Pointwise KL divergence of ``target`` (p) from the distribution whose log is ``input`` (log q).

    l = p (log p - log q), and a zero target contributes 0 whatever log q is (the limit of
    p log(p / q) as p -> 0, and the convention of KL); a negative target has no log: NaN. With
    ``log_target`` the target holds log p: l = e^(log p) (log p - log q), 0 where log p = -inf.
    (torch gives NaN for those zero terms when a log is -inf: a named divergence in
    tests/test_kl_div.py.)

    input and target broadcast against each other (either may be the smaller). 'sum' adds l;
    'mean' divides that sum by the number of elements of l; 'batchmean' by the size of the input's
    first dimension (not the broadcast result's: measured on torch 2.13), or by 1 for a 0-d input.
    Integral inputs are rejected.
    """
    x_in, t_in, shape = _checked_kl_div(input, target, reduction)
    log_q = np.broadcast_to(x_in.astype(np.float64), shape)
    t = np.broadcast_to(t_in.astype(np.float64), shape)
    with np.errstate(invalid="ignore", over="ignore"):
        if log_target:
            # e^t is carried with an unbounded exponent: it overflows float64 beyond t = 709.78 where the loss need
            # not (0 where log q = t, and a mean may bring a large sum back into range).
            zero = Scaled.of(np.zeros(shape))
            losses = (Scaled.exp(t) * Scaled.of(t - log_q)).where(t != -np.inf, zero)
        else:
            losses = Scaled.of(np.where(t == 0, 0.0, _xlogx(t) - t * log_q))
    return _reduce(losses, reduction, x_in.shape)


def _checked_kl_div(
    input: ArrayLike, target: ArrayLike, reduction: str
) -> tuple[NDArray[Any], NDArray[Any], tuple[int, ...]]:
    """Every check of a KL call, in the order they are made, raised as torch raises it (the loss and its gradient
    both start here, so they reject alike): the input, the target and the shape they broadcast to."""
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    x_in, t_in = v.as_array(input), v.as_array(target)
    for name, array in (("input", x_in), ("target", t_in)):
        if not np.issubdtype(array.dtype, np.floating):
            raise RuntimeError(f"kl_div: Integral inputs not supported ({name} has dtype {array.dtype})")
    try:
        shape = np.broadcast_shapes(x_in.shape, t_in.shape)
    except ValueError:
        raise RuntimeError(
            f"input of shape {list(x_in.shape)} and target of shape {list(t_in.shape)} do not broadcast"
        ) from None
    return x_in, t_in, shape


def _reduce(losses: Scaled, reduction: str, input_shape: tuple[int, ...]) -> F64:
    """The reduction, rounded to float64 once at the end (a sum past float64's range may still have a mean in it)."""
    if reduction == "none":
        return losses.value()
    total = losses.sum()
    if reduction == "sum":
        return total.value()
    count = losses.mantissa.size if reduction == "mean" else (input_shape[0] if input_shape else 1)
    return (total / Scaled.of(float(count))).value()


def kl_div_grad(
    input: ArrayLike,
    target: ArrayLike,
    reduction: str = "mean",
    log_target: bool = False,
    grad_output: ArrayLike = 1.0,
) -> F64:
    """d/d(log q) of KL: -p (or -e^(log p) with log_target) per element, scaled by the reduction, and summed over
    the dimensions along which the input was broadcast."""
    # The loss's own checks (it is not computed: its derivative does not need its value).
    x_in, t_in, shape = _checked_kl_div(input, target, reduction)
    t = np.broadcast_to(t_in.astype(np.float64), shape)
    slope = Scaled.exp(t) if log_target else Scaled.of(t)
    go = Scaled.of(np.negative(grad_output, dtype=np.float64))
    if reduction == "batchmean":
        # batchmean divides by the first size, and an unbatched (0-d) input by nothing.
        per_element = slope * go / Scaled.of(float(x_in.shape[0]) if x_in.ndim else 1.0)
    elif reduction == "mean":
        per_element = slope * go / Scaled.of(float(int(np.prod(shape))))
    else:
        per_element = slope * go
    return _sum_to_shape(per_element, x_in.shape)


def _sum_to_shape(gradient: Scaled, shape: tuple[int, ...]) -> F64:
    """A gradient of the broadcast shape, summed back over the dimensions broadcasting added or stretched, then
    rounded to float64 once: terms past float64's range may still cancel or be divided back into it."""
    extra = gradient.mantissa.ndim - len(shape)
    summed = gradient.sum(axis=tuple(range(extra))) if extra else gradient
    stretched = tuple(i for i, size in enumerate(shape) if size == 1 and summed.mantissa.shape[i] != 1)
    return (summed.sum(axis=stretched, keepdims=True) if stretched else summed).value()
