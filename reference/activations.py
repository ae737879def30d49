"""Numerically stable building blocks, in float64.

None of these forms ever evaluates ``exp`` of a positive number, so none overflows; the
logarithms are taken through ``log1p`` of the small part (log-sum-exp as log1p of the classes
other than the maximum), so none loses relative accuracy near the values where the naive
formula cancels. Their accuracy is checked against an mpmath oracle in
tests/test_reference_oracle.py. log_softmax and softmax run in blocks of rows on every core
(``_fast``), which changes no result's bits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._fast import in_row_blocks, in_row_blocks_at, shift_by_row_max

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


def log_softmax(x: ArrayLike, dim: int) -> F64:
    """log_softmax(x)_j = (x_j - m) - log1p(sum_{k != argmax} e^(x_k - m)), m = max_k x_k.

    A row holding +inf, or only -inf, has no finite answer and gives NaN, as in torch.
    """
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()

    def kernel(rows: F64, out: F64) -> None:
        x_minus_m, others = shift_by_row_max(rows, shifted=out)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.subtract(x_minus_m, np.log1p(others), out=out)

    return in_row_blocks(kernel, x, dim)


def log_softmax_at(x: ArrayLike, dim: int, index: NDArray[np.int64]) -> F64:
    """log_softmax(x, dim) taken at ``index`` along ``dim`` (``index`` has x's shape with size 1 at ``dim``), without
    forming the whole log-softmax: cross-entropy's path for class-index targets. The same arithmetic as
    log_softmax, to the bit: (x_j - m) - log1p(others) at j = index."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return np.full(np.shape(index), np.nan)  # no class to read (every target is ignored, or one raised)

    def kernel(rows: F64, picks: NDArray[np.int64], out: F64) -> None:
        x_minus_m, others = shift_by_row_max(rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            picked = x_minus_m[np.arange(rows.shape[0]), picks][:, None]
            np.subtract(picked, np.log1p(others), out=out)

    return in_row_blocks_at(kernel, x, dim, index)


def softmax(x: ArrayLike, dim: int) -> F64:
    """softmax(x)_j = e^(x_j - m) / (1 + sum_{k != argmax} e^(x_k - m)), m = max_k x_k."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()

    def kernel(rows: F64, out: F64) -> None:
        _, others = shift_by_row_max(rows, exps=out)  # out holds e^(x - m)
        with np.errstate(invalid="ignore"):
            np.divide(out, 1.0 + others, out=out)

    return in_row_blocks(kernel, x, dim)
