"""The oracle's exact arithmetic: values carried with 60 digits, their magnitudes, the reductions, and the
complex-step derivative (the package docstring gives the reasoning)."""

from __future__ import annotations

from collections.abc import Callable
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
        return to_float(self.exact)

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


def to_float(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape, dtype=np.float64)
    for index in np.ndindex(values.shape):
        out[index] = float(values[index])
    return out


def mp(value: Any) -> mpmath.mpf:
    """A float64 as the mpmath number it exactly is."""
    return mpmath.mpf(float(value))


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def complex_step(function: Callable[[Number], Number], at: mpmath.mpf) -> mpmath.mpf:
    """d function / d at by the complex step: Im f(at + ih) / h, with no cancellation."""
    h = mpmath.ldexp(1, STEP_EXPONENT)
    return mpmath.im(function(mpmath.mpc(at, h))) / h


# ---------------------------------------------------------------------------------------------
# Reductions: per-position values and magnitudes into the loss's result.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denominator:
    """The 'mean' denominator D with S(D): the element count, or the summed class weights of kept targets."""

    value: mpmath.mpf
    magnitude: mpmath.mpf
    is_total_weight: bool


def reduce(values: np.ndarray, magnitudes: np.ndarray, reduction: str, denominator: Denominator) -> Exact:
    """'none' keeps the per-position values; 'sum' adds them; 'mean' divides the sum by D (NaN for D = 0)."""
    if reduction == "none":
        return Exact(values, to_float(magnitudes))
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


def gradient_coefficients(
    grad_output: Any, reduction: str, shape: tuple[int, ...], denominator: Denominator
) -> tuple[np.ndarray, np.ndarray]:
    """The chain rule through the reduction: the factor k_i that multiplies d(loss_i)/dx at each output position,
    and the factor that multiplies its magnitude, |k_i| (times S(D) / |D| for a weighted mean)."""
    output_shape = shape if reduction == "none" else ()
    g = np.broadcast_to(np.asarray(grad_output, dtype=np.float64), output_shape)
    coefficient = np.empty(output_shape, dtype=object)
    magnitude = np.empty(output_shape, dtype=object)
    for index in np.ndindex(output_shape):
        k = mp(g[index])
        conditioning = mpmath.mpf(1)
        if reduction == "mean":
            d = denominator.value
            k = k / d if d != 0 else mpmath.nan
            conditioning = denominator.magnitude / abs(d) if d != 0 else mpmath.inf
        coefficient[index] = k
        magnitude[index] = abs(k) * conditioning if mpmath.isfinite(k) else mpmath.inf
    return coefficient, magnitude
