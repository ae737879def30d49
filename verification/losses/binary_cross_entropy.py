"""BCELoss (F.binary_cross_entropy) on probabilities: its parts, and its ``INFO`` entry naming them."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F

import reference
from reference import gradients

from .. import rejections, strategies
from ..cases import Case, CaseBatch
from ..dtypes import Dtype
from ..loss_info import GRADIENT_TESTS, IDENTITY_TESTS, Divergence, LossInfo, ParityVariant
from ..oracle import binary as binary_oracle
from ..planted_bugs import PlantedBug, _reduced
from ..rejections import DTYPE, Defect, _nonempty
from ..strategies import (
    INTERIOR_PROBABILITIES,
    PROBABILITIES,
    WEIGHTS,
    binary_shapes,
    broadcastable_shape,
    float_arrays,
    in_memory,
    large_binary_shapes,
    reduction_kwargs,
    single_cases,
)
from ..tolerance import backward
from ..tolerance.forward import reduce
from ..tolerance.tracked import F64, Tracked, case_size


@st.composite
def binary_cross_entropy_batches(
    draw: st.DrawFn,
    dtype: Dtype,
    size: int = 1,
    interior: bool = False,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> CaseBatch:
    """``size`` cases of one shape and arguments. With ``interior``: probabilities with p (1 - p) >= 1e-12 only, where
    torch's gradient is the derivative (outside, torch caps it: a named divergence in test_gradients.py)."""
    shape = draw(binary_shapes() if shapes is None else shapes, label="shape")
    elements = INTERIOR_PROBABILITIES if interior else PROBABILITIES
    probabilities = draw(float_arrays(dtype, (size, *shape), elements), label="input")
    target = draw(float_arrays(dtype, (size, *shape), PROBABILITIES), label="target")
    kwargs = draw(reduction_kwargs(), label="kwargs")
    if draw(st.booleans(), label="with weight"):
        w_shape = draw(broadcastable_shape(shape), label="weight shape")
        kwargs["weight"] = draw(float_arrays(dtype, (size, *w_shape), WEIGHTS), label="weight")
    return CaseBatch("binary_cross_entropy", probabilities, target, kwargs)


binary_cross_entropy_cases = single_cases(binary_cross_entropy_batches)


def replay(dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, reduction: str = "mean") -> Tracked:
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    log_p = p.log().clamp_min(reference.LOG_CLAMP)
    log_1mp = (-p).log1p().clamp_min(reference.LOG_CLAMP)
    losses = (y - 1.0) * log_1mp - y * log_p
    if weight is not None:
        losses = losses * Tracked.exact(weight, dtype)
    return reduce(losses.broadcast_to(np.shape(target)), reduction, None)


def gradient_replay(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, weight: F64 | None = None, reduction: str = "mean"
) -> Tracked:
    """grad * (p - y) / max(p (1 - p), 1e-12) [* w] [/ numel]."""
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    go = Tracked.exact(grad_output, dtype)
    result = (go * (p - y)) / (p * (1.0 - p)).clamp_min(BCE_GRAD_EPSILON)
    if weight is not None:
        result = result * Tracked.exact(weight, dtype)
    if reduction == "mean":
        result = result / float(case_size(target))
    return result.broadcast_to(np.shape(target))


def autodiff_gradient_replay(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, weight: F64 | None = None, reduction: str = "mean"
) -> Tracked:
    """Reverse mode through the forward formula -(y max(log p, -100) + (1 - y) max(log1p(-p), -100)) [* w]
    [mean], as an implementation without a hand-written backward computes the gradient (JAX's vjp): the upstream
    c = grad [/ numel] [* w], then -(c y) / p + (c (1 - y)) / (1 - p), one rounding each. Where p is near a soft
    target y the two quotients cancel, which torch's (p - y) / (p (1 - p)) does not: this bound is the one for
    that order. (The clamps pass the gradient through: the gradient properties draw p (1 - p) >= 1e-12.)"""
    p, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    c = backward.upstream(dtype, grad_output, reduction, case_size(target))
    if weight is not None:
        c = c * Tracked.exact(weight, dtype)
    c = -c
    result = (c * y) / p - (c * (1.0 - y)) / (1.0 - p)
    return result.broadcast_to(np.shape(target))


# torch's BCE backward divides by max(p (1 - p), 1e-12): the named divergence in test_gradients.py.
BCE_GRAD_EPSILON = 1e-12


@st.composite
def bce_value_outside_unit_interval(draw: st.DrawFn, which: str) -> Case:
    shape = _nonempty(draw(strategies.binary_shapes(), label="shape"))
    p = draw(strategies.float_arrays(DTYPE, shape, strategies.PROBABILITIES), label="input")
    y = draw(strategies.float_arrays(DTYPE, shape, strategies.PROBABILITIES), label="target")
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
    case = draw(binary_cross_entropy_cases(DTYPE), label="valid case")
    return Case(case.loss, case.input, case.target.astype(np.float32), case.kwargs)


