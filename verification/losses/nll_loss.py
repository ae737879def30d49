"""NLLLoss (F.nll_loss): its parts, and its ``INFO`` entry naming them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F

import reference
from reference import gradients

from .. import divergences as divergence_rules
from .. import rejections
from ..cases import CaseBatch
from ..dtypes import Dtype
from ..loss_info import GRADIENT_TESTS, LOW_PRECISION_TESTS, Divergence, LossInfo, ParityVariant
from ..oracle import categorical as categorical_oracle
from ..planted_bugs import PlantedBug, _reduced
from ..strategies import (
    LOGITS,
    categorical_shape,
    class_dim,
    class_weight_kwargs,
    float_arrays,
    ignore_index_choice,
    in_memory,
    index_targets,
    large_categorical_shapes,
    reduction_kwargs,
    single_cases,
)
from ..tolerance.backward import nll_grad
from ..tolerance.forward import nll_reduced
from ..tolerance.tracked import F64, Tracked


@st.composite
def nll_loss_batches(
    draw: st.DrawFn, dtype: Dtype, size: int = 1, shapes: st.SearchStrategy[tuple[int, ...]] | None = None
) -> CaseBatch:
    """``size`` cases of one shape and arguments."""
    shape = draw(categorical_shape() if shapes is None else shapes, label="shape")
    n_classes = shape[class_dim(shape)]
    # NLL takes any floats as log-probabilities; torch never checks them.
    log_probabilities = draw(float_arrays(dtype, (size, *shape), LOGITS), label="input")
    ignore_index, pass_it = draw(ignore_index_choice(n_classes), label="ignore_index")
    target = draw(index_targets(shape, ignore_index, size=size), label="target")
    kwargs = draw(reduction_kwargs(), label="kwargs")
    kwargs.update(draw(class_weight_kwargs(dtype, n_classes, size), label="weight"))
    if "weight" in kwargs and len(shape) > 2 and draw(st.booleans(), label="weight of shape (1, C)"):
        # The K-dimensional path checks only the weight's number of entries (measured on torch 2.13).
        kwargs["weight"] = kwargs["weight"].reshape(size, 1, n_classes)
    if pass_it:
        kwargs["ignore_index"] = ignore_index
    return CaseBatch("nll_loss", log_probabilities, target, kwargs)


nll_loss_cases = single_cases(nll_loss_batches)


def replay(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tracked:
    return nll_reduced(Tracked.exact(input, dtype), target, weight, ignore_index, reduction, dtype)


def gradient_replay(
    dtype: Dtype,
    input: F64,
    target: F64,
    grad_output: F64,
    weight: F64 | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tracked:
    return nll_grad(dtype, np.shape(input), target, grad_output, weight, ignore_index, reduction)


def nll_weighted_mean_over_count(input: Tensor, target: Tensor, weight=None, ignore_index=-100, reduction="mean"):
    per = F.nll_loss(input, target, weight=weight, ignore_index=ignore_index, reduction="none")
    return _reduced(per, reduction, (target != ignore_index).sum())


def nll_counts_ignored_in_denominator(input: Tensor, target: Tensor, weight=None, ignore_index=-100, reduction="mean"):
    per = F.nll_loss(input, target, weight=weight, ignore_index=ignore_index, reduction="none")
    if weight is None:
        return _reduced(per, reduction, float(target.numel()))
    safe = torch.where(target == ignore_index, torch.zeros_like(target), target).long()
    return _reduced(per, reduction, weight[safe].sum())


def nll_ignores_only_default_index(input: Tensor, target: Tensor, weight=None, ignore_index=-100, reduction="mean"):
    # Models ONNX's old reference, which mishandled any ignore_index but the default.
    return F.nll_loss(input, target, weight=weight, ignore_index=-100, reduction=reduction)


def nll_all_ignored_mean_is_zero(input: Tensor, target: Tensor, weight=None, ignore_index=-100, reduction="mean"):
    """A 'mean' that returns 0 when every target is ignored (guarding 0 / 0), where torch documents NaN."""
    out = F.nll_loss(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    if reduction == "mean" and bool((target == ignore_index).all()):
        return torch.zeros_like(out)
    return out


def nll_k_dim_mean_of_per_sample_means(
    input: Tensor, target: Tensor, weight=None, ignore_index=-100, reduction="mean"
) -> Tensor:
    """K-dimensional 'mean' taken per sample over its positions, then over the batch (a mean of means)."""
    if input.dim() <= 2 or reduction != "mean":
        return F.nll_loss(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    per = F.nll_loss(input, target, weight=weight, ignore_index=ignore_index, reduction="none").flatten(1)
    kept = (target != ignore_index).flatten(1)
    w = torch.ones(input.shape[1], dtype=input.dtype) if weight is None else weight.flatten()
    safe = torch.where(kept, target.flatten(1), torch.zeros_like(target.flatten(1)))
    totals = torch.where(kept, w[safe], torch.zeros_like(per)).sum(1)
    return (per.sum(1) / totals).mean()


def nll_reads_its_input_as_contiguous(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    """Reads the input's storage as if it were contiguous (a kernel that takes a raw data pointer and computes its own
    strides): right for a contiguous input, wrong for a transposed or strided one, out of bounds for an expanded
    one."""
    strides = [1] * input.dim()
    for axis in range(input.dim() - 2, -1, -1):
        strides[axis] = strides[axis + 1] * input.shape[axis + 1]
    return F.nll_loss(input.as_strided(input.shape, strides, input.storage_offset()), target, **kwargs)


PLANTED_BUGS = (
    PlantedBug(
        "nll_loss",
        "reads_its_input_as_contiguous",
        "a kernel that reads its input's storage as if it were contiguous, whatever its strides",
        nll_reads_its_input_as_contiguous,
        area="large",
    ),
    PlantedBug(
        "nll_loss",
        "all_ignored_mean_is_zero",
        "a 'mean' over only ignored targets returning 0 instead of NaN",
        nll_all_ignored_mean_is_zero,
    ),
    PlantedBug(
        "nll_loss",
        "k_dim_mean_of_per_sample_means",
        "a K-dimensional mean taken per sample, then over the batch",
        nll_k_dim_mean_of_per_sample_means,
    ),
    PlantedBug(
        "nll_loss",
        "weighted_mean_over_count",
        "a weighted mean divided by the number of targets",
        nll_weighted_mean_over_count,
    ),
    PlantedBug(
        "nll_loss",
        "ignored_in_denominator",
        "ignored targets counted in the mean's denominator",
        nll_counts_ignored_in_denominator,
    ),
    PlantedBug(
        "nll_loss",
        "only_default_ignore_index",
        "any ignore_index but -100 silently not honoured",
        nll_ignores_only_default_index,
    ),
)


INFO = LossInfo(
    name="nll_loss",
    functional=F.nll_loss,
    module=nn.NLLLoss,
    reference=reference.nll_loss,
    reference_gradient=gradients.nll_loss_grad,
    forward_replay=replay,
    gradient_replay=gradient_replay,
    oracle=categorical_oracle.nll_loss,
    oracle_gradient=categorical_oracle.nll_loss_grad,
    cases=nll_loss_cases,
    variants=(
        ParityVariant(
            "nll_loss",
            "all arguments",
            "NLLLoss equals the reference for every layout, weight, ignore_index and reduction.",
            nll_loss_batches,
        ),
    ),
    large_inputs=(
        ParityVariant(
            "nll_loss",
            "large inputs: classes last",
            "NLLLoss equals the reference on inputs of 2^14 to 2^22 elements whose classes are the last dimension: up "
            "to 2^17 classes, or long batches, or one unbatched sample, with every argument"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(nll_loss_batches(dtype, 1, shapes=large_categorical_shapes("classes last"))),
        ),
        ParityVariant(
            "nll_loss",
            "large inputs: K-dimensional",
            "NLLLoss equals the reference on K-dimensional inputs of 2^14 to 2^22 elements, whose class dimension is "
            "not last, with every argument"
            "; the input contiguous, transposed, strided or expanded in memory.",
            lambda dtype, size: in_memory(nll_loss_batches(dtype, 1, shapes=large_categorical_shapes("k-dim"))),
        ),
    ),
    rejections=(rejections.reduction_defect("nll_loss", nll_loss_cases), *rejections.categorical_defects("nll_loss")),
    planted_bugs=PLANTED_BUGS,
    divergences=(
        Divergence(
            "test_float16_mean_is_0_or_nan_once_the_total_weight_reaches_65520",
            LOW_PRECISION_TESTS,
            "float16 NLL/CrossEntropy 'mean' on CPU stores the total weight in float16: once it reaches 65520 the "
            "mean is 0 (weighted sum finite) or NaN, though the mean is representable",
        ),
        Divergence(
            "test_unbatched_input_with_target_of_shape_1_has_no_backward",
            GRADIENT_TESTS,
            "Unbatched input (C,) with a class-index target of shape (1,): the forward works, the backward raises "
            '"size mismatch" (related: pytorch#157420)',
        ),
        Divergence(
            "test_nll_backward_of_a_4d_input_with_permuted_strides_raises",
            GRADIENT_TESTS,
            "NLLLoss on a 4-D input with permuted strides (a transposed or channels-last layout): the forward works, "
            'the backward raises "grad_input must be contiguous" (pytorch#175084)',
        ),
    ),
    known_gradient_divergence=divergence_rules.unbatched_or_non_contiguous_4d_nll_backward,
)
