"""The tracked arithmetic: a float64 value with a rigorous bound on the absolute error torch's computation of
it in the dtype may carry, and the standard model's rule for each operation (see the package docstring).

Where no finite bound holds, each element also records which rule made it so (``Tracked.unbounded_by``, a code
from ``RULES``): the rule that fired at that element, or, where an operand's bound was already not finite, that
operand's rule, so that the root cause travels to the loss's result.

A replay runs on a batch of cases at once: every array carries its cases along its last axis (K cases, K >= 1), so that
one pass of NumPy operations bounds them all. Element-wise operations need nothing for it; ``Tracked.sum()`` (over
every axis) sums over each case's own axes, and ``ndim`` and ``size`` are a case's. ``one_case`` runs a replay on a
single case (a batch of one)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import reference

from ..cases import ARRAY_KWARGS
from ..dtypes import FLOAT32, FLOAT64, Dtype
from .summation import ANY_ORDER, Summation

# float32's unit roundoff with the reference's float64 rounding on top: a float32 accumulator's, as ``u`` is a dtype's.
FLOAT32_U = FLOAT32.unit_roundoff + FLOAT64.unit_roundoff

# exp, log and log1p in libm and in torch's vectorised kernels (SLEEF's 1-ulp variants) are
# accurate to within 1 ulp; 1 ulp is at most 2u, so each such call errs by at most 2u
# relative. Taken as 4u to leave room for 2-ulp implementations on other backends.
TRANSCENDENTAL_ERROR = 4.0

# torch's sigmoid takes one exp, one add and one division: its relative error is at most
# TRANSCENDENTAL_ERROR + 2 units of roundoff.
SIGMOID_ERROR = TRANSCENDENTAL_ERROR + 2.0

F64 = np.ndarray

# The arithmetic the bounds are derived for, three switches that an implementation under test (or the device) sets
# around its replays (verification/compare.py), each off by default:
# - "flush_to_zero": IEEE 754's gradual underflow by default: an operation whose exact result is below the smallest
#   normal number rounds to a subnormal, losing at most the subnormal spacing (eta). An implementation that flushes
#   subnormal results to zero (XLA on the CPU runs with FTZ) loses up to the smallest normal number there instead:
#   the standard model's absolute term is then the smallest normal (Higham, 2nd ed., section 2.1, on underflow
#   without gradual underflow).
# - "any_order": the sums an implementation computes in another order or accumulator than torch's (an adapter's
#   ``SUMS_IN_ANY_ORDER``) are bounded by the any-order model in the storage dtype (``summation.py``).
# - "other_device": on a device other than the CPU, torch runs other kernels (a GPU's block and warp reductions):
#   their trees of additions are not the CPU kernels' that ``summation.py`` reads, so each path keeps its
#   accumulator and roundings but is bounded for any order of its additions (height n - 1).
_SWITCHES = {"flush_to_zero": False, "any_order": False, "other_device": False}


@contextlib.contextmanager
def _switched(name: str, on: bool) -> Iterator[None]:
    previous, _SWITCHES[name] = _SWITCHES[name], on
    try:
        yield
    finally:
        _SWITCHES[name] = previous


def flushing_subnormals(on: bool = True) -> contextlib.AbstractContextManager[None]:
    """Within (when ``on``): replays bound an arithmetic that flushes subnormal results to zero."""
    return _switched("flush_to_zero", on)


def summing_in_any_order(on: bool = True) -> contextlib.AbstractContextManager[None]:
    """Within (when ``on``): every sum is bounded for any order in the storage dtype, whatever path it models."""
    return _switched("any_order", on)


def summing_on_another_device(on: bool = True) -> contextlib.AbstractContextManager[None]:
    """Within (when ``on``): every path's sum is bounded for any order of its additions (``Summation.in_any_order``)."""
    return _switched("other_device", on)


def arithmetic_now() -> tuple[bool, ...]:
    """The switches now set, in a fixed order: what a replay made now bounds (a key for a replay kept for reuse)."""
    return tuple(_SWITCHES[name] for name in sorted(_SWITCHES))


def on_another_device_now() -> bool:
    """Whether sums are now bounded for another device's kernels."""
    return _SWITCHES["other_device"]


