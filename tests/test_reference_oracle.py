"""The reference checked against exact arithmetic: the verifier verified.

Every parity property trusts reference/ to hold the right value. Here each loss and each input
gradient, as reference/ computes it in float64, is compared with the exact value from
verification/oracle/ (mpmath at 60 digits; gradients by complex-step differentiation of the
exact forward, never reference/gradients.py's formulas).

Bound model
-----------
    |reference - exact| <= gamma_K S / (1 - rho) + floor,    gamma_K = K u / (1 - K u),  u = 2^-53

S (computed by the oracle) is the sum of the absolute values of the terms the exact value is made
of (the oracle's docstring lists them per loss). Where nothing cancels (probabilities and targets
in [0, 1], non-negative weights) S = |exact|, and the claim reads "within K ulps". Where terms
cancel, S / |exact| is the condition number of the sum, and K u S is what a float64 evaluation of
those terms can promise.

K counts the reference's floating operations along its longest path, each allowed its worst-case
relative error in the standard model fl(a op b) = (a op b)(1 + d), |d| <= u (Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., section 2.2):

* ARITHMETIC = 1 for each +, -, *, / (IEEE 754 rounds them correctly);
* TRANSCENDENTAL = 8 for each exp, log, log1p: NumPy's float64 versions are vectorised (SIMD,
  SVML) rather than correctly rounded, and are allowed 4 ulp = 8u each;
* n - 1 for a sum of n terms, in any order (gamma_{n-1} times the sum of magnitudes, Higham 4.2);
* 0 for negation, max, comparisons and selections, which are exact.

Relative errors of factors add; a sum errs by at most its terms' largest relative error times S,
plus its own rounding; so K is the sum along the longest chain (``forward_operations`` and
``gradient_operations`` spell it out per loss). Writing gamma_K for K u covers the second-order
terms. A 'mean' over summed class weights divides by a D that float64 rounds with error up to
gamma_{n-1} S(D): the first-order effect is in S (the oracle takes S(N) S(D) / D^2), the
second-order one in 1 / (1 - rho), rho = gamma_{n-1} S(D) / |D| (rho >= 1: no bound, excluded).
The floor is the standard model's absolute term: an operation that underflows loses up to
eta = 2^-1074, and later products and the mean's division magnify it, so floor = K (elements + 1)
eta A, with A the product of the largest magnitudes (at least 1) of every later factor (weight,
pos_weight, float target, grad_output; for cross-entropy also -log softmax, which multiplies the
smoothed target, and the smoothing sum, which multiplies eps / C; for KL with log targets |t| + |log q|,
which multiplies e^t), divided by min(1, |D|), and "elements" counts those of the broadcast result.

The standard model has no term for overflow: an intermediate result past float64's range is not
a rounding error but a wrong answer. NaN and infinities are therefore compared exactly: the exact
loss is NaN where it is undefined (a 'mean' over no positions or over a total weight of exactly 0),
and a reference that gives NaN or inf where the exact value is finite fails. Nothing in the model
is fitted to observed errors; where the reference misses its bound, the property fails with the
counterexample.
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from verification import ledger, registry, strategies
from verification.cases import ARRAY_KWARGS, Case
from verification.dtypes import FLOAT64
from verification.oracle import binary as binary_oracle
from verification.oracle.exact import Exact
from verification.reproducer import array_literal

U = FLOAT64.unit_roundoff  # 2^-53
ETA = FLOAT64.smallest_subnormal  # 2^-1074

ARITHMETIC = 1
TRANSCENDENTAL = 8

# The oracle's cost grows with the number of elements (a few mpmath operations each, C^2 per
# position for cross-entropy's gradient). The losses act position by position, so a larger input
# only lengthens the reduction's sum (which K counts): larger inputs are excluded to keep the
# file within its time budget.
MAX_ELEMENTS = 24

# No test lowers the profile's example count: the oracle costs about 2 ms an example (60-digit mpmath
# on at most 24 elements), and drawing the cases costs more, so the file runs in about 10 seconds in ci.

BINARY = ("binary_cross_entropy", "binary_cross_entropy_with_logits")


class ReferenceInaccuracy(AssertionError):
    """The reference missed the exact value by more than the bound model allows."""


# ---------------------------------------------------------------------------------------------
# K: the operations on the reference's longest path, in units of u.
# ---------------------------------------------------------------------------------------------


def _sum_of(n: int) -> int:
    """A sum of n terms errs by at most gamma_{n-1} times their magnitudes."""
    return max(n - 1, 0)


def _log_softmax_operations(classes: int) -> int:
    """The reference carries x - max exactly (TwoSum: hi + lo), so exp's argument adds no error: e^hi (T) times
    (1 + lo) (2), the sum over the C - 1 classes other than the maximum (C - 2), log1p (T), the final
    subtraction (1)."""
    return 2 * TRANSCENDENTAL + 3 * ARITHMETIC + _sum_of(classes - 1)


def _softmax_operations(classes: int) -> int:
    """e^hi (T) times (1 + lo) (2), the other classes' sum (C - 2), 1 + that sum (1), the division (1)."""
    return TRANSCENDENTAL + 4 * ARITHMETIC + _sum_of(classes - 1)


