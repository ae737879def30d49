"""Float64 values with an unbounded exponent, for gradients whose factors overflow or underflow on the way.

A mean's gradient is grad_output * w[y] / W times a probability term, and its factors need not be
representable one by one: a subnormal total weight W makes w / W overflow, and a tiny grad_output times a
subnormal weight underflows, although the whole product is an ordinary number (or exactly 0 where
grad_output is 0). For example, with weights [1, 1, 5e-324, 1, 1], target 2, label smoothing 0.5 and
grad_output 0, the gradient is 0 but (eps / C) * w_k / W is 4e321, and the naive product NaN.

``Scaled`` carries each value as a mantissa in [0.5, 1) and an integer exponent (``numpy.frexp``'s split), so
products and quotients round once per operation, as float64 would, but never overflow or underflow before
``value()`` rounds the result to float64 once more (to infinity only if the result itself overflows).
Zero, infinity and NaN keep their float64 behaviour: they live in the mantissa, and 0 * inf is NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]
Exponent = NDArray[np.int64]

# ln 2 split in two (Cody and Waite): LN2_HIGH holds its first 29 bits, so k * LN2_HIGH is exact for |k| < 2^24;
# LN2_LOW is the rest, ln 2 - LN2_HIGH, rounded (what it leaves out is 1.3e-27), both from ln 2 to 50 digits.
LN2_HIGH = float.fromhex("0x1.62e42ff000000p-1")
LN2_LOW = float.fromhex("-0x1.718432a1b0e26p-35")


class Scaled(NamedTuple):
    mantissa: F64
    exponent: Exponent

    @staticmethod
    def of(values: ArrayLike) -> Scaled:
        mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64))
        return Scaled(mantissa, exponent.astype(np.int64))

    @staticmethod
    def power_of_two(exponent: int) -> Scaled:
        return Scaled(np.asarray(0.5), np.asarray(exponent + 1, dtype=np.int64))

    @staticmethod
    def exp(t: ArrayLike) -> Scaled:
        """e^t for any t, also where float64's e^t overflows or underflows: e^t = 2^k e^r, k the integer nearest
        t / ln 2 and r = (t - k LN2_HIGH) - k LN2_LOW, |r| <= ln 2 / 2. The first difference is exact (Sterbenz:
        t and k LN2_HIGH are within a factor 2 of each other), so e^r errs by exp's own error and r's one
        rounding, u |r| <= u / 2. (Beyond |k| = 2^24, |t| > 1.1e7, e^t is past any float64 product anyway.)"""
        t = np.asarray(t, dtype=np.float64)
        finite = np.isfinite(t)
        with np.errstate(invalid="ignore"):
            k = np.where(finite, np.rint(t / np.log(2.0)), 0.0)
            r = np.where(finite, (t - k * LN2_HIGH) - k * LN2_LOW, t)
            mantissa, exponent = np.frexp(np.exp(r))
        return Scaled(mantissa, exponent.astype(np.int64) + k.astype(np.int64))

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Scaled:
        """The sum along ``axis``, its terms brought to the largest exponent among them (zeros and non-finite
        terms aside), so that terms past float64's range add up as they are: the smaller lose only digits below
        2^-1074 of the largest, far under the sum's own rounding."""
        counts = np.isfinite(self.mantissa) & (self.mantissa != 0)
        lowest = np.iinfo(np.int64).min // 4
        common = np.max(np.where(counts, self.exponent, lowest), axis=axis, keepdims=True, initial=lowest)
        common = np.where(common == lowest, 0, common)
        with np.errstate(invalid="ignore", over="ignore"):
            aligned = np.ldexp(self.mantissa, self.exponent - common)
            total = np.sum(aligned, axis=axis, keepdims=keepdims)
        return self._normalized(total, common if keepdims else np.squeeze(common, axis=axis))

    def where(self, condition: ArrayLike, other: Scaled) -> Scaled:
        """This value where ``condition`` holds, ``other`` elsewhere."""
        return Scaled(
            np.where(condition, self.mantissa, other.mantissa), np.where(condition, self.exponent, other.exponent)
        )

    def _normalized(self, mantissa: F64, exponent: Exponent) -> Scaled:
        with np.errstate(invalid="ignore"):
            renormalized, shift = np.frexp(mantissa)
        return Scaled(renormalized, exponent + shift)

    def __mul__(self, other: Scaled) -> Scaled:  # type: ignore[override]
        with np.errstate(invalid="ignore"):
            return self._normalized(self.mantissa * other.mantissa, self.exponent + other.exponent)

    def __truediv__(self, other: Scaled) -> Scaled:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._normalized(self.mantissa / other.mantissa, self.exponent - other.exponent)

    def __add__(self, other: Scaled) -> Scaled:  # type: ignore[override]
        """Both terms brought to the larger one's exponent (a zero's exponent counts as none), then added: the
        smaller term loses only digits below 2^-1074 of the larger, far under the sum's own rounding."""
        common = np.where(
            self.mantissa == 0,
            other.exponent,
            np.where(other.mantissa == 0, self.exponent, np.maximum(self.exponent, other.exponent)),
        )
        with np.errstate(invalid="ignore", over="ignore"):
            total = np.ldexp(self.mantissa, self.exponent - common) + np.ldexp(other.mantissa, other.exponent - common)
        return self._normalized(total, common)

    def value(self) -> F64:
        with np.errstate(over="ignore", under="ignore"):
            return np.asarray(np.ldexp(self.mantissa, self.exponent))
