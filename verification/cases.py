"""A ``Case``: one call of one loss, with every input as an exact float64 (or integer) array.

The same Case is handed to torch (converted to the dtype under test, where every value is
exactly representable), to the reference and to the tolerance model, and printed as a
reproducer when a property fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .dtypes import Dtype

ARRAY_KWARGS = ("weight", "pos_weight")


@dataclass(frozen=True)
class Case:
    loss: str  # a torch.nn.functional name: "cross_entropy", ...
    input: np.ndarray
    target: np.ndarray
    # Only the keyword arguments that were drawn: an absent key exercises torch's default.
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def has_index_target(self) -> bool:
        return np.issubdtype(self.target.dtype, np.integer)

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
        shape = f"input {list(self.input.shape)}, target {list(self.target.shape)}"
        return f"{self.loss}({shape}{', ' + args if args else ''})"

    def with_kwargs(self, **changes: Any) -> Case:
        return Case(self.loss, self.input, self.target, {**self.kwargs, **changes})


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<{value.dtype} {list(value.shape)}>"
    return repr(value)


def to_torch(case: Case, dtype: Dtype, device: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The Case's arguments as tensors: float64 arrays in ``dtype``, any other array as it is.

    (Error-parity cases use a float32 array among float64 ones to stand for "a different dtype".)
    """

    def tensor(array: np.ndarray) -> torch.Tensor:
        if array.dtype == np.float64:
            return torch.as_tensor(array).to(device=device, dtype=dtype.torch)
        return torch.as_tensor(array).to(device)

    kwargs = {k: tensor(v) if k in ARRAY_KWARGS else v for k, v in case.kwargs.items()}
    return tensor(case.input), tensor(case.target), kwargs