def _layout(case: Case) -> tuple[int, int, bool]:
    """(positions, classes, whether a 'mean' divides by summed class weights) of a case."""
    if case.loss in BINARY:
        return case.target.size, 1, False
    if case.loss == "kl_div":
        return _elements(case), 1, False
    classes = case.input.shape[0 if case.input.ndim == 1 else 1]
    positions = case.input.size // classes if classes else 0
    return positions, classes, not _has_probability_target(case)


def _elements(case: Case) -> int:
    """The elements the loss is computed on: the input's, or more where KL broadcasts the target against it."""
    return max(case.input.size, case.target.size)


def _is_mean(case: Case) -> bool:
    return case.kwargs.get("reduction", "mean") in ("mean", "batchmean")


def _has_probability_target(case: Case) -> bool:
    return case.loss == "cross_entropy" and case.input.shape == case.target.shape


def forward_operations(case: Case) -> int:
    """K for the loss's value: the longest per-element path plus the reduction's."""
    positions, classes, over_total_weight = _layout(case)
    if case.loss == "binary_cross_entropy":
        # log1p(-p) (T), 1 - y (1), their product (1), + the y log p term (1), * w (1).
        element = TRANSCENDENTAL + 4 * ARITHMETIC
    elif case.loss == "binary_cross_entropy_with_logits":
        # softplus: exp (T), log1p (T), + max(x, 0) (1); then * pw (1), * y (1), + the other term (1), * w (1).
        element = 2 * TRANSCENDENTAL + 5 * ARITHMETIC
    elif case.loss == "nll_loss":
        element = ARITHMETIC  # -w[y] * x[y]
    elif case.loss == "kl_div":
        # t log t: log (T), * t (1); - t log q (1). With log targets: t - log q (1), times e^t (1), whose e^r errs by
        # exp's own error (T) and the rounding of r (1; see reference/_scaled.py).
        element = TRANSCENDENTAL + (3 if case.kwargs.get("log_target") else 2) * ARITHMETIC
    elif _has_probability_target(case):
        # log_softmax; * t' (t' = (1 - eps) t + eps / C is 3 roundings on a shorter path), * w (1), sum over C.
        element = _log_softmax_operations(classes) + 2 * ARITHMETIC + _sum_of(classes)
    else:
        # log_softmax; smoothing term: * w_c (1), sum over C, * (eps / C) (2); + the NLL term (1).
        element = _log_softmax_operations(classes) + 4 * ARITHMETIC + _sum_of(classes)
    reduction = case.kwargs.get("reduction", "mean")
    if reduction == "none":
        return element
    # The sum of the positions; a mean divides once more (the count is exact, a total weight is not).
    reduced = element + _sum_of(positions)
    if _is_mean(case):
        reduced += ARITHMETIC + (_sum_of(positions) if over_total_weight else 0)
    return reduced


