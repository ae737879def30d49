"""Exact NLL and cross-entropy, values and input gradients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from .exact import (
    DIGITS,
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
# NLL and cross-entropy: one row of C class values per position.
# ---------------------------------------------------------------------------------------------


def _negative_log_softmax(row: Sequence[Number]) -> list[Number]:
    """-log softmax(row)_c = log1p(sum_{k != c} e^(row_k - row_c)) for every c: a log1p of a sum of positive
    terms, which nothing cancels (and which works on complex rows for the complex step)."""
    exps = [mpmath.exp(v) for v in row]
    return [
        mpmath.log1p(mpmath.fsum(e for k, e in enumerate(exps) if k != c) / exps[c]) if len(row) > 1 else 0 * row[c]
        for c in range(len(row))
    ]


@dataclass(frozen=True)
class _Categorical:
    """The input as rows of C values, one per position, with each position's loss as coefficients of per-class terms.

    A position's loss is sum_c coefficient[c] * term_c(row), where term_c is x_c (NLL) or -log softmax(x)_c
    (cross-entropy); ``coefficient_magnitude`` is S of each coefficient.
    """

    rows: np.ndarray  # (*positions, C) float64
    coefficients: np.ndarray  # (*positions, C) object
    coefficient_magnitudes: np.ndarray  # (*positions, C) object
    denominator: Denominator
    class_dim: int
    log_softmax: bool  # terms are -log softmax(row)_c (cross-entropy), else the raw row values (NLL)


def _positions_last(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of class values: (C,) stays (C,) with the class dimension 0; (N, C, d...) becomes (N, d..., C)."""
    if x.ndim == 1:
        return x, 0
    return np.moveaxis(x, 1, -1), 1


def _smoothing(label_smoothing: float) -> float:
    if label_smoothing > 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    return float(label_smoothing) if label_smoothing > 0.0 else 0.0  # negative or NaN: no smoothing


def _class_weights(weight: Any, n_classes: int) -> np.ndarray:
    return np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)


def _index_layout(
    input: Any, target: Any, weight: Any, ignore_index: int, label_smoothing: float, log_softmax: bool
) -> _Categorical:
    """Index targets: (1 - eps) w[y] on class y plus (eps / C) w_c on every class (eps = 0 for NLL)."""
    x = np.asarray(input, dtype=np.float64)
    rows, class_dim = _positions_last(x)
    n_classes = x.shape[class_dim]
    t = np.asarray(target).astype(np.int64)
    t = t.reshape(()) if x.ndim == 1 else t
    w = _class_weights(weight, n_classes)
    eps = _smoothing(label_smoothing)
    positions = rows.shape[:-1]
    coefficients = np.empty(rows.shape, dtype=object)
    coefficient_magnitudes = np.empty(rows.shape, dtype=object)
    total_weight, total_weight_terms = [], []
    for position in np.ndindex(positions):
        y = int(t[position])
        kept = y != ignore_index
        for c in range(n_classes):
            # An ignored position has no loss at all: every coefficient is 0.
            target_part = (1 - mp(eps)) * mp(w[y]) if kept and c == y else mpmath.mpf(0)
            smoothing_part = mp(eps) / n_classes * mp(w[c]) if kept else mpmath.mpf(0)
            sign = 1 if log_softmax else -1  # NLL's term is -x_y: coefficient -w[y] on the raw value
            coefficients[(*position, c)] = sign * (target_part + smoothing_part)
            coefficient_magnitudes[(*position, c)] = abs(target_part) + abs(smoothing_part)
        if kept:
            total_weight.append(mp(w[y]))
            total_weight_terms.append(abs(mp(w[y])))
    denominator = Denominator(mpmath.fsum(total_weight), mpmath.fsum(total_weight_terms), is_total_weight=True)
    return _Categorical(rows, coefficients, coefficient_magnitudes, denominator, class_dim, log_softmax)


def _probability_layout(input: Any, target: Any, weight: Any, label_smoothing: float) -> _Categorical:
    """Probability targets: w_c ((1 - eps) t_c + eps / C) on every class; 'mean' divides by the positions."""
    x = np.asarray(input, dtype=np.float64)
    rows, class_dim = _positions_last(x)
    t_rows, _ = _positions_last(np.asarray(target, dtype=np.float64))
    n_classes = x.shape[class_dim]
    w = _class_weights(weight, n_classes)
    eps = _smoothing(label_smoothing)
    coefficients = np.empty(rows.shape, dtype=object)
    coefficient_magnitudes = np.empty(rows.shape, dtype=object)
    for index in np.ndindex(rows.shape):
        c = index[-1]
        kept_mass, smoothed_mass = (1 - mp(eps)) * mp(t_rows[index]), mp(eps) / n_classes
        coefficients[index] = mp(w[c]) * (kept_mass + smoothed_mass)
        coefficient_magnitudes[index] = abs(mp(w[c])) * (abs(kept_mass) + abs(smoothed_mass))
    count = mpmath.mpf(int(np.prod(rows.shape[:-1])))
    return _Categorical(rows, coefficients, coefficient_magnitudes, Denominator(count, count, False), class_dim, True)


def _row_terms(layout: _Categorical, row: Sequence[Number]) -> list[Number]:
    return _negative_log_softmax(row) if layout.log_softmax else list(row)


