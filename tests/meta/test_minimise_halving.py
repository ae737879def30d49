"""The minimiser halves a large failing case: a bug that shows only past a size shrinks from millions of elements to
between that size and twice it, within the minimiser's reruns; a bug that shows at every size still shrinks to the
smallest case. Only ``minimised`` and predicates: no torch, no reference."""

from __future__ import annotations

import numpy as np
import pytest

from verification.cases import Case
from verification.minimise import MAX_RERUNS, elements, minimised

THRESHOLD = 40000  # the "bug" shows only where the input has more elements than this


def past_threshold(case: Case) -> bool:
    return int(case.input.size) > THRESHOLD


def counted(predicate):
    """``predicate``, and a list that grows by one entry per call."""
    calls: list[Case] = []

    def fails(case: Case) -> bool:
        calls.append(case)
        return predicate(case)

    return fails, calls


def binary_case() -> Case:
    n = 2**21
    return Case("binary_cross_entropy_with_logits", np.zeros(n), np.zeros(n), {"reduction": "sum"})


def categorical_case(index_target: bool = True) -> Case:
    shape = (64, 16, 64, 64)
    target = np.zeros((64, 64, 64), dtype=np.int64) if index_target else np.full(shape, 1 / 16)
    return Case("cross_entropy", np.zeros(shape), target, {"weight": np.ones(16)})


@pytest.mark.parametrize(
    "start", [binary_case(), categorical_case(), categorical_case(index_target=False)], ids=["binary", "index", "prob"]
)
def test_a_bug_past_a_size_shrinks_to_within_twice_that_size(start):
    """From 2^21 (binary) or 2^22 (categorical) input elements, the minimised case still fails, its input has at
    most twice the threshold's elements, and it is smaller than the start; within MAX_RERUNS reruns."""
    fails, calls = counted(past_threshold)
    smallest = minimised(start, fails)
    assert past_threshold(smallest)
    assert smallest.input.size <= 2 * THRESHOLD, smallest.input.shape
    assert elements(smallest) < elements(start)
    assert len(calls) <= MAX_RERUNS
    if start.loss == "cross_entropy":
        assert smallest.input.shape[1] == start.input.shape[1], "the class dimension was cut"


def test_halving_keeps_the_arrays_aligned():
    """Every case the minimiser tries is one torch would accept: a categorical case keeps its classes and its target
    the input's shape without them; a binary case's arrays keep broadcasting, a weight of size one along the halved
    dimension left as it is."""
    fails, calls = counted(past_threshold)
    minimised(categorical_case(), fails)
    for case in calls:
        assert case.input.shape[1] == 16
        assert case.target.shape == case.input.shape[:1] + case.input.shape[2:]
        assert "weight" not in case.kwargs or case.kwargs["weight"].shape == (16,)
    binary = Case("binary_cross_entropy_with_logits", np.zeros((4096, 1024)), np.zeros((1, 1024)), {})
    fails, calls = counted(past_threshold)
    smallest = minimised(binary, fails)
    assert past_threshold(smallest) and smallest.input.size <= 2 * THRESHOLD
    for case in calls:
        np.broadcast_shapes(case.input.shape, case.target.shape)
        assert case.target.shape in ((1, 1024), (1024,), ())


def test_a_leading_dimension_of_one_is_dropped_so_that_the_next_can_be_halved():
    """(1, 16, 65539): dropping the 1 keeps every element, and only then can the 16 be halved."""
    start = Case("kl_div", np.zeros((1, 16, 65539)), np.zeros((16, 65539)), {})
    smallest = minimised(start, past_threshold)
    assert past_threshold(smallest) and smallest.input.size <= 2 * THRESHOLD, smallest.input.shape


@pytest.mark.parametrize("shape", [(4, 3, 349526), (4, 3, 16, 21846), (4, 3, 16, 16, 1366)], ids=["k1", "k2", "k3"])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_bug_that_needs_every_k_dimensional_size_shrinks_within_the_reruns(shape, batch):
    """The worst orders measured for MAX_RERUNS, from about 2^22 elements with k = 1 to 3 K-dimensional sizes: a bug
    that needs every K-dimensional size above one (so that every cut to one is rerun, and passes, in every round
    where its shape changed), and a batch of ``batch`` or more (3: the batch can be halved only once)."""

    def needs_all(case: Case) -> bool:
        return case.input.shape[0] >= batch and all(d > 1 for d in case.input.shape[2:]) and past_threshold(case)

    start = Case("nll_loss", np.zeros(shape), np.zeros(shape[:1] + shape[2:], dtype=np.int64), {})
    fails, calls = counted(needs_all)
    smallest = minimised(start, fails)
    assert needs_all(smallest) and smallest.input.size <= 2 * THRESHOLD, smallest.input.shape
    assert len(calls) <= MAX_RERUNS


@pytest.mark.parametrize(
    "start", [binary_case(), categorical_case(), categorical_case(index_target=False)], ids=["binary", "index", "prob"]
)
def test_a_bug_at_every_size_still_shrinks_to_the_smallest_case(start):
    """Where every case fails, the first candidate, the empty batch, is kept at once, then its weight dropped: halving
    adds no rerun."""
    fails, calls = counted(lambda case: True)
    smallest = minimised(start, fails)
    assert smallest.input.size == 0 and smallest.target.size == 0 and "weight" not in smallest.kwargs
    assert len(calls) == 1 + ("weight" in start.kwargs)


def test_no_reduction_that_passes_is_rerun():
    """A reduction that passed is not tried again when a later round offers the same shapes."""
    fails, calls = counted(past_threshold)
    minimised(binary_case(), fails)
    shapes = [(c.input.shape, c.target.shape) for c in calls]
    assert len(shapes) == len(set(shapes)), shapes
