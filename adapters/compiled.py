"""torch.compile: each loss compiled by TorchDynamo and inductor for the CPU, which generates and builds C++ (a
C++ compiler must be on the PATH: ``g++`` or whatever ``CXX`` names).

``torch.compile(torch.nn.functional.<loss>, dynamic=True, fullgraph=True)`` with inductor behind a backend that
counts: every graph it compiles and every run of compiled code. Each call checks that compiled code ran; a call
that ran eagerly (dynamo's fall back when a recompile limit is hit, or a graph break) raises ``AdapterError``
instead of verifying torch's eager kernels under this adapter's name. ``fullgraph=True`` makes a graph break an
error, ``fail_on_recompile_limit_hit`` makes the limit an error, and the limits are raised far above what a run
reaches, since every new combination of dtype, rank, argument set and reduction is a new graph.

The gradient is AOTAutograd's compiled backward of the same graph.

Compilation dominates the cost: a new graph takes about 2 s here (most of it building C++), a graph found in
inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``; ``nox -s matrix`` keeps it under ``.cache/``) about 0.15 s.
``dynamic=True`` keeps sizes symbolic, so a new size is mostly no new graph; sizes 0 and 1 are still specialised.
``COUNTS`` reports both numbers for the run.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch._dynamo
import torch.nn.functional as F
from torch._inductor.compile_fx import compile_fx

from . import AdapterError, nll_decompositions

torch._dynamo.config.recompile_limit = 1_000_000
torch._dynamo.config.accumulated_recompile_limit = 1_000_000
torch._dynamo.config.fail_on_recompile_limit_hit = True

COUNTS: Counter[str] = Counter()

UNSUPPORTED: dict[str, str] = {}


def _counting_inductor(graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    COUNTS["graphs compiled"] += 1
    compiled = compile_fx(graph, example_inputs)

    def run(*args: Any) -> Any:
        COUNTS["compiled runs"] += 1
        return compiled(*args)

    return run


def compiled_function(loss: str, function: Callable[..., torch.Tensor] | None = None) -> Callable[..., torch.Tensor]:
    """``function`` (default: torch.nn.functional.<loss>) compiled, behind torch's functional signature, raising
    ``AdapterError`` on a call that ran no compiled code."""
    compiled = torch.compile(function or getattr(F, loss), backend=_counting_inductor, dynamic=True, fullgraph=True)

    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        runs = COUNTS["compiled runs"]
        result: torch.Tensor = compiled(input, target, **kwargs)
        if COUNTS["compiled runs"] == runs:
            raise AdapterError(f"compiled {loss} ran eagerly: no compiled graph was called")
        return result

    call.__name__ = call.__qualname__ = loss
    call.__doc__ = f"torch.compile(torch.nn.functional.{loss}, dynamic=True, fullgraph=True), inductor on the CPU."
    return call


binary_cross_entropy = compiled_function("binary_cross_entropy")
binary_cross_entropy_with_logits = compiled_function("binary_cross_entropy_with_logits")
nll_loss = compiled_function("nll_loss")
cross_entropy = compiled_function("cross_entropy")
kl_div = compiled_function("kl_div")

LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy", "kl_div")

# Sums are bounded for any order in the storage dtype (the tolerance model's documented looser model): inductor
# generates its own reduction loops (its own split of the terms, float32 accumulators for float16 and bfloat16), not
# the eager kernels' whose order verification/tolerance/summation.py bounds.
SUMS_IN_ANY_ORDER = True


# ---------------------------------------------------------------------------------------------
# Named divergences: torch.compile rejects none of the defects of verification/rejections.py as torch's eager
# kernels do. What torch's argument checks raise while dynamo traces the call (shapes, dtypes, the reduction
# string) comes out as dynamo's TorchRuntimeError, a subclass of RuntimeError whose cause is torch's exception; what
# the eager kernels check on values the compiled graph computes; and a class index out of range meets the bounds
# check inductor generates, a RuntimeError. The rejection property leaves each defect out under its name;
# test_compiled_code_does_not_reject_as_torch_does asserts, defect by defect, that one input is still handled so.
# ---------------------------------------------------------------------------------------------

_WRAPPED = (
    "dynamo raises torch's own check, failing while it traces the call, as TorchRuntimeError (a RuntimeError "
    "subclass) (test_compiled_code_does_not_reject_as_torch_does)"
)
_COMPUTES = (
    "the compiled graph checks no values or dtypes and computes the call "
    "(test_compiled_code_does_not_reject_as_torch_does)"
)
_INDEX_CHECK = (
    "inductor's generated bounds check raises RuntimeError ('index out of bounds'), not IndexError "
    "(test_compiled_code_does_not_reject_as_torch_does)"
)
REJECTION_DIVERGENCES = {
    "binary_cross_entropy: an unknown reduction string": _WRAPPED,
    "binary_cross_entropy: a target shape that differs from the input's": _WRAPPED,
    "binary_cross_entropy: a weight that does not broadcast to the target": _WRAPPED + "; " + _COMPUTES,
    "binary_cross_entropy: a weight that would enlarge the output": _COMPUTES,
    "binary_cross_entropy: an input outside [0, 1] (NaN included)": _COMPUTES,
    "binary_cross_entropy: a target outside [0, 1] (NaN included)": _COMPUTES,
    "binary_cross_entropy: a target of another dtype than the input": _COMPUTES,
    "binary_cross_entropy_with_logits: an unknown reduction string": _WRAPPED,
    "binary_cross_entropy_with_logits: a target shape that differs from the input's": _WRAPPED,
    "binary_cross_entropy_with_logits: a weight that does not broadcast to the target": _WRAPPED + "; " + _COMPUTES,
    "binary_cross_entropy_with_logits: a weight that would enlarge the output": _COMPUTES,
    "binary_cross_entropy_with_logits: a pos_weight that does not broadcast to the target": _WRAPPED + "; " + _COMPUTES,
    "binary_cross_entropy_with_logits: a pos_weight that would enlarge the output": _COMPUTES,
    "nll_loss: an unknown reduction string": _WRAPPED,
    "nll_loss: a 0-dimensional input": _WRAPPED,
    "nll_loss: a target batch size that differs from the input's": _WRAPPED,
    "nll_loss: a class index outside [0, C) that is not ignore_index": _WRAPPED + "; " + _INDEX_CHECK,
    "nll_loss: class weights of the wrong size or rank": _WRAPPED + "; " + _COMPUTES,
    "nll_loss: class weights of another dtype than the input": _WRAPPED + "; " + _COMPUTES,
    "nll_loss: an index target that is neither int64 nor uint8": _WRAPPED,
    "nll_loss: a 2-dimensional target for an (N, C) input": _WRAPPED,
    "nll_loss: a K-dimensional target whose extra sizes differ from the input's": _WRAPPED,
    "nll_loss: an unbatched input with a target of more than one class": _WRAPPED,
    "nll_loss: a uint8 target for a K-dimensional input": _WRAPPED,
    "cross_entropy: an unknown reduction string": _WRAPPED,
    "cross_entropy: a 0-dimensional input": _WRAPPED,
    "cross_entropy: a target batch size that differs from the input's": _WRAPPED,
    "cross_entropy: a class index outside [0, C) that is not ignore_index": _WRAPPED + "; " + _INDEX_CHECK,
    "cross_entropy: class weights of the wrong size or rank": _WRAPPED + "; " + _COMPUTES,
    "cross_entropy: class weights of another dtype than the input": _WRAPPED + "; " + _COMPUTES,
    "cross_entropy: an index target that is neither int64 nor uint8": _WRAPPED,
    "cross_entropy: a 2-dimensional target for an (N, C) input": _WRAPPED,
    "cross_entropy: a K-dimensional target whose extra sizes differ from the input's": _WRAPPED,
    "cross_entropy: an unbatched input with a target of more than one class": _WRAPPED,
    "cross_entropy: a uint8 target for a K-dimensional input": _WRAPPED,
    "cross_entropy: label_smoothing above 1": _WRAPPED,
    "cross_entropy: probability targets with an ignore_index >= 0": _WRAPPED,
    "cross_entropy: an integer target of the input's shape (read as probabilities)": _WRAPPED,
    "cross_entropy: label smoothing with a K-dimensional input and a (1, C) weight": _WRAPPED,
    "cross_entropy: probability targets with class weights of the wrong size": _WRAPPED,
    "kl_div: an unknown reduction string": _WRAPPED,
    "kl_div: an integral input": _WRAPPED,
    "kl_div: an input and a target whose shapes do not broadcast": _WRAPPED,
}


# ---------------------------------------------------------------------------------------------
# Named divergences on valid calls: inductor lowers NLL through torch's decompositions of nll_loss_forward and
# nll_loss_backward (adapters/decomposed.py runs them; adapters/nll_decompositions.py says where they differ), and
# compiled code inherits what those do otherwise than the eager kernels. Found by the compile column's first float32
# run; each has a test in tests/adapters/test_compiled.py asserting compiled code's actual behaviour, and the rules
# below leave out the cases they cover, by name.
# ---------------------------------------------------------------------------------------------


def known_divergence(case: Any, dtype: Any = None) -> str | None:
    if _float16_divisor(case, dtype, backward=False) >= FLOAT16_OVERFLOW:
        return _COUNT_IN_FLOAT16.format(what="value")
    if nll_decompositions.uint8_class_indices(case):
        return (
            "compiled code gathers with a uint8 class-index target, which gather rejects while dynamo traces the "
            "call (test_uint8_class_indices_raise_under_compile)"
        )
    if nll_decompositions.unbatched_input_with_target_of_shape_1(case):
        return (
            "compiled code raises 'size mismatch' for an unbatched input (C,) with a (1,) target "
            "(test_unbatched_input_with_a_target_of_shape_1_raises_under_compile)"
        )
    if nll_decompositions.class_weights_not_1_dimensional(case):
        return (
            "compiled code reshapes class weights as if 1-dimensional and raises for C weights of another shape "
            "(test_class_weights_not_1_dimensional_raise_under_compile)"
        )
    return None


# Found by the compile column's float16 large inputs. Not one of the decompositions' (adapters/decomposed.py runs
# the same decompositions op by op and divides as the eager kernels do): inductor's own lowering of the division.
FLOAT16_OVERFLOW = 65520  # float16 rounds a count of 65520 or more to inf (65504 is its largest value)
_COUNT_IN_FLOAT16 = (
    "compiled float16 code divides by a count of 65520 or more held in float16, which is inf, so the {what} is 0 "
    "where torch's eager kernels divide in float32 (test_a_float16_mean_over_65520_or_more_is_0_under_compile)"
)


def _float16_divisor(case: Any, dtype: Any, *, backward: bool) -> int:
    """The count compiled code divides by in float16 for ``case`` (0 where it divides by none, or not in float16):
    the positions of a cross-entropy 'mean' over probability targets and the batch of a KL 'batchmean', forward and
    backward; the elements of a BCEWithLogits or KL 'mean', in the backward only (the forward divides in float32)."""
    reduction = case.kwargs.get("reduction", "mean")
    if str(dtype) != "float16" or np.size(case.input) == 0:
        return 0
    shape = np.shape(case.input)
    if case.loss == "kl_div" and reduction == "batchmean":
        return int(shape[0]) if shape else 1
    if (
        case.loss == "cross_entropy"
        and reduction == "mean"
        and np.issubdtype(np.asarray(case.target).dtype, np.floating)
    ):
        return int(np.size(case.input)) // int(shape[1]) if len(shape) > 1 else 1  # unbatched (C,): one position
    if backward and case.loss in ("binary_cross_entropy_with_logits", "kl_div") and reduction == "mean":
        return int(np.prod(np.broadcast_shapes(shape, np.shape(case.target))))
    return 0


def known_gradient_divergence(case: Any, dtype: Any = None) -> str | None:
    if _float16_divisor(case, dtype, backward=True) >= FLOAT16_OVERFLOW:
        return _COUNT_IN_FLOAT16.format(what="gradient")
    if nll_decompositions.total_weight_is_0(case):
        return (
            "compiled NLL backward divides every element's gradient by a total weight of 0, giving NaN off the "
            "target where the eager kernel gives 0 (test_nll_gradient_is_nan_off_the_target_where_the_total_weight_"
            "is_0_under_compile)"
        )
    return known_divergence(case, dtype)


def versions() -> dict[str, str]:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or "none found"
    return {"torch": torch.__version__, "c++ compiler": compiler, "vector instructions": _vector_instructions()}


def _vector_instructions() -> str:
    """The instruction set inductor generates C++ for (avx512, avx2, ...; INVALID_VEC_ISA: none, as under
    ATEN_CPU_CAPABILITY=default): the compiled kernels' vector width and their exp and log depend on it."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa  # private: it has moved between releases
    except ImportError:
        return "unknown"
    return str(pick_vec_isa())
