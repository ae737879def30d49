"""The suite has power: each planted bug must make one of its loss's properties fail, exactly as run against torch."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from verification import kernel_paths, registry, strategies
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


def test_every_loss_has_a_planted_bug():
    """Every loss torch has is challenged by at least one planted bug, each declared by its own loss's entry."""
    assert {bug.loss for bug in PLANTED_BUGS} == {entry.name for entry in registry.TORCH_LOSSES}
    for entry in registry.LOSSES:
        assert all(bug.loss == entry.name for bug in entry.planted_bugs), entry.name


def test_the_catalogue_covers_every_family_of_mistake():
    """There are at least 20 planted bugs, and each property family (values, gradients, validation, large inputs) has
    one."""
    assert len(PLANTED_BUGS) >= 20
    assert {bug.area for bug in PLANTED_BUGS} == set(FAMILIES)


@pytest.mark.parametrize("bug", PLANTED_BUGS, ids=lambda bug: f"{bug.loss}-{bug.name}")
def test_a_property_catches_planted_bug(bug, device):
    """One of the properties of the bug's loss (value parity, gradient parity or error parity), run exactly as against
    torch, fails on the planted bug; its family is tried first."""
    ordered = sorted(FAMILIES, key=lambda family: family != bug.area)
    for family in ordered:
        for check in _checks(family, bug, device):
            try:
                check()
            except (ParityError, RejectionMismatch, AssertionError) as error:
                assert "Reproduce with:" in str(error) or family == "validation", str(error)
                return
    pytest.fail(f"no property of {bug.loss} caught the planted bug: {bug.mistake}")


def _checks(family: str, bug: PlantedBug, device: str, shrink: bool = False) -> list[Callable[[], None]]:
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


def test_the_catalogue_in_the_docs_lists_every_planted_bug():
    """docs/planted-bugs.md has one line for every planted bug the registry declares, with the mistake it models."""
    readme = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "planted-bugs.md").read_text(encoding="utf-8")
    for bug in PLANTED_BUGS:
        assert f"| {bug.loss} | `{bug.name}` | {bug.mistake} |" in readme, bug.name


def test_the_large_input_bugs_lie_beyond_every_ordinary_case():
    """Each large-input planted bug departs from torch only past a size (2048 or 32768 elements, 32 positions per
    sample), or for an input that is not contiguous, that no ordinary case reaches (every ordinary input is
    contiguous): the largest ordinary binary case has 4^4 elements, the largest categorical
    4 x 5 x 3^3, with 27 positions per sample. So only the large-input properties can catch them."""
    largest_binary = strategies.MAX_BATCH**4
    largest_categorical = (
        strategies.MAX_BATCH * strategies.MAX_CLASSES * strategies.MAX_EXTRA_SIZE**strategies.MAX_EXTRA_DIMS
    )
    positions = strategies.MAX_EXTRA_SIZE**strategies.MAX_EXTRA_DIMS
    assert max(largest_binary, largest_categorical) < 2048 < kernel_paths.GRAIN_SIZE
    assert positions < 32
    assert {bug.name for bug in PLANTED_BUGS if bug.area == "large"} == {
        "loses_a_partial_past_the_grain",
        "accumulates_in_the_dtype_past_2048",
        "loses_the_class_stride",
        "reads_its_input_as_contiguous",
    }
