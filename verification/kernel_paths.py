"""The sizes at which torch's CPU kernels change their code path, read in torch's source (torch 2.13), and the large
inputs drawn at, below and above them (``strategies.large_binary_shapes``, ``strategies.large_categorical_shapes``).

Every ordinary case is small (``strategies.MAX_BATCH`` and friends: a few hundred elements at most), so every
reduction it checks runs on one thread through the scalar or single-block path. The kernels' other paths are
reached only by size:

* ``GRAIN_SIZE`` (``at::internal::GRAIN_SIZE``, 32768 elements): ``parallel_reduce`` and ``parallel_for`` split
  work between threads only past it; a full reduction then sums per-thread partial sums, which the sum kernel stores
  in the output's dtype (``TensorIteratorReduce.cpp``, ``two_pass_reduction``). Exactly 32768 elements still runs
  as one chunk.
* The sum kernel's vectors (``SumKernel.cpp``, compiled for AVX2 even on AVX512 machines): 8 float32 lanes, 4
  float64, 16 float16 or bfloat16 values loaded as two float32 vectors; four accumulators per lane; and a cascade of
  four levels whose first-level block is ``2^max(4, ceil(log2 rows) / 4)`` rows: 16 up to 2^19 rows, then 32.
* The categorical losses' class dimension: log-softmax vectorises along the classes when they are the last
  dimension and across the positions otherwise; the vector widths above, and the sizes of a few vectors, are where
  its loops change shape.

``LARGE_SIZES`` are the element counts a large case is drawn near; ``LARGEST_FIRST`` is hypothesis's simplest
choice, so the first example of every large property (hypothesis runs the simplest example first) has at least
``REQUIRED_ELEMENTS`` elements, and its categorical cases at least ``REQUIRED_CLASSES`` classes: the sizes the
evidence report must show reached for every loss and dtype.
"""

from __future__ import annotations

GRAIN_SIZE = 32768

# Vector widths of the sum kernel (AVX2), and AVX512's, in elements of each dtype: a class count or a last dimension
# at, one below and one above each changes how many elements the vector loops take and how many the scalar tail.
VECTOR_WIDTHS = (4, 8, 16, 32, 64)

REQUIRED_ELEMENTS = 2**20
REQUIRED_CLASSES = 2**15

# Element counts drawn exactly (the others log-uniform between SMALLEST and LARGEST).
LARGEST_FIRST = REQUIRED_ELEMENTS + 1
LARGE_SIZES = (
    LARGEST_FIRST,
    GRAIN_SIZE - 1,
    GRAIN_SIZE,
    GRAIN_SIZE + 1,
    2 * GRAIN_SIZE + 7,
    REQUIRED_ELEMENTS,
    2**22,
)
SMALLEST = GRAIN_SIZE // 2
LARGEST = 2**22 + 2**10

# A class count or last dimension at, one below and one above each vector width.
AROUND_VECTOR_WIDTHS = tuple(c + d for c in VECTOR_WIDTHS for d in (-1, 0, 1))

# Class counts drawn exactly for the categorical losses' large cases with many classes (the first is the simplest
# choice).
CLASS_COUNTS = (REQUIRED_CLASSES + 1, REQUIRED_CLASSES, REQUIRED_CLASSES - 1, *AROUND_VECTOR_WIDTHS, 2**16 + 3)