def case_shape(array: Any) -> tuple[int, ...]:
    """The shape of each case in a batch (an array whose last axis holds the cases)."""
    return tuple(np.shape(array)[:-1])


def case_size(array: Any) -> int:
    return math.prod(case_shape(array))


def case_ndim(array: Any) -> int:
    return np.ndim(array) - 1


def one_case(replay: Callable[..., Tracked], dtype: Dtype, *arrays: Any, **kwargs: Any) -> Tracked:
    """``replay`` (of a batch of cases) run on one: every array argument (the positional ones after the dtype, and
    the array keywords, ``cases.ARRAY_KWARGS``) gains a last axis of size 1, and the result loses it."""

    def batch_of_one(array: Any) -> Any:
        return None if array is None else np.asarray(array)[..., np.newaxis]

    kwargs = {k: batch_of_one(v) if k in ARRAY_KWARGS else v for k, v in kwargs.items()}
    return replay(dtype, *(batch_of_one(a) for a in arrays), **kwargs).case(0)


@dataclass(frozen=True)
class Rule:
    """One reason no finite bound holds: its code (as ``Tracked.unbounded_by`` records it), a short name, and the
    sentence an exclusion under it reads as."""

    code: int
    name: str
    reason: str

    @property
    def exclusion(self) -> str:
        """The reason the ledger counts an example excluded under this rule by."""
        return f"no finite bound: {self.reason}"


# Every place the arithmetic below makes an error bound infinite (or NaN) names one of these rules. Where elements
# of one result are unbounded under several rules, the lowest code is the one reported (``first_rule``).
DIVISOR_NEAR_ZERO = 1
LOG_NEAR_ZERO = 2
POWER_BASE_NEAR_ZERO = 3
EXP_OVERFLOW = 4
PARTIAL_SUM_OVERFLOW = 5
OVERFLOW = 6
NAN_TERM = 7
NONFINITE_OPERAND = 8
TOO_MANY_TERMS = 9

RULES: dict[int, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            DIVISOR_NEAR_ZERO,
            "divisor_near_zero",
            "a divisor is within rounding error of 0 (a mean's total weight that rounding could cancel, or the "
            "max(p (1 - p), 1e-12) that BCE's gradient divides by, in float16, whose subnormal spacing exceeds 1e-12)",
        ),
        Rule(
            LOG_NEAR_ZERO,
            "log_near_zero",
            "a logarithm's argument is within rounding error of 0 (its error bound reaches its value)",
        ),
        Rule(
            POWER_BASE_NEAR_ZERO,
            "power_base_near_zero",
            "a power's base is within rounding error of 0 or below it (a fractional power of a negative base is "
            "NaN, a negative power of 0 is inf)",
        ),
        Rule(
            EXP_OVERFLOW,
            "exp_overflow",
            "an exponential of a finite value is past float64's range (torch's is inf, and a later 0 * inf is NaN)",
        ),
        Rule(
            PARTIAL_SUM_OVERFLOW,
            "partial_sum_overflow",
            "a partial sum of a sum's positive or of its negative terms may pass the dtype's largest finite value "
            "(and round to inf, though the total is finite)",
        ),
        Rule(
            OVERFLOW,
            "overflow",
            "a result, with its error bound, may pass the dtype's largest finite value (and round to inf)",
        ),
        Rule(
            NAN_TERM,
            "nan_term",
            "a sum has a NaN term, so its error bound is NaN, and a 'mean' or 'batchmean' dividing it (or a product "
            "with it) is taken as unbounded (its value is NaN)",
        ),
        Rule(
            NONFINITE_OPERAND,
            "nonfinite_operand",
            "an operand of a product, exponential, quotient, logarithm or power is inf or NaN, and the model "
            "propagates no finite error through it",
        ),
        Rule(
            TOO_MANY_TERMS,
            "too_many_terms",
            "a sum's tree of additions is too tall for its accumulator: h u >= 1, where gamma_h bounds nothing (a sum "
            "of more than 2048 terms bounded for any order in float16, or of more than 256 in bfloat16)",
        ),
    )
}

