"""The one set of hypothesis strategies for drawing loss inputs: the elements, shapes and arguments every loss's
strategy (in its module under ``verification/losses/``) is built from.

Arrays are drawn from one seed each, or element by element (verification/elements.py), and every value is exactly
representable in the dtype under test. The elements mix ordinary values with the risk regions: logits up to |1e4|,
saturated sigmoid, probabilities exactly 0 and 1 or within 1e-6 of them. Optional keyword arguments are sometimes
omitted, so that torch's defaults are exercised too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from . import elements, kernel_paths
from .cases import MEMORY, Case, CaseBatch
from .dtypes import Dtype
from .elements import DRAWING, Elements, among, mixture, within

MAX_BATCH = 4
MAX_CLASSES = 5
MAX_EXTRA_DIMS = 3  # K-dimensional inputs (N, C, d1, ..., dk), k <= 3
MAX_EXTRA_SIZE = 3

REDUCTIONS = ("none", "mean", "sum")

# Logits where something changes: sigmoid saturates in float32 (17, 88.72) and float64
# (37, 745.2); exp overflows in float32 past 88.72; 1e4 is the largest magnitude drawn.
LOGIT_LANDMARKS = (0.0, 17.0, 37.0, 88.72, 745.2, 1e4)


# Hypothesis's floats at a dtype's width: for the single values a strategy draws (an exponent, a magnitude).
floats = elements.floats

# The factories below are cached (functools.cache, lru_cache for the per-shape arrays): a strategy is built and
# validated by hypothesis once per set of arguments instead of at every draw.


def _large(shape: tuple[int, ...]) -> bool:
    """An array of a large input's (at least kernel_paths.SMALLEST elements; an ordinary batch has at most 8640)."""
    return math.prod(shape) >= kernel_paths.SMALLEST


def _seeded(shape: tuple[int, ...]) -> bool:
    # A large input's arrays are drawn from a seed whatever LOSS_PARITY_DRAWING says: hypothesis makes several choices
    # per element drawn one by one, and they have up to millions.
    return DRAWING == "seeded" or _large(shape)


@st.composite
def _large_float_array(draw: st.DrawFn, dtype: Dtype, shape: tuple[int, ...], elements: Elements) -> np.ndarray:
    """A large array drawn from some of the mixture's parts (hypothesis chooses which: the first alone is the
    simplest). Among millions of elements every part of a mixture is present, so a rare value that leaves a whole
    reduction NaN or without a finite bound (a negative KL target, a logit of 1e4 in float16) would be in every large
    case; drawn from a subset of the parts, most large cases lack it and still have their reduction compared."""
    chosen = draw(st.sets(st.integers(0, len(elements.parts) - 1), min_size=1), label="mixture parts")
    part_of = Elements(tuple(elements.parts[i] for i in sorted(chosen)), elements.adjust)
    return part_of.sample(draw(st.integers(0, 2**63 - 1), label="seed"), dtype, shape)


