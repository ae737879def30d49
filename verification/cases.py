"""A ``Case``: one call of one loss, with every input as an exact float64 (or integer) array.

The same Case is handed to torch (converted to the dtype under test, where every value is
exactly representable), to the reference and to the tolerance model, and printed as a
reproducer when a property fails.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .dtypes import Dtype

ARRAY_KWARGS = ("weight", "pos_weight")

# How a case's input lies in memory when torch gets it (the values are the same in every one): contiguous; with its
# axes' strides reversed (a transposed buffer, so that the last axis is not the contiguous one); every other element
# of a buffer twice as long along its last axis (stride 2); or its first axis expanded from one entry (stride 0: every
# entry along it equal, drawn so). Kernels take other paths for each (a non-contiguous reduction, a gather over
# strides); torch's results must not depend on it.
MEMORY = ("contiguous", "transposed", "strided", "expanded")


def laid_out(tensor: torch.Tensor, memory: str) -> torch.Tensor:
    """``tensor``'s values, laid out in memory as ``memory`` says (one of MEMORY)."""
    if memory == "contiguous" or tensor.dim() == 0:
        return tensor
    if memory == "transposed":
        reverse = tuple(reversed(range(tensor.dim())))
        return tensor.permute(reverse).contiguous().permute(reverse)
    if memory == "strided":
        buffer = torch.zeros((*tensor.shape[:-1], 2 * tensor.shape[-1]), dtype=tensor.dtype, device=tensor.device)
        buffer[..., ::2] = tensor
        return buffer[..., ::2]
    if memory == "expanded":
        same = (tensor == tensor[:1]) | (tensor.isnan() & tensor[:1].isnan())
        if not bool(same.all()):
            raise ValueError("an expanded input must repeat one entry along its first axis")
        return tensor[:1].expand(tensor.shape)
    raise ValueError(f"unknown memory layout {memory!r}: expected one of {MEMORY}")


@dataclass(frozen=True)
class Case:
    loss: str  # a torch.nn.functional name: "cross_entropy", ...
    input: np.ndarray
    target: np.ndarray
    # Only the keyword arguments that were drawn: an absent key exercises torch's default.
    kwargs: dict[str, Any] = field(default_factory=dict)
    memory: str = "contiguous"  # how the input lies in memory (MEMORY)

    @property
    def has_index_target(self) -> bool:
        return np.issubdtype(self.target.dtype, np.integer)

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
        memory = "" if self.memory == "contiguous" else f" {self.memory}"
        shape = f"input {list(self.input.shape)}{memory}, target {list(self.target.shape)}"
        return f"{self.loss}({shape}{', ' + args if args else ''})"

    def with_kwargs(self, **changes: Any) -> Case:
        return dataclasses.replace(self, kwargs={**self.kwargs, **changes})

    def with_arrays(self, input: np.ndarray, target: np.ndarray, kwargs: dict[str, Any] | None = None) -> Case:
        """This case with other arrays (a smaller one, as the minimiser makes), laid out alike."""
        return dataclasses.replace(self, input=input, target=target, kwargs=self.kwargs if kwargs is None else kwargs)


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
    return laid_out(tensor(case.input), case.memory), tensor(case.target), kwargs


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
    memory: str = "contiguous"  # how every case's input lies in memory (MEMORY)

    @staticmethod
    def of(case: Case) -> CaseBatch:
        """A batch of one: ``case``."""
        kwargs = {name: np.asarray(v)[np.newaxis] if name in ARRAY_KWARGS else v for name, v in case.kwargs.items()}
        input, target = np.asarray(case.input)[np.newaxis], np.asarray(case.target)[np.newaxis]
        return CaseBatch(case.loss, input, target, kwargs, case.memory)

    def laid_out(self, memory: str) -> CaseBatch:
        """These cases with their inputs laid out as ``memory`` says; for "expanded", each input's first axis repeats
        its first entry (a case of rank 0 stays contiguous: it has no axis to expand)."""
        if memory == "contiguous" or self.input.ndim < 2:
            return self
        input = np.repeat(self.input[:, :1], self.input.shape[1], axis=1) if memory == "expanded" else self.input
        return dataclasses.replace(self, input=input, memory=memory)

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
        return Case(self.loss, self.input[k, ...], self.target[k, ...], kwargs, self.memory)

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
