"""KLDivLoss (F.kl_div), probability and log targets: its parts, and its ``INFO`` entry naming them."""

from __future__ import annotations

import math

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
from ..elements import mixture, within
from ..loss_info import Divergence, LossInfo, ParityVariant
from ..oracle import kl_div as kl_div_oracle
from ..planted_bugs import PlantedBug
from ..rejections import DTYPE, Defect
from ..strategies import (
    LOGITS,
    PROBABILITIES,
    binary_shapes,
    broadcastable_shape,
    float_arrays,
    in_memory,
    large_binary_shapes,
    single_cases,
)
from ..tolerance.backward import sum_to_shape
from ..tolerance.forward import tensor_mean
from ..tolerance.summation import TENSOR_SUM
from ..tolerance.tracked import F64, Tracked, case_ndim

# KLDivLoss's reductions: the three of the others and 'batchmean'.
KL_REDUCTIONS = ("none", "mean", "sum", "batchmean")


LOG_TARGETS = mixture(within(-20, 5), within(-20, 5), LOGITS)
TARGETS = mixture(PROBABILITIES, PROBABILITIES, within(-1, 2))


@st.composite
def kl_div_batches(
    draw: st.DrawFn,
    dtype: Dtype,
    size: int = 1,
    log_targets: bool = False,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> CaseBatch:
    """``size`` cases of one layout and arguments. Input: log-probabilities (any floats, torch never checks them).
    Target: probabilities with exact zeros and ones, and now and then a negative or above-one value (accepted; a
    negative one gives NaN), or with ``log_targets`` log-probabilities (mostly in [-20, 5], sometimes large enough that
    exp overflows). Input and target have one shape, or one of them broadcasts against the other."""
    shape = draw(binary_shapes() if shapes is None else shapes, label="shape")
    layout = draw(st.sampled_from(["one shape", "target broadcast", "input broadcast"]), label="layout")
    smaller = draw(broadcastable_shape(shape), label="broadcast shape")
    input_shape, target_shape = {
        "one shape": (shape, shape),
        "target broadcast": (shape, smaller),
        "input broadcast": (smaller, shape),
    }[layout]
    log_q = draw(float_arrays(dtype, (size, *input_shape), LOGITS), label="input")
    targets = LOG_TARGETS if log_targets else TARGETS
    target = draw(float_arrays(dtype, (size, *target_shape), targets), label="target")
    kwargs = draw(st.fixed_dictionaries({}, optional={"reduction": st.sampled_from(KL_REDUCTIONS)}), label="kwargs")
    if log_targets:
        kwargs["log_target"] = True
    elif draw(st.booleans(), label="pass log_target=False"):
        kwargs["log_target"] = False
    return CaseBatch("kl_div", log_q, target, kwargs)


kl_div_cases = single_cases(kl_div_batches)


def replay(dtype: Dtype, input: F64, target: F64, reduction: str = "mean", log_target: bool = False) -> Tracked:
    """xlogy(t, t) - t * x, or exp(t) * (t - x) with log_target; 'batchmean' divides by the input's first size."""
    shape = np.broadcast_shapes(np.shape(input), np.shape(target))
    x = Tracked.exact(input, dtype).broadcast_to(shape)
    t = Tracked.exact(target, dtype).broadcast_to(shape)
    if log_target:
        losses = t.exp() * (t - x)
    else:
        t_log_t = t.log() * t
        zero = t.value == 0  # xlogy(0, y) is exactly 0
        losses = t_log_t.where(~zero, 0.0) - t * x
    if reduction == "none":
        return losses
    if reduction == "mean":
        return tensor_mean(losses)
    total = losses.sum(order=TENSOR_SUM)
    if reduction == "sum":
        return total
    return total / float(np.shape(input)[0]) if case_ndim(input) else total


def gradient_replay(
    dtype: Dtype, input: F64, target: F64, grad_output: F64, reduction: str = "mean", log_target: bool = False
) -> Tracked:
    """Autograd through kl_div's formula: -(g * t), or -(g * exp(t)), with g = grad_output divided first by the
    mean's element count or the batchmean's first size; summed over the dimensions the input was broadcast along."""
    shape = np.broadcast_shapes(np.shape(input), np.shape(target))
    t = Tracked.exact(target, dtype).broadcast_to(shape)
    go = Tracked.exact(grad_output, dtype)
    if reduction == "mean":
        go = go / float(math.prod(shape[:-1]))
    elif reduction == "batchmean" and case_ndim(input):
        go = go / float(np.shape(input)[0])
    gradient = -(go * (t.exp() if log_target else t))
    return sum_to_shape(gradient.broadcast_to(shape), np.shape(input))


@st.composite
def kl_div_with_integral_input(draw: st.DrawFn) -> Case:
    case = draw(kl_div_cases(DTYPE), label="valid case")
    return Case(case.loss, np.round(case.input).clip(-1000, 1000).astype(np.int64), case.target, case.kwargs)


@st.composite
def kl_div_shapes_that_do_not_broadcast(draw: st.DrawFn) -> Case:
    sizes = draw(st.tuples(st.integers(2, 4), st.integers(2, 4)).filter(lambda ab: ab[0] != ab[1]), label="sizes")
    log_q = draw(strategies.float_arrays(DTYPE, (sizes[0],), strategies.LOGITS), label="input")
    p = draw(strategies.float_arrays(DTYPE, (sizes[1],), strategies.PROBABILITIES), label="target")
    return Case("kl_div", log_q, p, {})


def kl_div_batchmean_as_mean(input: Tensor, target: Tensor, reduction="mean", log_target=False):
    """'batchmean' divided by the number of elements, like 'mean' (the very confusion torch's warning is about)."""
    return F.kl_div(input, target, reduction="mean" if reduction == "batchmean" else reduction, log_target=log_target)


def kl_div_log_target_ignored(input: Tensor, target: Tensor, reduction="mean", log_target=False):
    """log_target not passed on: log-probability targets read as probabilities."""
    return F.kl_div(input, target, reduction=reduction)


def kl_div_accumulates_in_the_dtype_past_2048(input, target, reduction="mean", log_target=False):
    """Right up to 2048 elements; past them, the reduction adds blocks of 512 terms into a running sum kept in the
    storage dtype (a fast path whose partial sums are float16 in float16): its error grows with the element count, to
    tens of units of roundoff and more at a million terms, where torch's float32 cascade stays within a few."""
    if reduction == "none" or input.numel() <= 2048:
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
    per = F.kl_div(input, target, reduction="none", log_target=log_target).flatten()
    total = torch.zeros((), dtype=per.dtype)
    for block in per.split(512):
        total = (total.double() + block.double().sum()).to(per.dtype)  # rounded to the storage dtype every block
    if reduction == "sum":
        return total
    return total / (input.shape[0] if reduction == "batchmean" and input.dim() else per.numel())


PLANTED_BUGS = (
    PlantedBug(
        "kl_div",
        "accumulates_in_the_dtype_past_2048",
        "a reduction that keeps its running sum in the storage dtype past 2048 terms, far less accurate than torch's",
        kl_div_accumulates_in_the_dtype_past_2048,
        area="large",
    ),
    PlantedBug(
        "kl_div",
        "batchmean_as_mean",
        "'batchmean' divided by the element count, as 'mean' is",
        kl_div_batchmean_as_mean,
    ),
    PlantedBug(
        "kl_div",
        "log_target_ignored",
        "log_target not passed on: log-probabilities read as probabilities",
        kl_div_log_target_ignored,
    ),
)


INFO = LossInfo(
    name="kl_div",
    functional=F.kl_div,
    module=nn.KLDivLoss,
    reference=reference.kl_div,
    reference_gradient=gradients.kl_div_grad,
    forward_replay=replay,
    gradient_replay=gradient_replay,
    oracle=kl_div_oracle.kl_div,
    oracle_gradient=kl_div_oracle.kl_div_grad,
    cases=kl_div_cases,
    variants=(
        ParityVariant(
            "kl_div",
            "probability targets",
            "KLDivLoss equals the reference for probability targets (zeros, and negative values giving NaN "
            "included), every reduction including 'batchmean', with input and target broadcast against each other "
            "either way.",
            kl_div_batches,
        ),
        ParityVariant(
            "kl_div",
            "log targets",
            "KLDivLoss with log_target=True equals the reference for every reduction and broadcast.",
            lambda dtype, size: kl_div_batches(dtype, size, log_targets=True),
        ),
    ),
    large_inputs=(
        ParityVariant(
            "kl_div",
            "large inputs",
            "KLDivLoss equals the reference on inputs of 2^14 to 2^22 elements, at and around the sizes where torch's "
            "kernels change path, with either kind of target, broadcasting and every reduction"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(kl_div_batches(dtype, 1, shapes=large_binary_shapes())),
        ),
    ),
    rejections=(
        rejections.reduction_defect("kl_div", kl_div_cases, KL_REDUCTIONS),
        Defect("kl_div", "an integral input", RuntimeError, kl_div_with_integral_input),
        Defect(
            "kl_div",
            "an input and a target whose shapes do not broadcast",
            RuntimeError,
            kl_div_shapes_that_do_not_broadcast,
        ),
    ),
    planted_bugs=PLANTED_BUGS,
    divergences=(
        Divergence(
            "test_kl_div_is_nan_where_a_zero_probability_meets_an_infinite_log",
            "tests/test_kl_div.py",
            "KLDivLoss gives NaN for a term with p = 0 when log q = -inf (and, with log_target, wherever log p = "
            "-inf), where the term is 0 (every dtype)",
        ),
    ),
)