@functools.lru_cache(maxsize=4096)
def float_arrays(dtype: Dtype, shape: tuple[int, ...], elements: Elements) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``shape`` whose elements are drawn from ``elements`` and exactly representable in ``dtype``: from one
    drawn seed, or element by element (``LOSS_PARITY_DRAWING``; verification/elements.py says why and how); a large
    input's from some of the mixture's parts (``_large_float_array``)."""
    if _large(shape) and len(elements.parts) > 1:
        return _large_float_array(dtype, shape, elements)
    if _seeded(shape):
        return st.integers(0, 2**63 - 1).map(lambda seed: elements.sample(seed, dtype, shape))
    # fill=nothing() draws every element on its own: hypothesis's default fills most of an array
    # with one repeated value, and constant weights hide every bug in how weights are normalised.
    return hnp.arrays(np.float64, shape, elements=elements.strategy(dtype), fill=st.nothing()).map(dtype.snap)


LOGITS = mixture(
    within(-10, 10), within(-100, 100), within(-1e4, 1e4), among(*(s * v for v in LOGIT_LANDMARKS for s in (1.0, -1.0)))
)

PROBABILITIES = mixture(within(0, 1), among(0.0, 1.0, 0.5), within(0, 1e-6), within(1 - 1e-6, 1))

# p (1 - p) >= 1e-12 holds on [2e-12, 1 - 2e-12].
INTERIOR_MARGIN = 2e-12


def _step_inside_the_margin(dtype: Dtype, values: np.ndarray) -> np.ndarray:
    """bfloat16 has fewer bits than the widths hypothesis draws at: a value rounded onto 0 or 1 (outside
    [INTERIOR_MARGIN, 1 - INTERIOR_MARGIN]) steps one representable value back towards 1/2."""
    outside = (values < INTERIOR_MARGIN) | (values > 1 - INTERIOR_MARGIN)
    if not outside.any():
        return values
    tensor = torch.as_tensor(values).to(dtype.torch)
    stepped = torch.nextafter(tensor, torch.full_like(tensor, 0.5)).to(torch.float64).numpy()
    return np.where(outside, stepped, values)


# Probabilities as near 0 and 1 as torch's BCE gradient is still the derivative of the loss.
INTERIOR_PROBABILITIES = Elements(
    mixture(
        within(INTERIOR_MARGIN, 1 - INTERIOR_MARGIN),
        among(0.5, 0.25, 0.75),
        within(INTERIOR_MARGIN, 1e-6),
        within(1 - 1e-6, 1 - INTERIOR_MARGIN),
    ).parts,
    adjust=_step_inside_the_margin,
)

# Weights as users pass them (positive, of ordinary size), plus zeros, ones, tiny and negative values, which torch
# accepts.
WEIGHTS = mixture(within(0.1, 10), within(0.1, 10), among(0.0, 1.0), within(0, 0.1), within(-10, 10))

GRAD_OUTPUTS = mixture(within(-4, 4), among(0.0, 1.0, -1.0))


def grad_outputs(dtype: Dtype, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """The gradient flowing into a loss's result: often ones (what .backward() passes), otherwise arbitrary."""
    return st.one_of(st.just(np.ones(shape)), float_arrays(dtype, shape, GRAD_OUTPUTS))


@functools.cache
def reduction_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={"reduction": st.sampled_from(REDUCTIONS)})