def gradient_operations(case: Case) -> int:
    """K for the gradient: the longest per-element path, then * grad_output and the mean's division."""
    positions, classes, over_total_weight = _layout(case)
    if case.loss == "binary_cross_entropy":
        # (p - y) / (p (1 - p)): 1 + 2 + 1; * w (1). (The one-clamp branch is no longer: 3 + 1.)
        element = 5 * ARITHMETIC
    elif case.loss == "binary_cross_entropy_with_logits":
        # sigmoid: exp (T), 1 + e (1), division (1); * (1 - y) (1); - the pw y sigmoid(-x) term (1); * w (1).
        element = TRANSCENDENTAL + 5 * ARITHMETIC
    elif case.loss == "nll_loss":
        element = 0  # -scale * w[y] is the product with grad_output, counted below
    elif case.loss == "kl_div":
        # -t is exact; e^t errs by exp's own error and r's rounding (T + 1); the sum over the dimensions the input
        # was broadcast along comes last.
        element = (TRANSCENDENTAL + ARITHMETIC if case.kwargs.get("log_target") else 0) + _sum_of(
            _elements(case) // max(case.input.size, 1)
        )
    elif _has_probability_target(case):
        # softmax; * sum_c w_c t'_c (t', w t' and the sum over C are a shorter path) (1); - w_k t'_k (1).
        element = _softmax_operations(classes) + 2 * ARITHMETIC
    else:
        # softmax; s_y - 1 as minus the other classes' sum (C - 2); * (1 - eps) w[y] (2); + the smoothing term (1),
        # whose own path, s * sum(w) - w then * (eps / C), is 4 long.
        element = _softmax_operations(classes) + _sum_of(classes - 1) + 3 * ARITHMETIC
    element += ARITHMETIC  # * grad_output
    if _is_mean(case):
        element += ARITHMETIC + (_sum_of(positions) if over_total_weight else 0)
    return element


# ---------------------------------------------------------------------------------------------
# The bound and the comparison.
# ---------------------------------------------------------------------------------------------


def _gamma(k: int) -> float:
    return k * U / (1 - k * U)


def _largest(values: Any, complement: bool = False) -> float:
    a = np.abs(np.asarray(values, dtype=np.float64))
    if complement:
        a = np.concatenate([a.ravel(), np.abs(1.0 - np.asarray(values, dtype=np.float64)).ravel()])
    return max(1.0, float(np.max(a))) if a.size else 1.0


def _largest_negative_log_softmax(x: np.ndarray) -> float:
    """-log softmax(x)_c <= max(x) - x_c + log C: at most each row's spread plus log C."""
    if x.size == 0:
        return 0.0
    class_axis = 0 if x.ndim == 1 else 1
    spread = np.max(x, axis=class_axis) - np.min(x, axis=class_axis)
    return float(np.max(spread)) + math.log(x.shape[class_axis])


def amplified_eta(case: Case, exact: Exact, grad_output: Any = None) -> float:
    """eta A in the floor. A: the product of the largest magnitudes (at least 1) of every factor that can multiply
    an intermediate result after it underflows, divided by min(1, |D|) for the mean's division. eta / min(1, |D|)
    is taken first: A alone overflows for a subnormal D, which would leave the floor, hence the bound, infinite."""
    a = _largest(case.kwargs.get("weight", 1.0)) * _largest(case.kwargs.get("pos_weight", 1.0))
    if np.issubdtype(case.target.dtype, np.floating):
        a *= _largest(case.target, complement=True)
    if grad_output is not None:
        a *= _largest(grad_output)
    if case.loss == "cross_entropy":
        # -log softmax multiplies the (possibly subnormal) smoothed target t' = (1 - eps) t + eps / C and the
        # weights; the smoothing sum over every position and class multiplies eps / C after the reduction.
        positions, classes, _ = _layout(case)
        negative_log_softmax = max(1.0, _largest_negative_log_softmax(case.input))
        largest_weight = _largest(case.kwargs.get("weight", 1.0))
        a *= negative_log_softmax * max(1, positions * classes) * largest_weight * negative_log_softmax
    if case.loss == "kl_div" and case.kwargs.get("log_target"):
        # e^t underflows (t < -708) before it multiplies t - log q.
        a *= _largest(case.input) + _largest(case.target)
    return (ETA / min(1.0, abs(exact.denominator))) * a if exact.denominator else math.inf


