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

from tests.common.implementations import LossImpl


@dataclass(frozen=True)
class PlantedBug:
    loss: str
    name: str
    mistake: str  # one line: the real-world mistake it models
    impl: LossImpl

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

PLANTED_BUGS = [
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
        "cross_entropy",
        "float16_at_bfloat16_precision",
        "float16 computed through bfloat16, 3 significand bits short",
        cross_entropy_float16_at_bfloat16_precision,
    ),
    PlantedBug(
        "binary_cross_entropy_with_logits",
        "module_drops_pos_weight",
        "BCEWithLogitsLoss(...) not passing pos_weight on",
        bce_logits_module_drops_pos_weight,
    ),
]
