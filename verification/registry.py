"""The loss registry: one entry per loss declares everything the suite knows about it.

Modelled on PyTorch's ``ModuleInfo``/``OpInfo`` (``torch/testing/_internal/common_modules.py``): an entry names
torch's functional and module, the reference's value and gradient, the tolerance model's replays of torch's
forward and backward, the mpmath oracle, the strategy that draws valid calls and the parity variants drawn from
it, the rejections, the planted bugs, the named divergences (with the rules that exclude their examples from
parity) and, for each part it lacks, a declared gap with its reason. Each entry lives in its loss's module under
``verification/losses/``, and this module lists them: every table the suite keys by a loss name is derived from
here; ``tests/meta/test_registry.py`` fails when an entry lacks a part and declares no gap, and
the evidence report lists each loss's parts and gaps.

``python -m verification.registry --markdown`` prints the README's table of losses and their parts.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .cases import CaseBatch
from .dtypes import Dtype
from .loss_info import PARTS, Divergence, LossInfo, ParityVariant
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    kl_div,
    nll_loss,
    sigmoid_focal_loss,
)
from .planted_bugs import PlantedBug
from .rejections import Defect
from .tolerance.tracked import Tracked, one_case

__all__ = ["PARTS", "Divergence", "LossInfo", "ParityVariant"]

# Each loss's entry lives in its own module (verification/losses/), beside the strategy, replays, rejections and
# planted bugs it names; this tuple is the one list of them.
LOSSES: tuple[LossInfo, ...] = (
    binary_cross_entropy.INFO,
    binary_cross_entropy_with_logits.INFO,
    nll_loss.INFO,
    cross_entropy.INFO,
    kl_div.INFO,
    sigmoid_focal_loss.INFO,
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

    def batches(entry: LossInfo, variant: ParityVariant) -> Callable[[Dtype, int], st.SearchStrategy[CaseBatch]]:
        return entry.gradient_batches if entry.gradient_batches is not None else variant.batches

    return [
        ParityVariant(
            variant.loss,
            variant.name,
            f"The gradient with respect to the input equals the reference's analytic gradient, for: {variant.claim}"
            + entry.gradient_claim,
            batches(entry, variant),
        )
        for entry in LOSSES
        for variant in entry.variants
    ]


def large_variants() -> list[ParityVariant]:
    """The large-input value properties: one per loss that declares them."""
    return [variant for entry in LOSSES for variant in entry.large_inputs]


def large_gradient_variants() -> list[ParityVariant]:
    """The large-input gradient properties, drawn from the variant's gradient cases where it has them."""
    return [
        ParityVariant(
            variant.loss,
            variant.name,
            f"The gradient with respect to the input equals the reference's analytic gradient, for: {variant.claim}",
            variant.gradient_batches or variant.batches,
        )
        for variant in large_variants()
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
    """The loss's forward on one case, replayed in torch's order on tracked numbers."""
    return one_case(_forward_replay(loss), dtype, input, target, **kwargs)


def replay_batch(loss: str, dtype: Dtype, batch: CaseBatch) -> Tracked:
    """The loss's forward on every case of ``batch`` in one pass: the result's last axis holds the cases."""
    input, target, kwargs = batch.cases_last()
    return _forward_replay(loss)(dtype, input, target, **kwargs)


def _forward_replay(loss: str) -> Callable[..., Tracked]:
    model = BY_NAME[loss].forward_replay
    assert model is not None, f"{loss} has no forward replay"
    return model


def gradient_replay(
    loss: str, dtype: Dtype, input: np.ndarray, target: np.ndarray, grad_output: np.ndarray, **kwargs: Any
) -> Tracked:
    """The input gradient of the loss on one case (with upstream ``grad_output``), replayed in the order of torch's
    backward formulas."""
    return one_case(_gradient_replay(loss), dtype, input, target, grad_output, **kwargs)


def gradient_replay_batch(
    loss: str, dtype: Dtype, batch: CaseBatch, grad_outputs: np.ndarray, algorithm: str = "torch"
) -> Tracked:
    """The input gradient on every case of ``batch`` in one pass, with ``grad_outputs`` (one per case, along the
    first axis, as the batch's arrays): the result's last axis holds the cases. ``algorithm``: the order replayed,
    torch's backward formula or one of the loss's ``other_gradient_replays``."""
    input, target, kwargs = batch.cases_last()
    return _gradient_replay(loss, algorithm)(dtype, input, target, np.moveaxis(grad_outputs, 0, -1), **kwargs)


def _gradient_replay(loss: str, algorithm: str = "torch") -> Callable[..., Tracked]:
    entry = BY_NAME[loss]
    model = entry.gradient_replay if algorithm == "torch" else entry.other_gradient_replays.get(algorithm)
    assert model is not None, f"{loss} has no gradient replay for the algorithm {algorithm!r}"
    return model


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
