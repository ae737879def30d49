"""The valid calls on which torch's decompositions of ``nll_loss_forward`` and ``nll_loss_backward`` do otherwise
than torch's eager kernels (torch 2.13). Two adapters run those decompositions: ``decomposed`` calls them, and
``compiled`` inherits them, since inductor lowers NLL through them. Each adapter names the divergence in its own
words and has its own test asserting its implementation's behaviour; these predicates say which cases each covers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CATEGORICAL = ("nll_loss", "cross_entropy")


def _index_target(case: Any) -> bool:
    return case.loss in CATEGORICAL and case.target.dtype.kind in "iu"


def uint8_class_indices(case: Any) -> bool:
    """The forward gathers with the class-index target, and gather rejects uint8."""
    return _index_target(case) and case.target.dtype == np.uint8


def unbatched_input_with_target_of_shape_1(case: Any) -> bool:
    """The forward raises 'size mismatch' for an input (C,) with a (1,) target, which the eager forward computes."""
    return _index_target(case) and case.input.ndim == 1 and case.target.shape == (1,)


def class_weights_not_1_dimensional(case: Any) -> bool:
    """The forward reshapes class weights as if 1-dimensional, where the eager kernels take C weights of any shape."""
    weight = case.kwargs.get("weight")
    return case.loss in CATEGORICAL and weight is not None and np.ndim(weight) != 1


def total_weight_is_0(case: Any) -> bool:
    """NLL's 'mean' over index targets whose class weights sum to 0 (every target ignored, or of weight 0): the
    backward divides every element by that 0, where the eager kernel gives 0 off the target."""
    if case.loss != "nll_loss" or not _index_target(case) or case.kwargs.get("reduction", "mean") != "mean":
        return False
    classes = case.input.shape[0 if case.input.ndim == 1 else 1]
    weight = np.ones(classes) if case.kwargs.get("weight") is None else np.ravel(case.kwargs["weight"])
    target = np.ravel(case.target).astype(np.int64)
    kept = target[target != case.kwargs.get("ignore_index", -100)]
    return bool(kept.size == 0 or np.sum(weight[np.clip(kept, 0, classes - 1)]) == 0)