def _denominator_conditioning(case: Case, exact: Exact) -> float:
    """rho: how far float64's rounding of a total-weight denominator may move it, relative to it."""
    positions, _, over_total_weight = _layout(case)
    if not over_total_weight or case.kwargs.get("reduction", "mean") != "mean" or exact.denominator == 0:
        return 0.0
    return _gamma(_sum_of(positions)) * exact.denominator_magnitude / abs(exact.denominator)


def exclude_if_unbounded(case: Case, exact: Exact) -> None:
    # (An infinite S beside a defined value is only S past float64's range, as for KL with e^t near e^1e4: the
    # NaN and infinity pattern is still compared there.)
    if np.any(np.isinf(exact.magnitude) & np.isnan(exact.value)):
        ledger.exclude(
            "the mean's total weight is exactly 0 by cancellation of non-zero weights: its rounded value, "
            "hence the loss, is unbounded"
        )
    if _denominator_conditioning(case, exact) >= 1:
        ledger.exclude("the mean's total weight cancels to within its own rounding error: no bound exists")


def _kwargs_literal(kwargs: dict[str, Any]) -> str:
    def literal(key: str, value: Any) -> str:
        if key in ARRAY_KWARGS:
            return array_literal(np.asarray(value))
        if isinstance(value, float) and math.isnan(value):
            return "float('nan')"
        return repr(value)

    return ", ".join(f"{key}={literal(key, value)}" for key, value in kwargs.items())


def forward_reproducer(case: Case) -> str:
    return "\n".join(
        [
            "import numpy as np",
            "import reference",
            "from verification import registry",
            f"x = {array_literal(case.input)}",
            f"t = {array_literal(case.target)}",
            f"kwargs = dict({_kwargs_literal(case.kwargs)})",
            f"print('reference', repr(reference.{case.loss}(x, t, **kwargs)))",
            f"print('exact    ', registry.info({case.loss!r}).oracle(x, t, **kwargs).exact)",
        ]
    )


def gradient_reproducer(case: Case, grad_output: np.ndarray) -> str:
    forward = forward_reproducer(case).splitlines()[:-2]
    gradient = registry.reference_gradient(case.loss)
    return "\n".join(
        [
            *forward,
            f"from {gradient.__module__} import {gradient.__name__}",
            f"g = {array_literal(np.asarray(grad_output))}",
            f"print('reference', repr({gradient.__name__}(x, t, **kwargs, grad_output=g)))",
            f"print('exact    ', registry.info({case.loss!r}).oracle_gradient(x, t, **kwargs, grad_output=g).exact)",
        ]
    )


def _where(index: tuple[int, ...]) -> str:
    return f" at index {[int(i) for i in index]}" if index else ""


