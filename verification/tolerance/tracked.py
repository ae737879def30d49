"""The tracked arithmetic: a float64 value with a rigorous bound on the absolute error torch's computation of
it in the dtype may carry, and the standard model's rule for each operation (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import reference

from ..dtypes import FLOAT64, Dtype

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
