"""Numerically stable building blocks, in float64.

None of these forms ever evaluates ``exp`` of a positive number, so none overflows; the
logarithms are taken through ``log1p`` of the small part (log-sum-exp as log1p of the classes
other than the maximum), so none loses relative accuracy near the values where the naive
formula cancels. Their accuracy is checked against an mpmath oracle in
tests/test_reference_oracle.py.
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


def _shift_by_max(x: F64, dim: int) -> tuple[F64, F64, NDArray[np.bool_]]:
    """x - max(x) along ``dim`` (log-sum-exp trick: every exponent becomes <= 0), exactly.

    Returns (hi, lo, first_max): hi = fl(x - m) and lo its rounding error (TwoSum), so that
    hi + lo = x - m exactly, and a mask of the first maximum along ``dim``. Carrying lo matters in
    the softmax tails: exp magnifies an absolute error of u |x - m| in its argument into a relative
    error of the same size.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # -largest - largest is -inf: its exp is 0, as it should be
        m = np.max(x, axis=dim, keepdims=True)
        hi = x - m
        rebuilt = hi + m
        lo = (x - rebuilt) + (-m - (hi - rebuilt))
    lo = np.where(np.isfinite(hi) & np.isfinite(lo), lo, 0.0)
    first = np.expand_dims(np.argmax(x, axis=dim), dim)
    positions = np.arange(x.shape[dim]).reshape([-1 if axis == dim % x.ndim else 1 for axis in range(x.ndim)])
    return _f64(hi), _f64(lo), positions == first


def _exponentials(x: F64, dim: int) -> tuple[F64, F64, F64]:
    """(x - m as hi + lo, e^(x - m), and the sum of e^(x - m) over every class but the first maximum).

    The maximum's own term is exactly 1, so the normaliser is 1 + others, and its log is log1p(others):
    accurate to a few ulps even where others is tiny (a target class with probability near 1).
    """
    hi, lo, first = _shift_by_max(x, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        exps = np.exp(hi) * (1.0 + lo)  # e^(hi + lo) to within u^2: |lo| <= u |hi| and e^lo = 1 + lo + O(lo^2)
        others = np.sum(np.where(first, 0.0, exps), axis=dim, keepdims=True)
    # A row whose maximum is +inf, NaN, or -inf (every entry -inf) has no finite normaliser: all NaN, as in torch.
    undefined = ~np.isfinite(np.max(x, axis=dim, keepdims=True))
    others = np.where(undefined, np.nan, others)
    return hi + lo, _f64(exps), _f64(others)


def log_softmax(x: ArrayLike, dim: int) -> F64:
    """log_softmax(x)_j = (x_j - m) - log1p(sum_{k != argmax} e^(x_k - m)), m = max_k x_k.

    A row holding +inf, or only -inf, has no finite answer and gives NaN, as in torch.
    """
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()
    shifted, _, others = _exponentials(x, dim)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _f64(shifted - np.log1p(others))


def softmax(x: ArrayLike, dim: int) -> F64:
    """softmax(x)_j = e^(x_j - m) / (1 + sum_{k != argmax} e^(x_k - m)), m = max_k x_k."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()
    _, exps, others = _exponentials(x, dim)
    with np.errstate(invalid="ignore"):
        return _f64(exps / (1.0 + others))
