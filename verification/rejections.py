"""Rejections: each defect is one thing wrong with an otherwise valid call (drawn from the shared strategies),
with the exception class torch 2.13 was measured to raise for it. The registry gives each loss its defects;
tests/test_rejections.py checks that torch and the reference both raise it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from . import strategies
from .cases import Case
from .dtypes import FLOAT64, Dtype

DTYPE = FLOAT64  # a float32 array among float64 ones stands for "the wrong dtype"


@dataclass(frozen=True)
class Defect:
    loss: str
    what: str  # completes "a call with ..."
    expected: type[Exception]
    cases: Callable[[], st.SearchStrategy[Case]]

    def __str__(self) -> str:
        return f"{self.loss}: {self.what}"


# A loss's strategy of valid calls (its registry entry's ``cases``), which a defect spoils in one way.
Valid = Callable[[Dtype], st.SearchStrategy[Case]]


def _nonempty(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(1, size) for size in shape)


# --- defects any loss can have ---------------------------------------------------------------------


@st.composite
def bad_reduction(draw: st.DrawFn, valid: Valid, reductions: tuple[str, ...]) -> Case:
    case = draw(valid(DTYPE), label="valid case")
    reduction = draw(st.text(max_size=8).filter(lambda r: r not in reductions), label="reduction")
    return case.with_kwargs(reduction=reduction)


# --- binary losses ---------------------------------------------------------------------------------


@st.composite
def binary_with_other_target_shape(draw: st.DrawFn, loss: str, valid: Valid) -> Case:
    case = draw(valid(DTYPE), label="valid case")
    shape = draw(strategies.binary_shapes().filter(lambda s: s != case.input.shape), label="target shape")
    target = draw(strategies.float_arrays(DTYPE, shape, strategies.PROBABILITIES), label="target")
    return Case(loss, case.input, target, case.kwargs)


@st.composite
def binary_argument_that_does_not_broadcast(draw: st.DrawFn, valid: Valid, name: str, enlarging: bool) -> Case:
    case = draw(valid(DTYPE), label="valid case")
    shape = case.input.shape
    if enlarging:
        arg_shape = (draw(st.integers(2, 3), label="extra leading size"), *shape)
    else:
        # A trailing size that matches neither the target's last size nor 1 (nor a missing dimension).
        last = shape[-1] if shape else 1
        arg_shape = (last + 2,)
    arg = draw(strategies.float_arrays(DTYPE, arg_shape, strategies.WEIGHTS), label=name)
    return case.with_kwargs(**{name: arg})


# --- categorical losses ----------------------------------------------------------------------------


@st.composite
def valid_index_case(draw: st.DrawFn, loss: str, layouts: tuple[str, ...] = ("unbatched", "batched", "k-dim")) -> Case:
    """A valid call with a non-empty index target and nothing ignored (ignore_index left at its default)."""
    layout = draw(st.sampled_from(layouts), label="layout")
    n_classes = draw(st.integers(1, strategies.MAX_CLASSES), label="classes")
    batch = draw(st.integers(1, strategies.MAX_BATCH), label="batch")
    extra = draw(
        st.lists(st.integers(1, strategies.MAX_EXTRA_SIZE), min_size=1, max_size=strategies.MAX_EXTRA_DIMS),
        label="extra dims",
    )
    shape = {"unbatched": (n_classes,), "batched": (batch, n_classes), "k-dim": (batch, n_classes, *extra)}[layout]
    logits = draw(strategies.float_arrays(DTYPE, shape, strategies.LOGITS), label="input")
    target = draw(strategies.index_targets(shape, ignore_index=-100, may_ignore=False), label="target")
    if shape[0] == 1 and len(shape) == 1:
        target = target.reshape(())  # a (1,) target would have the input's shape
    return Case(loss, logits, target.astype(np.int64), draw(strategies.reduction_kwargs(), label="kwargs"))


@st.composite
def zero_dim_input(draw: st.DrawFn, loss: str) -> Case:
    value = draw(strategies.LOGITS.strategy(DTYPE), label="input")
    return Case(loss, np.array(value), np.array(0, dtype=np.int64), {})


@st.composite
def batch_size_mismatch(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss, ("batched", "k-dim")), label="valid case")
    extra = draw(st.integers(1, 2), label="extra rows")
    target = np.concatenate([case.target, np.zeros((extra, *case.target.shape[1:]), dtype=np.int64)])
    return Case(loss, case.input, target, case.kwargs)


@st.composite
def target_out_of_range(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss), label="valid case")
    n_classes = case.input.shape[strategies.class_dim(case.input.shape)]
    bad = draw(st.one_of(st.integers(n_classes, n_classes + 300), st.integers(-99, -1)), label="class out of range")
    target = case.target.copy()
    position = draw(st.tuples(*(st.integers(0, size - 1) for size in target.shape)), label="position")
    target[position] = bad
    return Case(loss, case.input, target, case.kwargs)


@st.composite
def class_weight_of_wrong_size(draw: st.DrawFn, loss: str, probability_cases: Valid | None = None) -> Case:
    """Class weights of the wrong size, for index targets or (given their strategy) probability targets."""
    target_kind = "index" if probability_cases is None else "probability"
    if probability_cases is None:
        case = draw(valid_index_case(loss), label="valid case")
    else:
        case = draw(probability_cases(DTYPE), label="valid case")
    n_classes = case.input.shape[strategies.class_dim(case.input.shape)]
    # The K-dimensional index path checks only the number of entries, so a (1, C) weight is wrong only up to (N, C).
    wrong_rank_is_wrong = target_kind == "probability" or case.input.ndim <= 2
    shapes = [(n_classes + 1,), (n_classes + 3,), *([(1, n_classes)] if wrong_rank_is_wrong else [])]
    shape = draw(st.sampled_from(shapes), label="weight shape")
    weight = draw(strategies.float_arrays(DTYPE, shape, strategies.WEIGHTS), label="weight")
    return case.with_kwargs(weight=weight)


@st.composite
def class_weight_of_other_dtype(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss), label="valid case")
    n_classes = case.input.shape[strategies.class_dim(case.input.shape)]
    return case.with_kwargs(weight=np.ones(n_classes, dtype=np.float32))


@st.composite
def index_target_of_wrong_dtype(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss), label="valid case")
    dtype = draw(st.sampled_from([np.float64, np.int32, np.int16]), label="target dtype")
    return Case(loss, case.input, case.target.astype(dtype), case.kwargs)


@st.composite
def two_dim_target_for_two_dim_input(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss, ("batched",)), label="valid case")
    return Case(loss, case.input, case.target[:, None].repeat(draw(st.integers(2, 3)), axis=1), case.kwargs)


@st.composite
def k_dim_target_of_wrong_shape(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss, ("k-dim",)), label="valid case")
    extra = draw(st.integers(1, 2), label="extra size")
    target = np.zeros((*case.target.shape[:-1], case.target.shape[-1] + extra), dtype=np.int64)
    return Case(loss, case.input, target, case.kwargs)


@st.composite
def unbatched_target_of_several_classes(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss, ("unbatched",)), label="valid case")
    # A target of exactly C entries has the input's shape: cross_entropy reads it as probabilities (another defect).
    n_classes = case.input.shape[0]
    size = draw(st.integers(2, 5).filter(lambda n: n != n_classes), label="target size")
    return Case(loss, case.input, np.zeros(size, dtype=np.int64), case.kwargs)


@st.composite
def k_dim_uint8_target(draw: st.DrawFn, loss: str) -> Case:
    case = draw(valid_index_case(loss, ("k-dim",)), label="valid case")
    return Case(loss, case.input, case.target.astype(np.uint8), case.kwargs)


def categorical_defects(loss: str) -> list[Defect]:
    return [
        Defect(
            loss,
            "a 0-dimensional input",
            ValueError if loss == "nll_loss" else RuntimeError,
            lambda: zero_dim_input(loss),
        ),
        Defect(
            loss, "a target batch size that differs from the input's", ValueError, lambda: batch_size_mismatch(loss)
        ),
        Defect(
            loss, "a class index outside [0, C) that is not ignore_index", IndexError, lambda: target_out_of_range(loss)
        ),
        Defect(loss, "class weights of the wrong size or rank", RuntimeError, lambda: class_weight_of_wrong_size(loss)),
        Defect(
            loss,
            "class weights of another dtype than the input",
            RuntimeError,
            lambda: class_weight_of_other_dtype(loss),
        ),
        Defect(
            loss,
            "an index target that is neither int64 nor uint8",
            RuntimeError,
            lambda: index_target_of_wrong_dtype(loss),
        ),
        Defect(
            loss,
            "a 2-dimensional target for an (N, C) input",
            RuntimeError,
            lambda: two_dim_target_for_two_dim_input(loss),
        ),
        Defect(
            loss,
            "a K-dimensional target whose extra sizes differ from the input's",
            RuntimeError,
            lambda: k_dim_target_of_wrong_shape(loss),
        ),
        Defect(
            loss,
            "an unbatched input with a target of more than one class",
            ValueError,
            lambda: unbatched_target_of_several_classes(loss),
        ),
        Defect(loss, "a uint8 target for a K-dimensional input", RuntimeError, lambda: k_dim_uint8_target(loss)),
    ]


def binary_defects(loss: str, valid: Valid, names: tuple[str, ...]) -> list[Defect]:
    """The defects of an element-wise binary loss: a target of another shape, and each of ``names`` (its
    weight-like arguments) either not broadcasting to the target or enlarging the output."""
    defects = [
        Defect(
            loss,
            "a target shape that differs from the input's",
            ValueError,
            lambda: binary_with_other_target_shape(loss, valid),
        ),
    ]
    for name in names:
        for enlarging in (False, True):
            what = f"a {name} that {'would enlarge the output' if enlarging else 'does not broadcast to the target'}"
            defects.append(
                Defect(
                    loss,
                    what,
                    RuntimeError,
                    lambda n=name, e=enlarging: binary_argument_that_does_not_broadcast(valid, n, e),
                )
            )
    return defects


def reduction_defect(loss: str, valid: Valid, reductions: tuple[str, ...] = strategies.REDUCTIONS) -> Defect:
    return Defect(loss, "an unknown reduction string", ValueError, lambda: bad_reduction(valid, reductions))
