"""BCEWithLogitsLoss (F.binary_cross_entropy_with_logits): its parts, and its ``INFO`` entry naming them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F

import reference
from reference import gradients

from .. import rejections
from ..cases import CaseBatch
from ..dtypes import Dtype
from ..elements import mixture, within
from ..kernel_paths import GRAIN_SIZE
from ..loss_info import LOW_PRECISION_TESTS, Divergence, LossInfo, ParityVariant
from ..oracle import binary as binary_oracle
from ..planted_bugs import PlantedBug, _module_dropping, _reduced
from ..strategies import (
    LOGITS,
    PROBABILITIES,
    WEIGHTS,
    binary_shapes,
    broadcastable_shape,
    float_arrays,
    in_memory,
    large_binary_shapes,
    per_class_shapes,
    reduction_kwargs,
    single_cases,
)
from ..tolerance import backward
from ..tolerance.forward import reduce
from ..tolerance.tracked import F64, Tracked, case_size

# Targets outside [0, 1] are accepted by torch (not range-checked), so they are drawn too.
UNCHECKED_TARGETS = mixture(PROBABILITIES, within(-1, 2))


@st.composite
def binary_cross_entropy_with_logits_batches(
    draw: st.DrawFn,
    dtype: Dtype,
    size: int = 1,
    per_class_pos_weight: bool = False,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> CaseBatch:
    """``size`` cases of one shape and arguments. With ``per_class_pos_weight``: the documented use, a pos_weight of
    shape (C,) for the last dimension of an input of rank >= 2, always present."""
    if shapes is None:
        shapes = per_class_shapes() if per_class_pos_weight else binary_shapes()
    shape = draw(shapes, label="shape")
    logits = draw(float_arrays(dtype, (size, *shape), LOGITS), label="input")
    target = draw(float_arrays(dtype, (size, *shape), UNCHECKED_TARGETS), label="target")
    kwargs = draw(reduction_kwargs(), label="kwargs")
    for name in ("weight", "pos_weight"):
        if per_class_pos_weight and name == "pos_weight":
            arg_shape = shape[-1:]
        elif draw(st.booleans(), label=f"with {name}"):
            arg_shape = draw(broadcastable_shape(shape), label=f"{name} shape")
        else:
            continue
        kwargs[name] = draw(float_arrays(dtype, (size, *arg_shape), WEIGHTS), label=name)
    return CaseBatch("binary_cross_entropy_with_logits", logits, target, kwargs)


binary_cross_entropy_with_logits_cases = single_cases(binary_cross_entropy_with_logits_batches)


def replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    log_sigmoid = x.minimum(0.0) - (-(x.abs())).exp().log1p()
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((Tracked.exact(pos_weight, dtype) - 1.0) * y + 1.0)
    losses = (1.0 - y) * x - log_sigmoid
    if weight is not None:
        losses = losses * Tracked.exact(weight, dtype)
    return reduce(losses.broadcast_to(np.shape(target)), reduction, None)


def gradient_replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    """(sigmoid(x) - y) * grad, or ((pw y + 1 - y) sigmoid(x) - pw y) * grad; [* w] [/ numel]."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    go = Tracked.exact(grad_output, dtype)
    if pos_weight is None:
        result = (x.sigmoid() - y) * go
    else:
        t = Tracked.exact(pos_weight, dtype) * y
        result = (((t + 1.0) - y) * x.sigmoid() - t) * go
    if weight is not None:
        result = result * Tracked.exact(weight, dtype)
    if reduction == "mean":
        result = result / float(case_size(target))
    return result.broadcast_to(np.shape(target))


def autodiff_gradient_replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    reduction: str = "mean",
    pos_weight: F64 | None = None,
) -> Tracked:
    """Reverse mode through the forward formula (1 - y) softplus(x) + pw y softplus(-x) [* w] [mean], with
    softplus(z) = log(e^z + 1) differentiated as JAX's logaddexp is, e^(z - softplus(z)): the upstream
    c = grad [/ numel] [* w], then (c (1 - y)) e^(x - softplus(x)) - ((c pw) y) e^(-x - softplus(-x)). The
    exponent's difference carries the rounding of softplus(z), about u |z|, so the derivative's relative error
    grows with |x| where torch's sigmoid's does not: this bound is the one for that order."""
    x, y = Tracked.exact(input, dtype), Tracked.exact(target, dtype)
    c = backward.upstream(dtype, grad_output, reduction, case_size(target))
    if weight is not None:
        c = c * Tracked.exact(weight, dtype)

    def softplus_derivative(z: Tracked) -> Tracked:
        softplus = -((-z).minimum(0.0)) + (-(z.abs())).exp().log1p()  # max(z, 0) + log1p(e^-|z|)
        return (z - softplus).exp()

    positive = c if pos_weight is None else c * Tracked.exact(pos_weight, dtype)
    result = (c * (1.0 - y)) * softplus_derivative(x) - (positive * y) * softplus_derivative(-x)
    return result.broadcast_to(np.shape(target))


