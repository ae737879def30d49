"""The parity properties have power: each planted bug must make its loss's property fail."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import Phase, given, settings

from tests.common import strategies
from tests.common.compare import ParityError
from tests.common.dtypes import PARITY_DTYPES
from tests.common.properties import loss_matches_reference, variants_of
from tests.meta.planted_bugs import PLANTED_BUGS


def test_every_loss_has_a_planted_bug():
    """Every one of the four losses is challenged by at least one planted bug."""
    assert {bug.loss for bug in PLANTED_BUGS} == set(strategies.CASES)


@pytest.mark.parametrize("bug", PLANTED_BUGS, ids=lambda bug: f"{bug.loss}-{bug.name}")
def test_parity_property_catches_planted_bug(bug, device):
    """One of the parity properties of the bug's loss, run exactly as against torch, fails on the planted bug."""
    failures = []
    for dtype, variant in itertools.product(PARITY_DTYPES, variants_of(bug.loss)):
        try:
            _run_property_against(bug.impl, dtype, variant.cases(dtype), device)
        except ParityError as error:
            failures.append(error)
            break
    assert failures, f"no parity property of {bug.loss} caught the planted bug: {bug.mistake}"
    assert "Reproduce with:" in str(failures[0])


def _run_property_against(impl, dtype, cases, device):
    # The ci profile whatever profile is active (the promise is: caught at ci depth, every time),
    # without shrinking or explaining: only the verdict matters here.
    @settings(settings.get_profile("ci"), report_multiple_bugs=False, phases=[Phase.explicit, Phase.generate])
    @given(case=cases)
    def property_against_the_bug(case):
        loss_matches_reference(case, impl, form="functional", dtype=dtype, device=device)

    property_against_the_bug()