def check_against_exact(
    computed: Any, exact: Exact, operations: int, rho: float, floor: float, *, what: str, repro: str
) -> None:
    """``computed`` has the exact result's shape and NaN/infinity pattern, and every finite element is within
    gamma_K S / (1 - rho) + floor of the exact value. Records the worst error / bound in the ledger."""
    __tracebackhide__ = True

    def fail(sentence: str) -> None:
        raise ReferenceInaccuracy(f"{what}: {sentence}\n\nReproduce with:\n\n{repro}\n")

    got = np.asarray(computed, dtype=np.float64)
    if got.shape != exact.shape:
        fail(f"the reference returned shape {list(got.shape)}, but the exact result has shape {list(exact.shape)}")
    want = exact.value
    for index in np.ndindex(exact.shape):
        g, w = got[index], want[index]
        if np.isnan(g) != np.isnan(w) or ((np.isinf(g) or np.isinf(w)) and g != w):
            fail(f"the reference gave {float(g)!r}{_where(index)} where the exact value is {float(w)!r}")
    error = exact.error_of(got)
    finite = np.isfinite(error)
    if not np.any(finite):  # empty, or nothing but matching NaN: the pattern itself was the comparison
        ledger.record_comparison(0.0, 0.0, 0.0, 0.0, ETA)
        return
    bound = _gamma(operations) * exact.magnitude / (1.0 - rho) + floor
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(finite, np.where(bound > 0, error / bound, np.where(error > 0, np.inf, 0.0)), -1.0)
    worst = np.unravel_index(int(np.argmax(ratio)), exact.shape)
    if error[worst] > bound[worst]:
        fail(
            f"the reference gave {float(got[worst])!r}{_where(worst)} where the exact value is "
            f"{mpmath_repr(exact.exact[worst])}; the error {error[worst]:.3g} exceeds the bound {bound[worst]:.3g} "
            f"(K = {operations} operations, S = {exact.magnitude[worst]:.3g}, rho = {rho:.3g}, floor = {floor:.3g}) "
            f"by a factor {ratio[worst]:.3g}"
        )
    expected = float(want[worst])
    ledger.record_comparison(
        float(error[worst]), float(bound[worst]), float(ratio[worst]), expected, FLOAT64.ulp(expected)
    )


def mpmath_repr(value: Any) -> str:
    return f"{float(value)!r} (exactly {mpmath.nstr(value, 20)})"


def _exclude_large(case: Case) -> None:
    if _elements(case) > MAX_ELEMENTS:
        ledger.exclude(f"more than {MAX_ELEMENTS} elements: the 60-digit oracle would exceed the time budget")


def check_forward(case: Case) -> None:
    """The reference's loss for ``case`` is within the bound model of the exact value."""
    __tracebackhide__ = True
    _exclude_large(case)
    exact = registry.info(case.loss).oracle(case.input, case.target, **case.kwargs)
    exclude_if_unbounded(case, exact)
    computed = getattr(reference, case.loss)(case.input, case.target, **case.kwargs)
    operations = forward_operations(case)
    check_against_exact(
        computed,
        exact,
        operations,
        _denominator_conditioning(case, exact),
        operations * (_elements(case) + 1) * amplified_eta(case, exact),
        what=f"reference.{case.loss} against the exact value, for {case.describe()}",
        repro=forward_reproducer(case),
    )


def check_gradient(case: Case, data: st.DataObject) -> None:
    """The reference's analytic gradient for ``case`` is within the bound model of the exact derivative."""
    __tracebackhide__ = True
    _exclude_large(case)
    loss = registry.info(case.loss).oracle(case.input, case.target, **case.kwargs)
    if np.any(np.isnan(loss.value)):
        ledger.exclude(
            "the loss is undefined (a mean over no positions or a zero total weight, or a negative KL target): "
            "no derivative"
        )
    exclude_if_unbounded(case, loss)
    grad_output = data.draw(strategies.grad_outputs(FLOAT64, loss.shape), label="grad_output")
    check_gradient_at(case, loss, grad_output)


