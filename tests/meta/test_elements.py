"""The seeded drawing of array values (verification/elements.py) draws what each mixture declares: values inside their
parts and exact in the dtype, every part and every kind of value in its share, and the same first values for a
smaller shape (what lets hypothesis shrink a shape without losing the values that remain)."""

from __future__ import annotations

import numpy as np
import pytest

from verification import strategies
from verification.dtypes import PARITY_DTYPES
from verification.elements import Elements, Range, among, mixture, within
from verification.losses.binary_cross_entropy_with_logits import UNCHECKED_TARGETS
from verification.losses.kl_div import LOG_TARGETS, TARGETS

NAMED = {
    "logits": strategies.LOGITS,
    "probabilities": strategies.PROBABILITIES,
    "interior probabilities": strategies.INTERIOR_PROBABILITIES,
    "weights": strategies.WEIGHTS,
    "grad_outputs": strategies.GRAD_OUTPUTS,
    "unchecked BCE targets": UNCHECKED_TARGETS,
    "KL targets": TARGETS,
    "KL log targets": LOG_TARGETS,
}
SAMPLE = 4000


def _in_some_part(elements: Elements, dtype, values: np.ndarray) -> np.ndarray:
    inside = np.zeros(values.shape, dtype=bool)
    for part in elements.parts:
        if isinstance(part, Range):
            inside |= (values >= part.low) & (values <= part.high)
        else:
            inside |= np.isin(values, dtype.snap(np.asarray(part.values)))
    return inside


@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("name", list(NAMED))
def test_seeded_values_are_exact_in_the_dtype_and_inside_a_part(name, dtype):
    """Every drawn value is representable in the dtype, and lies in one of its mixture's ranges or sets (a set's
    values as the dtype rounds them; the interior probabilities also strictly inside (0, 1))."""
    elements = NAMED[name]
    values = elements.sample(20261203, dtype, (SAMPLE,))
    assert np.array_equal(dtype.snap(values), values)
    assert np.all(_in_some_part(elements, dtype, values))
    if elements is strategies.INTERIOR_PROBABILITIES:
        assert np.all((values > 0) & (values < 1))


@pytest.mark.parametrize("name", list(NAMED))
def test_a_smaller_shape_keeps_the_first_values(name):
    """Element i (in C order) depends only on the seed and i: a prefix of a larger draw, whatever the shape."""
    elements, dtype = NAMED[name], PARITY_DTYPES[1]
    large = elements.sample(7, dtype, (4, 5, 3))
    assert np.array_equal(elements.sample(7, dtype, (10,)), large.reshape(-1)[:10], equal_nan=True)
    assert np.array_equal(elements.sample(7, dtype, (2, 3)).reshape(-1), large.reshape(-1)[:6], equal_nan=True)
    assert not np.array_equal(elements.sample(8, dtype, (10,)), large.reshape(-1)[:10])


def test_every_part_and_every_kind_of_value_takes_its_share():
    """Each part of a mixture is chosen for about 1/len of the elements; within a range, about 1/8 each are its low
    end, its high end and its simplest value (0 when inside), the rest spread over it, log-uniform magnitudes
    included (the risk regions: 0, the ends, values far below the largest magnitude)."""
    dtype = PARITY_DTYPES[0]
    n = 40_000
    values = mixture(within(-1e4, 1e4), among(7.0), within(2, 3)).sample(1, dtype, (n,))
    shares = [np.mean((values >= -1e4) & (values <= 1e4) & (values != 7.0) & ~((values >= 2) & (values <= 3)))]
    shares += [np.mean(values == 7.0)]
    assert all(abs(share - 1 / 3) < 0.05 for share in shares), shares
    wide = within(-1e4, 1e4).sample(2, dtype, (n,))
    for landmark in (-1e4, 1e4, 0.0):
        assert abs(np.mean(wide == landmark) - 1 / 8) < 0.02, landmark
    assert np.mean(np.abs(wide) < 1) > 0.15  # log-uniform magnitudes: a uniform draw alone gives 1e-4
    positive = within(2, 3).sample(3, dtype, (n,))
    assert abs(np.mean(positive == 2.0) - 2 / 8) < 0.02  # the low end, and the simplest value (the end nearest 0)
