"""Exact BCE and BCEWithLogits, values and input gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np

from .exact import (
    DIGITS,
    LOG_CLAMP,
    Denominator,
    Exact,
    Number,
    check_reduction,
    complex_step,
    gradient_coefficients,
    mp,
    reduce,
    to_float,
)

# ---------------------------------------------------------------------------------------------
# Binary cross-entropy, on probabilities and on logits: element-wise terms.
# ---------------------------------------------------------------------------------------------

# An element's loss is sum_t coefficient_t * term_t(input), with coefficients free of the input.
_Term = tuple[mpmath.mpf, mpmath.mpf, Callable[[Number], Number]]  # (coefficient, its magnitude, term)


def _clamped_log(v: Number) -> Number:
    """max(log v, -100), where log 0 = -inf; the clamp is decided on the real part (a complex step
    perturbs only the imaginary one)."""
    if v == 0:
        return mpmath.mpf(LOG_CLAMP)
    logarithm = mpmath.log(v)
    return logarithm if mpmath.re(logarithm) > LOG_CLAMP else mpmath.mpf(LOG_CLAMP)


def _clamped_log_complement(v: Number) -> Number:
    """max(log(1 - v), -100), with log(1 - v) as log1p(-v) so that a tiny v keeps its digits."""
    if v == 1:
        return mpmath.mpf(LOG_CLAMP)
    logarithm = mpmath.log1p(-v)
    return logarithm if mpmath.re(logarithm) > LOG_CLAMP else mpmath.mpf(LOG_CLAMP)


def _softplus(v: Number) -> Number:
    """log(1 + e^v) = -log sigmoid(-v), exact for any v."""
    return mpmath.log1p(mpmath.exp(v))


def _negated_softplus(v: Number) -> Number:
    return _softplus(-v)


def _bce_terms(y: mpmath.mpf, w: mpmath.mpf, pw: mpmath.mpf) -> list[_Term]:
    del pw  # BCE on probabilities has no pos_weight
    complement = 1 - y
    return [(-w * y, abs(w * y), _clamped_log), (-w * complement, abs(w * complement), _clamped_log_complement)]


def _bce_with_logits_terms(y: mpmath.mpf, w: mpmath.mpf, pw: mpmath.mpf) -> list[_Term]:
    complement = 1 - y
    return [(w * pw * y, abs(w * pw * y), _negated_softplus), (w * complement, abs(w * complement), _softplus)]


def _binary_arguments(
    input: Any, target: Any, weight: Any, pos_weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(input, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"input {x.shape} and target {y.shape} differ in shape")
    # weight and pos_weight broadcast right-aligned (NumPy's rule) and may not enlarge the target's shape.
    w = np.broadcast_to(np.asarray(1.0 if weight is None else weight, dtype=np.float64), y.shape)
    pw = np.broadcast_to(np.asarray(1.0 if pos_weight is None else pos_weight, dtype=np.float64), y.shape)
    return x, y, w, pw


def _binary(
    terms_of: Callable[[mpmath.mpf, mpmath.mpf, mpmath.mpf], list[_Term]],
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    reduction: str,
) -> Exact:
    check_reduction(reduction)
    x, y, w, pw = _binary_arguments(input, target, weight, pos_weight)
    with mpmath.workdps(DIGITS):
        values = np.empty(y.shape, dtype=object)
        magnitudes = np.empty(y.shape, dtype=object)
        for index in np.ndindex(y.shape):
            xi = mp(x[index])
            terms = terms_of(mp(y[index]), mp(w[index]), mp(pw[index]))
            evaluated = [(c, c_magnitude, term(xi)) for c, c_magnitude, term in terms]
            values[index] = mpmath.fsum(c * t for c, _, t in evaluated if c != 0)  # a zero coefficient: no term
            magnitudes[index] = mpmath.fsum(c_magnitude * abs(t) for c, c_magnitude, t in evaluated if c != 0)
        count = mpmath.mpf(y.size)
        return reduce(values, magnitudes, reduction, Denominator(count, count, is_total_weight=False))


def _binary_grad(
    terms_of: Callable[[mpmath.mpf, mpmath.mpf, mpmath.mpf], list[_Term]],
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    reduction: str,
    grad_output: Any,
) -> Exact:
    check_reduction(reduction)
    x, y, w, pw = _binary_arguments(input, target, weight, pos_weight)
    with mpmath.workdps(DIGITS):
        count = mpmath.mpf(y.size)
        k, k_magnitude = gradient_coefficients(
            grad_output, reduction, y.shape, Denominator(count, count, is_total_weight=False)
        )
        gradient = np.empty(y.shape, dtype=object)
        magnitudes = np.empty(y.shape, dtype=object)
        for index in np.ndindex(y.shape):
            xi = mp(x[index])
            position = index if reduction == "none" else ()
            slopes = [
                (c, c_magnitude, complex_step(term, xi))
                for c, c_magnitude, term in terms_of(mp(y[index]), mp(w[index]), mp(pw[index]))
                if c != 0
            ]
            gradient[index] = k[position] * mpmath.fsum(c * slope for c, _, slope in slopes)
            magnitudes[index] = k_magnitude[position] * mpmath.fsum(m * abs(slope) for _, m, slope in slopes)
        return Exact(gradient, to_float(magnitudes))


def binary_cross_entropy(input: Any, target: Any, weight: Any = None, reduction: str = "mean") -> Exact:
    """l = -w [y max(log p, -100) + (1 - y) max(log(1 - p), -100)]; 'mean' divides the sum by the element count."""
    return _binary(_bce_terms, input, target, weight, None, reduction)


def binary_cross_entropy_grad(
    input: Any, target: Any, weight: Any = None, reduction: str = "mean", grad_output: Any = 1.0
) -> Exact:
    """d/dp of sum(grad_output * binary_cross_entropy), by the complex step."""
    return _binary_grad(_bce_terms, input, target, weight, None, reduction, grad_output)


def binary_cross_entropy_with_logits(
    input: Any, target: Any, weight: Any = None, reduction: str = "mean", pos_weight: Any = None
) -> Exact:
    """l = -w [pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] = w [pw y softplus(-x) + (1 - y) softplus(x)]."""
    return _binary(_bce_with_logits_terms, input, target, weight, pos_weight, reduction)


def binary_cross_entropy_with_logits_grad(
    input: Any,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
    grad_output: Any = 1.0,
) -> Exact:
    """d/dx of sum(grad_output * binary_cross_entropy_with_logits), by the complex step."""
    return _binary_grad(_bce_with_logits_terms, input, target, weight, pos_weight, reduction, grad_output)
