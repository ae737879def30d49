"""The reference's speed machinery, kept apart so that each loss reads like its formula.

The reference must stay within a few times torch's speed on large inputs (benchmarks/run.py measures the ratio).
What each piece here buys, and why none of them changes a result's bits:

* Blocking (``in_leading_blocks``, ``in_row_blocks``, ``in_row_blocks_at``): large inputs are processed in blocks
  of rows, each block's temporaries small enough (BLOCK_ELEMENTS float64, 2 MiB) to stay in the CPU's cache.
  Element-wise work reads nothing outside its element, and a row's reductions (its maximum, its sum) run inside
  the one block that holds the row, so each element's and each row's arithmetic is the same whatever the blocking.
* The thread pool (``_threads``): blocks run on every core, since NumPy's loops release the GIL. One pool serves
  the process, kept from call to call; a forked child, which has none of its parent's threads, builds its own.
  Each block writes only its own slice of the output, so which thread runs it, and when, is invisible.
* Work arrays (``_work_arrays``): float64 buffers kept per thread and reused from call to call, since a fresh
  multi-MiB array costs a page fault per 4 KiB on first touch, which would be the largest cost of log-softmax.
  Every element of a work array is written before it is read, so what a buffer held before never reaches a result;
  each thread has its own, so blocks running at once never share one.
* ``shift_by_row_max``: log-sum-exp's shift x - m, carried exactly by TwoSum, and the sum of the other classes'
  exponentials. This is the arithmetic of log-softmax and softmax itself, not a shortcut around it; it lives here
  because it is written for speed (in place, into work arrays, its products summed as they are formed). Its one
  liberty: np.einsum adds a row's products in an order of its own choosing (the error bound of any order is
  gamma_{C-2}); tests/test_reference_fast_paths.py checks that the order does not vary with the blocking.
* ``gather_along``: values at one index along an axis, as one gather from the flat array: indexing, no arithmetic.

tests/test_reference_fast_paths.py compares each of these with the plain computation bit for bit, with blocks
forced down to a single element so that small drawn inputs span many blocks, a partial last block and the pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

# Blocks of 2^18 elements: smaller blocks lose more to Python's per-call overhead than they gain (measured on this
# project's 2-core machine: 2^15 elements 59 ms, 2^18 24 ms, 2^21 27 ms for log-softmax of 4096 x 1000). Below
# BLOCK_ELEMENTS, one block in the calling thread.
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


def in_row_blocks_at(kernel: Callable[[F64, NDArray[Any], F64], None], x: F64, dim: int, index: NDArray[Any]) -> F64:
    """``kernel(rows, picks, out)`` over blocks of ``x``'s 1-D slices along ``dim``, ``picks`` each row's entry of
    ``index`` (x's shape with size 1 at ``dim``) and ``out`` one column, into a new array of ``index``'s shape.
    ``x`` must have at least one entry along ``dim``."""
    rows, flat = _as_rows(x, dim)
    picks = np.moveaxis(np.asarray(index), dim, -1).reshape(-1)
    out = np.empty((flat.shape[0], 1))
    step = max(1, BLOCK_ELEMENTS // flat.shape[1])
    _over_blocks(lambda i: kernel(flat[i : i + step], picks[i : i + step], out[i : i + step]), flat.shape[0], step)
    return np.moveaxis(out.reshape(*rows.shape[:-1], 1), -1, dim)


_scratch = threading.local()


def _work_arrays(shape: tuple[int, ...], count: int) -> list[F64]:
    """``count`` float64 work arrays of ``shape``, kept per thread and reused from call to call."""
    size = int(np.prod(shape))
    pool: list[F64] = getattr(_scratch, "pool", [])
    if len(pool) < count or pool[0].size < size:
        pool = [np.empty(max(size, pool[0].size if pool else 0)) for _ in range(count)]
        _scratch.pool = pool
    return [buffer[:size].reshape(shape) for buffer in pool[:count]]


def shift_by_row_max(rows: F64, shifted: F64 | None = None, exps: F64 | None = None) -> tuple[F64, F64]:
    """For each row of ``rows`` (a 2-D block), with m its maximum: (hi, others), where hi = fl(rows - m) and
    others, of shape (rows, 1), is the sum of e^(rows - m) over every class but the first maximum. hi is written
    into ``shifted`` when given (else into a work array); with ``exps``, e^(rows - m) is written there too.

    x - m is carried exactly (log-sum-exp trick: every exponent is <= 0, so nothing overflows): hi = fl(x - m)
    and lo its rounding error (TwoSum), hi + lo = x - m, and e^hi (1 + lo) is e^(hi + lo) to within u^2 since
    |lo| <= u |hi|. Carrying lo matters in the softmax tails: exp magnifies an absolute error of u |x - m| in its
    argument into a relative error of the same size.

    The maximum's own term is exactly 1, so the normaliser is 1 + others, and its log is log1p(others):
    accurate to a few ulps even where others is tiny (a target class with probability near 1). A row whose
    maximum is +inf, NaN, or -inf (every entry -inf) has no finite normaliser: its others is NaN, as in torch.
    """
    buffers = iter(_work_arrays(rows.shape, 1 + (shifted is None) + (exps is None)))
    hi = next(buffers) if shifted is None else shifted
    lo_then_exps = next(buffers) if exps is None else exps
    scratch = next(buffers)
    want_exps = exps is not None
    # The first maximum, and m read from it: one pass fewer than a separate max (the same value, NaN included).
    first = (np.arange(rows.shape[0]), np.argmax(rows, axis=1))  # an index: row, column
    m = rows[first][:, None]
    others = _sum_of_others(rows, m, first, hi, lo_then_exps, scratch, want_exps, finite_lo=False)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(others))):
        # An infinite entry or row leaves lo NaN or inf: there is no rounding error to carry. (With m and every
        # sum finite, every lo is finite: a non-finite lo makes its own term, and so the sum, non-finite.)
        others = _sum_of_others(rows, m, first, hi, lo_then_exps, scratch, want_exps, finite_lo=True)
    return hi, np.where(np.isfinite(m), others, np.nan)


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
    """The body of shift_by_row_max; with ``finite_lo``, a non-finite rounding error lo is taken as 0."""
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
    return np.asarray(others, dtype=np.float64)


def gather_along(values: F64, index: NDArray[np.int64], axis: int) -> F64:
    """values[..., index, ...] along ``axis``, for every position of ``index`` (``values``' shape without
    ``axis``; ``values`` must have at least one entry along it), as one gather from the flat array: position (n, r)
    of a (lead, C, rest) layout reads n C R + y R + r."""
    v = np.ascontiguousarray(values)
    lead, n_classes, rest = (
        int(np.prod(v.shape[:axis])),
        v.shape[axis],
        int(np.prod(v.shape[axis + 1 :])),
    )
    offsets = np.arange(lead)[:, None] * (n_classes * rest) + np.arange(rest)[None, :]
    flat_index = index.reshape(lead, rest) * rest + offsets
    return np.asarray(v.reshape(-1)[flat_index].reshape(index.shape), dtype=np.float64)
