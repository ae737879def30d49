"""How torch adds up n terms on each path, read in its CPU kernels (torch 2.13): the accumulator's precision and the
height of the summation tree, from which a sum's error bound follows (``Tracked.sum``).

The bound (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 4.2): a sum computed by any
tree of additions in which no term passes through more than h of them errs by at most gamma_h * sum |x_i|, with
gamma_h = h u / (1 - h u) and u the accumulator's unit roundoff. The any-order model takes h = n - 1 in the storage
dtype: valid for every order and accumulator at least that precise, and the model an implementation under test
gets when it declares another accumulator (an adapter's ``SUMS_IN_ANY_ORDER``). Torch's own kernels add far fewer
levels, in float32 for float16 and bfloat16 (their "opmath" type), so each path below bounds the height its code
allows (conservatively: every level at its fullest) and says where a partial or the result is rounded to the
storage dtype, each such rounding adding u_storage times the magnitudes it covers.

* ``TENSOR_SUM``: ``Tensor.sum`` and ``Tensor.mean`` (``SumKernel.cpp``, ``cascade_sum``), behind every 'sum' and
  'mean' of BCE, BCEWithLogits, KLDiv, the probability-target and label-smoothing cross-entropy, and autograd's
  sum over broadcast dimensions. float32 accumulators for float16 and bfloat16 (float64 for float64); four
  accumulators per vector lane, each a cascade of four levels whose first three hold at most ``s`` additions each
  (s = 2^max(4, ceil(log2 rows) / 4), rows of four: ``_cascade_height``) and whose last holds the rest; the four
  combined, the lanes added left to right after the scalar tail. Past ``GRAIN_SIZE`` terms the work is split
  between threads and each thread's partial sum is stored in the storage dtype before they are added: one more
  rounding to it, and a height of one more per chunk. The result is rounded once to the storage dtype.
  ``TENSOR_MEAN``: ``Tensor.mean`` (``ReduceOps.cpp``, ``mean_out``) of float16 or bfloat16 casts the input to
  float32, sums it there (per-thread partials included) and divides in float32, then rounds once.
* ``NLL_CASCADE``: NLLLoss's own 'sum' and 'mean' (``LossNLL.cpp``, ``LossNLL2d.cpp``: ``nll_loss_out_frame`` and
  ``nll_loss2d_forward_out_frame``, which K-dimensional inputs are reshaped to), and its total weight. The partial
  sums are ``scalar_t``: the storage dtype, float16 included. Eight levels of 16 (level j flushed into j + 1 every
  16^(j + 1) terms), then the eight added left to right. The one path that accumulates in the storage dtype: its
  float16 partial sums can overflow where the total would not (``partial_sum_overflow``).
* ``SOFTMAX_LAST_DIM``: log-softmax's sum of exponentials along a last dimension (``SoftMaxKernel.cpp``,
  ``_vec_log_softmax_lastdim``), and its backward's sum of gradients. One vector accumulator (two for float16 and
  bfloat16) of float32 lanes (float64 for float64), each lane adding every V-th class left to right, then a
  horizontal reduction; V >= 4 on every instruction set (AVX512: 16 float32, 8 float64; AVX2 and the generic
  build: 8 and 4). The float16 and bfloat16 sum is stored in the storage dtype before its logarithm.
* ``SOFTMAX_OTHER_DIM``: log-softmax along a dimension that is not last (K-dimensional inputs,
  ``_vec_logsoftmax``): each position's classes added left to right in float32 (float64 for float64), kept in
  float32 for the logarithm.

The heights are the CPU kernels'. On another device (``--device cuda``) each path keeps its accumulator and roundings
and is bounded for any order of its additions (``Summation.in_any_order``): CUDA's reductions accumulate float16 and
bfloat16 in float32 too, but in block and warp trees not read here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel_paths import GRAIN_SIZE


def _ceil_log2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 0 else 0


def _cascade_height(n: int) -> int:
    """The height of the sum kernel's tree for n terms: rows of four (its scalar path's rows, which are at least as
    many as its vector path's), three cascade levels of at most s additions and a last of the rest, their three
    merges; the four accumulators' and a leftover vector's merges (4); a scalar tail of up to four 16-element vectors
    and eight lanes, added left to right (72); a final merge (1)."""
    rows = math.ceil(n / 4)
    s = 2 ** max(4, _ceil_log2(rows) // 4)
    return 3 * s + math.ceil(rows / s**3) + 3 + 4 + 72 + 1


def _tensor_sum_height(n: int) -> int:
    # Past the grain, ceil(n / GRAIN_SIZE) chunks at most (one per thread), their partial sums added in turn.
    threads = math.ceil(n / GRAIN_SIZE) if n > GRAIN_SIZE else 0
    return _cascade_height(n) + threads


def _nll_cascade_height(n: int) -> int:
    # Level 0 holds at most 16 terms and each level above at most 16 flushes of the one below; levels up to the one
    # that n reaches (level 7 holds the rest); the first term goes straight to the top (1); eight levels summed (8).
    levels = min(7, math.ceil(math.log(n, 16))) if n > 1 else 0
    return 16 * levels + math.ceil(n / 16**7) + 1 + 8


def _softmax_last_dim_height(n: int) -> int:
    # A lane adds every V-th class (V >= 4), the partial last vector merged in (1); two accumulators merged (1); a
    # horizontal reduction over at most 16 lanes, left to right (16).
    return math.ceil(n / 4) + 1 + 1 + 16


def _left_to_right_height(n: int) -> int:
    return max(n - 1, 0)


@dataclass(frozen=True)
class Summation:
    """One way of adding n terms: the height of its tree, and its accumulator."""

    name: str
    height: Callable[[int], int]
    # float32 accumulators for float16 and bfloat16 (torch's opmath); False: the storage dtype's.
    opmath: bool
    # With opmath: the float32 sum is rounded to the storage dtype (False: it stays float32 for what follows).
    rounds_result: bool = True
    # Past GRAIN_SIZE terms, per-thread partial sums are stored in the storage dtype.
    rounds_partials_past_grain: bool = False

    def rounds_partials(self, n: int) -> bool:
        return self.rounds_partials_past_grain and n > GRAIN_SIZE

    def in_any_order(self) -> Summation:
        """This path's accumulator and roundings, its additions in any order: what another device's kernels (a GPU's
        block reductions, whose trees were not read here) are bounded by."""
        return dataclasses.replace(self, name=f"{self.name}, any order", height=_left_to_right_height)


ANY_ORDER = Summation("any order in the storage dtype", _left_to_right_height, opmath=False)
TENSOR_SUM = Summation("Tensor.sum", _tensor_sum_height, opmath=True, rounds_partials_past_grain=True)
# Tensor.mean of float16 and bfloat16 casts the input to float32 first: every partial sum stays float32, and the sum
# is divided in float32 before the one rounding to the storage dtype (forward.tensor_mean).
TENSOR_MEAN = Summation("Tensor.mean", _tensor_sum_height, opmath=True, rounds_result=False)
NLL_CASCADE = Summation("NLLLoss's cascade", _nll_cascade_height, opmath=False)
SOFTMAX_LAST_DIM = Summation("log-softmax along the last dimension", _softmax_last_dim_height, opmath=True)
SOFTMAX_OTHER_DIM = Summation(
    "log-softmax along another dimension", _left_to_right_height, opmath=True, rounds_result=False
)
