"""What the values of a drawn array are made of, and the two ways of drawing them.

An ``Elements`` is a mixture of parts, each a range of floats or a set of values; every element of an array picks one
part with equal probability (as ``st.one_of`` picks a branch, nested mixtures flattened), then a value in it.

Arrays are drawn in one of two ways, chosen by the environment variable ``LOSS_PARITY_DRAWING``:

- ``seeded`` (the default): hypothesis draws one integer per array, and a NumPy generator seeded by it draws every
  element. Hypothesis spends tens of microseconds on each choice it makes, and an array drawn element by element
  costs several choices per element: that was most of an example's cost (docs/verification-log.md has the figures).
  The shape, the arguments and every other decision are still hypothesis's choices, and shrink as before; the i-th
  element in C order depends only on the seed and on i, so when hypothesis shrinks the shape, the elements that
  remain keep their values.
- ``element-wise``: hypothesis draws every element from the same mixture (``Elements.strategy``). This is how the
  suite drew before; it is kept for the benchmark's side-by-side figures and for anyone who wants hypothesis's
  shrinking of each value.

Within a range, the seeded draw favours what hypothesis's ``floats`` favours: one element in eight is the low end,
one the high end, one the simplest value (0, or the end nearest 0); three are uniform over the range and two have a
magnitude uniform in its logarithm (so that a range up to 1e4 also yields 1e-3, and one up to 1e-6 yields
subnormal values). Every value is rounded to the dtype under test and kept inside the range's ends as the dtype
rounds them inwards, so that it is exactly representable and still in its range.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from .dtypes import Dtype

DRAWING = os.environ.get("LOSS_PARITY_DRAWING", "seeded")
if DRAWING not in ("seeded", "element-wise"):
    raise ValueError(f"LOSS_PARITY_DRAWING={DRAWING!r}: expected 'seeded' or 'element-wise'")

# A log-uniform magnitude spans 40 binary orders below the range's largest magnitude.
LOG_SPAN = 40.0


@dataclass(frozen=True)
class Range:
    low: float
    high: float


@dataclass(frozen=True)
class Values:
    values: tuple[float, ...]


Part = Range | Values


@dataclass(frozen=True)
class Elements:
    parts: tuple[Part, ...]
    # Applied to the drawn (already rounded) values as a whole: a final adjustment such as stepping back inside an
    # open interval. A module-level function, so that an Elements stays hashable.
    adjust: Callable[[Dtype, np.ndarray], np.ndarray] | None = None

    def strategy(self, dtype: Dtype) -> st.SearchStrategy[float]:
        """The same mixture as hypothesis draws one element: what the element-wise drawing uses."""
        return _strategy(self, dtype)

    def sample(self, seed: int, dtype: Dtype, shape: tuple[int, ...]) -> np.ndarray:
        """An array of ``shape`` whose elements are drawn from this mixture by a generator seeded with ``seed``."""
        n = math.prod(shape)
        # Four uniform numbers per element, drawn at once: element i's depend on the seed and i alone. Each of the
        # four is then read as a contiguous column (the arrays may hold millions of elements).
        u = np.random.default_rng(seed).random((n, 4)).T.copy()
        part = np.minimum((u[0] * len(self.parts)).astype(np.int64), len(self.parts) - 1)
        values = np.zeros(n)
        for index, p in enumerate(self.parts):
            chosen = np.flatnonzero(part == index) if len(self.parts) > 1 else slice(None)
            if isinstance(p, Values):
                pick = np.minimum((u[1, chosen] * len(p.values)).astype(np.int64), len(p.values) - 1)
                values[chosen] = dtype.snap(np.asarray(p.values, dtype=np.float64))[pick]
            else:
                # Rounded to the dtype here, and kept inside the range's ends as the dtype rounds them inwards.
                inside_low, inside_high = _inward_ends(p, dtype)
                values[chosen] = np.clip(dtype.snap(_in_range(p, u[1:, chosen])), inside_low, inside_high)
        if self.adjust is not None:
            values = self.adjust(dtype, values)
        return values.reshape(shape)


def within(low: float, high: float) -> Elements:
    """Floats in [low, high]."""
    return Elements((Range(float(low), float(high)),))


def among(*values: float) -> Elements:
    """One of ``values``, each as likely."""
    return Elements((Values(tuple(float(v) for v in values)),))


def mixture(*elements: Elements) -> Elements:
    """Each part of each of ``elements`` as likely (``st.one_of`` of them, flattened as hypothesis flattens it)."""
    assert all(e.adjust is None for e in elements), "an adjusted Elements cannot be mixed: its adjustment would be lost"
    return Elements(tuple(p for e in elements for p in e.parts))


def _in_range(p: Range, u: np.ndarray) -> np.ndarray:
    """Values in [p.low, p.high] from three uniform numbers each (``u``'s rows): the kind (end, simplest, uniform,
    log-uniform), the position, and the side of 0 for a log-uniform magnitude in a range that contains 0."""
    low, high = p.low, p.high
    kind = np.minimum((u[0] * 8).astype(np.int64), 7)
    simplest = 0.0 if low <= 0 <= high else (low if low > 0 else high)
    values = low + u[1] * (high - low)  # kinds 3, 4 and 5: uniform
    logarithmic = np.flatnonzero(kind >= 6)  # kinds 6 and 7, computed for their elements alone
    position = u[1, logarithmic]
    if low >= 0 or high <= 0:
        near, far = (low, high) if low >= 0 else (-high, -low)  # magnitudes, near <= far
        near = max(near, far * 2.0**-LOG_SPAN)
        magnitude = near * (far / near) ** position if far > 0 else np.zeros(len(logarithmic))
        values[logarithmic] = magnitude if low >= 0 else -magnitude
    else:
        negative = u[2, logarithmic] < 0.5
        end = np.where(negative, -low, high)
        values[logarithmic] = np.where(negative, -1.0, 1.0) * end * 2.0 ** (-LOG_SPAN * position)
    values[kind == 0] = low
    values[kind == 1] = high
    values[kind == 2] = simplest
    return values


@functools.cache
def _inward_ends(p: Range, dtype: Dtype) -> tuple[float, float]:
    """The range's ends rounded to the dtype, each moved one step inwards if rounding took it outside."""

    def inward(bound: float, towards: float) -> float:
        rounded = torch.tensor(bound, dtype=torch.float64).to(dtype.torch)
        outside = (towards > bound and float(rounded) < bound) or (towards < bound and float(rounded) > bound)
        if outside:
            rounded = torch.nextafter(rounded, torch.tensor(towards, dtype=dtype.torch))
        return float(rounded)

    return inward(p.low, p.high), inward(p.high, p.low)