# The dtype of ``Tracked.unbounded_by``: 0 where the error bound is finite, else a code of ``RULES``.
CODE = np.int8


def merge_rules(*codes: Any) -> F64:
    """Element-wise, the lowest rule code among ``codes`` (broadcast together), 0 where none is set: the rule of a
    bound composed from several (a sum of bounds, or the larger of two)."""
    merged = np.zeros(np.broadcast_shapes(*(np.shape(c) for c in codes)), dtype=CODE)
    codes = tuple(c for c in codes if np.asarray(c).any())  # the common case, every bound finite: one test each
    for c in codes:
        c = np.asarray(c, dtype=CODE)
        merged = np.where((merged == 0) | ((c != 0) & (c < merged)), c, merged).astype(CODE)
    return merged


def first_rule(bound: Any, unbounded_by: Any) -> Rule | None:
    """The rule to report for a bound: the lowest code among its infinite elements; None if every element is
    finite (or NaN). An infinite element without a code is a defect of whatever composed the bound."""
    bound = np.asarray(bound)
    infinite = np.isinf(bound)
    if not infinite.any():
        return None
    codes = np.broadcast_to(np.asarray(unbounded_by, dtype=CODE), bound.shape)[infinite]
    codes = codes[codes != 0]
    assert codes.size, "an infinite bound with no rule recorded: pass the unbounded_by of every bound composed"
    return RULES[int(codes.min())]


def _attribute(error: Any, inherited: Any, fresh: Any) -> F64:
    """The rule of each element whose error bound is not finite: an operand's (``inherited``, where its bound was
    already not finite: the root cause), else the rule that fired here (``fresh``)."""
    finite = np.isfinite(error)
    if finite.all():  # the common case: nothing to attribute
        return np.zeros(np.shape(error), dtype=CODE)
    with np.errstate(invalid="ignore"):
        return np.where(finite, 0, np.where(inherited != 0, inherited, fresh)).astype(CODE)


def _along(codes: F64, axis: int | None) -> F64:
    """The lowest rule code along ``axis`` (0 where none is set): a reduction's inherited rule."""
    if not codes.any():
        return np.zeros(np.sum(codes, axis=axis).shape, dtype=CODE)
    top = np.iinfo(CODE).max
    lowest = np.min(np.where(codes == 0, top, codes), axis=axis, initial=top)
    return np.where(lowest == top, 0, lowest).astype(CODE)


def _times(a: F64, b: F64) -> F64:
    """One term of a product's propagated error: 0 when a factor is exactly 0 and the other finite, and inf
    for 0 * inf (an operand whose error is unbounded may itself be inf in torch, and 0 * inf is NaN)."""
    # Computed as a * b, whose only NaN is 0 * inf or a NaN factor (inf here), and + 0.0 (-0 becomes +0): a factor
    # that is exactly 0 with the other finite gives +0. One pass over arrays that may hold millions of elements.
    with np.errstate(invalid="ignore", over="ignore"):
        product = np.asarray(np.multiply(a, b))
        product += 0.0
        nan = np.isnan(product)
        if nan.any():
            product[nan] = np.inf
        return product


def _size(value: F64) -> F64:
    """|value| as a factor of a propagated error: 0 for NaN, whose product is NaN however the other factor moves."""
    size = np.asarray(np.abs(value))
    nan = np.isnan(size)
    if nan.any():
        size[nan] = 0.0
    return size


