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


def _shift_by_max(x: F64, dim: int) -> tuple[F64, F64, F64, NDArray[np.intp]]:
    """x - max(x) along ``dim`` (log-sum-exp trick: every exponent becomes <= 0), exactly.

    Returns (m, hi, lo, first): the maximum, hi = fl(x - m) and lo its rounding error (TwoSum), so
    that hi + lo = x - m exactly, and the index of the first maximum along ``dim``. Carrying lo
    matters in the softmax tails: exp magnifies an absolute error of u |x - m| in its argument into
    a relative error of the same size. (Written with in-place operations: the reference must stay
    within a few times torch's speed on large inputs.)
    """
    with np.errstate(invalid="ignore", over="ignore"):  # -largest - largest is -inf: its exp is 0, as it should be
        m = np.max(x, axis=dim, keepdims=True)
        hi = x - m
        rebuilt = hi + m
        lo = np.subtract(hi, rebuilt)  # TwoSum: lo = (x - rebuilt) + (-m - (hi - rebuilt))
        np.subtract(-m, lo, out=lo)
        np.subtract(x, rebuilt, out=rebuilt)
        np.add(rebuilt, lo, out=lo)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(lo))):
        lo[~np.isfinite(lo)] = 0.0  # an infinite entry or row: no rounding error to carry
    first = np.expand_dims(np.argmax(x, axis=dim), dim)
    return m, _f64(hi), _f64(lo), first


def _exponentials(x: F64, dim: int) -> tuple[F64, F64, F64]:
    """(x - m, e^(x - m), and the sum of e^(x - m) over every class but the first maximum).

    The maximum's own term is exactly 1, so the normaliser is 1 + others, and its log is log1p(others):
    accurate to a few ulps even where others is tiny (a target class with probability near 1). x - m is
    returned as hi, which is hi + lo rounded (|lo| is at most half an ulp of hi).
    """
    m, hi, lo, first = _shift_by_max(x, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        exps = np.exp(hi)
        np.add(lo, 1.0, out=lo)
        np.multiply(exps, lo, out=exps)  # e^(hi + lo) to within u^2: |lo| <= u |hi| and e^lo = 1 + lo + O(lo^2)
        np.put_along_axis(exps, first, 0.0, axis=dim)
        others = np.sum(exps, axis=dim, keepdims=True)
        np.put_along_axis(exps, first, 1.0, axis=dim)  # the maximum's own term, exactly
    # A row whose maximum is +inf, NaN, or -inf (every entry -inf) has no finite normaliser: all NaN, as in torch.
    others = np.where(np.isfinite(m), others, np.nan)
    return hi, _f64(exps), _f64(others)


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
