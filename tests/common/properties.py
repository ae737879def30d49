"""Properties shared by the suite and its meta tests, so that a planted bug meets exactly the
check the suite runs against torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

from . import strategies
from .cases import Case
from .compare import check_parity
from .divergences import exclude_if_known_divergence
from .dtypes import Dtype
from .implementations import LossImpl


def loss_matches_reference(case: Case, impl: LossImpl, *, form: str, dtype: Dtype, device: str) -> None:
    """``impl`` computes ``case`` as the reference does, within the tolerance model's bound."""
    __tracebackhide__ = True
    exclude_if_known_divergence(case)
    check_parity(case, impl, form=form, dtype=dtype, device=device)


@dataclass(frozen=True)
class ParityVariant:
    """One parity property of one loss: a claim and the strategy that draws its cases."""

    loss: str
    name: str
    claim: str
    cases: Callable[[Dtype], st.SearchStrategy[Case]]

    def __str__(self) -> str:
        return self.name


PARITY_VARIANTS = [
    ParityVariant(
        "binary_cross_entropy",
        "all arguments",
        "BCELoss equals the reference for any shape, weight and reduction, the -100 log clamp at p = 0 and "
        "p = 1 included.",
        strategies.binary_cross_entropy_cases,
    ),
    ParityVariant(
        "binary_cross_entropy_with_logits",
        "all arguments",
        "BCEWithLogitsLoss equals the reference for any shape, weight, pos_weight and reduction, logits up to |1e4|.",
        strategies.binary_cross_entropy_with_logits_cases,
    ),
    ParityVariant(
        "binary_cross_entropy_with_logits",
        "per-class pos_weight",
        "BCEWithLogitsLoss equals the reference with a pos_weight of shape (C,), which meets the last "
        "dimension (pytorch#27936).",
        lambda dtype: strategies.binary_cross_entropy_with_logits_cases(dtype, per_class_pos_weight=True),
    ),
    ParityVariant(
        "nll_loss",
        "all arguments",
        "NLLLoss equals the reference for every layout, weight, ignore_index and reduction.",
        strategies.nll_loss_cases,
    ),
    ParityVariant(
        "cross_entropy",
        "index targets",
        "CrossEntropyLoss with class indices equals the reference for every layout, weight, ignore_index, "
        "label_smoothing and reduction.",
        lambda dtype: strategies.cross_entropy_cases(dtype, "index"),
    ),
    ParityVariant(
        "cross_entropy",
        "probability targets",
        "CrossEntropyLoss with class probabilities (normalised or not) equals the reference for every "
        "layout, weight, label_smoothing and reduction.",
        lambda dtype: strategies.cross_entropy_cases(dtype, "probability"),
    ),
    ParityVariant(
        "cross_entropy",
        "weights with label smoothing",
        "CrossEntropyLoss with class indices, class weights and label smoothing in (0, 1] equals the "
        "reference, ignored targets included (pytorch#69339, #73205).",
        lambda dtype: strategies.cross_entropy_cases(dtype, "index", weighted_smoothing=True),
    ),
    ParityVariant(
        "kl_div",
        "probability targets",
        "KLDivLoss equals the reference for probability targets (zeros, and negative values giving NaN included), "
        "every reduction including 'batchmean', with input and target broadcast against each other either way.",
        strategies.kl_div_cases,
    ),
    ParityVariant(
        "kl_div",
        "log targets",
        "KLDivLoss with log_target=True equals the reference for every reduction and broadcast.",
        lambda dtype: strategies.kl_div_cases(dtype, log_targets=True),
    ),
]


def variants_of(loss: str) -> list[ParityVariant]:
    return [variant for variant in PARITY_VARIANTS if variant.loss == loss]
