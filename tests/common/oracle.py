"""Exact values of five losses and of their input gradients, in arbitrary precision (mpmath): BCE,
BCEWithLogits, NLL, cross-entropy and the KL divergence.

torch is checked against reference/; this module is what reference/ is checked against
(tests/test_reference_oracle.py). It is written from the mathematics and torch's documented
semantics, not from reference/'s code, and imports neither reference/ nor torch.

How the values are exact
------------------------
Every input is a float64, so it is exactly an mpmath number. Every operation is carried out with
``DIGITS`` significant digits in formulas that never subtract two nearly equal quantities:

* -log sigmoid(x) = log1p(e^-x) and -log(1 - sigmoid(x)) = log1p(e^x), for any x (mpmath's
  exponent range is unbounded, so e^10000 is an ordinary number here);
* -log softmax(x)_c = log1p(sum_{k != c} e^(x_k - x_c)), a log1p of a sum of positive terms;
* log(1 - p) = log1p(-p).

Each value is therefore correct to about 10^-55 relative to S, the sum of the magnitudes of the
terms it is made of, 40 digits below anything a float64 comparison can see. Rounded to float64
(``Exact.value``) it is the correctly rounded loss; the error of a float64 result is measured
against the unrounded value (``Exact.error_of``).

How the gradients are exact
---------------------------
A gradient is the numerical derivative of the exact forward, d/dx_j sum(grad_output * loss),
never the analytic formulas of reference/gradients.py. It is taken by the complex step,
f'(x) = Im f(x + ih) / h (Squire and Trapp, SIAM Review 40, 1998): there is no subtraction, so
a derivative of e^-10000 beside a loss of 10^4 (a softmax tail) comes out to full relative
precision, where a central difference (f(x + h) - f(x - h)) / 2h would need thousands of digits.
Its only error is the truncation h^2 f''' / 6, relative 10^-37 or less for these losses with
h = 2^-100 (the largest f'''/f' met is 2/p^2 <= 10^24, at BCE's interior margin p = 2e-12).
The loss is the sum of per-position losses, each depending only on its own position's inputs,
so the derivative with respect to x_j is that of the one position loss containing x_j, times
the reduction's coefficient (grad_output, divided by the mean's denominator).

Magnitudes
----------
Next to each exact value comes its magnitude S (the scale of the bound model in
tests/test_reference_oracle.py): the sum of the absolute values of the terms the value is made
of. A term's coefficient counts with the magnitudes of its own parts (|1 - eps| |t| + eps / C
for a smoothed target), and a 'mean' N / D counts as S(N) S(D) / D^2 (a denominator whose terms
cancel magnifies the relative error of the quotient by S(D) / |D|). Where nothing cancels
(probabilities and targets in [0, 1], non-negative weights) S equals |value|.

Per loss (w the weight, pw the pos_weight, y the target, eps the label smoothing):

* BCE: terms -w y max(log p, -100) and -w (1 - y) max(log(1 - p), -100); gradient terms
  w y / p and w (1 - y) / (1 - p) (a clamped log contributes neither value nor slope).
* BCEWithLogits: terms w pw y softplus(-x) and w (1 - y) softplus(x); gradient terms
  w pw y sigmoid(-x) and w (1 - y) sigmoid(x).
* NLL: the one term -w[y] x[y].
* Cross-entropy: the terms a_c (-log softmax(x)_c), each -log softmax_c >= 0, with a_c =
  (1 - eps) w[y] [c = y] + (eps / C) w_c for index targets and w_c ((1 - eps) t_c + eps / C) for
  probabilities; gradient with respect to x_k, sum_c a_c (softmax_k - [k = c]), made of the terms
  softmax_k a_c (for every c) and a_k.
* KL divergence: l = p (log p - log q) with p = t (or e^t for log targets), the terms p log p and
  p log q (0 where p = 0, NaN where p < 0); gradient term p, summed over the positions an input
  element was broadcast to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

# 60 digits: 44 more than float64 shows, so the oracle's own rounding (about 10^-58 per
# operation, over a few hundred operations) stays 10^-40 below the float64 unit roundoff.
DIGITS = 60

# The complex step's h. Its truncation error is h^2 f'''/(6 f') relative: 10^-60 * 10^24 at most
# here. Cancellation cannot occur, so h can be far smaller than a central difference's.
STEP_EXPONENT = -100

# torch clamps each log term of binary cross-entropy at -100 (documented).
LOG_CLAMP = -100

REDUCTIONS = ("none", "mean", "sum")

Number = Any  # an mpmath mpf, or an mpc while a complex step is taken


@dataclass(frozen=True)
class Exact:
    """Exact values of a loss (or of a gradient), with the magnitude S of each.

    ``exact`` holds mpmath numbers (mpf('nan') where the loss is undefined: a 'mean' over a total
    weight of 0). ``magnitude`` is S in float64: inf where no finite bound can exist, which is a
    'mean' whose total weight is exactly 0 while its terms are not (the sign and size of the
    rounded total are then anyone's guess). ``denominator`` and ``denominator_magnitude`` are
    D and S(D) of a 'mean' over summed class weights (1 and 1 otherwise): the bound model needs
    how far rounding can move D.
    """

    exact: np.ndarray
    magnitude: np.ndarray
    denominator: float = 1.0
    denominator_magnitude: float = 1.0

    @property
    def value(self) -> np.ndarray:
        """The exact values, correctly rounded to float64."""
        return _to_float(self.exact)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.exact.shape)

    def error_of(self, computed: np.ndarray) -> np.ndarray:
        """|computed - exact| element-wise, evaluated exactly and rounded to float64 (NaN where either is not
        finite: those positions are compared for equality, not measured)."""
        computed = np.broadcast_to(np.asarray(computed, dtype=np.float64), self.shape)
        out = np.full(self.shape, np.nan)
        with mpmath.workdps(DIGITS):
            for index in np.ndindex(self.shape):
                want, got = self.exact[index], float(computed[index])
                if mpmath.isfinite(want) and np.isfinite(got):
                    out[index] = float(abs(mpmath.mpf(got) - want))
        return out


def _to_float(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape, dtype=np.float64)
    for index in np.ndindex(values.shape):
        out[index] = float(values[index])
    return out


def _mp(value: Any) -> mpmath.mpf:
    """A float64 as the mpmath number it exactly is."""
    return mpmath.mpf(float(value))


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _complex_step(function: Callable[[Number], Number], at: mpmath.mpf) -> mpmath.mpf:
    """d function / d at by the complex step: Im f(at + ih) / h, with no cancellation."""
    h = mpmath.ldexp(1, STEP_EXPONENT)
    return mpmath.im(function(mpmath.mpc(at, h))) / h


# ---------------------------------------------------------------------------------------------
# Reductions: per-position values and magnitudes into the loss's result.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Denominator:
    """The 'mean' denominator D with S(D): the element count, or the summed class weights of kept targets."""

    value: mpmath.mpf
    magnitude: mpmath.mpf
    is_total_weight: bool


def _reduce(values: np.ndarray, magnitudes: np.ndarray, reduction: str, denominator: _Denominator) -> Exact:
    """'none' keeps the per-position values; 'sum' adds them; 'mean' divides the sum by D (NaN for D = 0)."""
    if reduction == "none":
        return Exact(values, _to_float(magnitudes))
    total = mpmath.fsum(values.flat)
    total_magnitude = mpmath.fsum(magnitudes.flat)
    if reduction == "sum":
        return Exact(np.array(total, dtype=object), np.array(float(total_magnitude)))
    d, d_magnitude = denominator.value, denominator.magnitude
    extra = (
        {"denominator": float(d), "denominator_magnitude": float(d_magnitude)} if denominator.is_total_weight else {}
    )
    if d == 0:
        # A mean over no elements or a zero total weight is undefined (0/0 in torch). If D's terms are not all 0,
        # D is exactly 0 only by cancellation, and a rounded D need not be: no bound can hold there.
        unbounded = d_magnitude != 0
        return Exact(np.array(mpmath.nan, dtype=object), np.array(np.inf if unbounded else 0.0), **extra)
    magnitude = total_magnitude * d_magnitude / d**2
    return Exact(np.array(total / d, dtype=object), np.array(float(magnitude)), **extra)


def _gradient_coefficients(
    grad_output: Any, reduction: str, shape: tuple[int, ...], denominator: _Denominator
) -> tuple[np.ndarray, np.ndarray]:
    """The chain rule through the reduction: the factor k_i that multiplies d(loss_i)/dx at each output position,
    and the factor that multiplies its magnitude, |k_i| (times S(D) / |D| for a weighted mean)."""
    output_shape = shape if reduction == "none" else ()
    g = np.broadcast_to(np.asarray(grad_output, dtype=np.float64), output_shape)
    coefficient = np.empty(output_shape, dtype=object)
    magnitude = np.empty(output_shape, dtype=object)
    for index in np.ndindex(output_shape):
        k = _mp(g[index])
        conditioning = mpmath.mpf(1)
        if reduction == "mean":
            d = denominator.value
            k = k / d if d != 0 else mpmath.nan
            conditioning = denominator.magnitude / abs(d) if d != 0 else mpmath.inf
        coefficient[index] = k
        magnitude[index] = abs(k) * conditioning if mpmath.isfinite(k) else mpmath.inf
    return coefficient, magnitude


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
    _check_reduction(reduction)
    x, y, w, pw = _binary_arguments(input, target, weight, pos_weight)
    with mpmath.workdps(DIGITS):
        values = np.empty(y.shape, dtype=object)
        magnitudes = np.empty(y.shape, dtype=object)
        for index in np.ndindex(y.shape):
            xi = _mp(x[index])
            terms = terms_of(_mp(y[index]), _mp(w[index]), _mp(pw[index]))
            evaluated = [(c, c_magnitude, term(xi)) for c, c_magnitude, term in terms]
            values[index] = mpmath.fsum(c * t for c, _, t in evaluated if c != 0)  # a zero coefficient: no term
            magnitudes[index] = mpmath.fsum(c_magnitude * abs(t) for c, c_magnitude, t in evaluated if c != 0)
        count = mpmath.mpf(y.size)
        return _reduce(values, magnitudes, reduction, _Denominator(count, count, is_total_weight=False))


def _binary_grad(
    terms_of: Callable[[mpmath.mpf, mpmath.mpf, mpmath.mpf], list[_Term]],
    input: Any,
    target: Any,
    weight: Any,
    pos_weight: Any,
    reduction: str,
    grad_output: Any,
) -> Exact:
    _check_reduction(reduction)
    x, y, w, pw = _binary_arguments(input, target, weight, pos_weight)
    with mpmath.workdps(DIGITS):
        count = mpmath.mpf(y.size)
        k, k_magnitude = _gradient_coefficients(
            grad_output, reduction, y.shape, _Denominator(count, count, is_total_weight=False)
        )
        gradient = np.empty(y.shape, dtype=object)
        magnitudes = np.empty(y.shape, dtype=object)
        for index in np.ndindex(y.shape):
            xi = _mp(x[index])
            position = index if reduction == "none" else ()
            slopes = [
                (c, c_magnitude, _complex_step(term, xi))
                for c, c_magnitude, term in terms_of(_mp(y[index]), _mp(w[index]), _mp(pw[index]))
                if c != 0
            ]
            gradient[index] = k[position] * mpmath.fsum(c * slope for c, _, slope in slopes)
            magnitudes[index] = k_magnitude[position] * mpmath.fsum(m * abs(slope) for _, m, slope in slopes)
        return Exact(gradient, _to_float(magnitudes))


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
    denominator: _Denominator
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
            target_part = (1 - _mp(eps)) * _mp(w[y]) if kept and c == y else mpmath.mpf(0)
            smoothing_part = _mp(eps) / n_classes * _mp(w[c]) if kept else mpmath.mpf(0)
            sign = 1 if log_softmax else -1  # NLL's term is -x_y: coefficient -w[y] on the raw value
            coefficients[(*position, c)] = sign * (target_part + smoothing_part)
            coefficient_magnitudes[(*position, c)] = abs(target_part) + abs(smoothing_part)
        if kept:
            total_weight.append(_mp(w[y]))
            total_weight_terms.append(abs(_mp(w[y])))
    denominator = _Denominator(mpmath.fsum(total_weight), mpmath.fsum(total_weight_terms), is_total_weight=True)
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
        kept_mass, smoothed_mass = (1 - _mp(eps)) * _mp(t_rows[index]), _mp(eps) / n_classes
        coefficients[index] = _mp(w[c]) * (kept_mass + smoothed_mass)
        coefficient_magnitudes[index] = abs(_mp(w[c])) * (abs(kept_mass) + abs(smoothed_mass))
    count = mpmath.mpf(int(np.prod(rows.shape[:-1])))
    return _Categorical(rows, coefficients, coefficient_magnitudes, _Denominator(count, count, False), class_dim, True)


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
        terms = _row_terms(layout, [_mp(v) for v in layout.rows[position]])
        values[position] = mpmath.fsum(c * term for c, term in zip(coefficients, terms, strict=True) if c != 0)
        magnitudes[position] = mpmath.fsum(m * abs(term) for m, term in zip(coefficient_magnitudes, terms, strict=True))
    return _reduce(values, magnitudes, reduction, layout.denominator)


def _slope(layout: _Categorical, coefficients: np.ndarray, row: list[mpmath.mpf], j: int) -> mpmath.mpf:
    """d(position loss)/d row_j, by the complex step."""

    def moved(at: Number) -> Number:
        return _position_loss(layout, coefficients, [at if i == j else v for i, v in enumerate(row)])

    return _complex_step(moved, row[j])


def _categorical_grad(layout: _Categorical, reduction: str, grad_output: Any) -> Exact:
    positions = layout.rows.shape[:-1]
    k, k_magnitude = _gradient_coefficients(grad_output, reduction, positions, layout.denominator)
    gradient = np.full(layout.rows.shape, mpmath.mpf(0), dtype=object)
    magnitudes = np.full(layout.rows.shape, mpmath.mpf(0), dtype=object)
    for position in np.ndindex(positions):
        coefficients, coefficient_magnitudes = layout.coefficients[position], layout.coefficient_magnitudes[position]
        if all(c == 0 for c in coefficients):  # an ignored position: its loss is the constant 0
            continue
        output = position if reduction == "none" else ()
        row = [_mp(v) for v in layout.rows[position]]
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
    return Exact(gradient, _to_float(magnitudes))


def nll_loss(input: Any, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean") -> Exact:
    """l_i = -w[y_i] x[i, y_i] (0 where y_i is ignored); 'mean' divides by the summed w[y_i] of kept positions."""
    _check_reduction(reduction)
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
    _check_reduction(reduction)
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
    _check_reduction(reduction)
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
    _check_reduction(reduction)
    with mpmath.workdps(DIGITS):
        layout = _cross_entropy_layout(input, target, weight, ignore_index, label_smoothing)
        return _categorical_grad(layout, reduction, grad_output)


# ---------------------------------------------------------------------------------------------
# The Kullback-Leibler divergence loss: element-wise over input and target broadcast together.
# ---------------------------------------------------------------------------------------------

KL_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def _kl_arguments(input: Any, target: Any, reduction: str) -> tuple[np.ndarray, np.ndarray, _Denominator]:
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
    return np.broadcast_to(x, shape), np.broadcast_to(t, shape), _Denominator(count, count, is_total_weight=False)


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
            log_q = _mp(x[index])
            loss, p, log_p = _kl_element(_mp(t[index]), log_target)
            values[index] = loss(log_q)
            magnitudes[index] = abs(p * log_p) + abs(p * log_q) if p != 0 else mpmath.mpf(0)
        return _reduce(values, magnitudes, "mean" if reduction == "batchmean" else reduction, denominator)


def kl_div_grad(
    input: Any, target: Any, reduction: str = "mean", log_target: bool = False, grad_output: Any = 1.0
) -> Exact:
    """d/d(log q) of sum(grad_output * kl_div), by the complex step, summed over the dimensions along which the
    input was broadcast (each input element's derivative collects every loss element it entered)."""
    with mpmath.workdps(DIGITS):
        x, t, denominator = _kl_arguments(input, target, reduction)
        input_shape = np.shape(input)
        k, k_magnitude = _gradient_coefficients(
            grad_output, "mean" if reduction == "batchmean" else reduction, x.shape, denominator
        )
        gradient = np.full(input_shape, mpmath.mpf(0), dtype=object)
        magnitudes = np.full(input_shape, mpmath.mpf(0), dtype=object)
        offset = x.ndim - len(input_shape)
        for index in np.ndindex(x.shape):
            loss, _, _ = _kl_element(_mp(t[index]), log_target)
            slope = _complex_step(loss, _mp(x[index]))
            output = index if reduction == "none" else ()
            at = tuple(0 if size == 1 else index[offset + d] for d, size in enumerate(input_shape))
            gradient[at] = gradient[at] + k[output] * slope
            magnitudes[at] = magnitudes[at] + k_magnitude[output] * abs(slope)
        return Exact(gradient, _to_float(magnitudes))


LOSSES: dict[str, Callable[..., Exact]] = {
    "binary_cross_entropy": binary_cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "nll_loss": nll_loss,
    "cross_entropy": cross_entropy,
    "kl_div": kl_div,
}

GRADIENTS: dict[str, Callable[..., Exact]] = {
    "binary_cross_entropy": binary_cross_entropy_grad,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits_grad,
    "nll_loss": nll_loss_grad,
    "cross_entropy": cross_entropy_grad,
    "kl_div": kl_div_grad,
}