def check_gradient_at(case: Case, loss: Exact, grad_output: Any) -> None:
    """The reference's analytic gradient for ``case`` and ``grad_output`` is within the bound model of the exact
    derivative (``loss``: the exact loss, whose denominator the bound's conditioning reads)."""
    __tracebackhide__ = True
    exact = registry.info(case.loss).oracle_gradient(case.input, case.target, **case.kwargs, grad_output=grad_output)
    computed = registry.reference_gradient(case.loss)(case.input, case.target, **case.kwargs, grad_output=grad_output)
    operations = gradient_operations(case)
    check_against_exact(
        computed,
        exact,
        operations,
        _denominator_conditioning(case, loss),
        operations * (_elements(case) + 1) * amplified_eta(case, loss, grad_output),
        what=f"the reference's gradient of {case.loss} against the exact derivative, for {case.describe()}",
        repro=gradient_reproducer(case, grad_output),
    )


# ---------------------------------------------------------------------------------------------
# a. The losses' values.
# ---------------------------------------------------------------------------------------------


@given(data=st.data())
def test_reference_binary_cross_entropy_is_within_k_ulps_of_the_exact_value(data):
    """The reference's BCE is within K float64 ulps of the exact value wherever the weights are non-negative (p and
    y in [0, 1]: no term cancels), and within K u S where weights of both signs make the reduction cancel."""
    check_forward(data.draw(registry.info("binary_cross_entropy").cases(FLOAT64), label="case"))


@given(data=st.data())
def test_reference_bce_with_logits_is_within_k_ulps_of_the_exact_value_where_terms_do_not_cancel(data):
    """The reference's BCEWithLogits is within K float64 ulps of the exact value wherever its terms do not cancel,
    and within K u S otherwise (targets outside [0, 1], negative weights)."""
    check_forward(data.draw(registry.info("binary_cross_entropy_with_logits").cases(FLOAT64), label="case"))


@given(data=st.data())
def test_reference_nll_loss_is_within_k_ulps_of_the_exact_value_where_terms_do_not_cancel(data):
    """The reference's NLL is within K u S of the exact value, S the sum of |w[y_i] x[i, y_i]| (over the total
    weight, magnified by its cancellation, for 'mean'), and NaN exactly where the mean is undefined."""
    check_forward(data.draw(registry.info("nll_loss").cases(FLOAT64), label="case"))


@given(data=st.data())
def test_reference_cross_entropy_is_within_k_ulps_of_the_exact_value_where_terms_do_not_cancel(data):
    """The reference's cross-entropy (index and probability targets, smoothing, every layout) is within K u S of
    the exact value, which is K ulps wherever targets and weights are non-negative."""
    check_forward(data.draw(registry.info("cross_entropy").cases(FLOAT64), label="case"))


@given(data=st.data())
def test_reference_kl_div_is_within_k_u_s_of_the_exact_value(data):
    """The reference's KL divergence loss (probability and log targets, every reduction, input and target
    broadcast) is within K u S of the exact value, S the sum of |p log p| and |p log q|: 0 where p = 0, NaN where
    p < 0, as the exact value is."""
    log_targets = data.draw(st.booleans(), label="log targets")
    check_forward(data.draw(registry.info("kl_div").cases(FLOAT64, log_targets), label="case"))


# ---------------------------------------------------------------------------------------------
# b. The gradients.
# ---------------------------------------------------------------------------------------------


@given(data=st.data())
def test_reference_binary_cross_entropy_gradient_is_within_k_u_s_of_the_exact_derivative(data):
    """Away from the -100 clamp (p (1 - p) >= 1e-12), the reference's BCE gradient is within K u S of the exact
    derivative, S the sum of |w y / p| and |w (1 - y) / (1 - p)| scaled by the reduction."""
    check_gradient(data.draw(registry.info("binary_cross_entropy").cases(FLOAT64, interior=True), label="case"), data)


@given(data=st.data())
def test_reference_bce_with_logits_gradient_is_within_k_u_s_of_the_exact_derivative(data):
    """The reference's BCEWithLogits gradient is within K u S of the exact derivative, S the sum of
    |w pw y sigmoid(-x)| and |w (1 - y) sigmoid(x)| scaled by the reduction."""
    check_gradient(data.draw(registry.info("binary_cross_entropy_with_logits").cases(FLOAT64), label="case"), data)


