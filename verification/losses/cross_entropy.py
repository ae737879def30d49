"""CrossEntropyLoss (F.cross_entropy), index and probability targets: its parts, and its ``INFO`` entry."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import Tensor, nn
from torch.nn import functional as F

import reference
from reference import gradients

from .. import rejections, strategies
from ..cases import Case, CaseBatch
from ..divergences import unbatched_target_of_shape_1_backward
from ..dtypes import Dtype
from ..loss_info import IDENTITY_TESTS, LOW_PRECISION_TESTS, Divergence, LossInfo, ParityVariant
from ..oracle import categorical as categorical_oracle
from ..planted_bugs import PlantedBug, _class_dim, _module_dropping
from ..rejections import DTYPE, Defect, valid_index_case
from ..strategies import (
    LOGITS,
    WEIGHTS,
    categorical_shape,
    class_dim,
    class_weight_kwargs,
    float_arrays,
    ignore_index_choice,
    in_memory,
    index_targets,
    label_smoothing_values,
    large_categorical_shapes,
    probability_targets,
    reduction_kwargs,
    single_cases,
)
from ..tolerance.backward import expand, log_softmax_backward, nll_grad
from ..tolerance.forward import along_classes, cross_entropy_parts, index_target_parts, nll_reduced, reduce
from ..tolerance.summation import TENSOR_SUM
from ..tolerance.tracked import F64, Tracked


@st.composite
def cross_entropy_batches(
    draw: st.DrawFn,
    dtype: Dtype,
    size: int = 1,
    target_kind: str | None = None,
    weighted_smoothing: bool = False,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
) -> CaseBatch:
    """``size`` cases of one shape and arguments. With ``weighted_smoothing``: class weights and a label smoothing in
    (0, 1] always present, the combination behind past torch bugs (pytorch#69339, #73205)."""
    shape = draw(categorical_shape() if shapes is None else shapes, label="shape")
    n_classes = shape[class_dim(shape)]
    logits = draw(float_arrays(dtype, (size, *shape), LOGITS), label="input")
    kwargs = draw(reduction_kwargs(), label="kwargs")
    if weighted_smoothing:
        kwargs["weight"] = draw(float_arrays(dtype, (size, n_classes), WEIGHTS), label="weight")
        kwargs["label_smoothing"] = draw(st.floats(0, 1, exclude_min=True), label="label_smoothing")
    else:
        kwargs.update(draw(class_weight_kwargs(dtype, n_classes, size), label="weight"))
        if draw(st.booleans(), label="with label_smoothing"):
            kwargs["label_smoothing"] = draw(label_smoothing_values(), label="label_smoothing")
    kind = target_kind or draw(st.sampled_from(["index", "probability"]), label="target kind")
    if kind == "probability":
        target = draw(probability_targets(dtype, shape, size), label="target")
        if draw(st.booleans(), label="pass a negative ignore_index"):
            # Negative values are accepted and unused with probability targets.
            kwargs["ignore_index"] = draw(st.integers(-1000, -1), label="ignore_index")
        return CaseBatch("cross_entropy", logits, target, kwargs)
    ignore_index, pass_it = draw(ignore_index_choice(n_classes), label="ignore_index")
    target = draw(index_targets(shape, ignore_index, size=size), label="target")
    if pass_it:
        kwargs["ignore_index"] = ignore_index
    return CaseBatch("cross_entropy", logits, target, kwargs)


cross_entropy_cases = single_cases(cross_entropy_batches)


def replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tracked:
    x, class_dim, n_classes, logp, eps, class_weights = cross_entropy_parts(dtype, input, weight, label_smoothing)
    w_along_classes = Tracked.exact(along_classes(class_weights, x.ndim), dtype)
    if np.shape(target) == np.shape(input):
        t = Tracked.exact(target, dtype)
        if eps > 0:
            t = t * t.constant(1.0 - eps) + t.constant(eps / n_classes)
        # torch: -(log_softmax * target [* weight]) summed over the classes ('none') or over everything at once.
        terms = -((logp * t) * w_along_classes)
        if reduction == "none":
            return terms.sum(axis=class_dim, order=TENSOR_SUM)
        total = terms.sum(order=TENSOR_SUM)
        return total if reduction == "sum" else total / float(x.size // n_classes)

    nll = nll_reduced(logp, target, weight, ignore_index, reduction, dtype)
    if eps == 0:
        return nll
    _, _, kept, _, at_target = index_target_parts(x.value, target, weight, ignore_index)
    smooth = (-(logp * w_along_classes).sum(axis=class_dim, order=TENSOR_SUM)).where(kept, 0.0)
    class_weight = Tracked.exact(at_target, dtype)
    smooth = reduce(smooth, reduction, class_weight)
    return nll * nll.constant(1.0 - eps) + smooth * smooth.constant(eps / n_classes)


def gradient_replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tracked:
    x, class_dim, n_classes, logp, eps, class_weights = cross_entropy_parts(dtype, input, weight, label_smoothing)
    w_along = Tracked.exact(along_classes(class_weights, x.ndim), dtype)
    go = expand(Tracked.exact(grad_output, dtype), class_dim)
    if np.shape(target) == np.shape(input):
        t = Tracked.exact(target, dtype)
        if eps > 0:
            t = t * t.constant(1.0 - eps) + t.constant(eps / n_classes)
        if reduction == "mean":
            go = go / float(x.size // n_classes if n_classes else 0)
        grad = ((-go) * w_along) * t if weight is not None else (-go) * t
        return log_softmax_backward(grad.broadcast_to(np.shape(input)), logp, class_dim)

    grad = nll_grad(
        dtype, np.shape(input), target, grad_output, weight, ignore_index, reduction, scale=1.0 - eps if eps else 1.0
    )
    if eps > 0:
        _, _, kept, _, at_target = index_target_parts(x.value, target, weight, ignore_index)
        smooth_go = go * go.constant(eps / n_classes)
        if reduction == "mean":
            smooth_go = smooth_go / Tracked.exact(at_target, dtype).sum(order=TENSOR_SUM)
        smooth = (-(smooth_go * w_along)).broadcast_to(np.shape(input))
        grad = grad + smooth.where(np.expand_dims(kept, class_dim), 0.0)
    return log_softmax_backward(grad, logp, class_dim)


@st.composite
def label_smoothing_above_one(draw: st.DrawFn) -> Case:
    case = draw(cross_entropy_cases(DTYPE), label="valid case")
    return case.with_kwargs(label_smoothing=draw(st.floats(1, exclude_min=True), label="label_smoothing"))


@st.composite
def probability_target_with_non_negative_ignore_index(draw: st.DrawFn) -> Case:
    case = draw(cross_entropy_cases(DTYPE, "probability"), label="valid case")
    return case.with_kwargs(ignore_index=draw(st.integers(0, 300), label="ignore_index"))


@st.composite
def integer_target_of_input_shape(draw: st.DrawFn) -> Case:
    case = draw(cross_entropy_cases(DTYPE, "probability"), label="valid case")
    kwargs = {k: v for k, v in case.kwargs.items() if k != "ignore_index"}
    target = draw(hnp.arrays(np.int64, case.input.shape, elements=st.integers(0, 1)), label="target")
    return Case("cross_entropy", case.input, target, kwargs)


@st.composite
def smoothing_with_k_dim_weight_of_rank_two(draw: st.DrawFn) -> Case:
    case = draw(valid_index_case("cross_entropy", ("k-dim",)), label="valid case")
    n_classes = draw(st.integers(2, strategies.MAX_CLASSES), label="classes")
    input = draw(
        strategies.float_arrays(DTYPE, (case.input.shape[0], n_classes, *case.input.shape[2:]), strategies.LOGITS),
        label="input",
    )
    case = Case("cross_entropy", input, np.minimum(case.target, n_classes - 1), case.kwargs)
    # torch views the weight as weight.size(0) entries along the class dimension: (1, C) fails for C > 1.
    weight = draw(strategies.float_arrays(DTYPE, (1, n_classes), strategies.WEIGHTS), label="weight")
    smoothing = draw(st.floats(0, 1, exclude_min=True), label="label_smoothing")
    return case.with_kwargs(weight=weight, label_smoothing=smoothing)


def _naive_log_softmax(input: Tensor, dim: int) -> Tensor:
    return input - torch.log(torch.exp(input).sum(dim, keepdim=True))


def cross_entropy_naive_log_softmax(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    smoothing = kwargs.pop("label_smoothing", 0.0)
    if target.shape == input.shape:
        return F.cross_entropy(input, target, label_smoothing=smoothing, **kwargs)
    if smoothing > 0:
        return F.cross_entropy(input, target, label_smoothing=smoothing, **kwargs)
    return F.nll_loss(_naive_log_softmax(input, _class_dim(input)), target, **kwargs)


def cross_entropy_smoothing_without_weights(input: Tensor, target: Tensor, weight=None, label_smoothing=0.0, **kwargs):
    """Label smoothing applied as (1-eps) NLL + eps/C * unweighted smoothing term."""
    if weight is None or not label_smoothing > 0 or target.shape == input.shape:
        return F.cross_entropy(input, target, weight=weight, label_smoothing=label_smoothing, **kwargs)
    unweighted = F.cross_entropy(input, target, label_smoothing=label_smoothing, **kwargs)
    hard_unweighted = F.cross_entropy(input, target, **kwargs)
    hard = F.cross_entropy(input, target, weight=weight, **kwargs)
    return unweighted - (1 - label_smoothing) * hard_unweighted + (1 - label_smoothing) * hard


def cross_entropy_probability_mean_over_weights(input: Tensor, target: Tensor, weight=None, reduction="mean", **kwargs):
    """Probability targets normalised like index targets (the 'fix' for pytorch#61309 done wrong)."""
    if target.shape != input.shape or weight is None or reduction != "mean":
        return F.cross_entropy(input, target, weight=weight, reduction=reduction, **kwargs)
    total = F.cross_entropy(input, target, weight=weight, reduction="sum", **kwargs)
    shape = [1] * input.dim()
    shape[_class_dim(input)] = -1
    return total / (target * weight.view(shape)).sum()


def cross_entropy_probability_targets_skip_smoothing(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    """label_smoothing applied to class indices only: probability targets are used as given."""
    if target.shape == input.shape:
        kwargs.pop("label_smoothing", None)
    return F.cross_entropy(input, target, **kwargs)


def cross_entropy_unbatched_keeps_a_batch_dimension(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    """An unbatched input (C,) handled by adding a batch of 1, and 'none' returning shape (1,) instead of ()."""
    if input.dim() != 1 or target.shape == input.shape:
        return F.cross_entropy(input, target, **kwargs)
    return F.cross_entropy(input.unsqueeze(0), target.reshape(1), **kwargs)


def cross_entropy_backward_ignores_label_smoothing(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    return _BackwardIgnoresLabelSmoothing.apply(input, target, kwargs)


def cross_entropy_float16_at_bfloat16_precision(input: Tensor, target: Tensor, weight=None, **kwargs: Any) -> Tensor:
    """float16 computed through bfloat16 (3 fewer significand bits): a kernel that picks the wrong half type."""
    if input.dtype != torch.float16:
        return F.cross_entropy(input, target, weight=weight, **kwargs)

    def as_bfloat16(t: Tensor | None) -> Tensor | None:
        return t.to(torch.bfloat16) if t is not None and t.is_floating_point() else t

    out = F.cross_entropy(as_bfloat16(input), as_bfloat16(target), weight=as_bfloat16(weight), **kwargs)
    return out.to(torch.float16)


cross_entropy_module_drops_ignore_index = _module_dropping(torch.nn.CrossEntropyLoss, "ignore_index")


# A vectorised path over the positions of a K-dimensional input, taken from a vector's worth of them (32).
_VECTOR_OF_POSITIONS = 32


def cross_entropy_loses_the_class_stride(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    """Right for inputs of fewer than 32 positions per sample; a K-dimensional input (N, C, d1, ...) with more is read
    as if its class dimension were last (a vectorised path that takes the class stride to be 1): classes and
    positions mixed."""
    if input.dim() > 2 and math.prod(input.shape[2:]) >= _VECTOR_OF_POSITIONS:
        n, c = input.shape[:2]
        input = input.reshape(n, *input.shape[2:], c).movedim(-1, 1)
    return F.cross_entropy(input, target, **kwargs)


PLANTED_BUGS = (
    PlantedBug(
        "cross_entropy",
        "loses_the_class_stride",
        "a K-dimensional path that reads the classes with stride 1 once an input has a vector's worth of positions",
        cross_entropy_loses_the_class_stride,
        area="large",
    ),
    PlantedBug(
        "cross_entropy",
        "probability_targets_skip_smoothing",
        "label_smoothing ignored for probability targets",
        cross_entropy_probability_targets_skip_smoothing,
    ),
    PlantedBug(
        "cross_entropy",
        "unbatched_keeps_a_batch_dimension",
        "an unbatched input run as a batch of one, 'none' returning (1,) for ()",
        cross_entropy_unbatched_keeps_a_batch_dimension,
    ),
    PlantedBug(
        "cross_entropy",
        "backward_ignores_label_smoothing",
        "a hand-written backward that forgets the label-smoothing term",
        cross_entropy_backward_ignores_label_smoothing,
        area="gradient",
    ),
    PlantedBug(
        "cross_entropy",
        "naive_log_softmax",
        "log-softmax without the max shift (exp overflows)",
        cross_entropy_naive_log_softmax,
    ),
    PlantedBug(
        "cross_entropy",
        "smoothing_without_weights",
        "the label-smoothing term computed without class weights",
        cross_entropy_smoothing_without_weights,
    ),
    PlantedBug(
        "cross_entropy",
        "probability_mean_over_weights",
        "probability targets' mean divided by the total weight instead of N",
        cross_entropy_probability_mean_over_weights,
    ),
    PlantedBug(
        "cross_entropy",
        "module_drops_ignore_index",
        "CrossEntropyLoss(...) not passing ignore_index on",
        cross_entropy_module_drops_ignore_index,
    ),
    PlantedBug(
        "cross_entropy",
        "float16_at_bfloat16_precision",
        "float16 computed through bfloat16, 3 significand bits short",
        cross_entropy_float16_at_bfloat16_precision,
    ),
)


def _smoothing(case: Case) -> float:
    value = case.kwargs.get("label_smoothing", 0.0)
    return value if value > 0 else 0.0


def uint8_smoothing_mask_wraps(case: Case) -> bool:
    """uint8 targets under label smoothing: torch compares them with ignore_index cast to uint8, so an
    ignore_index outside [0, 255] (the default -100 too) also drops the smoothing term of every target
    equal to ignore_index mod 256."""
    ignore_index = case.kwargs.get("ignore_index", -100)
    return (
        case.target.dtype == np.uint8
        and _smoothing(case) > 0
        and not 0 <= ignore_index <= 255
        and bool(np.any(case.target == ignore_index % 256))
    )


def cross_entropy_forward(case: Case) -> str | None:
    """Why torch's cross-entropy is known to depart from the reference on this call, or None."""
    if not case.has_index_target or _smoothing(case) == 0:
        return None
    if case.input.ndim == 1 and case.target.shape == (1,):
        return (
            "torch 2.13 rejects unbatched input with a (1,) target under label_smoothing "
            "(test_unbatched_input_with_target_of_shape_1_and_smoothing_is_rejected_by_torch)"
        )
    weighted_mean = "weight" in case.kwargs and case.kwargs.get("reduction", "mean") == "mean"
    if weighted_mean and case.target.dtype == np.uint8:
        return (
            "torch 2.13 rejects uint8 targets with class weights, label_smoothing and 'mean' "
            "(test_uint8_target_with_weight_smoothing_and_mean_is_rejected_by_torch)"
        )
    if uint8_smoothing_mask_wraps(case):
        return (
            "torch 2.13 drops the smoothing term of uint8 targets equal to ignore_index mod 256 "
            "(test_uint8_targets_lose_smoothing_where_ignore_index_wraps_modulo_256)"
        )
    return None


def cross_entropy_backward(case: Case) -> str | None:
    """Cross-entropy's backward departs wherever its forward does, and where NLL's backward does."""
    return cross_entropy_forward(case) or unbatched_target_of_shape_1_backward(case)


CROSS_ENTROPY_TESTS = "tests/test_cross_entropy.py"


INFO = LossInfo(
    name="cross_entropy",
    functional=F.cross_entropy,
    module=nn.CrossEntropyLoss,
    reference=reference.cross_entropy,
    reference_gradient=gradients.cross_entropy_grad,
    forward_replay=replay,
    gradient_replay=gradient_replay,
    oracle=categorical_oracle.cross_entropy,
    oracle_gradient=categorical_oracle.cross_entropy_grad,
    cases=cross_entropy_cases,
    variants=(
        ParityVariant(
            "cross_entropy",
            "index targets",
            "CrossEntropyLoss with class indices equals the reference for every layout, weight, ignore_index, "
            "label_smoothing and reduction.",
            lambda dtype, size: cross_entropy_batches(dtype, size, "index"),
        ),
        ParityVariant(
            "cross_entropy",
            "probability targets",
            "CrossEntropyLoss with class probabilities (normalised or not) equals the reference for every "
            "layout, weight, label_smoothing and reduction.",
            lambda dtype, size: cross_entropy_batches(dtype, size, "probability"),
        ),
        ParityVariant(
            "cross_entropy",
            "weights with label smoothing",
            "CrossEntropyLoss with class indices, class weights and label smoothing in (0, 1] equals the "
            "reference, ignored targets included (pytorch#69339, #73205).",
            lambda dtype, size: cross_entropy_batches(dtype, size, "index", weighted_smoothing=True),
        ),
    ),
    large_inputs=(
        ParityVariant(
            "cross_entropy",
            "large inputs: classes last",
            "CrossEntropyLoss equals the reference on inputs of 2^14 to 2^22 elements whose classes are the last "
            "dimension: up to 2^17 classes, or long batches, or one unbatched sample, with index or probability "
            "targets and every argument"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(
                cross_entropy_batches(dtype, 1, shapes=large_categorical_shapes("classes last"))
            ),
        ),
        ParityVariant(
            "cross_entropy",
            "large inputs: K-dimensional",
            "CrossEntropyLoss equals the reference on K-dimensional inputs of 2^14 to 2^22 elements, whose class "
            "dimension is not last, with index or probability targets and every argument"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(cross_entropy_batches(dtype, 1, shapes=large_categorical_shapes("k-dim"))),
        ),
    ),
    rejections=(
        rejections.reduction_defect("cross_entropy", cross_entropy_cases),
        *rejections.categorical_defects("cross_entropy"),
        Defect("cross_entropy", "label_smoothing above 1", RuntimeError, label_smoothing_above_one),
        Defect(
            "cross_entropy",
            "probability targets with an ignore_index >= 0",
            RuntimeError,
            probability_target_with_non_negative_ignore_index,
        ),
        Defect(
            "cross_entropy",
            "an integer target of the input's shape (read as probabilities)",
            RuntimeError,
            integer_target_of_input_shape,
        ),
        Defect(
            "cross_entropy",
            "label smoothing with a K-dimensional input and a (1, C) weight",
            RuntimeError,
            smoothing_with_k_dim_weight_of_rank_two,
        ),
        Defect(
            "cross_entropy",
            "probability targets with class weights of the wrong size",
            RuntimeError,
            lambda: rejections.class_weight_of_wrong_size(
                "cross_entropy", lambda dtype: cross_entropy_cases(dtype, "probability")
            ),
        ),
    ),
    planted_bugs=PLANTED_BUGS,
    divergences=(
        Divergence(
            "test_unbatched_input_with_target_of_shape_1_and_smoothing_is_rejected_by_torch",
            CROSS_ENTROPY_TESTS,
            "Unbatched input (C,) with target of shape (1,) and label_smoothing > 0 raises a broadcast RuntimeError",
        ),
        Divergence(
            "test_uint8_target_with_weight_smoothing_and_mean_is_rejected_by_torch",
            CROSS_ENTROPY_TESTS,
            "uint8 targets + class weights + label_smoothing + 'mean' raise \"gather(): Expected dtype int32/int64\"",
        ),
        Divergence(
            "test_uint8_targets_lose_smoothing_where_ignore_index_wraps_modulo_256",
            CROSS_ENTROPY_TESTS,
            "uint8 targets + label_smoothing: the smoothing term's ignore mask compares with ignore_index cast to "
            "uint8, so it wraps modulo 256; with the default -100, class 156 silently loses its smoothing term",
        ),
        Divergence(
            "test_float16_index_label_smoothing_overflows_before_scaling",
            LOW_PRECISION_TESTS,
            "float16 CrossEntropy with class indices and label smoothing sums w_j log p_j before scaling by eps/C, "
            "so it is inf once that sum passes 65504 (one-hot targets give the right value)",
        ),
        Divergence(
            "test_softmax_then_log_then_nll_breaks_where_softmax_underflows",
            IDENTITY_TESTS,
            "Softmax -> log -> NLL is +inf once the target's softmax underflows; CrossEntropy stays exact",
        ),
        Divergence(
            "test_weighted_mean_of_index_and_one_hot_targets_differ_by_the_normaliser",
            IDENTITY_TESTS,
            "With class weights and 'mean', index targets divide by sum w[y_i], one-hot probability targets by N "
            "(pytorch#61309)",
        ),
    ),
    known_divergence=cross_entropy_forward,
    known_gradient_divergence=cross_entropy_backward,
)


class _BackwardIgnoresLabelSmoothing(torch.autograd.Function):
    """The right forward; a hand-written backward that forgets the smoothing term (softmax - one_hot)."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor, kwargs: dict[str, Any]) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(input, target)
        ctx.kwargs = kwargs
        return F.cross_entropy(input, target, **kwargs)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        input, target = ctx.saved_tensors
        kwargs = {k: v for k, v in ctx.kwargs.items() if k != "label_smoothing"}
        with torch.enable_grad():
            leaf = input.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(F.cross_entropy(leaf, target, **kwargs), leaf, grad)
        return gradient, None, None
