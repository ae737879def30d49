"""Numerically stable building blocks, in float64.

None of these forms ever evaluates ``exp`` of a positive number, so none overflows; the
logarithms are taken through ``log1p`` of the small part (log-sum-exp as log1p of the classes
other than the maximum), so none loses relative accuracy near the values where the naive
formula cancels. Their accuracy is checked against an mpmath oracle in
tests/test_reference_oracle.py.
"""

from __future__ import annotations

import os
import threading
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


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> ThreadPoolExecutor:
    """One pool of WORKERS threads for the process, kept from call to call (with its threads' work arrays); a new
    one after a fork, whose child has none of its parent's threads."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(WORKERS, thread_name_prefix="reference-block"))
    return _pool[1]


def in_leading_blocks(kernel: Callable[..., None], shape: tuple[int, ...], *arrays: F64) -> F64:
    """``kernel(*blocks, out)`` over blocks of the leading axis of ``arrays`` broadcast to ``shape``, into a new
    array: for element-wise work."""
    views = [np.broadcast_to(a, shape) for a in arrays]
    out = np.empty(shape)
    if not shape or out.size <= BLOCK_ELEMENTS:
        kernel(*views, out)
        return out
    step = max(1, BLOCK_ELEMENTS // max(1, out.size // shape[0]))
    list(
        _threads().map(lambda i: kernel(*(v[i : i + step] for v in views), out[i : i + step]), range(0, shape[0], step))
    )
    return out


def _over_blocks(work: Callable[[int], None], n_rows: int, step: int) -> None:
    """``work(start)`` for each block of ``step`` rows: in the calling thread when there is one block, else on
    every core."""
    starts = range(0, n_rows, step)
    if len(starts) == 1:
        work(0)
    elif starts:
        list(_threads().map(work, starts))


def _as_rows(x: F64, dim: int) -> tuple[F64, F64]:
    """``x`` with ``dim`` moved last (contiguous), and the same as a 2-D array of rows."""
    rows = np.ascontiguousarray(np.moveaxis(x, dim, -1))
    return rows, rows.reshape(-1, rows.shape[-1])


def in_row_blocks(kernel: Callable[[F64, F64], None], x: F64, dim: int) -> F64:
    """``kernel(rows, out)`` over blocks of ``x``'s 1-D slices along ``dim`` (each row a slice), into a new array."""
    rows, flat = _as_rows(x, dim)
    out = np.empty_like(flat)
    step = max(1, BLOCK_ELEMENTS // max(1, flat.shape[1]))
    _over_blocks(lambda i: kernel(flat[i : i + step], out[i : i + step]), flat.shape[0], step)
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


_scratch = threading.local()


def _scratch_buffers(shape: tuple[int, ...], count: int) -> list[F64]:
    """``count`` float64 work arrays of ``shape``, kept per thread and reused from call to call: a fresh multi-MiB
    array costs a page fault per 4 KiB on first touch, which made allocation the largest cost of log-softmax."""
    size = int(np.prod(shape))
    pool: list[F64] = getattr(_scratch, "pool", [])
    if len(pool) < count or pool[0].size < size:
        pool = [np.empty(max(size, pool[0].size if pool else 0)) for _ in range(count)]
        _scratch.pool = pool
    return [buffer[:size].reshape(shape) for buffer in pool[:count]]


def _exponentials(rows: F64, hi: F64, exps: F64, scratch: F64, want_exps: bool = True) -> F64:
    """For each row of ``rows`` (a 2-D block), with m its maximum: writes hi = fl(rows - m) and, if ``want_exps``,
    exps = e^(rows - m); returns the sum of e^(rows - m) over every class but the first maximum, of shape
    (rows, 1). ``exps`` and ``scratch`` are work arrays of the same shape.

    x - m is carried exactly (log-sum-exp trick: every exponent is <= 0, so nothing overflows): hi = fl(x - m)
    and lo its rounding error (TwoSum), hi + lo = x - m, and e^hi (1 + lo) is e^(hi + lo) to within u^2 since
    |lo| <= u |hi|. Carrying lo matters in the softmax tails: exp magnifies an absolute error of u |x - m| in its
    argument into a relative error of the same size.

    The maximum's own term is exactly 1, so the normaliser is 1 + others, and its log is log1p(others):
    accurate to a few ulps even where others is tiny (a target class with probability near 1). A row whose
    maximum is +inf, NaN, or -inf (every entry -inf) has no finite normaliser: its others is NaN, as in torch.
    (Written with in-place operations into reused buffers, the products summed as they are formed: the
    reference must stay within a few times torch's speed on large inputs.)
    """
    # The first maximum, and m read from it: one pass fewer than a separate max (the same value, NaN included).
    first = (np.arange(rows.shape[0]), np.argmax(rows, axis=1))  # an index: row, column
    m = rows[first][:, None]
    others = _sum_of_others(rows, m, first, hi, exps, scratch, want_exps, finite_lo=False)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(others))):
        # An infinite entry or row leaves lo NaN or inf: there is no rounding error to carry. (With m and every
        # sum finite, every lo was finite: a non-finite lo makes its own term, and so the sum, non-finite.)
        others = _sum_of_others(rows, m, first, hi, exps, scratch, want_exps, finite_lo=True)
    return np.where(np.isfinite(m), others, np.nan)


