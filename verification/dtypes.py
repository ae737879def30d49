"""The floating dtypes the suite checks, with the constants the tolerance model needs.

Every input is drawn *in* the dtype under test (snapped to a representable value) and handed
to the reference as the same value in float64, so torch and the reference see identical
inputs and any difference is computation error, never input rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Dtype:
    name: str
    torch: torch.dtype
    # Unit roundoff u = 2^-p for a p-bit significand: the largest relative error of one
    # correctly rounded operation on normal numbers.
    unit_roundoff: float
    # The spacing of subnormal numbers: one operation that underflows errs by at most this
    # much in absolute terms (the gradual-underflow term of the standard model).
    smallest_subnormal: float
    smallest_normal: float
    largest: float
    # Width hypothesis.strategies.floats(width=...) can draw directly; bfloat16 has none.
    hypothesis_width: int

    def ulp(self, value: float) -> float:
        """The spacing of this dtype's numbers at ``value`` (the unit in the last place)."""
        if not math.isfinite(value) or value == 0:
            return self.smallest_subnormal
        exponent = math.frexp(abs(value))[1] - 1  # |value| in [2^exponent, 2^(exponent + 1))
        return max(math.ldexp(2 * self.unit_roundoff, exponent), self.smallest_subnormal)

    def ulps(self, values: np.ndarray) -> np.ndarray:
        """``ulp`` at each of ``values``, at once."""
        exponent = np.frexp(np.abs(values))[1] - 1
        with np.errstate(over="ignore"):
            spacing = np.ldexp(2 * self.unit_roundoff, exponent)
        return np.where(
            (values == 0) | ~np.isfinite(values), self.smallest_subnormal, np.maximum(spacing, self.smallest_subnormal)
        )

    def snap(self, values: np.ndarray) -> np.ndarray:
        """Round float64 values to this dtype and return them as float64 again."""
        return torch.as_tensor(np.asarray(values, dtype=np.float64)).to(self.torch).to(torch.float64).numpy()

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


def _describe(name: str, dt: torch.dtype, width: int) -> Dtype:
    info = torch.finfo(dt)
    return Dtype(
        name=name,
        torch=dt,
        unit_roundoff=info.eps / 2,
        smallest_subnormal=info.smallest_normal * info.eps,
        smallest_normal=info.smallest_normal,
        largest=info.max,
        hypothesis_width=width,
    )


FLOAT64 = _describe("float64", torch.float64, 64)
FLOAT32 = _describe("float32", torch.float32, 32)
FLOAT16 = _describe("float16", torch.float16, 16)
BFLOAT16 = _describe("bfloat16", torch.bfloat16, 32)

# The dtypes every parity property runs in: the tolerance model derives each one's bounds from its unit roundoff,
# subnormal spacing and largest value above, and tests/meta/test_tolerance.py shows them tight in each.
PARITY_DTYPES = (FLOAT64, FLOAT32, FLOAT16, BFLOAT16)