def bce_logits_pos_weight_on_negative_term(input, target, weight=None, reduction="mean", pos_weight=None):
    if pos_weight is None:
        return F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction)
    # -[y log s(x) + pw (1 - y) log(1 - s(x))]: the weight lands on the wrong class.
    per = -(target * F.logsigmoid(input) + pos_weight * (1 - target) * F.logsigmoid(-input))
    if weight is not None:
        per = per * weight
    return _reduced(per, reduction)


def bce_logits_via_sigmoid(input, target, weight=None, reduction="mean", pos_weight=None):
    """BCE(sigmoid(x)): the article's identity used as the implementation."""
    p = torch.sigmoid(input)
    log_p, log_1mp = torch.log(p).clamp_min(-100), torch.log1p(-p).clamp_min(-100)
    pw = 1.0 if pos_weight is None else pos_weight
    per = -(pw * target * log_p + (1 - target) * log_1mp)
    if weight is not None:
        per = per * weight
    return _reduced(per, reduction)


def bce_logits_pos_weight_left_aligned(input, target, weight=None, reduction="mean", pos_weight=None):
    """pos_weight of shape (C,) aligned with dimension 1 instead of the last (pytorch#27936)."""
    if pos_weight is not None and pos_weight.dim() == 1 and input.dim() > 1 and pos_weight.numel() > 1:
        if input.shape[1] != pos_weight.numel():
            return F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction)
        pos_weight = pos_weight.view(-1, *([1] * (input.dim() - 2)))
    return F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction, pos_weight=pos_weight)


def bce_logits_backward_ignores_pos_weight(input, target, weight=None, reduction="mean", pos_weight=None):
    return _BackwardIgnoresPosWeight.apply(input, target, weight, reduction, pos_weight)


def bce_logits_float16_off_by_ulps(input, target, weight=None, reduction="mean", pos_weight=None):
    """Right except in float16, where the result is 8 units of roundoff (4 to 8 ulps) too large: a kernel that
    rounds an intermediate to half twice, or skips a final correction step."""
    out = F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction, pos_weight=pos_weight)
    if input.dtype != torch.float16:
        return out
    wide = out.float()
    return (wide + wide.abs() * (8 * 2.0**-11)).to(torch.float16)


bce_logits_module_drops_pos_weight = _module_dropping(torch.nn.BCEWithLogitsLoss, "pos_weight")


def bce_logits_loses_a_partial_past_the_grain(input, target, weight=None, reduction="mean", pos_weight=None):
    """Right up to torch's parallel grain (32768 elements); past it, the 'sum' and 'mean' lose the last chunk's
    partial sum: a two-pass reduction that combines one partial fewer than it made."""
    kwargs = dict(weight=weight, pos_weight=pos_weight)
    if reduction == "none" or input.numel() <= GRAIN_SIZE:
        return F.binary_cross_entropy_with_logits(input, target, reduction=reduction, **kwargs)
    per = F.binary_cross_entropy_with_logits(input, target, reduction="none", **kwargs).flatten()
    total = per[: (per.numel() - 1) // GRAIN_SIZE * GRAIN_SIZE].sum()
    return total if reduction == "sum" else total / per.numel()


PLANTED_BUGS = (
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "loses_a_partial_past_the_grain",
        "a reduction that is right up to the parallel grain and loses the last chunk's partial sum past it",
        bce_logits_loses_a_partial_past_the_grain,
        area="large",
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "backward_ignores_pos_weight",
        "a hand-written backward (sigmoid(x) - y) that forgets pos_weight",
        bce_logits_backward_ignores_pos_weight,
        area="gradient",
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "pos_weight_on_negative_term",
        "pos_weight multiplying the negative term",
        bce_logits_pos_weight_on_negative_term,
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "via_sigmoid",
        "computed as BCE(sigmoid(x)), saturating",
        bce_logits_via_sigmoid,
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "pos_weight_left_aligned",
        "pos_weight (C,) broadcast against dimension 1 instead of the last",
        bce_logits_pos_weight_left_aligned,
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "float16_off_by_ulps",
        "float16 results 8 units of roundoff too large (a double rounding to half)",
        bce_logits_float16_off_by_ulps,
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "module_drops_pos_weight",
        "BCEWithLogitsLoss(...) not passing pos_weight on",
        bce_logits_module_drops_pos_weight,
    ),
)


