"""Numerically stable building blocks, in float64.

None of these forms ever evaluates ``exp`` of a positive number, so none overflows; the
logarithms are taken through ``log1p`` of the small part (log-sum-exp as log1p of the classes
other than the maximum), so none loses relative accuracy near the values where the naive
formula cancels. Their accuracy is checked against an mpmath oracle in
tests/test_reference_oracle.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]

# Speed, without changing a single result: large inputs are processed in blocks of rows, on every core (NumPy's loops
# release the GIL), each block's temporaries small enough (2 MiB of float64) to stay in the CPU's cache; smaller
# blocks lose more to Python's per-call overhead than they gain (measured on this project's 2-core machine: 2^15
# elements 59 ms, 2^18 24 ms, 2^21 27 ms for log-softmax of 4096 x 1000). Each row's arithmetic is the same whatever
# the blocking. Below BLOCK_ELEMENTS, one block in the calling thread.
BLOCK_ELEMENTS = 1 << 18
WORKERS = os.cpu_count() or 1


def in_leading_blocks(kernel: Callable[..., None], shape: tuple[int, ...], *arrays: F64) -> F64:
    """``kernel(*blocks, out)`` over blocks of the leading axis of ``arrays`` broadcast to ``shape``, into a new
    array: for element-wise work."""
    views = [np.broadcast_to(a, shape) for a in arrays]
    out = np.empty(shape)
    if not shape or out.size <= BLOCK_ELEMENTS:
        kernel(*views, out)
        return out
    step = max(1, BLOCK_ELEMENTS // max(1, out.size // shape[0]))
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda i: kernel(*(v[i : i + step] for v in views), out[i : i + step]), range(0, shape[0], step)))
    return out


def in_row_blocks(kernel: Callable[[F64, F64], None], x: F64, dim: int) -> F64:
    """``kernel(rows, out)`` over blocks of ``x``'s 1-D slices along ``dim`` (each row a slice), into a new array."""
    rows = np.ascontiguousarray(np.moveaxis(x, dim, -1))
    flat = rows.reshape(-1, rows.shape[-1])
    out = np.empty_like(flat)
    step = max(1, BLOCK_ELEMENTS // max(1, flat.shape[1]))
    starts = range(0, flat.shape[0], step)
    if len(starts) == 1:
        kernel(flat, out)
    else:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda i: kernel(flat[i : i + step], out[i : i + step]), starts))
    return np.moveaxis(out.reshape(rows.shape), -1, dim)


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
    # An infinite entry or row leaves lo NaN or inf (one sum finds out): there is no rounding error to carry.
    if not (np.all(np.isfinite(m)) and np.isfinite(np.sum(lo))):
        lo[~np.isfinite(lo)] = 0.0
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

    def kernel(rows: F64, out: F64) -> None:
        shifted, _, others = _exponentials(rows, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.subtract(shifted, np.log1p(others), out=out)

    return in_row_blocks(kernel, x, dim)


def softmax(x: ArrayLike, dim: int) -> F64:
    """softmax(x)_j = e^(x_j - m) / (1 + sum_{k != argmax} e^(x_k - m)), m = max_k x_k."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()

    def kernel(rows: F64, out: F64) -> None:
        _, exps, others = _exponentials(rows, 1)
        with np.errstate(invalid="ignore"):
            np.divide(exps, 1.0 + others, out=out)

    return in_row_blocks(kernel, x, dim)