@given(data=st.data())
def test_reference_nll_loss_gradient_is_within_k_u_s_of_the_exact_derivative(data):
    """The reference's NLL gradient is within K u S of the exact derivative: -w[y_i] (scaled by the reduction) at
    each target, exactly 0 elsewhere."""
    check_gradient(data.draw(registry.info("nll_loss").cases(FLOAT64), label="case"), data)


@given(data=st.data())
def test_reference_cross_entropy_gradient_is_within_k_u_s_of_the_exact_derivative(data):
    """The reference's cross-entropy gradient is within K u S of the exact derivative, S built from the terms
    softmax_k a_c and a_k of sum_c a_c (softmax_k - [k = c])."""
    check_gradient(data.draw(registry.info("cross_entropy").cases(FLOAT64), label="case"), data)


@given(data=st.data())
def test_reference_kl_div_gradient_is_within_k_u_s_of_the_exact_derivative(data):
    """The reference's KL gradient is within K u S of the exact derivative, -p times grad_output (scaled by the
    reduction) summed over the dimensions along which the input was broadcast, S the sum of those terms' sizes."""
    log_targets = data.draw(st.booleans(), label="log targets")
    check_gradient(data.draw(registry.info("kl_div").cases(FLOAT64, log_targets), label="case"), data)


# Torch's gradient is 0 here, and a reference that forms its factors in float64 gives NaN. The total weight is the
# subnormal w[2], so the smoothing term (eps / C) (s_k sum_j w_j - w_k) / W is about 4e321 before grad_output
# multiplies it: it overflows float64 although the gradient is 0 for grad_output 0 and about 4e21 for grad_output
# 1e-300 (and infinite for -3).
SUBNORMAL_TOTAL_WEIGHT = Case(
    "cross_entropy",
    np.zeros(5),
    np.array(2),
    {"weight": np.array([1.0, 1.0, 5e-324, 1.0, 1.0]), "label_smoothing": 0.5},
)


@pytest.mark.parametrize("grad_output", [0.0, 1e-300, -3.0])
def test_a_gradient_whose_factors_overflow_on_the_way_is_exact(grad_output):
    """Where factors of the cross-entropy gradient overflow float64 but the product with grad_output need not, the
    reference's gradient is the exact one, rounded: 0, finite, or infinite as the exact value is."""
    case = SUBNORMAL_TOTAL_WEIGHT
    loss = registry.info(case.loss).oracle(case.input, case.target, **case.kwargs)
    check_gradient_at(case, loss, np.float64(grad_output))


# KL with log targets past e^709.78, where float64's e^t overflows but the loss and its gradient need not: e^745.2 (0)
# is 0 at log q = t, a 'mean' brings e^710 back into range, and grad_output 0 makes every derivative 0. The KL oracle
# found the reference overflowing in such cases.
OVERFLOWING_EXPONENTIAL = [
    Case("kl_div", np.array([745.2, 3.0]), np.array([745.2, 1.0]), {"reduction": "none", "log_target": True}),
    Case("kl_div", np.array([709.0, 0.0]), np.array([710.0, 0.0]), {"log_target": True}),
    Case("kl_div", np.array(0.0), np.array([[1e4, 0.5], [0.0, 1.0]]), {"reduction": "sum", "log_target": True}),
]


@pytest.mark.parametrize("case", OVERFLOWING_EXPONENTIAL, ids=lambda case: case.describe())
@pytest.mark.parametrize("grad_output", [0.0, 1.0])
def test_a_kl_loss_whose_exponential_overflows_is_exact(case, grad_output):
    """Where e^t overflows float64 but the KL loss or its gradient need not, the reference's value and gradient are
    the exact ones, rounded: 0, finite, or infinite as the exact value is."""
    check_forward(case)
    loss = registry.info(case.loss).oracle(case.input, case.target, **case.kwargs)
    check_gradient_at(case, loss, np.full(loss.shape, grad_output))


