"""The loss registry: one entry per loss declares everything the suite knows about it.

Modelled on PyTorch's ``ModuleInfo``/``OpInfo`` (``torch/testing/_internal/common_modules.py``): an entry names
torch's functional and module, the reference's value and gradient, the tolerance model's replays of torch's
forward and backward, the mpmath oracle, the strategy that draws valid calls and the parity variants drawn from
it, the rejections, the planted bugs, the named divergences (with the rules that exclude their examples from
parity) and, for each part it lacks, a declared gap with its reason. Every table the suite keys by a loss name
is derived from here; ``tests/meta/test_registry.py`` fails when an entry lacks a part and declares no gap, and
the evidence report lists each loss's parts and gaps.

``python -m verification.registry --markdown`` prints the README's table of losses and their parts.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import reference
from reference import gradients

from . import divergences as divergence_rules
from . import planted_bugs, rejections, strategies
from .cases import Case
from .dtypes import Dtype
from .oracle import binary as binary_oracle
from .oracle import categorical as categorical_oracle
from .oracle import kl_div as kl_div_oracle
from .oracle.exact import Exact
from .planted_bugs import PlantedBug
from .rejections import Defect
from .tolerance import backward, forward
from .tolerance.tracked import Tracked

REDUCTIONS = strategies.REDUCTIONS


@dataclass(frozen=True)
class ParityVariant:
    """One parity property of one loss: a claim and the strategy that draws its cases."""

    loss: str
    name: str
    claim: str
    cases: Callable[[Dtype], st.SearchStrategy[Case]]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Divergence:
    """A named divergence: where torch departs from the documented semantics, asserted by ``test`` (a test
    function in ``module``) so that it fails loudly once torch changes."""

    test: str
    module: str
    claim: str  # one line, as the divergences table in docs/divergences.md gives it

    @property
    def node(self) -> str:
        return f"{self.module}::{self.test}"


# The parts an entry declares, in the order the README's table shows them, each with what it means there.
PARTS: dict[str, str] = {
    "functional": "functional",
    "module": "module",
    "reference": "reference",
    "reference_gradient": "ref. gradient",
    "forward_replay": "bound",
    "gradient_replay": "gradient bound",
    "oracle": "oracle",
    "oracle_gradient": "oracle gradient",
    "cases": "strategy",
    "variants": "variants",
    "rejections": "rejections",
    "planted_bugs": "planted bugs",
    "divergences": "divergences",
}


@dataclass(frozen=True)
class LossInfo:
    name: str  # the torch.nn.functional name, and the reference's
    functional: Callable[..., Any] | None
    module: type[nn.Module] | None
    reference: Callable[..., Any] | None
    reference_gradient: Callable[..., Any] | None
    forward_replay: Callable[..., Tracked] | None
    gradient_replay: Callable[..., Tracked] | None
    oracle: Callable[..., Exact] | None
    oracle_gradient: Callable[..., Exact] | None
    cases: Callable[..., st.SearchStrategy[Case]] | None
    variants: tuple[ParityVariant, ...]
    rejections: tuple[Defect, ...]
    planted_bugs: tuple[PlantedBug, ...]
    divergences: tuple[Divergence, ...]
    # A part the entry lacks, and why: the README's table and the evidence report show it.
    gaps: Mapping[str, str] = field(default_factory=dict)
    # The gradient properties draw their cases here instead of from the variants' strategies, where torch's
    # gradient is the derivative only on part of the input space (the rest is a named divergence).
    gradient_cases: Callable[[Dtype], st.SearchStrategy[Case]] | None = None
    gradient_claim: str = ""  # what the gradient claim adds to the variant's
    # Which examples of a parity property fall under a named divergence: the divergence's name, or None.
    known_divergence: Callable[[Case], str | None] = divergence_rules.none
    known_gradient_divergence: Callable[[Case], str | None] = divergence_rules.none

    def present(self, part: str) -> bool:
        value = getattr(self, part)
        return bool(value) if isinstance(value, tuple) else value is not None

    def __str__(self) -> str:
        return self.name


CROSS_ENTROPY_TESTS = "tests/test_cross_entropy.py"
LOW_PRECISION_TESTS = "tests/test_low_precision.py"
GRADIENT_TESTS = "tests/test_gradients.py"
IDENTITY_TESTS = "tests/test_identities.py"

BINARY_CROSS_ENTROPY = LossInfo(
    name="binary_cross_entropy",
    functional=F.binary_cross_entropy,
    module=nn.BCELoss,
    reference=reference.binary_cross_entropy,
    reference_gradient=gradients.binary_cross_entropy_grad,
    forward_replay=forward.binary_cross_entropy,
    gradient_replay=backward.binary_cross_entropy_grad,
    oracle=binary_oracle.binary_cross_entropy,
    oracle_gradient=binary_oracle.binary_cross_entropy_grad,
    cases=strategies.binary_cross_entropy_cases,
    variants=(
        ParityVariant(
            "binary_cross_entropy",
            "all arguments",
            "BCELoss equals the reference for any shape, weight and reduction, the -100 log clamp at p = 0 and "
            "p = 1 included.",
            strategies.binary_cross_entropy_cases,
        ),
    ),
    gradient_cases=lambda dtype: strategies.binary_cross_entropy_cases(dtype, interior=True),
    gradient_claim=" (probabilities with p(1 - p) >= 1e-12: below, torch's gradient is capped, a named divergence)",
    rejections=(
        rejections.reduction_defect("binary_cross_entropy"),
        *rejections.binary_defects("binary_cross_entropy"),
        Defect(
            "binary_cross_entropy",
            "an input outside [0, 1] (NaN included)",
            RuntimeError,
            lambda: rejections.bce_value_outside_unit_interval("input"),
        ),
        Defect(
            "binary_cross_entropy",
            "a target outside [0, 1] (NaN included)",
            RuntimeError,
            lambda: rejections.bce_value_outside_unit_interval("target"),
        ),
        Defect(
            "binary_cross_entropy",
            "a target of another dtype than the input",
            RuntimeError,
            rejections.bce_target_of_other_dtype,
        ),
    ),
    planted_bugs=planted_bugs.BINARY_CROSS_ENTROPY,
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

BINARY_CROSS_ENTROPY_WITH_LOGITS = LossInfo(
    name="binary_cross_entropy_with_logits",
    functional=F.binary_cross_entropy_with_logits,
    module=nn.BCEWithLogitsLoss,
    reference=reference.binary_cross_entropy_with_logits,
    reference_gradient=gradients.binary_cross_entropy_with_logits_grad,
    forward_replay=forward.binary_cross_entropy_with_logits,
    gradient_replay=backward.binary_cross_entropy_with_logits_grad,
    oracle=binary_oracle.binary_cross_entropy_with_logits,
    oracle_gradient=binary_oracle.binary_cross_entropy_with_logits_grad,
    cases=strategies.binary_cross_entropy_with_logits_cases,
    variants=(
        ParityVariant(
            "binary_cross_entropy_with_logits",
            "all arguments",
            "BCEWithLogitsLoss equals the reference for any shape, weight, pos_weight and reduction, logits up to "
            "|1e4|.",
            strategies.binary_cross_entropy_with_logits_cases,
        ),
        ParityVariant(
            "binary_cross_entropy_with_logits",
            "per-class pos_weight",
            "BCEWithLogitsLoss equals the reference with a pos_weight of shape (C,), which meets the last "
            "dimension (pytorch#27936).",
            lambda dtype: strategies.binary_cross_entropy_with_logits_cases(dtype, per_class_pos_weight=True),
        ),
    ),
    rejections=(
        rejections.reduction_defect("binary_cross_entropy_with_logits"),
        *rejections.binary_defects("binary_cross_entropy_with_logits"),
    ),
    planted_bugs=planted_bugs.BINARY_CROSS_ENTROPY_WITH_LOGITS,
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

NLL_LOSS = LossInfo(
    name="nll_loss",
    functional=F.nll_loss,
    module=nn.NLLLoss,
    reference=reference.nll_loss,
    reference_gradient=gradients.nll_loss_grad,
    forward_replay=forward.nll_loss,
    gradient_replay=backward.nll_loss_grad,
    oracle=categorical_oracle.nll_loss,
    oracle_gradient=categorical_oracle.nll_loss_grad,
    cases=strategies.nll_loss_cases,
    variants=(
        ParityVariant(
            "nll_loss",
            "all arguments",
            "NLLLoss equals the reference for every layout, weight, ignore_index and reduction.",
            strategies.nll_loss_cases,
        ),
    ),
    rejections=(rejections.reduction_defect("nll_loss"), *rejections.categorical_defects("nll_loss")),
    planted_bugs=planted_bugs.NLL_LOSS,
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
    ),
    known_gradient_divergence=divergence_rules.unbatched_target_of_shape_1_backward,
)

CROSS_ENTROPY = LossInfo(
    name="cross_entropy",
    functional=F.cross_entropy,
    module=nn.CrossEntropyLoss,
    reference=reference.cross_entropy,
    reference_gradient=gradients.cross_entropy_grad,
    forward_replay=forward.cross_entropy,
    gradient_replay=backward.cross_entropy_grad,
    oracle=categorical_oracle.cross_entropy,
    oracle_gradient=categorical_oracle.cross_entropy_grad,
    cases=strategies.cross_entropy_cases,
    variants=(
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
    ),
    rejections=(
        rejections.reduction_defect("cross_entropy"),
        *rejections.categorical_defects("cross_entropy"),
        Defect("cross_entropy", "label_smoothing above 1", RuntimeError, rejections.label_smoothing_above_one),
        Defect(
            "cross_entropy",
            "probability targets with an ignore_index >= 0",
            RuntimeError,
            rejections.probability_target_with_non_negative_ignore_index,
        ),
        Defect(
            "cross_entropy",
            "an integer target of the input's shape (read as probabilities)",
            RuntimeError,
            rejections.integer_target_of_input_shape,
        ),
        Defect(
            "cross_entropy",
            "label smoothing with a K-dimensional input and a (1, C) weight",
            RuntimeError,
            rejections.smoothing_with_k_dim_weight_of_rank_two,
        ),
        Defect(
            "cross_entropy",
            "probability targets with class weights of the wrong size",
            RuntimeError,
            lambda: rejections.class_weight_of_wrong_size("cross_entropy", "probability"),
        ),
    ),
    planted_bugs=planted_bugs.CROSS_ENTROPY,
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
    known_divergence=divergence_rules.cross_entropy_forward,
    known_gradient_divergence=divergence_rules.cross_entropy_backward,
)

KL_DIV = LossInfo(
    name="kl_div",
    functional=F.kl_div,
    module=nn.KLDivLoss,
    reference=reference.kl_div,
    reference_gradient=gradients.kl_div_grad,
    forward_replay=forward.kl_div,
    gradient_replay=backward.kl_div_grad,
    oracle=kl_div_oracle.kl_div,
    oracle_gradient=kl_div_oracle.kl_div_grad,
    cases=strategies.kl_div_cases,
    variants=(
        ParityVariant(
            "kl_div",
            "probability targets",
            "KLDivLoss equals the reference for probability targets (zeros, and negative values giving NaN "
            "included), every reduction including 'batchmean', with input and target broadcast against each other "
            "either way.",
            strategies.kl_div_cases,
        ),
        ParityVariant(
            "kl_div",
            "log targets",
            "KLDivLoss with log_target=True equals the reference for every reduction and broadcast.",
            lambda dtype: strategies.kl_div_cases(dtype, log_targets=True),
        ),
    ),
    rejections=(
        rejections.reduction_defect("kl_div"),
        Defect("kl_div", "an integral input", RuntimeError, rejections.kl_div_with_integral_input),
        Defect(
            "kl_div",
            "an input and a target whose shapes do not broadcast",
            RuntimeError,
            rejections.kl_div_shapes_that_do_not_broadcast,
        ),
    ),
    planted_bugs=planted_bugs.KL_DIV,
    divergences=(
        Divergence(
            "test_kl_div_is_nan_where_a_zero_probability_meets_an_infinite_log",
            "tests/test_kl_div.py",
            "KLDivLoss gives NaN for a term with p = 0 when log q = -inf (and, with log_target, wherever log p = "
            "-inf), where the term is 0 (every dtype)",
        ),
    ),
)

FOCAL_TESTS = "tests/test_focal_loss.py"

SIGMOID_FOCAL_LOSS = LossInfo(
    name="sigmoid_focal_loss",
    functional=None,
    module=None,
    reference=reference.sigmoid_focal_loss,
    reference_gradient=gradients.sigmoid_focal_loss_grad,
    forward_replay=forward.sigmoid_focal_loss,
    gradient_replay=backward.sigmoid_focal_loss_grad,
    oracle=None,
    oracle_gradient=None,
    cases=strategies.sigmoid_focal_loss_cases,
    variants=(),
    rejections=(),
    planted_bugs=(),
    divergences=(
        Divergence(
            "test_torchvision_focal_gradient_is_nan_at_a_saturated_correct_prediction_for_gamma_below_1",
            FOCAL_TESTS,
            "torchvision's focal-loss gradient is NaN at a saturated correct prediction (1 - p_t rounds to 0) for "
            "0 < gamma < 1, where the true gradient is finite (torchvision 0.29.1, every dtype)",
        ),
        Divergence(
            "test_torchvision_focal_loss_is_0_at_a_saturated_correct_prediction",
            FOCAL_TESTS,
            "torchvision's focal loss is exactly 0 at a saturated correct prediction for gamma > 0, where the loss "
            "is a normal number (float64, float32, bfloat16); within the bound, with no correct digit",
        ),
    ),
    gaps={
        "functional": "torch has none; torchvision.ops.sigmoid_focal_loss is checked in tests/test_focal_loss.py "
        "where a torchvision built for this torch is installed",
        "module": "neither torch nor torchvision has a focal-loss module",
        "oracle": "no mpmath oracle yet; the reference is checked against torch's BCEWithLogits identities",
        "oracle_gradient": "no mpmath oracle yet; the gradient is checked against BCEWithLogits' at gamma = 0",
        "variants": "no torch focal loss to check; tests/test_focal_loss.py holds torchvision's parity properties",
        "rejections": "its ValueErrors are checked in tests/test_focal_loss.py, against torchvision where installed",
        "planted_bugs": "no torch focal loss to replace through --impl; tests/test_focal_loss.py plants three bugs "
        "in a focal loss built from torch and catches each",
    },
)

LOSSES: tuple[LossInfo, ...] = (
    BINARY_CROSS_ENTROPY,
    BINARY_CROSS_ENTROPY_WITH_LOGITS,
    NLL_LOSS,
    CROSS_ENTROPY,
    KL_DIV,
    SIGMOID_FOCAL_LOSS,
)

BY_NAME: dict[str, LossInfo] = {info.name: info for info in LOSSES}

# The losses torch has: every parity, gradient and rejection property runs on these, in both forms.
TORCH_LOSSES: tuple[LossInfo, ...] = tuple(info for info in LOSSES if info.functional is not None)


def info(loss: str) -> LossInfo:
    return BY_NAME[loss]


def parity_variants() -> list[ParityVariant]:
    return [variant for entry in LOSSES for variant in entry.variants]


def gradient_variants() -> list[ParityVariant]:
    """The gradient properties: each parity variant, drawn from the entry's gradient cases where it has them."""

    def cases(entry: LossInfo, variant: ParityVariant) -> Callable[[Dtype], st.SearchStrategy[Case]]:
        return entry.gradient_cases if entry.gradient_cases is not None else variant.cases

    return [
        ParityVariant(
            variant.loss,
            variant.name,
            f"The gradient with respect to the input equals the reference's analytic gradient, for: {variant.claim}"
            + entry.gradient_claim,
            cases(entry, variant),
        )
        for entry in LOSSES
        for variant in entry.variants
    ]