def _sum_of_others(
    rows: F64,
    m: F64,
    first: tuple[NDArray[np.intp], NDArray[np.intp]],
    hi: F64,
    exps: F64,
    scratch: F64,
    want_exps: bool,
    finite_lo: bool,
) -> F64:
    """The body of _exponentials; with ``finite_lo``, a non-finite rounding error lo is taken as 0."""
    lo = exps  # exps holds lo, then 1 + lo, until the exponentials are formed
    with np.errstate(invalid="ignore", over="ignore"):  # -largest - largest is -inf: its exp is 0, as it should be
        np.subtract(rows, m, out=hi)
        rebuilt = np.add(hi, m, out=scratch)  # TwoSum: lo = (x - rebuilt) + (-m - (hi - rebuilt))
        np.subtract(hi, rebuilt, out=lo)
        np.subtract(-m, lo, out=lo)
        np.subtract(rows, rebuilt, out=rebuilt)
        np.add(rebuilt, lo, out=lo)
        if finite_lo:
            lo[~np.isfinite(lo)] = 0.0
        np.add(lo, 1.0, out=lo)
        lo[first] = 0.0  # the first maximum's term is left out of the sum
        exp_hi = np.exp(hi, out=scratch)
        # sum_k e^hi_k (1 + lo_k) in one pass (a sum in some order: the error bound of any order is gamma_{C-2}).
        others = np.einsum("ij,ij->i", exp_hi, lo)[:, None]
        if want_exps:
            np.multiply(exp_hi, lo, out=exps)
            exps[first] = 1.0  # the maximum's own term, exactly
    return _f64(others)


def log_softmax(x: ArrayLike, dim: int) -> F64:
    """log_softmax(x)_j = (x_j - m) - log1p(sum_{k != argmax} e^(x_k - m)), m = max_k x_k.

    A row holding +inf, or only -inf, has no finite answer and gives NaN, as in torch.
    """
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()

    def kernel(rows: F64, out: F64) -> None:
        exps, scratch = _scratch_buffers(rows.shape, 2)
        others = _exponentials(rows, out, exps, scratch, want_exps=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.subtract(out, np.log1p(others), out=out)

    return in_row_blocks(kernel, x, dim)


def log_softmax_at(x: ArrayLike, dim: int, index: NDArray[np.int64]) -> F64:
    """log_softmax(x, dim) taken at ``index`` along ``dim`` (``index`` has x's shape with size 1 at ``dim``), without
    forming the whole log-softmax: cross-entropy's path for class-index targets. The same arithmetic as
    log_softmax, to the bit: (x_j - m) - log1p(others) at j = index."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return np.full(np.shape(index), np.nan)  # no class to read (every target is ignored, or one raised)
    rows, flat = _as_rows(x, dim)
    picks = np.moveaxis(np.asarray(index), dim, -1).reshape(-1)
    out = np.empty((flat.shape[0], 1))
    step = max(1, BLOCK_ELEMENTS // flat.shape[1])

    def work(start: int) -> None:
        block = flat[start : start + step]
        hi, exps, scratch = _scratch_buffers(block.shape, 3)
        others = _exponentials(block, hi, exps, scratch, want_exps=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            picked = hi[np.arange(block.shape[0]), picks[start : start + step]][:, None]
            np.subtract(picked, np.log1p(others), out=out[start : start + step])

    _over_blocks(work, flat.shape[0], step)
    return np.moveaxis(out.reshape(*rows.shape[:-1], 1), -1, dim)


def softmax(x: ArrayLike, dim: int) -> F64:
    """softmax(x)_j = e^(x_j - m) / (1 + sum_{k != argmax} e^(x_k - m)), m = max_k x_k."""
    x = _f64(x)
    if x.shape[dim] == 0:
        return x.copy()

    def kernel(rows: F64, out: F64) -> None:
        hi, scratch = _scratch_buffers(rows.shape, 2)
        others = _exponentials(rows, hi, out, scratch)
        with np.errstate(invalid="ignore"):
            np.divide(out, 1.0 + others, out=out)

    return in_row_blocks(kernel, x, dim)
