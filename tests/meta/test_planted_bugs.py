"""The suite has power: each planted bug must make one of its loss's properties fail, exactly as run against torch."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from verification import registry, strategies
from verification.compare import ParityError, RejectionMismatch, check_gradient_parity, check_same_rejection
from verification.dtypes import PARITY_DTYPES
from verification.planted_bugs import PlantedBug
from verification.properties import (
    exclude_if_known_gradient_divergence,
    loss_matches_reference,
    output_shape,
    variants_of,
)
from verification.rejections import DTYPE

PLANTED_BUGS = registry.all_planted_bugs()
FAMILIES = ("value", "gradient", "validation")


def test_every_loss_has_a_planted_bug():
    """Every loss torch has is challenged by at least one planted bug, each declared by its own loss's entry."""
    assert {bug.loss for bug in PLANTED_BUGS} == {entry.name for entry in registry.TORCH_LOSSES}
    for entry in registry.LOSSES:
        assert all(bug.loss == entry.name for bug in entry.planted_bugs), entry.name


def test_the_catalogue_covers_every_family_of_mistake():
    """There are at least 20 planted bugs, and each property family (values, gradients, validation) has one."""
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


def _checks(family: str, bug: PlantedBug, device: str) -> list[Callable[[], None]]:
    if family == "value":
        return [
            _property(variant.cases(dtype), lambda case, d=dtype: _value(case, bug, d, device))
            for dtype, variant in itertools.product(PARITY_DTYPES, variants_of(bug.loss))
        ]
    if family == "gradient":
        return [
            _property(
                st.tuples(variant.cases(dtype), st.data()), lambda drawn, d=dtype: _gradient(*drawn, bug, d, device)
            )
            for dtype, variant in itertools.product(
                PARITY_DTYPES, [v for v in registry.gradient_variants() if v.loss == bug.loss]
            )
        ]
    return [
        _property(defect.cases(), lambda case, defect=defect: _rejection(case, defect, bug, device))
        for defect in registry.info(bug.loss).rejections
    ]


def _value(case, bug, dtype, device):
    loss_matches_reference(case, bug.impl, form="functional", dtype=dtype, device=device)


def _gradient(case, data, bug, dtype, device):
    exclude_if_known_gradient_divergence(case)
    grad_output = data.draw(strategies.grad_outputs(dtype, output_shape(case)))
    check_gradient_parity(case, np.asarray(grad_output), bug.impl, form="functional", dtype=dtype, device=device)


def _rejection(case, defect, bug, device):
    raised = check_same_rejection(case, bug.impl, form="functional", dtype=DTYPE, device=device)
    assert raised is defect.expected, f"{defect}: both raised {raised.__name__}, expected {defect.expected.__name__}"


def _property(cases, body) -> Callable[[], None]:
    # The ci profile whatever profile is active (the promise is: caught at ci depth, every time),
    # without shrinking or explaining: only the verdict matters here.
    @settings(settings.get_profile("ci"), report_multiple_bugs=False, phases=[Phase.explicit, Phase.generate])
    @given(drawn=cases)
    def property_against_the_bug(drawn):
        body(drawn)

    return property_against_the_bug


def test_the_catalogue_in_the_docs_lists_every_planted_bug():
    """docs/planted-bugs.md has one line for every planted bug the registry declares, with the mistake it models."""
    readme = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "planted-bugs.md").read_text(encoding="utf-8")
    for bug in PLANTED_BUGS:
        assert f"| {bug.loss} | `{bug.name}` | {bug.mistake} |" in readme, bug.name
