"""float32 numbers by their bit patterns, and the correctly rounded float32 value of an exact function.

Keys: every float32 bit pattern has a key (a uint32) such that keys ascend with the values they stand for: the
negative NaNs first, then -inf, the negative numbers, -0, +0, the positive numbers, +inf and the positive NaNs. A
chunk of consecutive keys is an interval of float32 values, which is what lets the engine cut a chunk into the
ranges where the correctly rounded value is known in closed form and the range where it needs the reference.

Correct rounding: the float64 reference is within ``REFERENCE_ACCURACY`` (relative) of the exact value; wherever
both ends of that interval round to the same float32, that float32 is the correctly rounded value (rounding is
monotone). Elsewhere the exact value lies near a float32 rounding midpoint and mpmath settles which side, at
increasing precision, with ties to even where it is the midpoint exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import mpmath  # type: ignore[import-untyped]  # mpmath ships neither type stubs nor a py.typed marker
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

SIGN = np.uint32(0x80000000)

# The float64 references of the sweeps (exhaustive/sweeps.py) are within a few float64 ulps (2^-52 relative) of
# the exact value; 2^-44 leaves a factor of 256 and still sends only about 2^-19 of the inputs to mpmath.
# tests/meta/test_exhaustive_engine.py checks the premise against mpmath.
REFERENCE_ACCURACY = 2.0**-44

# A value at or above this rounds to +inf in float32 (the midpoint between the largest float32 and 2^128).
OVERFLOW_MIDPOINT = 2.0**128 - 2.0**103


def bits_of_keys(keys: np.ndarray) -> npt.NDArray[np.uint32]:
    keys = np.asarray(keys, dtype=np.uint32)
    return np.where(keys >= SIGN, keys ^ SIGN, ~keys).astype(np.uint32)


def keys_of_bits(bits: np.ndarray) -> npt.NDArray[np.uint32]:
    bits = np.asarray(bits, dtype=np.uint32)
    return np.where(bits & SIGN, ~bits, bits | SIGN).astype(np.uint32)


def key_of(value: float) -> int:
    """The key of a float32 value (given as any float that float32 represents exactly)."""
    return int(keys_of_bits(np.array([value], dtype=np.float32).view(np.uint32))[0])


def value_of_key(key: int) -> float:
    return float(bits_of_keys(np.array([key], dtype=np.uint32)).view(np.float32)[0])


def ordinal(values: F32 | np.float32) -> npt.NDArray[np.int64]:
    """Signed position on the float32 line, +0 and -0 both at 0: the difference of two ordinals is their distance in
    ulps (inf counts as one past the largest finite number)."""
    bits = np.asarray(values, dtype=np.float32).view(np.int32)
    # A negative number's bits, as int32, are INT32_MIN + its magnitude: INT32_MIN - bits is minus the magnitude.
    return np.where(bits < 0, np.int32(-(2**31)) - bits, bits).astype(np.int64)


# An exact function for mpmath: x -> (head, tail), the value head + tail, with head exactly representable (the
# large part: x, 3x, 1, 0 or 100) and tail computed to the working precision's relative accuracy. The sum is never
# formed: head minus a midpoint is exact, so that a tail far below the head's last bit (softplus(x) = x + e^-x at
# x = 1e38) still decides the side.
ExactFunction = Callable[[mpmath.mpf], tuple[mpmath.mpf, mpmath.mpf]]


def ordinal32(values: F32) -> npt.NDArray[np.int32]:
    """``ordinal`` of finite float32 numbers, as int32 (the difference of two needs int64)."""
    bits = values.view(np.int32)
    return np.where(bits < 0, np.int32(-(2**31)) - bits, bits)


def correctly_rounded(reference: F64, x: F32, exact: ExactFunction) -> tuple[F32, int]:
    """The correctly rounded float32 values of the exact function at ``x``, given its float64 ``reference`` there;
    and how many mpmath had to settle."""
    rounded, near_midpoint = rounded_unless_near_midpoint(reference)
    low = (reference[near_midpoint] * (1.0 - REFERENCE_ACCURACY)).astype(np.float32)
    for i, a in zip(near_midpoint, low, strict=True):
        rounded[i] = settle(float(x[i]), float(a), float(rounded[i]), exact)
    return rounded, int(near_midpoint.size)


def rounded_unless_near_midpoint(reference: F64) -> tuple[F32, npt.NDArray[np.intp]]:
    """The float32 rounding of the reference, and the indices where it may not be the correctly rounded value (the
    interval of the reference's accuracy holds a midpoint)."""
    with np.errstate(over="ignore", invalid="ignore"):
        low = (reference * (1.0 - REFERENCE_ACCURACY)).astype(np.float32)
        high = (reference * (1.0 + REFERENCE_ACCURACY)).astype(np.float32)
    # Bitwise: NaN against NaN agrees, and +0 against -0 does not.
    return high, np.flatnonzero(low.view(np.uint32) != high.view(np.uint32))


def midpoint(a: float, b: float) -> float:
    """The rounding midpoint between two adjacent float32 numbers (exact in float64)."""
    if np.isinf(a) or np.isinf(b):
        return float(np.copysign(OVERFLOW_MIDPOINT, a if np.isinf(a) else b))
    return (a + b) / 2.0


def settle(x: float, a: float, b: float, exact: ExactFunction) -> float:
    """Which of the adjacent float32 numbers ``a`` and ``b`` the exact value at ``x`` rounds to (to nearest, ties to
    even)."""
    low, high = min(a, b), max(a, b)
    gap = abs(int(ordinal(np.float32(high))) - int(ordinal(np.float32(low))))
    assert gap == 1, f"not adjacent float32 numbers: {a!r}, {b!r} (the reference is not accurate enough at {x!r})"
    side = side_of(exact, x, midpoint(low, high))
    if side > 0:
        return high
    if side < 0:
        return low
    # Exactly the midpoint: the one with an even last bit (+inf counts as even, as IEEE 754 has it).
    return low if int(np.float32(low).view(np.uint32)) % 2 == 0 else high


def side_of(exact: ExactFunction, x: float, mid: float) -> int:
    """+1 if the exact value at ``x`` is above ``mid``, -1 below, 0 if it is ``mid`` (its tail decides the side to
    2000 bits and no further: the sweeps' functions are transcendental except where they are rational, and their
    tails are then exactly 0)."""
    for precision in (80, 160, 500, 2000):
        with mpmath.workprec(precision):
            head, tail = exact(mpmath.mpf(x))
            difference = mpmath.fsub(head, mpmath.mpf(mid), exact=True) + tail
            # mpmath's elementary functions are within a few ulps at the working precision; 2^-(p - 16) is safe.
            if abs(difference) > abs(tail) * mpmath.mpf(2) ** (16 - precision):
                return 1 if difference > 0 else -1
    return 0
