"""The properties of a planted bug's loss run against it exactly as against torch, and the hunt through them that
stops at the first failure: what tests/meta/test_planted_bugs.py asserts (caught, and shrunk no larger than the
previous way of drawing shrank it) and what ``python3 -m tests.meta.shrinking`` prints."""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from verification import registry, strategies
from verification.compare import ParityError, RejectionMismatch, check_same_rejection
from verification.dtypes import PARITY_DTYPES
from verification.implementations import ImplUnderTest
from verification.planted_bugs import PlantedBug
from verification.properties import (
    CASES_PER_EXAMPLE,
    batch_gradients_match_reference,
    batch_matches_reference,
    output_shape,
    variants_of,
)
from verification.rejections import DTYPE

PLANTED_BUGS = registry.all_planted_bugs()
# "large": the large-input value and gradient properties (a mistake that only shows past a size torch's kernels
# change path at).
FAMILIES = ("value", "gradient", "validation", "large")


@dataclass(frozen=True)
class Caught:
    """The first property that failed on a planted bug: its family and its failure's message (None: none failed)."""

    family: str | None
    failure: str | None
    seconds: float

    @property
    def elements(self) -> int | None:
        """The element count of the (shrunk) counterexample the failure names."""
        return None if self.failure is None else elements_named(self.failure)

    @property
    def counterexample(self) -> str | None:
        return None if self.failure is None else self.failure.split(":", 1)[0]


def hunt(bug: PlantedBug, device: str = "cpu", shrink: bool = True) -> Caught:
    """The bug's properties, its own family first, until one fails; with ``shrink``, hypothesis shrinks that failure
    as a run of the suite does (and the suite's minimiser after it), so that its counterexample is the one a user
    would be shown."""
    started = time.perf_counter()
    for family in sorted(FAMILIES, key=lambda family: family != bug.area):
        for check in checks(family, bug, device, shrink):
            try:
                check()
            except (ParityError, RejectionMismatch, AssertionError) as error:
                return Caught(family, str(error), round(time.perf_counter() - started, 1))
    return Caught(None, None, round(time.perf_counter() - started, 1))


# The shapes a failure's first sentence gives: "loss(input [2, 3], target [2], weight=<float64 [3]>) in ...".
_SHAPE = re.compile(r"\[([0-9, ]*)\]")


def elements_named(failure: str) -> int:
    """The element count of the case a failure's first sentence describes (every array shape it names)."""
    call = failure.split(" in ", 1)[0].split(" on ", 1)[0]
    shapes = [[int(size) for size in match.split(",") if size.strip()] for match in _SHAPE.findall(call)]
    return sum(math.prod(shape) for shape in shapes)


def checks(family: str, bug: PlantedBug, device: str, shrink: bool = False) -> list[Callable[[], None]]:
    """The properties of ``family`` against ``bug``, drawn as the suite draws them (value and gradient parity in
    batches of CASES_PER_EXAMPLE); with ``shrink``, hypothesis shrinks a failure as a run of the suite would."""
    if family == "value":
        return [
            _property(
                variant.batches(dtype, CASES_PER_EXAMPLE), lambda batch, d=dtype: _value(batch, bug, d, device), shrink
            )
            for dtype, variant in itertools.product(PARITY_DTYPES, variants_of(bug.loss))
        ]
    if family == "gradient":
        return [
            _property(
                st.tuples(variant.batches(dtype, CASES_PER_EXAMPLE), st.data()),
                lambda drawn, d=dtype: _gradient(*drawn, bug, d, device),
                shrink,
            )
            for dtype, variant in itertools.product(
                PARITY_DTYPES, [v for v in registry.gradient_variants() if v.loss == bug.loss]
            )
        ]
    if family == "large":
        large = [v for v in registry.large_variants() if v.loss == bug.loss]
        large_gradients = [v for v in registry.large_gradient_variants() if v.loss == bug.loss]
        return [
            *(
                _property(
                    variant.batches(dtype, 1), lambda batch, d=dtype: _value(batch, bug, d, device), shrink, LARGE
                )
                for dtype, variant in itertools.product(PARITY_DTYPES, large)
            ),
            *(
                _property(
                    st.tuples(variant.batches(dtype, 1), st.data()),
                    lambda drawn, d=dtype: _gradient(*drawn, bug, d, device),
                    shrink,
                    LARGE,
                )
                for dtype, variant in itertools.product(PARITY_DTYPES, large_gradients)
            ),
        ]
    return [
        _property(defect.cases(), lambda case, defect=defect: _rejection(case, defect, bug, device), shrink)
        for defect in registry.info(bug.loss).rejections
    ]


def _as_impl(bug: PlantedBug) -> ImplUnderTest:
    """The bug as --impl names it: its failures' reproducers import it instead of calling torch."""
    return ImplUnderTest(f"{bug.loss}={bug.target}")


def _value(batch, bug, dtype, device):
    impl = _as_impl(bug)
    batch_matches_reference(batch, impl.call, form=impl.form, dtype=dtype, device=device)


def _gradient(batch, data, bug, dtype, device):
    shape = (len(batch), *output_shape(batch.case(0)))
    grad_outputs = data.draw(strategies.grad_outputs(dtype, shape))
    impl = _as_impl(bug)
    batch_gradients_match_reference(batch, grad_outputs, impl.call, form=impl.form, dtype=dtype, device=device)


def _rejection(case, defect, bug, device):
    impl = _as_impl(bug)
    raised = check_same_rejection(case, impl.call, form=impl.form, dtype=DTYPE, device=device)
    assert raised is defect.expected, f"{defect}: both raised {raised.__name__}, expected {defect.expected.__name__}"


# The large-input properties' budget at ci depth (tests/test_parity.py's LARGE_BUDGET under the ci profile).
LARGE = max(2, settings.get_profile("ci").max_examples // 50)


def _property(cases, body, shrink: bool = False, max_examples: int | None = None) -> Callable[[], None]:
    # The ci profile whatever profile is active (the promise is: caught at ci depth, every time), without shrinking or
    # explaining unless asked: the verdict is what the kill needs.
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])]
    budget = {} if max_examples is None else {"max_examples": max_examples}

    @settings(settings.get_profile("ci"), report_multiple_bugs=False, phases=phases, **budget)
    @given(drawn=cases)
    def property_against_the_bug(drawn):
        body(drawn)

    return property_against_the_bug