def _position_loss(layout: _Categorical, coefficients: np.ndarray, row: Sequence[Number]) -> Number:
    """sum_c coefficient_c term_c(row); a zero coefficient is no term at all (not 0 times a term)."""
    terms = _row_terms(layout, row)
    return mpmath.fsum(c * term for c, term in zip(coefficients, terms, strict=True) if c != 0)


def _categorical(layout: _Categorical, reduction: str) -> Exact:
    positions = layout.rows.shape[:-1]
    values = np.empty(positions, dtype=object)
    magnitudes = np.empty(positions, dtype=object)
    for position in np.ndindex(positions):
        coefficients, coefficient_magnitudes = layout.coefficients[position], layout.coefficient_magnitudes[position]
        if all(c == 0 for c in coefficients):  # an ignored position: no loss at all
            values[position], magnitudes[position] = mpmath.mpf(0), mpmath.mpf(0)
            continue
        terms = _row_terms(layout, [mp(v) for v in layout.rows[position]])
        values[position] = mpmath.fsum(c * term for c, term in zip(coefficients, terms, strict=True) if c != 0)
        magnitudes[position] = mpmath.fsum(m * abs(term) for m, term in zip(coefficient_magnitudes, terms, strict=True))
    return reduce(values, magnitudes, reduction, layout.denominator)


def _slope(layout: _Categorical, coefficients: np.ndarray, row: list[mpmath.mpf], j: int) -> mpmath.mpf:
    """d(position loss)/d row_j, by the complex step."""

    def moved(at: Number) -> Number:
        return _position_loss(layout, coefficients, [at if i == j else v for i, v in enumerate(row)])

    return complex_step(moved, row[j])


def _categorical_grad(layout: _Categorical, reduction: str, grad_output: Any) -> Exact:
    positions = layout.rows.shape[:-1]
    k, k_magnitude = gradient_coefficients(grad_output, reduction, positions, layout.denominator)
    gradient = np.full(layout.rows.shape, mpmath.mpf(0), dtype=object)
    magnitudes = np.full(layout.rows.shape, mpmath.mpf(0), dtype=object)
    for position in np.ndindex(positions):
        coefficients, coefficient_magnitudes = layout.coefficients[position], layout.coefficient_magnitudes[position]
        if all(c == 0 for c in coefficients):  # an ignored position: its loss is the constant 0
            continue
        output = position if reduction == "none" else ()
        row = [mp(v) for v in layout.rows[position]]
        # Magnitudes of the slope's terms: for cross-entropy softmax_j a_c (every c) and a_j; for NLL, |w[y]| at y.
        if layout.log_softmax:
            softmax = [mpmath.exp(-v) for v in _negative_log_softmax(row)]
            total = mpmath.fsum(coefficient_magnitudes)
            term_magnitudes = [s * total + m for s, m in zip(softmax, coefficient_magnitudes, strict=True)]
        else:
            term_magnitudes = list(coefficient_magnitudes)
        for j in range(len(row)):
            gradient[(*position, j)] = k[output] * _slope(layout, coefficients, row, j)
            magnitudes[(*position, j)] = k_magnitude[output] * term_magnitudes[j]
    # Back from (N, d..., C) to the input's layout (N, C, d...).
    if layout.class_dim == 1:
        gradient, magnitudes = np.moveaxis(gradient, -1, 1), np.moveaxis(magnitudes, -1, 1)
    return Exact(gradient, to_float(magnitudes))


def nll_loss(input: Any, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean") -> Exact:
    """l_i = -w[y_i] x[i, y_i] (0 where y_i is ignored); 'mean' divides by the summed w[y_i] of kept positions."""
    check_reduction(reduction)
    with mpmath.workdps(DIGITS):
        return _categorical(_index_layout(input, target, weight, ignore_index, 0.0, log_softmax=False), reduction)


def nll_loss_grad(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    grad_output: Any = 1.0,
) -> Exact:
    """d/dx of sum(grad_output * nll_loss), by the complex step."""
    check_reduction(reduction)
    with mpmath.workdps(DIGITS):
        layout = _index_layout(input, target, weight, ignore_index, 0.0, log_softmax=False)
        return _categorical_grad(layout, reduction, grad_output)


def _cross_entropy_layout(
    input: Any, target: Any, weight: Any, ignore_index: int, label_smoothing: float
) -> _Categorical:
    """A target of the input's shape holds probabilities, any other holds class indices."""
    if np.shape(input) == np.shape(target):
        return _probability_layout(input, target, weight, label_smoothing)
    return _index_layout(input, target, weight, ignore_index, label_smoothing, log_softmax=True)


def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Exact:
    """Index targets: l_i = (1 - eps) w[y_i] (-log softmax_y) + (eps / C) sum_c w_c (-log softmax_c), 'mean' over the
    summed w[y_i] of kept positions. Probability targets: l_i = -sum_c w_c ((1 - eps) t_c + eps / C) log softmax_c,
    'mean' over the number of positions."""
    check_reduction(reduction)
    with mpmath.workdps(DIGITS):
        return _categorical(_cross_entropy_layout(input, target, weight, ignore_index, label_smoothing), reduction)


def cross_entropy_grad(
    input: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output: Any = 1.0,
) -> Exact:
    """d/dx of sum(grad_output * cross_entropy), by the complex step."""
    check_reduction(reduction)
    with mpmath.workdps(DIGITS):
        layout = _cross_entropy_layout(input, target, weight, ignore_index, label_smoothing)
        return _categorical_grad(layout, reduction, grad_output)