INFO = LossInfo(
    name="binary_cross_entropy_with_logits",
    functional=F.binary_cross_entropy_with_logits,
    module=nn.BCEWithLogitsLoss,
    reference=reference.binary_cross_entropy_with_logits,
    reference_gradient=gradients.binary_cross_entropy_with_logits_grad,
    forward_replay=replay,
    gradient_replay=gradient_replay,
    other_gradient_replays={"autodiff": autodiff_gradient_replay},
    oracle=binary_oracle.binary_cross_entropy_with_logits,
    oracle_gradient=binary_oracle.binary_cross_entropy_with_logits_grad,
    cases=binary_cross_entropy_with_logits_cases,
    variants=(
        ParityVariant(
            "binary_cross_entropy_with_logits",
            "all arguments",
            "BCEWithLogitsLoss equals the reference for any shape, weight, pos_weight and reduction, logits up to "
            "|1e4|.",
            binary_cross_entropy_with_logits_batches,
        ),
        ParityVariant(
            "binary_cross_entropy_with_logits",
            "per-class pos_weight",
            "BCEWithLogitsLoss equals the reference with a pos_weight of shape (C,), which meets the last "
            "dimension (pytorch#27936).",
            lambda dtype, size: binary_cross_entropy_with_logits_batches(dtype, size, per_class_pos_weight=True),
        ),
    ),
    large_inputs=(
        ParityVariant(
            "binary_cross_entropy_with_logits",
            "large inputs",
            "BCEWithLogitsLoss equals the reference on inputs of 2^14 to 2^22 elements, at and around the sizes where "
            "torch's kernels change path (the parallel grain, the vector widths), with any weight, pos_weight and "
            "reduction"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(
                binary_cross_entropy_with_logits_batches(dtype, 1, shapes=large_binary_shapes())
            ),
        ),
    ),
    rejections=(
        rejections.reduction_defect("binary_cross_entropy_with_logits", binary_cross_entropy_with_logits_cases),
        *rejections.binary_defects(
            "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits_cases, ("weight", "pos_weight")
        ),
    ),
    planted_bugs=PLANTED_BUGS,
    divergences=(
        Divergence(
            "test_bce_with_logits_is_nan_at_infinite_logits_where_the_limit_is_0_or_inf",
            LOW_PRECISION_TESTS,
            "BCEWithLogits is NaN at x = -inf (any target) and at x = +inf with y = 1, where the loss has the limit "
            "0 or inf (every dtype)",
        ),
        Divergence(
            "test_bce_with_logits_loses_all_relative_accuracy_for_target_0_and_negative_logits",
            LOW_PRECISION_TESTS,
            "BCEWithLogits with target 0 and a negative logit cancels (1 - y) x against log sigmoid(x): where the "
            "loss is below u|x| it returns exactly 0; the tolerance model bounds this order, so parity holds, but "
            "the result has no correct digit",
        ),
    ),
)


class _BackwardIgnoresPosWeight(torch.autograd.Function):
    """The right forward; a hand-written backward (sigmoid(x) - y) that forgets pos_weight."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor, weight, reduction, pos_weight) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(input, target)
        ctx.weight, ctx.reduction = weight, reduction
        return F.binary_cross_entropy_with_logits(
            input, target, weight=weight, reduction=reduction, pos_weight=pos_weight
        )

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # type: ignore[override]
        input, target = ctx.saved_tensors
        gradient = (torch.sigmoid(input) - target) * grad
        if ctx.weight is not None:
            gradient = gradient * ctx.weight
        if ctx.reduction == "mean":
            gradient = gradient / input.numel()
        return gradient, None, None, None, None
