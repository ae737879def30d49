"""How a loss is declared: a ``LossInfo`` entry names each of its parts (see ``verification/registry.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from torch import nn

from . import divergences as divergence_rules
from .cases import Case, CaseBatch
from .dtypes import Dtype
from .oracle.exact import Exact
from .planted_bugs import PlantedBug
from .rejections import Defect
from .tolerance.tracked import Tracked


@dataclass(frozen=True)
class ParityVariant:
    """One parity property of one loss: a claim and the strategy that draws its cases, in batches of a given size
    (``batches(dtype, size)``: cases that share a shape and arguments, see ``cases.CaseBatch``)."""

    loss: str
    name: str
    claim: str
    batches: Callable[[Dtype, int], st.SearchStrategy[CaseBatch]]
    # Where the gradient property draws otherwise (the entry's gradient_batches is for its ordinary variants).
    gradient_batches: Callable[[Dtype, int], st.SearchStrategy[CaseBatch]] | None = None

    def cases(self, dtype: Dtype) -> st.SearchStrategy[Case]:
        """One case at a time: batches of one."""
        return self.batches(dtype, 1).map(CaseBatch.only)

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
    "large_inputs": "large",
    "rejections": "rejections",
    "planted_bugs": "planted bugs",
    "divergences": "divergences",
}


@dataclass(frozen=True)
class LossInfo:
    """Everything the suite knows about one loss, as ``PARTS`` lists it: each part is present, or the entry declares
    it a gap with its reason (tests/meta/test_registry.py holds every entry to that)."""

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
    # The gradient properties draw their batches here instead of from the variants' strategies, where torch's
    # gradient is the derivative only on part of the input space (the rest is a named divergence).
    gradient_batches: Callable[[Dtype, int], st.SearchStrategy[CaseBatch]] | None = None
    gradient_claim: str = ""  # what the gradient claim adds to the variant's
    # The large inputs: variants whose cases reach the sizes where torch's kernels change path
    # (verification/kernel_paths.py), one per layout that takes another path, run by their own value and gradient
    # properties at a smaller example budget; empty with the reason in ``gaps["large_inputs"]``.
    large_inputs: tuple[ParityVariant, ...] = ()
    # Gradient replays for the order another implementation computes the gradient in, where it is not torch's
    # backward formula, by the name an adapter declares in its GRADIENT_ALGORITHMS ("autodiff": reverse mode through
    # the forward formula). The bound then follows that implementation's arithmetic, as torch's follows torch's.
    other_gradient_replays: Mapping[str, Callable[..., Tracked]] = field(default_factory=dict)
    # Which examples of a parity property fall under a named divergence: the divergence's name, or None.
    known_divergence: Callable[[Case], str | None] = divergence_rules.none
    known_gradient_divergence: Callable[[Case], str | None] = divergence_rules.none

    def present(self, part: str) -> bool:
        value = getattr(self, part)
        return bool(value) if isinstance(value, tuple) else value is not None

    def __str__(self) -> str:
        return self.name


LOW_PRECISION_TESTS = "tests/test_low_precision.py"


GRADIENT_TESTS = "tests/test_gradients.py"


IDENTITY_TESTS = "tests/test_identities.py"
