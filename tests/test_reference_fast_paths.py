"""The reference's fast paths compute exactly what its plain paths compute, bit for bit.

For speed on large inputs (the reference must stay within a few times torch's time, benchmarks/run.py) the
reference splits its work into blocks of rows run on every core and reuses work arrays from call to call (the
machinery in reference/_fast.py), and takes cross-entropy with class indices from log-softmax at the targets
alone. None of that may change a single result, or the suite's accuracy evidence (the mpmath oracle,
which draws small inputs, one block) would not cover the large inputs users run. Each test compares a fast path
with the computation it replaces; blocks are forced small, so that small drawn inputs span many blocks, a
partial last block and the thread pool.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
from reference import _fast, activations
from verification import ledger, registry, strategies
from verification.cases import Case
from verification.compare import assert_identical
from verification.dtypes import FLOAT64
from verification.reproducer import expressions_snippet

ONE_BLOCK = 1 << 62


@contextlib.contextmanager
def blocks_of(elements: int) -> Iterator[None]:
    """The reference's blocking set to ``elements`` per block, for the duration."""
    saved = _fast.BLOCK_ELEMENTS
    _fast.BLOCK_ELEMENTS = elements
    try:
        yield
    finally:
        _fast.BLOCK_ELEMENTS = saved


def outcome(compute: Callable[[], Any]) -> tuple[str, Any]:
    """("value", the result) or ("raises", the exception's class name)."""
    try:
        with np.errstate(all="ignore"):
            return "value", np.asarray(compute())
    except Exception as error:  # the class is what is compared
        return "raises", type(error).__name__


def assert_same_bits(fast: tuple[str, Any], plain: tuple[str, Any], what: str, case: Case, expressions: str) -> None:
    __tracebackhide__ = True
    assert_identical(
        fast,
        plain,
        what=f"The reference's {what} differs from its plain computation on {case.describe()}",
        repro=expressions_snippet(case, FLOAT64, "cpu", expressions),
    )


@functools.cache  # built once, like the strategies it combines
def categorical_cases() -> st.SearchStrategy[Case]:
    return st.one_of(
        registry.info("cross_entropy").cases(FLOAT64, "index"),
        registry.info("cross_entropy").cases(FLOAT64, "probability"),
        registry.info("nll_loss").cases(FLOAT64),
    )


BLOCKED = {
    "binary_cross_entropy": lambda: registry.info("binary_cross_entropy").cases(FLOAT64),
    "binary_cross_entropy_with_logits": lambda: registry.info("binary_cross_entropy_with_logits").cases(FLOAT64),
    "cross_entropy": lambda: registry.info("cross_entropy").cases(FLOAT64),
    "nll_loss": lambda: registry.info("nll_loss").cases(FLOAT64),
}


@pytest.mark.parametrize("loss", BLOCKED)
@given(data=st.data())
def test_blocked_reference_equals_one_block(data, loss):
    """The reference computes every loss to the same bits whether its work runs in one block or in many blocks
    of rows on every core (blocks of 1 to 8 elements here), a partial last block included."""
    case = data.draw(BLOCKED[loss](), label="case")
    size = data.draw(st.integers(1, 8), label="elements per block")

    def compute() -> Any:
        return getattr(reference, case.loss)(case.input, case.target, **case.kwargs)

    with blocks_of(size):
        fast = outcome(compute)
    with blocks_of(ONE_BLOCK):
        plain = outcome(compute)
    assert_same_bits(fast, plain, f"blocked computation ({size} elements a block)", case, "reference")


@pytest.mark.parametrize("function", ["log_softmax", "softmax"])
@given(data=st.data())
def test_blocked_softmax_equals_one_block(data, function):
    """log_softmax and softmax give the same bits in many blocks as in one, along every dimension."""
    case = data.draw(categorical_cases(), label="case")
    dim = data.draw(st.integers(0, case.input.ndim - 1), label="dim")
    size = data.draw(st.integers(1, 8), label="elements per block")
    with blocks_of(size):
        fast = outcome(lambda: getattr(reference, function)(case.input, dim))
    with blocks_of(ONE_BLOCK):
        plain = outcome(lambda: getattr(reference, function)(case.input, dim))
    assert_same_bits(fast, plain, f"blocked {function} along dim {dim}", case, f"reference.{function}(x, {dim})")


def nll_of_log_softmax(case: Case) -> Any:
    """Cross-entropy with class indices and no smoothing, as its definition reads: NLL of the whole log-softmax."""
    class_dim = 0 if case.input.ndim == 1 else 1
    return reference.nll_loss(reference.log_softmax(case.input, class_dim), case.target, **case.kwargs)


