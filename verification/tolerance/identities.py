"""The compositions the article's identities compare (sigmoid then BCE, softmax then log then NLL, the focal
loss rebuilt from BCE), bounded as torch computes them."""

from __future__ import annotations

import numpy as np

from ..dtypes import FLOAT64, Dtype
from ..losses.binary_cross_entropy_with_logits import replay as bce_with_logits_replay
from .forward import class_axis, nll_reduced
from .tracked import F64, SIGMOID_ERROR, Tracked, one_case

# ---------------------------------------------------------------------------------------------
# Compositions used by the article's identities.
# ---------------------------------------------------------------------------------------------


def sigmoid_then_bce_sensitivity(dtype: Dtype, x: F64, target: F64, weight: F64 | None = None) -> F64:
    """How far BCE(sigmoid(x), y) can move because sigmoid(x) was rounded (per element).

    With p' = p(1 + d), |d| <= c u: |log p' - log p| <= -log(1 - c u), and since
    1 - p' = (1 - p)(1 - d p / (1 - p)) and p / (1 - p) = e^x,
    |log(1 - p') - log(1 - p)| <= -log(1 - c u e^x). The second term is what makes the
    identity ill-conditioned for large x; it is infinite once c u e^x >= 1.
    """
    cu = SIGMOID_ERROR * (dtype.unit_roundoff + FLOAT64.unit_roundoff)
    y = np.asarray(target, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        amplified = cu * np.exp(np.asarray(x, dtype=np.float64))
        positive = -np.log1p(-cu)
        negative = np.where(amplified < 1, -np.log1p(-amplified), np.inf)
        per_element = np.abs(y) * positive + np.where(y == 1, 0.0, np.abs(1 - y) * negative)
    w = 1.0 if weight is None else np.abs(np.asarray(weight, dtype=np.float64))
    return np.asarray(w * per_element)


def focal_from_bce(dtype: Dtype, input: F64, target: F64, gamma: float) -> Tracked:
    """The focal loss rebuilt from torch's BCEWithLogits b for labels 0 and 1, where p_t = e^-b:
    b * (-expm1(-b)) ** gamma, in that order (one case)."""
    return one_case(_focal_from_bce, dtype, input, target, gamma=gamma)


def _focal_from_bce(dtype: Dtype, input: F64, target: F64, gamma: float) -> Tracked:
    b = bce_with_logits_replay(dtype, input, target, reduction="none")
    return b * (-((-b).expm1())).power(gamma)


def softmax_log_nll(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None = None, ignore_index: int = -100, reduction: str = "mean"
) -> Tracked:
    """The article's three steps: p = softmax(x); log p; NLL (one case)."""
    kwargs = {"weight": weight, "ignore_index": ignore_index, "reduction": reduction}
    return one_case(_softmax_log_nll, dtype, input, target, **kwargs)


def _softmax_log_nll(
    dtype: Dtype, input: F64, target: F64, weight: F64 | None, ignore_index: int, reduction: str
) -> Tracked:
    x = Tracked.exact(input, dtype)
    dim = class_axis(x.ndim)
    exps = (x - np.max(x.value, axis=dim, keepdims=True)).exp()
    total = exps.sum(axis=dim)
    total = total.expand_dims(dim)
    return nll_reduced((exps / total).log(), target, weight, ignore_index, reduction, dtype)