def all_rejections() -> list[Defect]:
    return [defect for entry in LOSSES for defect in entry.rejections]


def all_planted_bugs() -> list[PlantedBug]:
    return [bug for entry in LOSSES for bug in entry.planted_bugs]


def all_divergences() -> list[Divergence]:
    return [divergence for entry in LOSSES for divergence in entry.divergences]


def error_bound(loss: str, dtype: Dtype, input: np.ndarray, target: np.ndarray, **kwargs: Any) -> np.ndarray:
    """The largest absolute error torch may make computing ``loss`` in ``dtype`` (per output element); ``inf``
    where no finite bound holds (``replay(...).unbounded_by`` says which rule, of ``tolerance.tracked.RULES``,
    made it so)."""
    return replay(loss, dtype, input, target, **kwargs).error


def replay(loss: str, dtype: Dtype, input: np.ndarray, target: np.ndarray, **kwargs: Any) -> Tracked:
    """The loss's forward, replayed in torch's order on tracked numbers."""
    model = BY_NAME[loss].forward_replay
    assert model is not None, f"{loss} has no forward replay"
    return model(dtype, input, target, **kwargs)


def gradient_replay(
    loss: str, dtype: Dtype, input: np.ndarray, target: np.ndarray, grad_output: np.ndarray, **kwargs: Any
) -> Tracked:
    model = BY_NAME[loss].gradient_replay
    assert model is not None, f"{loss} has no gradient replay"
    return model(dtype, input, target, grad_output, **kwargs)


