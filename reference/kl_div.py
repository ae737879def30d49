"""The Kullback-Leibler divergence loss, with torch's semantics (nn.KLDivLoss, F.kl_div)."""

from __future__ import annotations

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


def _reduce(losses: Scaled, reduction: str, input_shape: tuple[int, ...]) -> F64:
    """The reduction, rounded to float64 once at the end (a sum past float64's range may still have a mean in it)."""
    if reduction == "none":
        return losses.value()
    total = losses.sum()
    if reduction == "sum":
        return total.value()
    count = losses.mantissa.size if reduction == "mean" else (input_shape[0] if input_shape else 1)
    return (total / Scaled.of(float(count))).value()