@given(data=st.data())
def test_cross_entropy_with_class_indices_equals_nll_of_the_whole_log_softmax(data):
    """cross_entropy with class indices (no smoothing), which reads log-softmax at the targets alone, gives the
    bits of nll_loss(log_softmax(x)), also in many blocks."""
    case = data.draw(registry.info("cross_entropy").cases(FLOAT64, "index"), label="case")
    case = Case(case.loss, case.input, case.target, {k: v for k, v in case.kwargs.items() if k != "label_smoothing"})
    size = data.draw(st.sampled_from([ONE_BLOCK, 1, 3, 8]), label="elements per block")
    with blocks_of(size):
        fast = outcome(lambda: reference.cross_entropy(case.input, case.target, **case.kwargs))
    plain = outcome(lambda: nll_of_log_softmax(case))
    expression = (
        "reference.cross_entropy(x, t, **np_kwargs), "
        "reference.nll_loss(reference.log_softmax(x, int(x.ndim > 1)), t, **np_kwargs)"
    )
    assert_same_bits(fast, plain, "cross-entropy at the targets", case, expression)


@given(data=st.data())
def test_nll_with_every_target_a_class_equals_the_full_target_check(data):
    """nll_loss checks its targets in two reductions when every one is a class and none can be ignore_index; with an
    ignore_index that is a class no target takes (which forces the full, position-by-position check) it gives the
    same bits, and the same exception."""
    drawn = data.draw(registry.info("nll_loss").cases(FLOAT64), label="case")
    n_classes = drawn.input.shape[0 if drawn.input.ndim == 1 else 1]
    # Targets that are no class (ignored ones) become class 0: every target is a class.
    target = np.where((drawn.target >= 0) & (drawn.target < n_classes), drawn.target, 0).astype(drawn.target.dtype)
    case = Case(drawn.loss, drawn.input, target, drawn.kwargs)
    unused = sorted(set(range(n_classes)) - {int(t) for t in np.ravel(target)})
    if not unused:
        ledger.exclude("every class is some position's target: no class is free to serve as an unused ignore_index")
    kwargs = {k: v for k, v in case.kwargs.items() if k != "ignore_index"}
    fast = outcome(lambda: reference.nll_loss(case.input, case.target, **kwargs, ignore_index=-100))
    full = outcome(lambda: reference.nll_loss(case.input, case.target, **kwargs, ignore_index=unused[0]))
    expression = (
        "reference.nll_loss(x, t, **{**np_kwargs, 'ignore_index': -100}), "
        f"reference.nll_loss(x, t, **{{**np_kwargs, 'ignore_index': {unused[0]}}})"
    )
    assert_same_bits(fast, full, "target check in two reductions", case, expression)


def assert_gathers_as_take_along_axis(values: Any, index: Any, axis: int) -> None:
    __tracebackhide__ = True
    fast = outcome(lambda: _fast.gather_along(values, index, axis))
    plain = outcome(lambda: np.squeeze(np.take_along_axis(values, np.expand_dims(index, axis), axis), axis))
    assert_identical(
        fast,
        plain,
        what=f"The reference's flat gather along axis {axis} differs from np.take_along_axis",
        repro=f"_fast.gather_along(values, index, {axis}) with values = {values!r}, index = {index!r}",
    )


@given(data=st.data())
def test_the_flat_gather_reads_what_take_along_axis_reads(data):
    """The one flat gather that reads each position's target class (nll_loss, and cross_entropy with indices)
    reads the values np.take_along_axis reads, along any axis, from C- and Fortran-ordered arrays."""
    shape = data.draw(strategies.hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4), label="shape")
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    shape = (*shape[:axis], max(1, shape[axis]), *shape[axis + 1 :])  # at least one class to read
    values = data.draw(strategies.hnp.arrays(np.float64, shape), label="values")
    if data.draw(st.booleans(), label="Fortran order"):
        values = np.asfortranarray(values)
    classes = st.integers(0, shape[axis] - 1)
    index = data.draw(
        strategies.hnp.arrays(np.int64, shape[:axis] + shape[axis + 1 :], elements=classes), label="index"
    )
    assert_gathers_as_take_along_axis(values, index, axis)


# Planted bugs: each check above must catch a fast path that is wrong in the way fast paths go wrong.
PLANTED_CASE = Case(
    "cross_entropy",
    np.array([[0.1, -1.3, 2.7], [3.3, 0.25, -2.1], [1.7, 1.5, -0.5]]),
    np.array([2, 0, 1]),
    {"reduction": "none"},
)


