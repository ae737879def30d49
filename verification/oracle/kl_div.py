"""Exact KLDivLoss, values and input gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np

from .exact import DIGITS, Denominator, Exact, Number, complex_step, gradient_coefficients, mp, reduce, to_float

# ---------------------------------------------------------------------------------------------
# The Kullback-Leibler divergence loss: element-wise over input and target broadcast together.
# ---------------------------------------------------------------------------------------------

KL_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def _kl_arguments(input: Any, target: Any, reduction: str) -> tuple[np.ndarray, np.ndarray, Denominator]:
    """log q and the target broadcast to one shape (NumPy's rule), and the denominator of 'mean' (the element
    count) or 'batchmean' (the input's first size; 1 for a 0-d input)."""
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    x, t = np.asarray(input, dtype=np.float64), np.asarray(target, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, t.shape)
    if reduction == "batchmean":
        count = mpmath.mpf(x.shape[0] if x.ndim else 1)
    else:
        count = mpmath.mpf(int(np.prod(shape)))
    return np.broadcast_to(x, shape), np.broadcast_to(t, shape), Denominator(count, count, is_total_weight=False)


def _kl_element(t: mpmath.mpf, log_target: bool) -> tuple[Callable[[Number], Number], mpmath.mpf, mpmath.mpf]:
    """The element's loss as a function of log q, p (e^t for ``log_target``, else t) and log p. The loss is
    p (log p - log q); a zero p (t = 0, or t = -inf for log targets) gives 0 whatever log q is (KL's convention
    0 log 0 = 0); a negative probability has no log: NaN."""
    p = mpmath.exp(t) if log_target else t
    if p == 0:
        return (lambda _: mpmath.mpf(0)), p, mpmath.mpf(0)
    if p < 0:
        return (lambda _: mpmath.nan), p, mpmath.nan
    log_p = t if log_target else mpmath.log(t)
    return (lambda log_q: p * (log_p - log_q)), p, log_p


def kl_div(input: Any, target: Any, reduction: str = "mean", log_target: bool = False) -> Exact:
    """l = p (log p - log q) element-wise (0 where p = 0; NaN where p < 0), made of the terms p log p and p log q;
    'mean' divides the sum by the element count, 'batchmean' by the input's first size."""
    with mpmath.workdps(DIGITS):
        x, t, denominator = _kl_arguments(input, target, reduction)
        values = np.empty(x.shape, dtype=object)
        magnitudes = np.empty(x.shape, dtype=object)
        for index in np.ndindex(x.shape):
            log_q = mp(x[index])
            loss, p, log_p = _kl_element(mp(t[index]), log_target)
            values[index] = loss(log_q)
            magnitudes[index] = abs(p * log_p) + abs(p * log_q) if p != 0 else mpmath.mpf(0)
        return reduce(values, magnitudes, "mean" if reduction == "batchmean" else reduction, denominator)


def kl_div_grad(
    input: Any, target: Any, reduction: str = "mean", log_target: bool = False, grad_output: Any = 1.0
) -> Exact:
    """d/d(log q) of sum(grad_output * kl_div), by the complex step, summed over the dimensions along which the
    input was broadcast (each input element's derivative collects every loss element it entered)."""
    with mpmath.workdps(DIGITS):
        x, t, denominator = _kl_arguments(input, target, reduction)
        input_shape = np.shape(input)
        k, k_magnitude = gradient_coefficients(
            grad_output, "mean" if reduction == "batchmean" else reduction, x.shape, denominator
        )
        gradient = np.full(input_shape, mpmath.mpf(0), dtype=object)
        magnitudes = np.full(input_shape, mpmath.mpf(0), dtype=object)
        offset = x.ndim - len(input_shape)
        for index in np.ndindex(x.shape):
            loss, _, _ = _kl_element(mp(t[index]), log_target)
            slope = complex_step(loss, mp(x[index]))
            output = index if reduction == "none" else ()
            at = tuple(0 if size == 1 else index[offset + d] for d, size in enumerate(input_shape))
            gradient[at] = gradient[at] + k[output] * slope
            magnitudes[at] = magnitudes[at] + k_magnitude[output] * abs(slope)
        return Exact(gradient, to_float(magnitudes))
