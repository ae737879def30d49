"""The three reductions, with the two denominators torch uses for 'mean'."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def reduce(losses: F64, reduction: str, total_weight: F64 | None = None) -> F64:
    """'none' keeps the per-element losses; 'sum' adds them; 'mean' divides the sum by ``total_weight``
    (the summed weights of the counted elements) or, when it is None, by the element count.

    An empty or fully ignored input gives 0 / 0 = NaN for 'mean'; a tiny total weight may overflow to inf.
    """
    if reduction == "none":
        return np.asarray(losses, dtype=np.float64)
    with np.errstate(over="ignore"):  # a sum past float64's range is inf, as it should be
        total = np.sum(losses)
    if reduction == "sum":
        return np.asarray(total)
    denominator = np.float64(losses.size) if total_weight is None else np.sum(total_weight)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.asarray(total / denominator)
