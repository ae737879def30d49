"""The suite's one tolerance model: a running rounding-error analysis of each loss.

How a bound is derived
----------------------
Inputs are exact (they are drawn in the dtype under test). Each loss is replayed here, step
by step in the order torch computes it, on ``Tracked`` numbers: a float64 value together
with a bound on the absolute error that the same step accumulates when torch performs it in
the dtype. Every step obeys the standard model of floating-point arithmetic (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 2.2):

    fl(a op b) = (a op b)(1 + d) + e,   |d| <= u,   |e| <= eta

with u the dtype's unit roundoff and eta the spacing of its subnormals (the absolute floor:
an operation that underflows loses at most that much). Errors already present in the
operands are propagated through each operation's exact first-order-free sensitivity (for a
product |a| e_b + |b| e_a + e_a e_b, for log the exact -log(1 - e/v), and so on). A sum of n
terms adds gamma_{n-1} = (n-1)u / (1-(n-1)u) times the sum of their magnitudes, valid for any
summation order. The result is a rigorous worst-case bound whose scale follows from the
computation itself: it grows with max|logit| and C for log-softmax losses, with |x| for
BCEWithLogits, with the number of elements for reductions, and it becomes infinite when a
'mean' divides by a total weight that rounding could drive to zero, or when a result, a partial
sum or an exponential may leave the dtype's finite range, and for a sum with such a term (problems
that no finite bound describes: the properties exclude them, with the reason shown in the run's
summary). A NaN operand makes a product an exact NaN (compared as NaN), not an unbounded one.

Gradients are replayed the same way, in the order of torch's backward formulas (aten's
``*_backward`` kernels, and autograd's chain through log_softmax for cross-entropy), with the
same per-operation rules. An operand whose error is unbounded may itself be inf in torch, so
an exact zero times it is unbounded too (0 * inf is NaN), never exactly 0.

The constants, each in a sentence:

* ``u`` and ``eta`` come from ``torch.finfo`` of the dtype (eps / 2, and smallest_normal * eps),
  and float64's are added to them for the reference's own rounding.
* ``TRANSCENDENTAL_ERROR = 4``: exp, log and log1p are accurate to 1 ulp (at most 2u) in libm and
  in torch's vectorised kernels; 4u leaves room for 2-ulp implementations on other backends.
* ``SIGMOID_ERROR = TRANSCENDENTAL_ERROR + 2``: sigmoid is one exp, one addition and one division.
* ``x ** gamma`` (the focal loss's modulating factor) is bounded exactly over the interval of its base, where
  it is monotone, plus its own rounding of TRANSCENDENTAL_ERROR units (std::pow is a 1-ulp libm function), or
  one unit for gamma = 2, which torch computes as a single product.
* Sigmoid's absolute floor is the dtype's smallest normal number, not eta: torch evaluates
  1 / (1 + e^-x), and once e^-x overflows the result is 0 where sigmoid(x) is a subnormal.
* ``BCE_GRAD_EPSILON = 1e-12``: the floor torch's BCE backward puts under p (1 - p).
* gamma_{n-1} = (n - 1) u / (1 - (n - 1) u) for a sum of n terms in any order (Higham, chapter 4);
  a sum of n terms also gets (n - 1) eta for subnormal partial sums.
* Log-softmax is bounded in both of the orders torch's kernels use, (x - m) - log s and
  x - (m + log s), keeping the larger bound.

Nothing here is fitted to observed errors. Two choices are judgement, both stated:
``TRANSCENDENTAL_ERROR`` and the second evaluation order for log-softmax. The meta tests in
``tests/meta/test_tolerance.py`` show the bounds are tight: on ordinary inputs the median bound
is a few ulps, and torch's largest error reaches a sizeable fraction of it.

The reference computes in float64 with its own rounding; the model covers it by adding
float64's unit roundoff and subnormal spacing to the dtype's (the reference performs the same
kind and number of operations as the torch order modelled here, and is at least as well
conditioned: it uses the same log-sum-exp and cancellation-free softplus forms). The subnormal
term matters: a float64 probability of 5e-324 times a weight of 0.5 underflows to 0 in the
reference itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import reference

from .dtypes import FLOAT64, Dtype

# exp, log and log1p in libm and in torch's vectorised kernels (SLEEF's 1-ulp variants) are
# accurate to within 1 ulp; 1 ulp is at most 2u, so each such call errs by at most 2u
# relative. Taken as 4u to leave room for 2-ulp implementations on other backends.
TRANSCENDENTAL_ERROR = 4.0

# torch's sigmoid takes one exp, one add and one division: its relative error is at most
# TRANSCENDENTAL_ERROR + 2 units of roundoff.
SIGMOID_ERROR = TRANSCENDENTAL_ERROR + 2.0

F64 = np.ndarray


def _times(a: F64, b: F64) -> F64:
    """One term of a product's propagated error: 0 when a factor is exactly 0 and the other finite, and inf
    for 0 * inf (an operand whose error is unbounded may itself be inf in torch, and 0 * inf is NaN)."""
    with np.errstate(invalid="ignore", over="ignore"):
        product = np.where(((a == 0) & np.isfinite(b)) | ((b == 0) & np.isfinite(a)), 0.0, a * b)
        return np.where(np.isnan(product), np.inf, product)


def _size(value: F64) -> F64:
    """|value| as a factor of a propagated error: 0 for NaN, whose product is NaN however the other factor moves."""
    return np.where(np.isnan(value), 0.0, np.abs(value))


@dataclass(frozen=True)
class Tracked:
    """A value (computed in float64) and a bound on the absolute error of torch's computation."""

    value: F64
    error: F64
    u: float
    eta: float
    largest: float  # the dtype's largest finite value: beyond it a rounded result may be inf
    smallest_normal: float  # the dtype's smallest normal number: sigmoid's absolute floor

    # -- construction ---------------------------------------------------------------------
    @staticmethod
    def exact(values: Any, dtype: Dtype) -> Tracked:
        """An input that is exactly representable in the dtype: no error yet."""
        v = np.asarray(values, dtype=np.float64)
        # The reference's own float64 rounding (its u and its subnormal floor) adds to torch's.
        u = dtype.unit_roundoff + FLOAT64.unit_roundoff
        eta = dtype.smallest_subnormal + FLOAT64.smallest_subnormal
        return Tracked(v, np.zeros_like(v), u, eta, dtype.largest, dtype.smallest_normal)

    def constant(self, c: float) -> Tracked:
        """A Python float that torch rounds to the dtype before using it."""
        return self._like(c, self.u * abs(c))

    def _like(self, value: Any, error: Any) -> Tracked:
        value, error = np.asarray(value, dtype=np.float64), np.asarray(error, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            # A result that may leave the dtype's range may round to inf: no finite bound holds.
            error = np.where(np.isfinite(value) & (np.abs(value) + error > self.largest), np.inf, error)
        return Tracked(value, error, self.u, self.eta, self.largest, self.smallest_normal)

    def _rounded(self, value: Any, propagated: Any, relative: float = 1.0) -> Tracked:
        """Add one rounding (``relative`` units of u, plus eta) to the propagated error."""
        value = np.asarray(value, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            rounding = np.where(np.isfinite(value), relative * self.u * np.abs(value) + self.eta, 0.0)
        return self._like(value, propagated + rounding)

    def _lift(self, other: Tracked | float | F64) -> Tracked:
        if isinstance(other, Tracked):
            return other
        v = np.asarray(other, dtype=np.float64)
        return self._like(v, np.zeros_like(v))

    # -- arithmetic -----------------------------------------------------------------------
    def __add__(self, other: Tracked | float | F64) -> Tracked:
        o = self._lift(other)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, in torch as here
            return self._rounded(self.value + o.value, self.error + o.error)

    def __radd__(self, other: float | F64) -> Tracked:
        return self + other

    def __neg__(self) -> Tracked:
        return self._like(-self.value, self.error)  # exact

    def __sub__(self, other: Tracked | float | F64) -> Tracked:
        return self + (-self._lift(other))

    def __rsub__(self, other: float | F64) -> Tracked:
        return self._lift(other) - self

    def __mul__(self, other: Tracked | float | F64) -> Tracked:
        o = self._lift(other)
        with np.errstate(invalid="ignore", over="ignore"):
            # A factor that is NaN makes the product NaN whatever the other factor's error: its size is no term
            # (log of a negative KL target times t stays an exact NaN, compared as a NaN).
            propagated = (
                _times(_size(self.value), o.error) + _times(_size(o.value), self.error) + _times(self.error, o.error)
            )
            product = self.value * o.value  # 0 * inf is NaN, as in torch
        return self._rounded(product, propagated)

    def __rmul__(self, other: float | F64) -> Tracked:
        return self * other

    def __truediv__(self, other: Tracked | float | F64) -> Tracked:
        o = self._lift(other)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            quotient = self.value / o.value
            margin = np.abs(o.value) - o.error
            propagated = np.where(
                o.error == 0,
                self.error / np.abs(o.value),
                np.where(margin > 0, (self.error + np.abs(quotient) * o.error) / margin, np.inf),
            )
            # An exact 0 / 0, x / 0 or inf / y is exactly NaN or inf: nothing left to bound, unless the numerator's
            # own error is unbounded (it may be NaN in torch, and so the quotient).
            exact_nonfinite = (o.error == 0) & np.isfinite(self.error)
            propagated = np.where(np.isfinite(quotient), propagated, np.where(exact_nonfinite, 0.0, np.inf))
        return self._rounded(quotient, propagated)

    # -- functions ------------------------------------------------------------------------
    def exp(self) -> Tracked:
        """e^x, and no finite bound where e^x of a finite x is past float64's range: torch's e^x is inf there
        (past the dtype's range, ``_like`` says the same), while the reference carries e^x exactly (e^710 * 0 is 0
        to it and NaN to torch)."""
        with np.errstate(over="ignore", invalid="ignore"):
            value = np.exp(self.value)
            propagated = _times(value, np.expm1(self.error))
            propagated = np.where(np.isfinite(self.value) & np.isinf(value), np.inf, propagated)
        return self._rounded(value, propagated, TRANSCENDENTAL_ERROR)

    def expm1(self) -> Tracked:
        """e^x - 1 as one function (accurate near 0, where exp(x) - 1 cancels); e^(x + d) - e^x = e^x (e^d - 1)."""
        with np.errstate(over="ignore"):
            value = np.expm1(self.value)
            propagated = _times(np.exp(self.value), np.expm1(self.error))
        return self._rounded(value, propagated, TRANSCENDENTAL_ERROR)

    def log(self) -> Tracked:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.log(self.value)
            ratio = self.error / self.value
            propagated = np.where(self.error == 0, 0.0, np.where(ratio < 1, -np.log1p(-ratio), np.inf))
        return self._rounded(value, propagated, TRANSCENDENTAL_ERROR)

    def log1p(self) -> Tracked:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.log1p(self.value)
            ratio = self.error / (1.0 + self.value)
            propagated = np.where(self.error == 0, 0.0, np.where(ratio < 1, -np.log1p(-ratio), np.inf))
        return self._rounded(value, propagated, TRANSCENDENTAL_ERROR)

    def sigmoid(self) -> Tracked:
        """sigmoid is 1/4-Lipschitz; torch's evaluation errs by at most SIGMOID_ERROR units of roundoff, and by
        up to the smallest normal number in absolute terms: it evaluates 1 / (1 + e^-x), and once e^-x
        overflows (sigmoid(x) is then below the smallest normal) the result is 0, not the subnormal value."""
        value = reference.sigmoid(self.value)
        rounded = self._rounded(value, 0.25 * self.error, SIGMOID_ERROR)
        return self._like(value, rounded.error + self.smallest_normal)

    def power(self, exponent: float, base_nonnegative: bool = False) -> Tracked:
        """x ** exponent for an exponent exact in the dtype. x^0 is exactly 1 (NaN and 0 included), as in torch.
        Otherwise the propagated error is the largest change of b^exponent over the interval [x - e, x + e], where
        it is monotone; an interval reaching below 0 is unbounded for a fractional exponent (a negative base gives
        NaN) and, for a negative one, an interval containing 0 is unbounded (0 to a negative power is inf).
        ``base_nonnegative``: torch's base is known to be >= 0, so the interval starts at 0 at the lowest."""
        if exponent == 0:
            return self._like(np.ones_like(self.value), np.zeros_like(self.value))
        low, high = self.value - self.error, self.value + self.error
        if base_nonnegative:
            low = np.maximum(low, 0.0)
        integral = float(exponent).is_integer()
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            value = np.power(self.value, exponent)
            candidates = [np.power(low, exponent), np.power(high, exponent)]
            if integral and exponent > 0:  # an even power is smallest at 0, inside the interval
                candidates.append(np.where((low < 0) & (high > 0), 0.0, value))
            propagated = np.max([np.abs(candidate - value) for candidate in candidates], axis=0)
            unbounded = (low < 0) if not integral else np.zeros(np.shape(value), dtype=bool)
            if exponent < 0:
                unbounded = unbounded | ((low <= 0) & (high >= 0))
            propagated = np.where(self.error == 0, 0.0, np.where(unbounded | np.isnan(propagated), np.inf, propagated))
        # std::pow is accurate to 1 ulp in libm, as exp and log are; an exponent of 2 is a single product.
        return self._rounded(value, propagated, 1.0 if exponent == 2 else TRANSCENDENTAL_ERROR)

    def abs(self) -> Tracked:
        return self._like(np.abs(self.value), self.error)  # exact

    def clamp_min(self, floor: float) -> Tracked:
        """max(x, floor): 1-Lipschitz, so it never adds error; certainly-below values become exact."""
        certainly_below = (self.value + self.error <= floor) | (self.value == -np.inf)
        return self._like(
            np.where(certainly_below, floor, np.maximum(self.value, floor)), np.where(certainly_below, 0.0, self.error)
        )

    def minimum(self, other: float) -> Tracked:
        return self._like(np.minimum(self.value, other), self.error)  # 1-Lipschitz, exact

    def sum(self, axis: int | None = None) -> Tracked:
        """Any-order summation: gamma_{n-1} times the sum of magnitudes, plus the terms' errors.

        In some order a partial sum reaches the sum of the positive terms, or of the negative ones: where that
        may pass the dtype's largest value, the partial sum may round to inf though the total is finite, and no
        finite bound holds (torch's float16 K-dimensional NLL on the CPU accumulates in float16: terms -5840 and
        -59680 give -inf, with a total of -65115)."""
        n = self.value.size if axis is None else self.value.shape[axis]
        gamma = (n - 1) * self.u / (1 - (n - 1) * self.u) if n > 1 else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            value = np.sum(self.value, axis=axis)
            propagated = np.sum(self.error, axis=axis) + gamma * np.sum(np.abs(self.value), axis=axis)
            propagated = propagated + max(n - 1, 0) * self.eta
            reach = np.maximum(
                np.sum(np.where(self.value > 0, self.value, 0.0), axis=axis),
                np.sum(np.where(self.value < 0, -self.value, 0.0), axis=axis),
            )
            propagated = np.where(np.isfinite(value) & (reach + propagated > self.largest), np.inf, propagated)
            # A term without a finite bound leaves the sum without one, also where that term's value is NaN (0 * inf
            # where torch's e^x overflowed) and the magnitudes' sum is NaN with it.
            propagated = np.where(np.any(np.isinf(self.error), axis=axis), np.inf, propagated)
        return self._like(value, propagated)

    def where(self, condition: F64, other: Tracked | float) -> Tracked:
        o = self._lift(other)
        return self._like(np.where(condition, self.value, o.value), np.where(condition, self.error, o.error))

    def take(self, index: F64, axis: int) -> Tracked:
        pick = np.expand_dims(index, axis)
        return self._like(
            np.squeeze(np.take_along_axis(self.value, pick, axis), axis),
            np.squeeze(np.take_along_axis(self.error, pick, axis), axis),
        )

    def broadcast_to(self, shape: tuple[int, ...]) -> Tracked:
        return self._like(np.broadcast_to(self.value, shape), np.broadcast_to(self.error, shape))

    @staticmethod
    def larger(a: Tracked, b: Tracked) -> Tracked:
        """Two evaluation orders of one quantity: keep the larger error bound."""
        return a._like(a.value, np.maximum(a.error, b.error))


# ---------------------------------------------------------------------------------------------
# The losses, replayed in torch's order.
# ---------------------------------------------------------------------------------------------


def _class_dim(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def _class_shape(ndim: int, n_classes: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[_class_dim(ndim)] = n_classes
    return tuple(shape)


def log_softmax(x: Tracked, dim: int) -> Tracked:
    """Two orders appear in torch's kernels: (x - m) - log s and x - (m + log s); bound both."""
    m = np.max(x.value, axis=dim, keepdims=True)
    shifted = x - m
    log_s = shifted.exp().sum(axis=dim).log()
    log_s = x._like(np.expand_dims(log_s.value, dim), np.expand_dims(log_s.error, dim))
    return Tracked.larger(shifted - log_s, x - (log_s + m))


def _reduce(losses: Tracked, reduction: str, denominator: Tracked | None) -> Tracked:
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        return total / float(losses.value.size)
    return total / denominator.sum()


def _index_target_parts(case_input: F64, target: F64, weight: F64 | None, ignore_index: int):
    class_dim = _class_dim(case_input.ndim)
    n_classes = case_input.shape[class_dim]
    t = np.asarray(target, dtype=np.int64)
    if case_input.ndim == 1:
        t = t.reshape(())
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)
    return class_dim, n_classes, kept, safe, w


def nll_loss(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tracked:
    return _nll(Tracked.exact(input, dtype), target, weight, ignore_index, reduction, dtype)


def _nll(logp: Tracked, target: F64, weight: F64 | None, ignore_index: int, reduction: str, dtype: Dtype) -> Tracked:
    class_dim, _, kept, safe, w = _index_target_parts(logp.value, target, weight, ignore_index)
    class_weight = Tracked.exact(np.where(kept, w[safe] if w.size else 0.0, 0.0), dtype)
    losses = (-(class_weight * logp.take(safe, class_dim))).where(kept, 0.0)
    return _reduce(losses, reduction, class_weight)


def _cross_entropy_parts(
    dtype: Dtype, input: F64, weight: F64 | None, label_smoothing: float
) -> tuple[Tracked, int, int, Tracked, float, F64]:
    """What the cross-entropy forward and backward replays share: the input, its class layout, its log-softmax,
    the effective smoothing (a negative or NaN value is none) and the class weights as a flat vector."""
    x = Tracked.exact(input, dtype)
    class_dim = _class_dim(x.value.ndim)
    n_classes = x.value.shape[class_dim]
    eps = float(label_smoothing) if label_smoothing > 0 else 0.0
    class_weights = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n_classes)
    return x, class_dim, n_classes, log_softmax(x, class_dim), eps, class_weights


def cross_entropy(
    dtype: Dtype,
    input: F64,
    target: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tracked:
    x, class_dim, n_classes, logp, eps, class_weights = _cross_entropy_parts(dtype, input, weight, label_smoothing)
    w_along_classes = Tracked.exact(class_weights.reshape(_class_shape(x.value.ndim, n_classes)), dtype)
    if np.shape(target) == np.shape(input):
        t = Tracked.exact(target, dtype)
        if eps > 0:
            t = t * t.constant(1.0 - eps) + t.constant(eps / n_classes)
        losses = -((logp * t) * w_along_classes).sum(axis=class_dim)
        return _reduce(losses, reduction, None)

    nll = _nll(logp, target, weight, ignore_index, reduction, dtype)
    if eps == 0:
        return nll
    _, _, kept, safe, w_plain = _index_target_parts(x.value, target, weight, ignore_index)
    smooth = (-(logp * w_along_classes).sum(axis=class_dim)).where(kept, 0.0)
    class_weight = Tracked.exact(np.where(kept, w_plain[safe], 0.0), dtype)
    smooth = _reduce(smooth, reduction, class_weight)
    return nll * nll.constant(1.0 - eps) + smooth * smooth.constant(eps / n_classes)


def binary_cross_entropy(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, reduction: str = "mean"
) -> Tracked:
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    log_p = p.log().clamp_min(reference.LOG_CLAMP)
    log_1mp = (-p).log1p().clamp_min(reference.LOG_CLAMP)
    losses = (y - 1.0) * log_1mp - y * log_p
    if weight is not None:
        losses = losses * Tracked.exact(weight, dtype)
    return _reduce(losses.broadcast_to(np.shape(target)), reduction, None)


def binary_cross_entropy_with_logits(
    dtype: Dtype,
    input: F64,
    target: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    log_sigmoid = x.minimum(0.0) - (-(x.abs())).exp().log1p()
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((Tracked.exact(pos_weight, dtype) - 1.0) * y + 1.0)
    losses = (1.0 - y) * x - log_sigmoid
    if weight is not None:
        losses = losses * Tracked.exact(weight, dtype)
    return _reduce(losses.broadcast_to(np.shape(target)), reduction, None)


def kl_div(dtype: Dtype, input: F64, target: F64, reduction: str = "mean", log_target: bool = False) -> Tracked:
    """xlogy(t, t) - t * x, or exp(t) * (t - x) with log_target; 'batchmean' divides by the input's first size."""
    shape = np.broadcast_shapes(np.shape(input), np.shape(target))
    x = Tracked.exact(input, dtype).broadcast_to(shape)
    t = Tracked.exact(target, dtype).broadcast_to(shape)
    if log_target:
        losses = t.exp() * (t - x)
    else:
        t_log_t = t.log() * t
        zero = t.value == 0  # xlogy(0, y) is exactly 0
        losses = x._like(np.where(zero, 0.0, t_log_t.value), np.where(zero, 0.0, t_log_t.error)) - t * x
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / float(losses.value.size)
    return total / float(np.shape(input)[0]) if np.ndim(input) else total


@dataclass(frozen=True)
class _FocalParts:
    """torchvision's intermediate tensors, tracked: its backward reuses them."""

    x: Tracked
    y: Tracked
    p: Tracked
    ce: Tracked
    miss: Tracked  # 1 - p_t
    modulating: Tracked  # (1 - p_t) ** gamma
    alpha_t: Tracked | None
    loss: Tracked  # per element, before the reduction


def _focal_parts(dtype: Dtype, input: F64, target: F64, alpha: float, gamma: float) -> _FocalParts:
    """torchvision.ops.sigmoid_focal_loss's order: p = sigmoid(x); ce = BCEWithLogits(x, y, 'none');
    p_t = p y + (1 - p)(1 - y); loss = ce (1 - p_t)^gamma; then alpha_t = alpha y + (1 - alpha)(1 - y) times it."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    p = x.sigmoid()
    ce = binary_cross_entropy_with_logits(dtype, input, target, reduction="none")
    miss = 1.0 - (p * y + (1.0 - p) * (1.0 - y))
    # For targets in [0, 1] and p in [0, 1], p y + (1 - p)(1 - y) cannot round above 1 (rounding is monotone and
    # y + fl(1 - y) exceeds 1 by at most half an ulp, which rounds back to 1): torch's 1 - p_t is never negative.
    in_unit_interval = bool(np.all((target >= 0) & (target <= 1)))
    modulating = miss.power(gamma, base_nonnegative=in_unit_interval)
    loss = ce * modulating
    alpha_t = None
    if alpha >= 0:  # Python floats, rounded to the dtype when they meet the tensors
        alpha_t = y * x.constant(alpha) + (1.0 - y) * x.constant(1.0 - alpha)
        loss = alpha_t * loss
    return _FocalParts(x, y, p, ce, miss, modulating, alpha_t, loss)


def sigmoid_focal_loss(
    dtype: Dtype, input: F64, target: F64, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tracked:
    return _reduce(_focal_parts(dtype, input, target, alpha, gamma).loss, reduction, None)


MODELS: dict[str, Callable[..., Tracked]] = {
    "binary_cross_entropy": binary_cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "nll_loss": nll_loss,
    "cross_entropy": cross_entropy,
    "kl_div": kl_div,
    "sigmoid_focal_loss": sigmoid_focal_loss,
}


def error_bound(loss: str, dtype: Dtype, input: F64, target: F64, **kwargs: Any) -> F64:
    """The largest absolute error torch may make computing ``loss`` in ``dtype`` (per output element).

    ``inf`` marks a result no finite bound describes (a mean over a total weight rounding could cancel,
    or a value that may round past the dtype's largest finite number).
    """
    return MODELS[loss](dtype, input, target, **kwargs).error


# ---------------------------------------------------------------------------------------------
# Compositions used by the article's identities.
# ---------------------------------------------------------------------------------------------


def sigmoid_then_bce_sensitivity(dtype: Dtype, x: F64, target: F64, weight: F64 | None = None) -> F64:
    """How far BCE(sigmoid(x), y) can move because sigmoid(x) was rounded (per element).

    With p' = p(1 + d), |d| <= c u: |log p' - log p| <= -log(1 - c u), and since
    1 - p' = (1 - p)(1 - d p / (1 - p)) and p / (1 - p) = e^x,
    |log(1 - p') - log(1 - p)| <= -log(1 - c u e^x). The second term is what makes the
    identity ill-conditioned for large x; it is infinite once c u e^x >= 1.
    """
    cu = SIGMOID_ERROR * (dtype.unit_roundoff + FLOAT64.unit_roundoff)
    y = np.asarray(target, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        amplified = cu * np.exp(np.asarray(x, dtype=np.float64))
        positive = -np.log1p(-cu)
        negative = np.where(amplified < 1, -np.log1p(-amplified), np.inf)
        per_element = np.abs(y) * positive + np.where(y == 1, 0.0, np.abs(1 - y) * negative)
    w = 1.0 if weight is None else np.abs(np.asarray(weight, dtype=np.float64))
    return np.asarray(w * per_element)


def focal_from_bce(dtype: Dtype, input: F64, target: F64, gamma: float) -> Tracked:
    """The focal loss rebuilt from torch's BCEWithLogits b for labels 0 and 1, where p_t = e^-b:
    b * (-expm1(-b)) ** gamma, in that order."""
    b = binary_cross_entropy_with_logits(dtype, input, target, reduction="none")
    return b * (-((-b).expm1())).power(gamma)


def softmax_log_nll(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tracked:
    """The article's three steps: p = softmax(x); log p; NLL."""
    x = Tracked.exact(input, dtype)
    dim = _class_dim(x.value.ndim)
    exps = (x - np.max(x.value, axis=dim, keepdims=True)).exp()
    total = exps.sum(axis=dim)
    total = x._like(np.expand_dims(total.value, dim), np.expand_dims(total.error, dim))
    return _nll((exps / total).log(), target, weight, ignore_index, reduction, dtype)


# ---------------------------------------------------------------------------------------------
# Gradients with respect to the input, replayed in the order of torch's backward formulas
# (aten's *_backward kernels, and autograd's chain through log_softmax for cross-entropy).
# Products are bounded the same in any order, so only sums and the places where a division
# happens matter; those follow torch.
# ---------------------------------------------------------------------------------------------


def _upstream(dtype: Dtype, grad_output: F64, reduction: str, count: float) -> Tracked:
    """grad_output as the per-element kernels see it: divided by the element count for 'mean'."""
    go = Tracked.exact(grad_output, dtype)
    return go / float(count) if reduction == "mean" else go


def binary_cross_entropy_grad(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, weight: F64 | None = None, reduction: str = "mean"
) -> Tracked:
    """grad * (p - y) / max(p (1 - p), 1e-12) [* w] [/ numel]."""
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    go = Tracked.exact(grad_output, dtype)
    result = (go * (p - y)) / (p * (1.0 - p)).clamp_min(BCE_GRAD_EPSILON)
    if weight is not None:
        result = result * Tracked.exact(weight, dtype)
    if reduction == "mean":
        result = result / float(np.size(target))
    return result.broadcast_to(np.shape(target))


# torch's BCE backward divides by max(p (1 - p), 1e-12): the named divergence in test_gradients.py.
BCE_GRAD_EPSILON = 1e-12


def binary_cross_entropy_with_logits_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    """(sigmoid(x) - y) * grad, or ((pw y + 1 - y) sigmoid(x) - pw y) * grad; [* w] [/ numel]."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    go = Tracked.exact(grad_output, dtype)
    if pos_weight is None:
        result = (x.sigmoid() - y) * go
    else:
        t = Tracked.exact(pos_weight, dtype) * y
        result = (((t + 1.0) - y) * x.sigmoid() - t) * go
    if weight is not None:
        result = result * Tracked.exact(weight, dtype)
    if reduction == "mean":
        result = result / float(np.size(target))
    return result.broadcast_to(np.shape(target))


def _expand(per_position: Tracked, class_dim: int) -> Tracked:
    if per_position.value.ndim == 0:
        return per_position
    return per_position._like(
        np.expand_dims(per_position.value, class_dim), np.expand_dims(per_position.error, class_dim)
    )


def _nll_grad(
    dtype: Dtype,
    shape: tuple[int, ...],
    target: F64,
    grad_output: F64,
    weight: F64 | None,
    ignore_index: int,
    reduction: str,
    scale: float = 1.0,
) -> Tracked:
    """-(w[y] * (grad [* scale] / total_weight)) at the target class, exact 0 elsewhere and where ignored."""
    class_dim, n_classes, kept, safe, w = _index_target_parts(np.zeros(shape), target, weight, ignore_index)
    class_weight = Tracked.exact(np.where(kept, w[safe] if w.size else 0.0, 0.0), dtype)
    go = Tracked.exact(grad_output, dtype)
    if scale != 1.0:
        go = go * go.constant(scale)
    if reduction == "mean":
        go = go / class_weight.sum()
    per_position = -(class_weight * go)
    classes = np.arange(n_classes).reshape(_class_shape(len(shape), n_classes))
    one_hot = (classes == np.expand_dims(safe, class_dim)) & np.expand_dims(kept, class_dim)
    expanded = _expand(per_position, class_dim).broadcast_to(shape)
    return expanded.where(one_hot, 0.0)


def nll_loss_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tracked:
    return _nll_grad(dtype, np.shape(input), target, grad_output, weight, ignore_index, reduction)


def _log_softmax_backward(grad: Tracked, logp: Tracked, class_dim: int) -> Tracked:
    """torch's log_softmax backward: grad - exp(output) * sum(grad) along the class dimension."""
    total = _expand(grad.sum(axis=class_dim), class_dim)
    return grad - logp.exp() * total


def cross_entropy_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tracked:
    x, class_dim, n_classes, logp, eps, class_weights = _cross_entropy_parts(dtype, input, weight, label_smoothing)
    w_along = Tracked.exact(class_weights.reshape(_class_shape(x.value.ndim, n_classes)), dtype)
    go = _expand(Tracked.exact(grad_output, dtype), class_dim)
    if np.shape(target) == np.shape(input):
        t = Tracked.exact(target, dtype)
        if eps > 0:
            t = t * t.constant(1.0 - eps) + t.constant(eps / n_classes)
        if reduction == "mean":
            go = go / float(x.value.size // n_classes if n_classes else 0)
        grad = ((-go) * w_along) * t if weight is not None else (-go) * t
        return _log_softmax_backward(grad.broadcast_to(np.shape(input)), logp, class_dim)

    grad = _nll_grad(
        dtype, np.shape(input), target, grad_output, weight, ignore_index, reduction, scale=1.0 - eps if eps else 1.0
    )
    if eps > 0:
        _, _, kept, safe, w_plain = _index_target_parts(x.value, target, weight, ignore_index)
        smooth_go = go * go.constant(eps / n_classes)
        if reduction == "mean":
            smooth_go = smooth_go / Tracked.exact(np.where(kept, w_plain[safe], 0.0), dtype).sum()
        smooth = (-(smooth_go * w_along)).broadcast_to(np.shape(input))
        grad = grad + smooth.where(np.expand_dims(kept, class_dim) if kept.ndim else kept, 0.0)
    return _log_softmax_backward(grad, logp, class_dim)


def kl_div_grad(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, reduction: str = "mean", log_target: bool = False
) -> Tracked:
    """Autograd through kl_div's formula: -(g * t), or -(g * exp(t)), with g = grad_output divided first by the
    mean's element count or the batchmean's first size; summed over the dimensions the input was broadcast along."""
    shape = np.broadcast_shapes(np.shape(input), np.shape(target))
    t = Tracked.exact(target, dtype).broadcast_to(shape)
    go = Tracked.exact(grad_output, dtype)
    if reduction == "mean":
        go = go / float(int(np.prod(shape)))
    elif reduction == "batchmean" and np.ndim(input):
        go = go / float(np.shape(input)[0])
    gradient = -(go * (t.exp() if log_target else t))
    return _sum_to_shape(gradient.broadcast_to(shape), np.shape(input))


def _sum_to_shape(gradient: Tracked, shape: tuple[int, ...]) -> Tracked:
    """Autograd's reduction of a broadcast gradient back to the input's shape (a sum per input element)."""
    for _ in range(gradient.value.ndim - len(shape)):
        gradient = gradient.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and gradient.value.shape[axis] != 1:
            summed = gradient.sum(axis=axis)
            gradient = summed._like(np.expand_dims(summed.value, axis), np.expand_dims(summed.error, axis))
    return gradient


def sigmoid_focal_loss_grad(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tracked:
    """Autograd back through torchvision's graph: g (/ numel) [* alpha_t]; then to ce, g m, and to the modulating
    factor, g ce, through pow's backward g (gamma q^(gamma - 1)) (exactly 0 for gamma = 0), through 1 - p_t and
    p_t = p y + (1 - p)(1 - y) to g_p = g_pt y - g_pt (1 - y), through sigmoid's backward g_p (1 - p) p; the
    BCEWithLogits branch adds (sigmoid(x) - y) g_ce."""
    parts = _focal_parts(dtype, input, target, alpha, gamma)
    x, y, p = parts.x, parts.y, parts.p
    g = _upstream(dtype, grad_output, reduction, float(np.size(target))).broadcast_to(np.shape(target))
    if parts.alpha_t is not None:
        g = g * parts.alpha_t
    through_ce = (x.sigmoid() - y) * (g * parts.modulating)
    if gamma == 0:
        return through_ce
    in_unit_interval = bool(np.all((target >= 0) & (target <= 1)))
    g_pt = -((g * parts.ce) * (parts.miss.power(gamma - 1.0, base_nonnegative=in_unit_interval) * gamma))
    g_p = g_pt * y - g_pt * (1.0 - y)
    return (g_p * (1.0 - p)) * p + through_ce


GRADIENT_MODELS: dict[str, Callable[..., Tracked]] = {
    "binary_cross_entropy": binary_cross_entropy_grad,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits_grad,
    "nll_loss": nll_loss_grad,
    "cross_entropy": cross_entropy_grad,
    "kl_div": kl_div_grad,
    "sigmoid_focal_loss": sigmoid_focal_loss_grad,
}


def gradient_error_bound(loss: str, dtype: Dtype, input: F64, target: F64, grad_output: F64, **kwargs: Any) -> F64:
    """The largest absolute error torch's autograd may make in d(loss)/d(input), element-wise."""
    return GRADIENT_MODELS[loss](dtype, input, target, grad_output, **kwargs).error
