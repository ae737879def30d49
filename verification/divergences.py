"""Calls where torch 2.13 departs from the documented semantics, as rules the registry gives each loss. Each
rule has a named-divergence test that asserts torch's actual behaviour, so it fails loudly once torch changes;
then the matching rule here must go too. A rule returns the divergence's name (the reason an example is
excluded from parity) or None."""

from __future__ import annotations

import numpy as np

from .cases import Case


def none(case: Case) -> str | None:
    """A loss with no divergence that excludes parity examples."""
    return None


def _smoothing(case: Case) -> float:
    value = case.kwargs.get("label_smoothing", 0.0)
    return value if value > 0 else 0.0


def uint8_smoothing_mask_wraps(case: Case) -> bool:
    """uint8 targets under label smoothing: torch compares them with ignore_index cast to uint8, so an
    ignore_index outside [0, 255] (the default -100 too) also drops the smoothing term of every target
    equal to ignore_index mod 256."""
    ignore_index = case.kwargs.get("ignore_index", -100)
    return (
        case.target.dtype == np.uint8
        and _smoothing(case) > 0
        and not 0 <= ignore_index <= 255
        and bool(np.any(case.target == ignore_index % 256))
    )


def cross_entropy_forward(case: Case) -> str | None:
    """Why torch's cross-entropy is known to depart from the reference on this call, or None."""
    if not case.has_index_target or _smoothing(case) == 0:
        return None
    if case.input.ndim == 1 and case.target.shape == (1,):
        return (
            "torch 2.13 rejects unbatched input with a (1,) target under label_smoothing "
            "(test_unbatched_input_with_target_of_shape_1_and_smoothing_is_rejected_by_torch)"
        )
    weighted_mean = "weight" in case.kwargs and case.kwargs.get("reduction", "mean") == "mean"
    if weighted_mean and case.target.dtype == np.uint8:
        return (
            "torch 2.13 rejects uint8 targets with class weights, label_smoothing and 'mean' "
            "(test_uint8_target_with_weight_smoothing_and_mean_is_rejected_by_torch)"
        )
    if uint8_smoothing_mask_wraps(case):
        return (
            "torch 2.13 drops the smoothing term of uint8 targets equal to ignore_index mod 256 "
            "(test_uint8_targets_lose_smoothing_where_ignore_index_wraps_modulo_256)"
        )
    return None


def unbatched_target_of_shape_1_backward(case: Case) -> str | None:
    """NLL and cross-entropy: an unbatched input with a (1,) target computes, but its backward raises."""
    if case.input.ndim == 1 and case.target.shape == (1,):
        return (
            "torch 2.13 computes unbatched input (C,) with a (1,) target but its backward raises 'size mismatch' "
            "(test_unbatched_input_with_target_of_shape_1_has_no_backward)"
        )
    return None


def cross_entropy_backward(case: Case) -> str | None:
    """Cross-entropy's backward departs wherever its forward does, and where NLL's backward does."""
    return cross_entropy_forward(case) or unbatched_target_of_shape_1_backward(case)
