"""Rejections: each defect is one thing wrong with an otherwise valid call (drawn from the shared strategies),
with the exception class torch 2.13 was measured to raise for it. The registry gives each loss its defects;
tests/test_rejections.py checks that torch and the reference both raise it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from . import strategies
from .cases import Case
from .dtypes import FLOAT64

DTYPE = FLOAT64  # a float32 array among float64 ones stands for "the wrong dtype"


@dataclass(frozen=True)
class Defect:
    loss: str
    what: str  # completes "a call with ..."
    expected: type[Exception]
    cases: Callable[[], st.SearchStrategy[Case]]

    def __str__(self) -> str:
        return f"{self.loss}: {self.what}"


def _valid(loss: str) -> st.SearchStrategy[Case]:
    """A valid call of ``loss``: its strategy in strategies.py, named after it (the registry declares the same)."""
    cases: Callable[[object], st.SearchStrategy[Case]] = getattr(strategies, f"{loss}_cases")
    return cases(DTYPE)


def _nonempty(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(1, size) for size in shape)


# --- defects any loss can have ---------------------------------------------------------------------


@st.composite
def bad_reduction(draw: st.DrawFn, loss: str) -> Case:
    case = draw(_valid(loss), label="valid case")
    valid = strategies.KL_REDUCTIONS if loss == "kl_div" else strategies.REDUCTIONS
    reduction = draw(st.text(max_size=8).filter(lambda r: r not in valid), label="reduction")
    return case.with_kwargs(reduction=reduction)


# --- binary losses ---------------------------------------------------------------------------------


@st.composite
def binary_with_other_target_shape(draw: st.DrawFn, loss: str) -> Case:
    case = draw(_valid(loss), label="valid case")
    shape = draw(strategies.binary_shapes().filter(lambda s: s != case.input.shape), label="target shape")
    target = draw(strategies.float_arrays(DTYPE, shape, strategies.probability_elements(DTYPE)), label="target")
    return Case(loss, case.input, target, case.kwargs)


@st.composite
def bce_value_outside_unit_interval(draw: st.DrawFn, which: str) -> Case:
    shape = _nonempty(draw(strategies.binary_shapes(), label="shape"))
    p = draw(strategies.float_arrays(DTYPE, shape, strategies.probability_elements(DTYPE)), label="input")
    y = draw(strategies.float_arrays(DTYPE, shape, strategies.probability_elements(DTYPE)), label="target")
    bad = draw(
        st.one_of(st.floats(1, exclude_min=True), st.floats(max_value=0, exclude_max=True), st.just(np.nan)),
        label="value outside [0, 1]",
    )
    position = draw(st.tuples(*(st.integers(0, size - 1) for size in shape)), label="position")
    arrays = {"input": p.copy(), "target": y.copy()}
    arrays[which][position] = bad
    return Case("binary_cross_entropy", arrays["input"], arrays["target"], {})


@st.composite
def bce_target_of_other_dtype(draw: st.DrawFn) -> Case:
    case = draw(_valid("binary_cross_entropy"), label="valid case")
    return Case(case.loss, case.input, case.target.astype(np.float32), case.kwargs)


@st.composite
def binary_argument_that_does_not_broadcast(draw: st.DrawFn, loss: str, name: str, enlarging: bool) -> Case:
    case = draw(_valid(loss), label="valid case")
    shape = case.input.shape
    if enlarging:
        arg_shape = (draw(st.integers(2, 3), label="extra leading size"), *shape)
    else:
        # A trailing size that matches neither the target's last size nor 1 (nor a missing dimension).
        last = shape[-1] if shape else 1
        arg_shape = (last + 2,)
    arg = draw(strategies.float_arrays(DTYPE, arg_shape, strategies.weight_elements(DTYPE)), label=name)
    return case.with_kwargs(**{name: arg})


# --- KL divergence ---------------------------------------------------------------------------------


@st.composite
def kl_div_with_integral_input(draw: st.DrawFn) -> Case:
    case = draw(_valid("kl_div"), label="valid case")
    return Case(case.loss, np.round(case.input).clip(-1000, 1000).astype(np.int64), case.target, case.kwargs)


@st.composite
def kl_div_shapes_that_do_not_broadcast(draw: st.DrawFn) -> Case:
    sizes = draw(st.tuples(st.integers(2, 4), st.integers(2, 4)).filter(lambda ab: ab[0] != ab[1]), label="sizes")
    log_q = draw(strategies.float_arrays(DTYPE, (sizes[0],), strategies.logit_elements(DTYPE)), label="input")
    p = draw(strategies.float_arrays(DTYPE, (sizes[1],), strategies.probability_elements(DTYPE)), label="target")
    return Case("kl_div", log_q, p, {})


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
    logits = draw(strategies.float_arrays(DTYPE, shape, strategies.logit_elements(DTYPE)), label="input")
    target = draw(strategies.index_targets(shape, ignore_index=-100, may_ignore=False), label="target")
    if shape[0] == 1 and len(shape) == 1:
        target = target.reshape(())  # a (1,) target would have the input's shape
    return Case(loss, logits, target.astype(np.int64), draw(strategies.reduction_kwargs(), label="kwargs"))


@st.composite
def zero_dim_input(draw: st.DrawFn, loss: str) -> Case:
    value = draw(strategies.logit_elements(DTYPE), label="input")
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
def class_weight_of_wrong_size(draw: st.DrawFn, loss: str, target_kind: str = "index") -> Case:
    if target_kind == "index":
        case = draw(valid_index_case(loss), label="valid case")
    else:
        case = draw(strategies.cross_entropy_cases(DTYPE, "probability"), label="valid case")
    n_classes = case.input.shape[strategies.class_dim(case.input.shape)]
    # The K-dimensional index path checks only the number of entries, so a (1, C) weight is wrong only up to (N, C).
    wrong_rank_is_wrong = target_kind == "probability" or case.input.ndim <= 2
    shapes = [(n_classes + 1,), (n_classes + 3,), *([(1, n_classes)] if wrong_rank_is_wrong else [])]
    shape = draw(st.sampled_from(shapes), label="weight shape")
    weight = draw(strategies.float_arrays(DTYPE, shape, strategies.weight_elements(DTYPE)), label="weight")
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


@st.composite
def label_smoothing_above_one(draw: st.DrawFn) -> Case:
    case = draw(_valid("cross_entropy"), label="valid case")
    return case.with_kwargs(label_smoothing=draw(st.floats(1, exclude_min=True), label="label_smoothing"))


@st.composite
def probability_target_with_non_negative_ignore_index(draw: st.DrawFn) -> Case:
    case = draw(strategies.cross_entropy_cases(DTYPE, "probability"), label="valid case")
    return case.with_kwargs(ignore_index=draw(st.integers(0, 300), label="ignore_index"))


@st.composite
def integer_target_of_input_shape(draw: st.DrawFn) -> Case:
    case = draw(strategies.cross_entropy_cases(DTYPE, "probability"), label="valid case")
    kwargs = {k: v for k, v in case.kwargs.items() if k != "ignore_index"}
    target = draw(hnp.arrays(np.int64, case.input.shape, elements=st.integers(0, 1)), label="target")
    return Case("cross_entropy", case.input, target, kwargs)


@st.composite
def smoothing_with_k_dim_weight_of_rank_two(draw: st.DrawFn) -> Case:
    case = draw(valid_index_case("cross_entropy", ("k-dim",)), label="valid case")
    n_classes = draw(st.integers(2, strategies.MAX_CLASSES), label="classes")
    input = draw(
        strategies.float_arrays(
            DTYPE, (case.input.shape[0], n_classes, *case.input.shape[2:]), strategies.logit_elements(DTYPE)
        ),
        label="input",
    )
    case = Case("cross_entropy", input, np.minimum(case.target, n_classes - 1), case.kwargs)
    # torch views the weight as weight.size(0) entries along the class dimension: (1, C) fails for C > 1.
    weight = draw(strategies.float_arrays(DTYPE, (1, n_classes), strategies.weight_elements(DTYPE)), label="weight")
    smoothing = draw(st.floats(0, 1, exclude_min=True), label="label_smoothing")
    return case.with_kwargs(weight=weight, label_smoothing=smoothing)


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


def binary_defects(loss: str) -> list[Defect]:
    defects = [
        Defect(
            loss,
            "a target shape that differs from the input's",
            ValueError,
            lambda: binary_with_other_target_shape(loss),
        ),
    ]
    names = ("weight",) if loss == "binary_cross_entropy" else ("weight", "pos_weight")
    for name in names:
        for enlarging in (False, True):
            what = f"a {name} that {'would enlarge the output' if enlarging else 'does not broadcast to the target'}"
            defects.append(
                Defect(
                    loss,
                    what,
                    RuntimeError,
                    lambda n=name, e=enlarging: binary_argument_that_does_not_broadcast(loss, n, e),
                )
            )
    return defects


def reduction_defect(loss: str) -> Defect:
    return Defect(loss, "an unknown reduction string", ValueError, lambda: bad_reduction(loss))