# ---------------------------------------------------------------------------------------------
# c. The comparison has teeth: deliberately wrong references are caught.
# ---------------------------------------------------------------------------------------------

# A fixed BCEWithLogits case: ordinary logits, a confident correct one (x = 40, y = 1: loss e^-40) and
# a confident wrong one, with in-domain targets so that S = |exact|.
FIXED_LOGITS = np.array([0.5, -3.0, 12.0, 40.0, -40.0])
FIXED_TARGETS = np.array([1.0, 0.0, 0.25, 1.0, 1.0])
FIXED_CASE = Case("binary_cross_entropy_with_logits", FIXED_LOGITS, FIXED_TARGETS, {"reduction": "none"})


def _check_fixed(computed: np.ndarray) -> None:
    __tracebackhide__ = True
    exact = binary_oracle.binary_cross_entropy_with_logits(FIXED_LOGITS, FIXED_TARGETS, reduction="none")
    operations = forward_operations(FIXED_CASE)
    check_against_exact(
        computed,
        exact,
        operations,
        0.0,
        operations * (FIXED_LOGITS.size + 1) * ETA,
        what="a deliberately perturbed BCEWithLogits against the exact value",
        repro=forward_reproducer(FIXED_CASE),
    )


def _softplus_through_log(x: np.ndarray) -> np.ndarray:
    """softplus with log(1 + e^-|x|) where the reference takes log1p(e^-|x|): 1 + e^-40 rounds to 1."""
    return np.maximum(x, 0.0) + np.log(1.0 + np.exp(-np.abs(x)))


def test_the_unperturbed_reference_passes_the_fixed_check():
    """The reference's BCEWithLogits passes the fixed check that the perturbed versions below fail."""
    _check_fixed(reference.binary_cross_entropy_with_logits(FIXED_LOGITS, FIXED_TARGETS, reduction="none"))


def test_a_reference_off_by_64_bounds_is_caught():
    """A reference whose every value is 64 K u too large (relative) fails the oracle comparison."""
    k = forward_operations(FIXED_CASE)
    perturbed = reference.binary_cross_entropy_with_logits(FIXED_LOGITS, FIXED_TARGETS, reduction="none") * (
        1 + 64 * k * U
    )
    with pytest.raises(ReferenceInaccuracy, match="exceeds the bound"):
        _check_fixed(perturbed)


def test_a_softplus_through_log_instead_of_log1p_is_caught():
    """A BCEWithLogits whose softplus takes log(1 + e^-|x|) instead of log1p loses e^-40 entirely and fails the
    oracle comparison."""
    y = FIXED_TARGETS
    perturbed = y * _softplus_through_log(-FIXED_LOGITS) + (1.0 - y) * _softplus_through_log(FIXED_LOGITS)
    with pytest.raises(ReferenceInaccuracy, match="exceeds the bound"):
        _check_fixed(perturbed)


def test_a_gradient_off_by_64_bounds_is_caught():
    """A BCEWithLogits gradient 64 K u too large (relative) fails the oracle comparison."""
    case = FIXED_CASE
    k = gradient_operations(case)
    ones = np.ones(FIXED_LOGITS.shape)
    exact = binary_oracle.binary_cross_entropy_with_logits_grad(FIXED_LOGITS, FIXED_TARGETS, reduction="none")
    perturbed = registry.reference_gradient(case.loss)(FIXED_LOGITS, FIXED_TARGETS, reduction="none") * (1 + 64 * k * U)
    with pytest.raises(ReferenceInaccuracy, match="exceeds the bound"):
        check_against_exact(
            perturbed,
            exact,
            k,
            0.0,
            k * (FIXED_LOGITS.size + 1) * ETA,
            what="a deliberately perturbed BCEWithLogits gradient against the exact derivative",
            repro=gradient_reproducer(case, ones),
        )
