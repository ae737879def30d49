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


@dataclass(frozen=True)
class CaseBatch:
    """K cases of one loss that share everything but their values: one shape, one set of keyword arguments, and for
    each array (input, target, and the ``ARRAY_KWARGS`` present) K sets of values, along a first axis of size K.

    A property draws a batch where it used to draw a case: hypothesis's cost of drawing an example is paid once for
    K cases, and the tolerance model's replay bounds all K in one pass (their arrays moved to its last axis)."""

    loss: str
    input: np.ndarray
    target: np.ndarray
    kwargs: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(case: Case) -> CaseBatch:
        """A batch of one: ``case``."""
        kwargs = {name: np.asarray(v)[np.newaxis] if name in ARRAY_KWARGS else v for name, v in case.kwargs.items()}
        return CaseBatch(case.loss, np.asarray(case.input)[np.newaxis], np.asarray(case.target)[np.newaxis], kwargs)

    def __len__(self) -> int:
        return len(self.input)

    def __repr__(self) -> str:
        # Hypothesis prints a failing example's draws: the arrays of 16 cases would run to tens of kB, and the
        # failure's own reproducer holds the failing case exactly.
        return f"<{len(self)} cases of {self.case(0).describe()}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis's printer, which would otherwise print every field

    def case(self, k: int) -> Case:
        # [k, ...] keeps a 0-d case an array (where [k] would give a NumPy scalar).
        kwargs = {name: value[k, ...] if name in ARRAY_KWARGS else value for name, value in self.kwargs.items()}
        return Case(self.loss, self.input[k, ...], self.target[k, ...], kwargs)

    def only(self) -> Case:
        """The one case of a batch of one."""
        assert len(self) == 1, f"a batch of {len(self)} cases, not one"
        return self.case(0)

    def cases_last(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """input, target and keyword arguments with the cases along each array's last axis: a replay's batch."""
        kwargs = {
            name: np.moveaxis(value, 0, -1) if name in ARRAY_KWARGS else value for name, value in self.kwargs.items()
        }
        return np.moveaxis(self.input, 0, -1), np.moveaxis(self.target, 0, -1), kwargs