_NUMPY_FLOAT = {16: np.float16, 32: np.float32, 64: np.float64}


def _inward(bound: float, width: int, towards: float) -> float:
    """``bound`` rounded to the drawing width, moved one step inwards if rounding took it outside."""
    kind = _NUMPY_FLOAT[width]
    rounded = kind(bound)
    if (towards > bound and rounded < bound) or (towards < bound and rounded > bound):
        rounded = np.nextafter(rounded, kind(towards))
    return float(rounded)


@functools.cache
def floats(dtype: Dtype, low: float, high: float) -> st.SearchStrategy[float]:
    """Hypothesis's floats in [low, high], drawn at the dtype's width (float32's for bfloat16)."""
    width = dtype.hypothesis_width
    return st.floats(_inward(low, width, high), _inward(high, width, low), width=width)


@functools.cache
def _strategy(elements: Elements, dtype: Dtype) -> st.SearchStrategy[float]:
    branches = [
        floats(dtype, p.low, p.high) if isinstance(p, Range) else st.sampled_from(list(p.values))
        for p in elements.parts
    ]
    drawn = st.one_of(branches) if len(branches) > 1 else branches[0]
    if elements.adjust is None:
        return drawn
    return drawn.map(lambda v: float(elements.adjust(dtype, dtype.snap(np.asarray([v], dtype=np.float64)))[0]))
