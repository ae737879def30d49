"""Numerically stable building blocks, in float64.

None of these forms ever evaluates ``exp`` of a positive number, so none overflows; the
logarithms are taken of quantities in [1, C] (log-sum-exp) or through ``log1p``, so none loses
relative accuracy near the values where the naive formula cancels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def _f64(x: ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def softplus(x: ArrayLike) -> F64:
    """softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|)."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid(x: ArrayLike) -> F64:
    """sigma(x) = 1 / (1 + e^-x), evaluated as e^x / (1 + e^x) for x < 0 so exp never overflows."""
    x = _f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_sigmoid(x: ArrayLike) -> F64:
    """log sigma(x) = -softplus(-x) = min(x, 0) - log1p(e^-|x|)."""
    x = _f64(x)
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def _shift_by_max(x: F64, dim: int) -> F64:
    """x - max(x) along ``dim``: every exponent becomes <= 0 (log-sum-exp trick)."""
    with np.errstate(invalid="ignore", over="ignore"):  # -largest - largest is -inf: its exp is 0, as it should be
        return _f64(x - np.max(x, axis=dim, keepdims=True))


def log_softmax(x: ArrayLike, dim: int) -> F64:
    """log_softmax(x)_j = (x_j - m) - log(sum_k e^(x_k - m)), m = max_k x_k.

    A row holding +inf, or only -inf, has no finite answer and gives NaN, as in torch.
    """
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()
    shifted = _shift_by_max(x, dim)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _f64(shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True)))


def softmax(x: ArrayLike, dim: int) -> F64:
    """softmax(x)_j = e^(x_j - m) / sum_k e^(x_k - m), m = max_k x_k."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()
    exps = np.exp(_shift_by_max(x, dim))
    with np.errstate(invalid="ignore"):
        return _f64(exps / np.sum(exps, axis=dim, keepdims=True))
