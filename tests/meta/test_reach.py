"""The strategies reach their risk regions within the ci profile's budget (in the spirit of hypothesis's
own quality/ tests): a region no example reaches is a region the suite only claims to check."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import Phase, given, settings

from verification import kernel_paths, registry
from verification.cases import Case
from verification.dtypes import FLOAT32
from verification.properties import CASES_PER_EXAMPLE


def _index_target_parts(case: Case):
    ignore_index = case.kwargs.get("ignore_index", -100)
    return case.target, case.target == ignore_index


def _all_ignored(case: Case) -> bool:
    target, ignored = _index_target_parts(case)
    return case.has_index_target and target.size > 0 and bool(np.all(ignored))


def _zero_total_weight(case: Case) -> bool:
    if not case.has_index_target or "weight" not in case.kwargs:
        return False
    target, ignored = _index_target_parts(case)
    kept = target[~ignored].astype(np.int64)
    weight = case.kwargs["weight"].reshape(-1)
    return kept.size > 0 and float(np.sum(weight[kept])) == 0.0


REGIONS: dict[str, tuple[str, Callable[[Case], bool]]] = {
    "a logit beyond the float32 sigmoid saturation (|x| > 17)": (
        "binary_cross_entropy_with_logits",
        lambda c: bool(np.any(np.abs(c.input) > 17)),
    ),
    "a logit beyond float32's exp overflow (|x| > 88.72)": (
        "cross_entropy",
        lambda c: bool(np.any(np.abs(c.input) > 88.72)),
    ),
    "a logit of magnitude 1e4": ("cross_entropy", lambda c: bool(np.any(np.abs(c.input) >= 1e4))),
    "a probability exactly 0": ("binary_cross_entropy", lambda c: bool(np.any(c.input == 0))),
    "a probability exactly 1": ("binary_cross_entropy", lambda c: bool(np.any(c.input == 1))),
    "a probability within 1e-6 of 1 but not 1": (
        "binary_cross_entropy",
        lambda c: bool(np.any((c.input > 1 - 1e-6) & (c.input < 1))),
    ),
    "every target ignored (NLL)": ("nll_loss", _all_ignored),
    "every target ignored (CrossEntropy)": ("cross_entropy", _all_ignored),
    "selected class weights summing to exactly 0": ("nll_loss", _zero_total_weight),
    "an empty batch (NLL)": ("nll_loss", lambda c: c.input.ndim > 1 and c.input.shape[0] == 0),
    "an empty input (BCE)": ("binary_cross_entropy", lambda c: c.input.size == 0),
    "a K-dimensional input with some targets ignored": (
        "nll_loss",
        lambda c: c.input.ndim >= 3 and bool(np.any(_index_target_parts(c)[1])),
    ),
    "a negative ignore_index other than -100 in use": (
        "cross_entropy",
        lambda c: (
            c.has_index_target
            and -100 < c.kwargs.get("ignore_index", -100) < 0
            and bool(np.any(c.target == c.kwargs["ignore_index"]))
        ),
    ),
    "label smoothing of exactly 1": ("cross_entropy", lambda c: c.kwargs.get("label_smoothing") == 1.0),
    "a negative class weight": (
        "cross_entropy",
        lambda c: "weight" in c.kwargs and bool(np.any(c.kwargs["weight"] < 0)),
    ),
    "a pos_weight of shape (C,) on an input of rank 3 or more": (
        "binary_cross_entropy_with_logits",
        lambda c: "pos_weight" in c.kwargs and c.input.ndim >= 3 and c.kwargs["pos_weight"].shape == c.input.shape[-1:],
    ),
    "a KL target exactly 0 (0 log 0)": (
        "kl_div",
        lambda c: not c.kwargs.get("log_target") and bool(np.any(c.target == 0)),
    ),
    "a negative KL target (NaN)": ("kl_div", lambda c: not c.kwargs.get("log_target") and bool(np.any(c.target < 0))),
    "a KL log target past float32's exp overflow": (
        "kl_div",
        lambda c: bool(c.kwargs.get("log_target")) and bool(np.any(c.target > 88.72)),
    ),
    "a KL input broadcast against a larger target": ("kl_div", lambda c: c.input.size < c.target.size),
    "KL reduction 'batchmean'": ("kl_div", lambda c: c.kwargs.get("reduction") == "batchmean"),
    "unnormalised probability targets": (
        "cross_entropy",
        lambda c: (
            not c.has_index_target
            and c.target.size > 0
            and bool(np.any(np.abs(np.sum(c.target, axis=0 if c.input.ndim == 1 else 1) - 1) > 1e-3))
        ),
    ),
}


@pytest.mark.parametrize("region", list(REGIONS), ids=str)
def test_the_strategies_reach_the_risk_region_at_ci_depth(region):
    """Within the ci profile's budget for one of the loss's parity variants (float32), drawn as the parity properties
    draw them (batches of CASES_PER_EXAMPLE cases), some drawn case lies in the region."""
    loss, inside = REGIONS[region]
    reached = []
    for variant in registry.info(loss).variants:

        @settings(settings.get_profile("ci"), phases=[Phase.explicit, Phase.generate])
        @given(batch=variant.batches(FLOAT32, CASES_PER_EXAMPLE))
        def draw_cases(batch):
            reached.extend(case for case in map(batch.case, range(len(batch))) if inside(case))

        draw_cases()
        if reached:
            break
    assert reached, f"no {loss} case within the ci budget has {region}"


@pytest.mark.parametrize(
    "variant",
    [*registry.large_variants(), *registry.large_gradient_variants()],
    ids=lambda v: f"{v.loss}-{v.name}",
)
def test_the_first_large_example_has_the_required_size(variant):
    """The first example hypothesis runs (its simplest) of every large-input value and gradient property has at least
    kernel_paths.REQUIRED_ELEMENTS elements, and a categorical one whose classes are last at least REQUIRED_CLASSES
    classes: each large property compares one such case, whatever its budget (the evidence report's
    largest_input_elements shows it was compared). The shapes are drawn before the values, alike in every dtype."""
    dtype = FLOAT32
    drawn = []

    @settings(max_examples=1, phases=[Phase.generate], database=None, derandomize=True)
    @given(batch=variant.batches(dtype, 1))
    def first(batch):
        drawn.append(batch.case(0))

    first()
    case = drawn[0]
    assert case.input.size >= kernel_paths.REQUIRED_ELEMENTS, case.describe()
    if variant.loss in ("nll_loss", "cross_entropy") and "classes last" in variant.name:
        assert case.input.shape[-1] >= kernel_paths.REQUIRED_CLASSES, case.describe()