def test_a_log_softmax_at_the_wrong_class_is_caught(monkeypatch):
    """Reading log-softmax one class off the target is caught by the cross-entropy comparison."""
    correct = activations.log_softmax_at

    def off_by_one(x: Any, dim: int, index: Any) -> Any:
        return correct(x, dim, (index + 1) % np.shape(x)[dim])

    monkeypatch.setattr(reference.categorical, "log_softmax_at", off_by_one)
    fast = outcome(lambda: reference.cross_entropy(PLANTED_CASE.input, PLANTED_CASE.target, reduction="none"))
    with pytest.raises(AssertionError, match="differs from its plain computation"):
        assert_same_bits(fast, outcome(lambda: nll_of_log_softmax(PLANTED_CASE)), "planted", PLANTED_CASE, "")


def test_a_shift_shared_by_the_rows_of_a_block_is_caught(monkeypatch):
    """A kernel that shifts each row by its block's maximum, not its own, is right in exact arithmetic (log-softmax
    ignores a constant shift) but rounds differently in each blocking: the blocked comparison sees it."""
    correct = activations.shift_by_row_max

    def block_shift(rows: Any, *buffers: Any, **options: Any) -> Any:
        return correct(rows - (np.max(rows) - np.max(rows, axis=1, keepdims=True)), *buffers, **options)

    monkeypatch.setattr(activations, "shift_by_row_max", block_shift)
    with blocks_of(3):  # one row a block: each row is its own block's maximum
        fast = outcome(lambda: reference.log_softmax(PLANTED_CASE.input, 1))
    with blocks_of(ONE_BLOCK):
        plain = outcome(lambda: reference.log_softmax(PLANTED_CASE.input, 1))
    with pytest.raises(AssertionError, match="differs from its plain computation"):
        assert_same_bits(fast, plain, "planted", PLANTED_CASE, "")


WEIGHTED_NLL = Case(
    "nll_loss", PLANTED_CASE.input, np.array([2, 0, 0]), {"weight": np.array([0.5, 2.0, 3.0]), "reduction": "sum"}
)


def test_a_target_check_that_forgets_the_class_weights_is_caught(monkeypatch):
    """A two-reduction target check that takes every class weight as 1 is caught by the comparison with the full
    check (class 1, which no target takes, serving as ignore_index)."""
    correct = reference.categorical._pick_targets

    def unweighted_when_all_are_classes(target: Any, ignore_index: int, weights: Any) -> Any:
        picked = correct(target, ignore_index, weights)
        return picked._replace(class_weight=np.ones_like(picked.class_weight)) if ignore_index < 0 else picked

    monkeypatch.setattr(reference.categorical, "_pick_targets", unweighted_when_all_are_classes)
    case = WEIGHTED_NLL
    fast = outcome(lambda: reference.nll_loss(case.input, case.target, **case.kwargs, ignore_index=-100))
    full = outcome(lambda: reference.nll_loss(case.input, case.target, **case.kwargs, ignore_index=1))
    with pytest.raises(AssertionError, match="differs from its plain computation"):
        assert_same_bits(fast, full, "planted", case, "")


def test_a_gather_that_reads_memory_as_it_lies_is_caught(monkeypatch):
    """A gather that drops the copy to C order and reads a Fortran-ordered array's memory as it lies (right for
    every C-ordered input) is caught by the comparison with np.take_along_axis."""
    correct = _fast.gather_along

    def in_memory_order(values: Any, index: Any, axis: int) -> Any:
        return correct(values.ravel(order="K").reshape(values.shape), index, axis)

    monkeypatch.setattr(_fast, "gather_along", in_memory_order)
    with pytest.raises(AssertionError, match="differs from np"):
        assert_gathers_as_take_along_axis(np.asfortranarray(PLANTED_CASE.input), PLANTED_CASE.target, 1)


def test_the_unplanted_fast_paths_pass_the_planted_cases():
    """The same comparisons pass on the same case without a planted bug: the catches above are the bugs'."""
    fast = outcome(lambda: reference.cross_entropy(PLANTED_CASE.input, PLANTED_CASE.target, reduction="none"))
    assert_same_bits(fast, outcome(lambda: nll_of_log_softmax(PLANTED_CASE)), "control", PLANTED_CASE, "")
    with blocks_of(3):
        fast = outcome(lambda: reference.log_softmax(PLANTED_CASE.input, 1))
    assert_same_bits(fast, outcome(lambda: reference.log_softmax(PLANTED_CASE.input, 1)), "control", PLANTED_CASE, "")
    x, t, kwargs = WEIGHTED_NLL.input, WEIGHTED_NLL.target, WEIGHTED_NLL.kwargs
    fast = outcome(lambda: reference.nll_loss(x, t, **kwargs, ignore_index=-100))
    assert_same_bits(
        fast, outcome(lambda: reference.nll_loss(x, t, **kwargs, ignore_index=1)), "control", WEIGHTED_NLL, ""
    )
    assert_gathers_as_take_along_axis(np.asfortranarray(PLANTED_CASE.input), PLANTED_CASE.target, 1)
