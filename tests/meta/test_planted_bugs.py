"""The suite has power: each planted bug must make one of its loss's properties fail, exactly as run against torch,
and the counterexample it is shrunk to must be no larger than the one the previous way of drawing shrank to."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.meta.hunting import FAMILIES, PLANTED_BUGS, hunt
from verification import kernel_paths, ledger, registry, strategies

# The element counts the previous way of drawing (every element drawn by hypothesis, one case per example) shrank
# each planted bug's counterexample to, measured once with it (kept behind flags) by the command the file records.
BEFORE = json.loads((pathlib.Path(__file__).with_name("shrunk_before.json")).read_text(encoding="utf-8"))


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
    """One of the properties of the bug's loss (value parity, gradient parity, error parity or large inputs), run
    exactly as against torch, fails on the planted bug (its family is tried first), with a reproducer; the
    counterexample hypothesis and the suite shrink it to has no more elements than the previous way of drawing
    shrank it to (both sizes are recorded in the evidence report)."""
    caught = hunt(bug, device, shrink=True)
    if caught.failure is None:
        pytest.fail(f"no property of {bug.loss} caught the planted bug: {bug.mistake}")
    assert "Reproduce with:" in caught.failure or caught.family == "validation", caught.failure
    before = BEFORE["sizes"][f"{bug.loss}.{bug.name}"]
    ledger.record_measurement("shrunk_elements", {"before": before["elements"], "now": caught.elements})
    assert caught.elements <= before["elements"], (
        f"{caught.elements} elements ({caught.counterexample}) where the previous drawing shrank to "
        f"{before['elements']} ({before['counterexample']})"
    )


def test_the_recorded_sizes_cover_every_planted_bug():
    """The record of previous sizes holds one for exactly the planted bugs there are, each caught when it was
    measured."""
    assert set(BEFORE["sizes"]) == {f"{bug.loss}.{bug.name}" for bug in PLANTED_BUGS}
    assert all(row["elements"] is not None for row in BEFORE["sizes"].values())


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
