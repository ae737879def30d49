"""Valid calls that torch rejects: each one is a named divergence with its own test that fails
loudly once torch accepts the call, at which point the exclusion here must go."""

from __future__ import annotations

import numpy as np

from .cases import Case


def torch_rejects_valid_call(case: Case) -> str | None:
    """Why torch is known to reject this well-defined call, or None if it should accept it."""
    if case.loss != "cross_entropy" or not case.has_index_target:
        return None
    smoothing = case.kwargs.get("label_smoothing", 0.0) > 0
    if smoothing and case.input.ndim == 1 and case.target.shape == (1,):
        return (
            "torch 2.13 rejects unbatched input with a (1,) target under label_smoothing "
            "(test_unbatched_input_with_target_of_shape_1_and_smoothing_is_rejected_by_torch)"
        )
    weighted_mean = "weight" in case.kwargs and case.kwargs.get("reduction", "mean") == "mean"
    if smoothing and weighted_mean and case.target.dtype == np.uint8:
        return (
            "torch 2.13 rejects uint8 targets with class weights, label_smoothing and 'mean' "
            "(test_uint8_target_with_weight_smoothing_and_mean_is_rejected_by_torch)"
        )
    return None