def bce_mean_over_weights(input: Tensor, target: Tensor, weight=None, reduction="mean"):
    per = F.binary_cross_entropy(input, target, weight=weight, reduction="none")
    if weight is None:
        return _reduced(per, reduction)
    return _reduced(per, reduction, torch.broadcast_to(weight, target.shape).sum())


def bce_epsilon_clipping(input: Tensor, target: Tensor, weight=None, reduction="mean"):
    """Keras-style: clip p to [1e-7, 1 - 1e-7] instead of clamping each log at -100."""
    clipped = input.clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(clipped, target, weight=weight, reduction=reduction)


def bce_without_range_check(input: Tensor, target: Tensor, weight=None, reduction="mean"):
    """The formula without torch's check that input and target lie in [0, 1] (a dropped validation)."""
    log_p = torch.log(input).clamp_min(-100)
    log_1mp = torch.log1p(-input).clamp_min(-100)
    per = -(target * log_p + (1 - target) * log_1mp)
    if weight is not None:
        per = per * weight
    return _reduced(per, reduction)


# Each loss's planted bugs, named by the registry entry of that loss (verification/registry.py).
PLANTED_BUGS = (
    PlantedBug(
        "binary_cross_entropy",
        "without_range_check",
        "torch's check that p and y lie in [0, 1] dropped",
        bce_without_range_check,
        area="validation",
    ),
    PlantedBug(
        "binary_cross_entropy",
        "mean_over_weights",
        "the mean divided by the sum of weights, not numel",
        bce_mean_over_weights,
    ),
    PlantedBug(
        "binary_cross_entropy",
        "epsilon_clipping",
        "p clipped to [1e-7, 1 - 1e-7] instead of clamping logs",
        bce_epsilon_clipping,
    ),
)


INFO = LossInfo(
    name="binary_cross_entropy",
    functional=F.binary_cross_entropy,
    module=nn.BCELoss,
    reference=reference.binary_cross_entropy,
    reference_gradient=gradients.binary_cross_entropy_grad,
    forward_replay=replay,
    gradient_replay=gradient_replay,
    other_gradient_replays={"autodiff": autodiff_gradient_replay},
    oracle=binary_oracle.binary_cross_entropy,
    oracle_gradient=binary_oracle.binary_cross_entropy_grad,
    cases=binary_cross_entropy_cases,
    variants=(
        ParityVariant(
            "binary_cross_entropy",
            "all arguments",
            "BCELoss equals the reference for any shape, weight and reduction, the -100 log clamp at p = 0 and "
            "p = 1 included.",
            binary_cross_entropy_batches,
        ),
    ),
    gradient_batches=lambda dtype, size: binary_cross_entropy_batches(dtype, size, interior=True),
    gradient_claim=" (probabilities with p(1 - p) >= 1e-12: below, torch's gradient is capped, a named divergence)",
    large_inputs=(
        ParityVariant(
            "binary_cross_entropy",
            "large inputs",
            "BCELoss equals the reference on inputs of 2^14 to 2^22 elements, at and around the sizes where torch's "
            "kernels change path (the parallel grain, the vector widths), with any weight and reduction"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(binary_cross_entropy_batches(dtype, 1, shapes=large_binary_shapes())),
            gradient_batches=lambda dtype, size: in_memory(
                binary_cross_entropy_batches(dtype, 1, interior=True, shapes=large_binary_shapes())
            ),
        ),
    ),
    rejections=(
        rejections.reduction_defect("binary_cross_entropy", binary_cross_entropy_cases),
        *rejections.binary_defects("binary_cross_entropy", binary_cross_entropy_cases, ("weight",)),
        Defect(
            "binary_cross_entropy",
            "an input outside [0, 1] (NaN included)",
            RuntimeError,
            lambda: bce_value_outside_unit_interval("input"),
        ),
        Defect(
            "binary_cross_entropy",
            "a target outside [0, 1] (NaN included)",
            RuntimeError,
            lambda: bce_value_outside_unit_interval("target"),
        ),
        Defect(
            "binary_cross_entropy",
            "a target of another dtype than the input",
            RuntimeError,
            bce_target_of_other_dtype,
        ),
    ),
    planted_bugs=PLANTED_BUGS,
    divergences=(
        Divergence(
            "test_sigmoid_then_bce_breaks_where_sigmoid_saturates",
            IDENTITY_TESTS,
            "BCE(sigmoid(x), y) is pinned by the -100 clamp once sigmoid(x) rounds to 1 (x >= ln(4/u): 18.0 in "
            "float32, 38.1 in float64) or to 0, while BCEWithLogits keeps growing",
        ),
        Divergence(
            "test_bce_gradient_is_capped_where_p_times_1_minus_p_is_below_1e_12",
            GRADIENT_TESTS,
            "BCELoss's gradient is w (p - y) / max(p (1 - p), 1e-12): capped below 1e-12 and not the derivative at "
            "p = 0 or 1; in float16 the 1e-12 rounds to 0 and the gradient there is NaN or inf",
        ),
    ),
)
