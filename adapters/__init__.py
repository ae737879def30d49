"""Adapters: the implementations these losses really run through, each behind torch's functional signature.

An adapter is a module that defines, for each loss its implementation has, a function named like torch's
(``cross_entropy(input, target, **kwargs) -> Tensor``) that computes the loss with that implementation and
nothing else: torch's decompositions (``adapters.decomposed``), torch.compile with inductor
(``adapters.compiled``), a port to JAX (``adapters.jax_port``), ONNX's own loss operators and torch's ONNX export,
both run by onnxruntime (``adapters.onnx_operators``, ``adapters.onnx_export``). ``--impl NAME`` aims every value,
gradient and rejection property at an adapter's functions; ``nox -s matrix`` runs every adapter and writes the
matrix of verdicts.

Each adapter checks, on every call, that its implementation really ran (a compiled function that fell back to
eager, a decomposition that let the eager loss kernel run, is an ``AdapterError``, never a silent pass), and
declares what its implementation lacks by raising ``Unsupported`` with the reason: for an argument, the case is
left out with that reason counted in the report; for a whole check (a dtype, or the backward pass), the check
is skipped with that reason and the matrix says UNSUPPORTED. An adapter never raises ``Unsupported`` for what it
could compute: the reasons are fixed in each adapter's ``UNSUPPORTED`` table, and a property whose every case was
left out as unsupported is skipped as UNSUPPORTED (``verification.ledger.left_out_by_the_implementation``), never
passed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module; the names are what --impl and the matrix call them.
ADAPTERS = {
    "decompositions": "adapters.decomposed",
    "compile": "adapters.compiled",
    "jax": "adapters.jax_port",
    "onnxruntime-operators": "adapters.onnx_operators",
    "onnxruntime-export": "adapters.onnx_export",
}


class Unsupported(Exception):
    """The implementation lacks what this call asks for. ``whole``: the whole check (a dtype, the backward pass)
    rather than one argument's value."""

    def __init__(self, reason: str, *, whole: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.whole = reason, whole


class AdapterError(RuntimeError):
    """The adapter did not exercise its implementation (it fell back to torch's eager kernels): a defect of the
    adapter, reported as a failure."""


def load(name: str) -> ModuleType:
    """The adapter module called ``name`` (a key of ADAPTERS)."""
    if name not in ADAPTERS:
        raise ValueError(f"no adapter {name!r}; the adapters are {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[name])