@st.composite
def broadcastable_shape(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts right-aligned to ``shape`` without enlarging it.

    The documented use, one value per entry of the last dimension (pos_weight of shape (C,)),
    is drawn on purpose: it is where left- and right-aligned broadcasting part ways.
    """
    kind = draw(st.sampled_from(["last dimension", "full", "any"]) if shape else st.just("any"), label="kind")
    if kind == "last dimension":
        return shape[-1:]
    if kind == "full":
        return shape
    n_dims = draw(st.integers(0, len(shape)), label="broadcast dims")
    trailing = shape[len(shape) - n_dims :]
    return tuple(draw(st.sampled_from([size, 1])) for size in trailing)


# ---------------------------------------------------------------------------------------------
# Binary losses: input and target of one shape, any rank.
# ---------------------------------------------------------------------------------------------


@functools.cache
def binary_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """Any shape up to 4-D, often with every size equal: there a weight broadcast against the wrong
    dimension still fits, so only the values can tell right-aligned broadcasting from a mistake."""
    repeated = st.tuples(st.integers(2, 4), st.integers(2, 3)).map(lambda rank_size: (rank_size[1],) * rank_size[0])
    empty = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3).filter(lambda shape: 0 in shape)
    return st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4),
        repeated,
        empty,
    )


@functools.cache
def per_class_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """The shapes of ``binary_shapes`` that have a class dimension to weigh: rank 2 or more, a last size of 2 or
    more (drawn as such, rather than filtered out of ``binary_shapes``)."""
    last = st.integers(2, 4)
    leading = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
    repeated = st.tuples(st.integers(2, 4), st.integers(2, 3)).map(lambda rank_size: (rank_size[1],) * rank_size[0])
    empty = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3).filter(lambda shape: 0 in shape)
    return st.one_of(
        st.tuples(leading, last).map(lambda parts: (*parts[0], parts[1])),
        repeated,
        st.tuples(empty, st.integers(2, 3)).map(lambda parts: (*parts[0], parts[1])),
    )


# ---------------------------------------------------------------------------------------------
# Categorical losses: (C,) unbatched, (N, C) batched, (N, C, d1..dk) K-dimensional.
# ---------------------------------------------------------------------------------------------


@st.composite
def categorical_shape(draw: st.DrawFn, min_classes: int = 1, max_classes: int = MAX_CLASSES) -> tuple[int, ...]:
    # C >= 1: the tolerance model's replays take a maximum over the classes (C = 0: docs/tolerance-model.md,
    # "Not drawn").
    layout = draw(st.sampled_from(["unbatched", "batched", "k-dim"]), label="layout")
    n_classes = draw(st.integers(min_classes, max_classes), label="classes")
    if layout == "unbatched":
        return (n_classes,)
    batch = draw(sizes(MAX_BATCH), label="batch")
    extra: tuple[int, ...] = ()
    if layout == "k-dim":
        k = draw(st.integers(1, MAX_EXTRA_DIMS), label="k")
        extra = tuple(draw(st.lists(sizes(MAX_EXTRA_SIZE), min_size=k, max_size=k), label="extra dims"))
    return (batch, n_classes, *extra)


@functools.cache
def sizes(largest: int) -> st.SearchStrategy[int]:
    """A dimension size in [0, largest], 0 (an empty input) for about one draw in six rather than one in
    (largest + 1), so that most examples have values to compare; shrinks towards 1, not towards empty."""
    return st.integers(1, 4 * largest).map(lambda i: i % (largest + 1))


# ---------------------------------------------------------------------------------------------
# Large inputs: sizes where torch's kernels change path (verification/kernel_paths.py).
# ---------------------------------------------------------------------------------------------


@functools.cache
def large_sizes() -> st.SearchStrategy[int]:
    """An element count: one of kernel_paths.LARGE_SIZES (the first, at least REQUIRED_ELEMENTS, is the simplest), or
    log-uniform between SMALLEST and LARGEST."""
    low, high = math.log2(kernel_paths.SMALLEST), math.log2(kernel_paths.LARGEST)
    log_uniform = st.floats(low, high).map(lambda e: int(2.0**e))
    return st.one_of(st.sampled_from(kernel_paths.LARGE_SIZES), log_uniform)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@st.composite
def large_binary_shape(draw: st.DrawFn) -> tuple[int, ...]:
    """A shape of rank 1 to 3 with at least ``large_sizes()`` elements; its last dimension (what a per-class weight
    meets) often at a vector width."""
    total = draw(large_sizes(), label="elements")
    rank = draw(st.integers(1, 3), label="rank")
    if rank == 1:
        return (total,)
    last = draw(st.one_of(st.sampled_from(kernel_paths.AROUND_VECTOR_WIDTHS), st.integers(1, 1024)), label="last size")
    if rank == 2:
        return (_ceil_div(total, last), last)
    middle = draw(st.integers(1, 16), label="middle size")
    return (_ceil_div(total, last * middle), middle, last)


def in_memory(batches: st.SearchStrategy[CaseBatch]) -> st.SearchStrategy[CaseBatch]:
    """``batches`` with their inputs laid out in memory in any of ``cases.MEMORY``: contiguous (the simplest),
    transposed, strided or expanded (each input's first axis repeating its first entry)."""
    return st.tuples(batches, st.sampled_from(MEMORY)).map(lambda drawn: drawn[0].laid_out(drawn[1]))


@functools.cache
def large_binary_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    return large_binary_shape()


# The large categorical layouts, by the path torch's kernels take: classes along the last dimension (log-softmax's
# vectorised last-dimension kernel, NLL's 2-D frame), or not (the K-dimensional kernels).
LARGE_CATEGORICAL_LAYOUTS = {"classes last": ("many classes", "long batch", "unbatched"), "k-dim": ("k-dim",)}


@st.composite
def large_categorical_shape(draw: st.DrawFn, layouts: tuple[str, ...]) -> tuple[int, ...]:
    """One of ``layouts``: (N, C) with many classes, (N, C) with a long batch, (C,) unbatched, or (N, C, d1, ..., dk)
    with the class dimension not last; at least ``large_sizes()`` elements. With the simplest choices, "many classes"
    has REQUIRED_CLASSES + 1 classes and "k-dim" a last dimension of REQUIRED_ELEMENTS / 2, each at least
    REQUIRED_ELEMENTS elements."""
    layout = draw(st.sampled_from(layouts), label="layout")
    total = draw(large_sizes(), label="elements")
    if layout == "unbatched":
        return (total,)
    if layout == "many classes":
        n_classes = draw(st.one_of(st.sampled_from(kernel_paths.CLASS_COUNTS), st.integers(2, 2**17)), label="classes")
        return (_ceil_div(total, n_classes), n_classes)
    n_classes = draw(st.one_of(st.integers(2, 16), st.sampled_from(kernel_paths.AROUND_VECTOR_WIDTHS)), label="classes")
    if layout == "long batch":
        return (_ceil_div(total, n_classes), n_classes)
    batch = draw(st.integers(1, 4), label="batch")
    k = draw(st.integers(1, MAX_EXTRA_DIMS), label="k")
    leading = tuple(draw(st.lists(st.integers(1, 16), min_size=k - 1, max_size=k - 1), label="extra dims"))
    last = _ceil_div(total, batch * n_classes * math.prod(leading))
    return (batch, n_classes, *leading, last)


@functools.cache
def large_categorical_shapes(path: str) -> st.SearchStrategy[tuple[int, ...]]:
    """The large categorical shapes of one path (a key of LARGE_CATEGORICAL_LAYOUTS)."""
    return large_categorical_shape(LARGE_CATEGORICAL_LAYOUTS[path])


def class_dim(shape: tuple[int, ...]) -> int:
    return 0 if len(shape) == 1 else 1


@st.composite
def ignore_index_choice(draw: st.DrawFn, n_classes: int) -> tuple[int, bool]:
    """An ignore_index of every kind, and whether it is passed (False: torch's default -100)."""
    kind = draw(st.sampled_from(["default", "in range", "negative", "beyond the classes"]), label="ignore kind")
    if kind == "default":
        return -100, draw(st.booleans(), label="pass -100 explicitly")
    value = {
        "in range": st.integers(0, n_classes - 1),
        "negative": st.integers(-1000, -1),
        "beyond the classes": st.integers(n_classes, 2**40),
    }[kind]
    return draw(value, label="ignore_index"), True


@functools.lru_cache(maxsize=4096)
def class_index_arrays(shape: tuple[int, ...], n_classes: int) -> st.SearchStrategy[np.ndarray]:
    """Class indices in [0, n_classes), each as likely (seeded or element-wise, as ``float_arrays``)."""
    if _seeded(shape):
        return st.integers(0, 2**63 - 1).map(
            lambda seed: np.random.default_rng(seed).integers(0, n_classes, size=shape, dtype=np.int64)
        )
    return hnp.arrays(np.int64, shape, elements=st.integers(0, n_classes - 1), fill=st.nothing())


@functools.lru_cache(maxsize=4096)
def boolean_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """True or False, each as likely (seeded or element-wise, as ``float_arrays``)."""
    if _seeded(shape):
        return st.integers(0, 2**63 - 1).map(lambda seed: np.random.default_rng(seed).random(shape) < 0.5)
    return hnp.arrays(np.bool_, shape)


@st.composite
def index_targets(
    draw: st.DrawFn, shape: tuple[int, ...], ignore_index: int, may_ignore: bool = True, size: int | None = None
) -> np.ndarray:
    """Class indices for one case of input ``shape``, or for ``size`` cases (along a first axis); none, some or all
    of them set to ``ignore_index`` (if ``may_ignore``)."""
    if size is None:
        return np.array(draw(index_targets(shape, ignore_index, may_ignore, size=1))[0])
    n_classes = shape[class_dim(shape)]
    target_shape = (size,) if len(shape) == 1 else (size, shape[0], *shape[2:])
    target = draw(class_index_arrays(target_shape, n_classes), label="classes")
    how_many_ignored = draw(st.sampled_from(["none", "some", "all"] if may_ignore else ["none"]), label="ignored")
    if how_many_ignored == "all":
        target = np.full(target_shape, ignore_index, dtype=np.int64)
    elif how_many_ignored == "some":
        mask = draw(boolean_arrays(target_shape), label="ignored positions")
        target = np.where(mask, ignore_index, target)
    # With C = 1 a (1,) target has the input's shape, which torch reads as probabilities.
    if len(shape) == 1 and n_classes > 1 and draw(st.booleans(), label="unbatched target of shape (1,)"):
        target = target.reshape(size, 1)
    # torch takes uint8 targets too, when every value fits, for inputs up to (N, C) (K-dimensional
    # inputs reject them: an error-parity case).
    fits = target.size and target.min() >= 0 and target.max() <= 255
    if fits and len(shape) <= 2 and draw(st.booleans(), label="uint8 target"):
        target = target.astype(np.uint8)
    return np.asarray(target)


@st.composite
def class_weight_kwargs(draw: st.DrawFn, dtype: Dtype, n_classes: int, size: int | None = None) -> dict[str, Any]:
    """No weight, or a class weight for one case, or for each of ``size`` cases (along a first axis)."""
    if not draw(st.booleans(), label="with weight"):
        return {}
    shape = (n_classes,) if size is None else (size, n_classes)
    return {"weight": draw(float_arrays(dtype, shape, WEIGHTS), label="weight")}


@functools.cache
def label_smoothing_values() -> st.SearchStrategy[float]:
    """[0, 1] with both ends, plus negative and NaN values, which torch treats as 0."""
    kind = st.sampled_from(["typical", "typical", "typical", "tiny", "an end", "negative", "NaN"])
    return kind.flatmap(
        lambda k: {
            "typical": st.floats(0.01, 0.99),
            "tiny": st.floats(0, 1e-3, exclude_min=True),
            "an end": st.sampled_from([0.0, 1.0]),
            "negative": st.floats(-1, 0, exclude_max=True),
            "NaN": st.just(math.nan),
        }[k]
    )


@st.composite
def probability_targets(draw: st.DrawFn, dtype: Dtype, shape: tuple[int, ...], size: int | None = None) -> np.ndarray:
    """Class probabilities for one case of input ``shape``, or for ``size`` cases (along a first axis): normalised
    along the class dimension, or arbitrary floats (unchecked by torch)."""
    if size is None:
        return np.array(draw(probability_targets(dtype, shape, size=1))[0])
    if draw(st.booleans(), label="normalised"):
        raw = draw(float_arrays(dtype, (size, *shape), PROBABILITIES), label="unnormalised mass")
        total = np.sum(raw, axis=1 + class_dim(shape), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised = np.where(total > 0, raw / total, 1.0 / shape[class_dim(shape)])
        return dtype.snap(normalised)
    return draw(float_arrays(dtype, (size, *shape), within(-1, 2)), label="arbitrary targets")


def single_cases(batches: Callable[..., st.SearchStrategy[CaseBatch]]) -> Callable[..., st.SearchStrategy[Case]]:
    """The strategy of single cases that a loss's strategy of batches gives with batches of one: its arguments
    are the batches' without the size."""

    @functools.wraps(batches)
    def cases(dtype: Dtype, *args: Any, **kwargs: Any) -> st.SearchStrategy[Case]:
        return batches(dtype, 1, *args, **kwargs).map(CaseBatch.only)

    return cases