def gradient_error_bound(
    loss: str, dtype: Dtype, input: np.ndarray, target: np.ndarray, grad_output: np.ndarray, **kwargs: Any
) -> np.ndarray:
    """The largest absolute error torch's autograd may make in d(loss)/d(input), element-wise; ``inf`` where no
    finite bound holds (``gradient_replay(...).unbounded_by`` says which rule made it so)."""
    return gradient_replay(loss, dtype, input, target, grad_output, **kwargs).error


def reference_gradient(loss: str) -> Callable[..., Any]:
    gradient = BY_NAME[loss].reference_gradient
    assert gradient is not None, f"{loss} has no reference gradient"
    return gradient


def replace_parts(entry: LossInfo, **changes: Any) -> LossInfo:
    """A copy of ``entry`` with some parts changed (for the meta tests that plant a missing part)."""
    return dataclasses.replace(entry, **changes)


def parts_and_gaps(entry: LossInfo) -> dict[str, str]:
    """Each part: "yes" (with a count for collections), or "gap: <reason>"; "MISSING" if neither (a defect
    the meta test reports)."""
    table: dict[str, str] = {}
    for part in PARTS:
        value = getattr(entry, part)
        if entry.present(part):
            table[part] = f"{len(value)}" if isinstance(value, tuple) else "yes"
        elif part in entry.gaps:
            table[part] = f"gap: {entry.gaps[part]}"
        else:
            table[part] = "MISSING"
    return table


def markdown_table() -> str:
    """The README's table: one row per loss, one column per part; a gap is marked and footnoted."""
    header = "| loss | " + " | ".join(PARTS.values()) + " |"
    rule = "| --- | " + " | ".join("---" for _ in PARTS) + " |"
    rows, notes = [header, rule], []
    for entry in LOSSES:
        cells = []
        for part, status in parts_and_gaps(entry).items():
            if status.startswith("gap: "):
                notes.append(f"`{entry.name}` {PARTS[part]}: {status[5:]}")
                cells.append(f"gap [{len(notes)}]")
            else:
                cells.append("yes" if status == "yes" else status)
        rows.append(f"| `{entry.name}` | " + " | ".join(cells) + " |")
    footnotes = [f"- [{i}] {note}." for i, note in enumerate(notes, 1)]
    return "\n".join(rows) + "\n\n" + "\n".join(footnotes) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table(), end="")
    else:
        sys.exit("usage: python -m verification.registry --markdown")