@dataclass(frozen=True)
class Tracked:
    """A value (computed in float64) and a bound on the absolute error of torch's computation."""

    value: F64
    error: F64
    # Per element, the code (in RULES) of the rule that made the error bound infinite or NaN; 0 where it is finite.
    unbounded_by: np.ndarray
    u: float
    eta: float
    largest: float  # the dtype's largest finite value: beyond it a rounded result may be inf
    smallest_normal: float  # the dtype's smallest normal number: sigmoid's absolute floor

    # -- construction ---------------------------------------------------------------------
    @staticmethod
    def exact(values: Any, dtype: Dtype) -> Tracked:
        """An input that is exactly representable in the dtype: no error yet."""
        v = np.asarray(values, dtype=np.float64)
        # The reference's own float64 rounding (its u and its subnormal floor) adds to torch's. float16 and bfloat16
        # are computed in float32 (torch's opmath) and the float32 result rounded to the dtype: a double rounding,
        # u_dtype + u_float32.
        narrower = dtype.unit_roundoff > FLOAT32.unit_roundoff
        u = dtype.unit_roundoff + FLOAT64.unit_roundoff + (FLOAT32.unit_roundoff if narrower else 0.0)
        eta = (
            dtype.smallest_normal if _SWITCHES["flush_to_zero"] else dtype.smallest_subnormal
        ) + FLOAT64.smallest_subnormal
        return Tracked(v, np.zeros_like(v), np.zeros(v.shape, dtype=CODE), u, eta, dtype.largest, dtype.smallest_normal)

    @property
    def ndim(self) -> int:
        """The rank of each case's array (the value's last axis holds the cases)."""
        return self.value.ndim - 1

    @property
    def size(self) -> int:
        """The number of elements of each case."""
        return math.prod(self.value.shape[:-1])

    def case(self, k: int) -> Tracked:
        """The k-th case of the batch, as a batch of none: its arrays without the cases' axis."""
        return Tracked(
            self.value[..., k],
            self.error[..., k],
            self.unbounded_by[..., k],
            self.u,
            self.eta,
            self.largest,
            self.smallest_normal,
        )

    def constant(self, c: float) -> Tracked:
        """A Python float that torch rounds to the dtype before using it."""
        return self._like(c, self.u * abs(c), 0)

    def _like(self, value: Any, error: Any, unbounded_by: Any) -> Tracked:
        """A result of this computation; ``unbounded_by`` names the rule of each element whose ``error`` is already
        not finite (an element without one, and one that may leave the dtype's range here, is OVERFLOW's)."""
        value, error = np.asarray(value, dtype=np.float64), np.asarray(error, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            # A result that may leave the dtype's range may round to inf: no finite bound holds.
            beyond = np.abs(value) + error > self.largest
            if beyond.any():
                error = np.where(np.isfinite(value) & beyond, np.inf, error)
        # An error that the float64 arithmetic of a bound itself took past float64's range is OVERFLOW's too.
        by = _attribute(error, np.asarray(unbounded_by, dtype=CODE), OVERFLOW)
        return Tracked(value, error, by, self.u, self.eta, self.largest, self.smallest_normal)

    def _rounded(self, value: Any, propagated: Any, unbounded_by: Any, relative: float = 1.0) -> Tracked:
        """Add one rounding (``relative`` units of u, plus eta) to the propagated error."""
        value = np.asarray(value, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            rounding = np.asarray(np.abs(value))
            rounding *= relative * self.u
            rounding += self.eta
            nonfinite = ~np.isfinite(value)
            if nonfinite.any():
                rounding[nonfinite] = 0.0
        return self._like(value, propagated + rounding, unbounded_by)

    def _scalar(self, c: float) -> Tracked:
        v = np.asarray(float(c))
        return Tracked(
            v, np.zeros_like(v), np.zeros((), dtype=CODE), self.u, self.eta, self.largest, self.smallest_normal
        )

    def _lift(self, other: Tracked | float | F64) -> Tracked:
        if isinstance(other, Tracked):
            return other
        v = np.asarray(other, dtype=np.float64)
        return self._like(v, np.zeros_like(v), 0)

    def expand_dims(self, axis: int) -> Tracked:
        return self._like(
            np.expand_dims(self.value, axis), np.expand_dims(self.error, axis), np.expand_dims(self.unbounded_by, axis)
        )

    # -- arithmetic -----------------------------------------------------------------------
    def __add__(self, other: Tracked | float | F64) -> Tracked:
        o = self._lift(other)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, in torch as here
            propagated = self.error + o.error
            by = _attribute(propagated, merge_rules(self.unbounded_by, o.unbounded_by), OVERFLOW)
            return self._rounded(self.value + o.value, propagated, by)

    def __radd__(self, other: float | F64) -> Tracked:
        return self + other

    def __neg__(self) -> Tracked:
        return self._like(-self.value, self.error, self.unbounded_by)  # exact

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
        # With both errors finite, only an infinite factor or float64's overflow makes the propagated error inf.
        fresh = np.where(np.isinf(self.value) | np.isinf(o.value), NONFINITE_OPERAND, OVERFLOW)
        by = _attribute(propagated, merge_rules(self.unbounded_by, o.unbounded_by), fresh)
        return self._rounded(product, propagated, by)

    def __rmul__(self, other: float | F64) -> Tracked:
        return self * other

    def __truediv__(self, other: Tracked | float | F64) -> Tracked:
        # A Python number divides as torch takes a scalar: converted to the computation's type (float32 for float16
        # and bfloat16, where a count past 65504 is still finite), not to the dtype.
        o = self._scalar(other) if isinstance(other, (int, float)) else self._lift(other)
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
            # With both errors finite: an inexact divisor whose interval reaches 0; else an inf or NaN quotient of
            # an inf or NaN operand over an inexact divisor; else float64's overflow.
            finite_operands = np.isfinite(self.value) & np.isfinite(o.value)
            fresh = np.where(
                (o.error > 0) & (margin <= 0),
                DIVISOR_NEAR_ZERO,
                np.where(np.isfinite(quotient) | finite_operands, OVERFLOW, NONFINITE_OPERAND),
            )
        by = _attribute(propagated, merge_rules(self.unbounded_by, o.unbounded_by), fresh)
        return self._rounded(quotient, propagated, by)

    # -- functions ------------------------------------------------------------------------
    def exp(self) -> Tracked:
        """e^x, and no finite bound where e^x of a finite x is past float64's range: torch's e^x is inf there
        (past the dtype's range, ``_like`` says the same), while the reference carries e^x exactly (e^710 * 0 is 0
        to it and NaN to torch)."""
        with np.errstate(over="ignore", invalid="ignore"):
            value = np.exp(self.value)
            propagated = _times(value, np.expm1(self.error))
            past_float64 = np.isfinite(self.value) & np.isinf(value)
            propagated = np.where(past_float64, np.inf, propagated)
        fresh = _exponential_rule(self.value, past_float64)
        return self._rounded(value, propagated, _attribute(propagated, self.unbounded_by, fresh), TRANSCENDENTAL_ERROR)

    def expm1(self) -> Tracked:
        """e^x - 1 as one function (accurate near 0, where exp(x) - 1 cancels); e^(x + d) - e^x = e^x (e^d - 1)."""
        with np.errstate(over="ignore"):
            value = np.expm1(self.value)
            e_x = np.exp(self.value)
            propagated = _times(e_x, np.expm1(self.error))
        fresh = _exponential_rule(self.value, np.isfinite(self.value) & np.isinf(e_x))
        return self._rounded(value, propagated, _attribute(propagated, self.unbounded_by, fresh), TRANSCENDENTAL_ERROR)

    def log(self) -> Tracked:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.log(self.value)
            ratio = self.error / self.value
            propagated = np.where(self.error == 0, 0.0, np.where(ratio < 1, -np.log1p(-ratio), np.inf))
        by = _attribute(propagated, self.unbounded_by, _logarithm_rule(self.value))
        return self._rounded(value, propagated, by, TRANSCENDENTAL_ERROR)

    def log1p(self) -> Tracked:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.log1p(self.value)
            ratio = self.error / (1.0 + self.value)
            propagated = np.where(self.error == 0, 0.0, np.where(ratio < 1, -np.log1p(-ratio), np.inf))
        by = _attribute(propagated, self.unbounded_by, _logarithm_rule(self.value))
        return self._rounded(value, propagated, by, TRANSCENDENTAL_ERROR)

    def sigmoid(self) -> Tracked:
        """sigmoid is 1/4-Lipschitz; torch's evaluation errs by at most SIGMOID_ERROR units of roundoff, and by
        up to the smallest normal number in absolute terms: it evaluates 1 / (1 + e^-x), and once e^-x
        overflows (sigmoid(x) is then below the smallest normal) the result is 0, not the subnormal value."""
        value = reference.sigmoid(self.value)
        rounded = self._rounded(value, 0.25 * self.error, self.unbounded_by, SIGMOID_ERROR)
        return self._like(value, rounded.error + self.smallest_normal, rounded.unbounded_by)

    def power(self, exponent: float, base_nonnegative: bool | F64 = False) -> Tracked:
        """x ** exponent for an exponent exact in the dtype. x^0 is exactly 1 (NaN and 0 included), as in torch.
        Otherwise the propagated error is the largest change of b^exponent over the interval [x - e, x + e], where
        it is monotone; an interval reaching below 0 is unbounded for a fractional exponent (a negative base gives
        NaN) and, for a negative one, an interval containing 0 is unbounded (0 to a negative power is inf).
        ``base_nonnegative``: torch's base is known to be >= 0, so the interval starts at 0 at the lowest."""
        if exponent == 0:
            return self._like(np.ones_like(self.value), np.zeros_like(self.value), 0)
        low, high = self.value - self.error, self.value + self.error
        low = np.where(base_nonnegative, np.maximum(low, 0.0), low)
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
        # Otherwise a NaN change is an inf or NaN base's, or inf - inf where float64's power overflowed.
        fresh = np.where(
            unbounded, POWER_BASE_NEAR_ZERO, np.where(np.isfinite(self.value), OVERFLOW, NONFINITE_OPERAND)
        )
        by = _attribute(propagated, self.unbounded_by, fresh)
        # std::pow is accurate to 1 ulp in libm, as exp and log are; an exponent of 2 is a single product.
        return self._rounded(value, propagated, by, 1.0 if exponent == 2 else TRANSCENDENTAL_ERROR)

    def abs(self) -> Tracked:
        return self._like(np.abs(self.value), self.error, self.unbounded_by)  # exact

    def clamp_min(self, floor: float) -> Tracked:
        """max(x, floor): 1-Lipschitz, so it never adds error; certainly-below values become exact."""
        certainly_below = (self.value + self.error <= floor) | (self.value == -np.inf)
        return self._like(
            np.where(certainly_below, floor, np.maximum(self.value, floor)),
            np.where(certainly_below, 0.0, self.error),
            np.where(certainly_below, 0, self.unbounded_by),
        )

    def minimum(self, other: float) -> Tracked:
        return self._like(np.minimum(self.value, other), self.error, self.unbounded_by)  # 1-Lipschitz, exact

    def sum(self, axis: int | None = None, order: Summation = ANY_ORDER) -> Tracked:
        """A sum computed as ``order`` says (``summation.py``): gamma_h in its accumulator's unit roundoff times the
        sum of magnitudes, plus the terms' errors, plus u of the storage dtype times what is rounded to it (the
        result of a float32 accumulator, per-thread partial sums). ``axis`` is one of a case's axes; None sums over
        all of them, each case on its own. Under ``summing_in_any_order`` every order is ANY_ORDER; under
        ``summing_on_another_device`` every path is taken in any order (``Summation.in_any_order``).

        Where partial sums are kept in the storage dtype, in some order one reaches the sum of the positive terms,
        or of the negative ones: where that may pass the dtype's largest value, the partial sum may round to inf
        though the total is finite, and no finite bound holds (torch's float16 K-dimensional NLL on the CPU
        accumulates in float16: terms -5840 and -59680 give -inf, with a total of -65115)."""
        if _SWITCHES["any_order"]:
            order = ANY_ORDER
        elif _SWITCHES["other_device"]:
            order = order.in_any_order()
        summed = tuple(range(self.ndim)) if axis is None else (axis,)
        n = math.prod(self.value.shape[a] for a in summed)
        kept = [a for a in range(self.value.ndim) if a not in summed]

        def terms(array: F64) -> F64:
            # The summed axes as one last, contiguous axis: NumPy then adds each case's terms in one order whatever
            # the number of cases, so that a batch's bounds are those of its cases replayed one by one, bit for bit.
            moved = np.broadcast_to(array, self.value.shape).transpose((*kept, *summed))
            return np.ascontiguousarray(moved).reshape((*moved.shape[: len(kept)], n))

        x, e = terms(self.value), terms(self.error)
        # torch's opmath: float32 for float16 and bfloat16 (and the reference's float64 rounding on top, as for u).
        in_float32 = order.opmath and self.u > FLOAT32_U
        u = FLOAT32_U if in_float32 else self.u
        height = min(n - 1, order.height(n)) if n > 1 else 0  # no term meets more than the n - 1 additions
        gamma = height * u / (1 - height * u) if height * u < 1 else math.inf
        with np.errstate(invalid="ignore", over="ignore"):
            value = np.sum(x, axis=-1)
            magnitude = np.sum(np.abs(x), axis=-1)
            rounding = np.where(magnitude == 0, 0.0, gamma * magnitude)  # terms all 0 add exactly, however many
            propagated = np.sum(e, axis=-1) + rounding + height * self.eta
            if in_float32 and order.rounds_partials(n):  # each thread's partial sum stored in the storage dtype
                propagated = propagated + self.u * magnitude
            if in_float32 and order.rounds_result:  # the float32 result stored in the storage dtype
                propagated = propagated + self.u * (np.abs(value) + rounding) + self.eta
            if not in_float32 or order.rounds_partials(n):  # partial sums held in the storage dtype
                reach = np.maximum(
                    np.sum(np.where(x > 0, x, 0.0), axis=-1),
                    np.sum(np.where(x < 0, -x, 0.0), axis=-1),
                )
                propagated = np.where(np.isfinite(value) & (reach + propagated > self.largest), np.inf, propagated)
            # A term without a finite bound leaves the sum without one, also where that term's value is NaN (0 * inf
            # where torch's e^x overflowed) and the magnitudes' sum is NaN with it.
            propagated = np.where(np.any(np.isinf(e), axis=-1), np.inf, propagated)
        # Terms with finite errors: a NaN term makes the bound NaN (gamma times a NaN magnitude); an inf one is a
        # partial sum past the dtype's range (or float64's, which the magnitudes' sum passed).
        fresh = np.where(np.isnan(propagated), NAN_TERM, TOO_MANY_TERMS if gamma == math.inf else PARTIAL_SUM_OVERFLOW)
        by = _attribute(propagated, _along(terms(self.unbounded_by), -1), fresh)
        if in_float32 and not order.rounds_result:  # a float32 result: float32's range, until it is rounded
            return dataclasses.replace(
                dataclasses.replace(self, largest=FLOAT32.largest)._like(value, propagated, by), largest=self.largest
            )
        return self._like(value, propagated, by)

    def where(self, condition: F64, other: Tracked | float) -> Tracked:
        o = self._lift(other)
        return self._like(
            np.where(condition, self.value, o.value),
            np.where(condition, self.error, o.error),
            np.where(condition, self.unbounded_by, o.unbounded_by),
        )

    def take(self, index: F64, axis: int) -> Tracked:
        pick = np.expand_dims(index, axis)
        return self._like(
            np.squeeze(np.take_along_axis(self.value, pick, axis), axis),
            np.squeeze(np.take_along_axis(self.error, pick, axis), axis),
            np.squeeze(np.take_along_axis(self.unbounded_by, pick, axis), axis),
        )

    def broadcast_to(self, shape: tuple[int, ...]) -> Tracked:
        return self._like(
            np.broadcast_to(self.value, shape),
            np.broadcast_to(self.error, shape),
            np.broadcast_to(self.unbounded_by, shape),
        )

    @staticmethod
    def larger(a: Tracked, b: Tracked) -> Tracked:
        """Two evaluation orders of one quantity: keep the larger error bound."""
        return a._like(a.value, np.maximum(a.error, b.error), merge_rules(a.unbounded_by, b.unbounded_by))


def _exponential_rule(x: F64, past_float64: F64) -> F64:
    """The rule of an exponential's unbounded error, where x's own bound was finite: EXP_OVERFLOW where e^x of a
    finite x is past float64's range; an inf or NaN x's; else float64's overflow of e^x (e^d - 1)."""
    return np.where(past_float64, EXP_OVERFLOW, np.where(np.isfinite(x), OVERFLOW, NONFINITE_OPERAND))


def _logarithm_rule(x: F64) -> F64:
    """The rule of a logarithm's unbounded error, where x's own bound was finite and not 0: its error reaches its
    argument (or the argument is 0), unless x is NaN."""
    return np.where(np.isnan(x), NONFINITE_OPERAND, LOG_NEAR_ZERO)
