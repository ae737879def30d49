"""Plausible wrong implementations, each modelling a mistake real loss code has made.

Each is a drop-in replacement with torch's functional signature, built from torch's own
(correct) pieces plus exactly one mistake. The meta tests run the suite's parity property
against each one and require it to fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

LossImpl = Callable[..., Tensor]


@dataclass(frozen=True)
class PlantedBug:
    loss: str
    name: str
    mistake: str  # one line: the real-world mistake it models
    impl: LossImpl
    # Which of the suite's property families the mistake lives in ("value", "gradient", "validation"): the
    # meta test tries that family first, to keep the run short; any family may catch it.
    area: str = "value"

    @property
    def target(self) -> str:
        """Where --impl finds it: this module's attribute of the same function."""
        name = next(key for key, value in globals().items() if value is self.impl)
        return f"{__name__}:{name}"


def _class_dim(input: Tensor) -> int:
    return 0 if input.dim() == 1 else 1


def _reduced(per_element: Tensor, reduction: str, denominator: Tensor | float | None = None) -> Tensor:
    if reduction == "none":
        return per_element
    if reduction == "sum":
        return per_element.sum()
    return per_element.sum() / (per_element.numel() if denominator is None else denominator)


# --- nll_loss -------------------------------------------------------------------------------------


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


# --- cross_entropy --------------------------------------------------------------------------------


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


def cross_entropy_backward_ignores_label_smoothing(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    return _BackwardIgnoresLabelSmoothing.apply(input, target, kwargs)


# --- binary_cross_entropy -------------------------------------------------------------------------


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


# --- binary_cross_entropy_with_logits ---------------------------------------------------------------


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


def bce_logits_backward_ignores_pos_weight(input, target, weight=None, reduction="mean", pos_weight=None):
    return _BackwardIgnoresPosWeight.apply(input, target, weight, reduction, pos_weight)


# --- kl_div ---------------------------------------------------------------------------------------------------


def kl_div_batchmean_as_mean(input: Tensor, target: Tensor, reduction="mean", log_target=False):
    """'batchmean' divided by the number of elements, like 'mean' (the very confusion torch's warning is about)."""
    return F.kl_div(input, target, reduction="mean" if reduction == "batchmean" else reduction, log_target=log_target)


def kl_div_log_target_ignored(input: Tensor, target: Tensor, reduction="mean", log_target=False):
    """log_target not passed on: log-probability targets read as probabilities."""
    return F.kl_div(input, target, reduction=reduction)


# --- low precision ----------------------------------------------------------------------------------


def bce_logits_float16_off_by_ulps(input, target, weight=None, reduction="mean", pos_weight=None):
    """Right except in float16, where the result is 8 units of roundoff (4 to 8 ulps) too large: a kernel that
    rounds an intermediate to half twice, or skips a final correction step."""
    out = F.binary_cross_entropy_with_logits(input, target, weight=weight, reduction=reduction, pos_weight=pos_weight)
    if input.dtype != torch.float16:
        return out
    wide = out.float()
    return (wide + wide.abs() * (8 * 2.0**-11)).to(torch.float16)


def cross_entropy_float16_at_bfloat16_precision(input: Tensor, target: Tensor, weight=None, **kwargs: Any) -> Tensor:
    """float16 computed through bfloat16 (3 fewer significand bits): a kernel that picks the wrong half type."""
    if input.dtype != torch.float16:
        return F.cross_entropy(input, target, weight=weight, **kwargs)

    def as_bfloat16(t: Tensor | None) -> Tensor | None:
        return t.to(torch.bfloat16) if t is not None and t.is_floating_point() else t

    out = F.cross_entropy(as_bfloat16(input), as_bfloat16(target), weight=as_bfloat16(weight), **kwargs)
    return out.to(torch.float16)


# --- module argument plumbing -----------------------------------------------------------------------


def _module_dropping(module: type[torch.nn.Module], dropped: str) -> Callable[..., Tensor]:
    def call(input: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
        kwargs.pop(dropped, None)
        result: Tensor = module(**kwargs)(input, target)
        return result

    return call


cross_entropy_module_drops_ignore_index = _module_dropping(torch.nn.CrossEntropyLoss, "ignore_index")
bce_logits_module_drops_pos_weight = _module_dropping(torch.nn.BCEWithLogitsLoss, "pos_weight")

# Each loss's planted bugs, named by the registry entry of that loss (verification/registry.py).
BINARY_CROSS_ENTROPY = (
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

BINARY_CROSS_ENTROPY_WITH_LOGITS = (
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

NLL_LOSS = (
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

CROSS_ENTROPY = (
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

KL_DIV = (
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
