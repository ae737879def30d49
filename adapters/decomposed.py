"""torch's decompositions: each loss computed by the Python decompositions that torch.export and the compilers
lower it to, op by op, instead of by torch's eager loss kernels.

The loss is called through ``torch.nn.functional`` as a user would. Below autograd, every ATen op it reaches
that has a decomposition in ``TABLE`` runs that decomposition instead of its kernel, recursively (an op a
decomposition calls is decomposed in turn), the forward and the backward pass alike. ``TABLE`` is the core-ATen
decomposition table (``torch._decomp.core_aten_decompositions()``: the ops ``torch.export`` lowers to) plus
``torch._decomp``'s decomposition of ``_log_softmax``, which core ATen keeps as a kernel but which inductor and
the Python references decompose.

What is verified is therefore the decompositions of ``nll_loss_forward``, ``nll_loss2d_forward``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``_log_softmax`` and their backwards, run on real
tensors by the leaf kernels they reduce to. ``kl_div`` has no decomposition of its own (torch composes it from
elementwise ops above autograd); its ``xlogy`` is decomposed.

Every call checks that none of the eager loss kernels in ``LOSS_KERNELS`` ran: if one did (a decomposition
missing, or returning NotImplemented for these arguments), the call raises ``AdapterError`` rather than
verifying torch's eager kernel under this adapter's name. ``LAST_CALL`` keeps what the last call decomposed and
which kernels it ran, for the meta tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch._decomp import core_aten_decompositions, decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode

from . import AdapterError, nll_decompositions

aten = torch.ops.aten

TABLE: dict[Any, Callable[..., Any]] = {
    **dict(core_aten_decompositions().items()),
    aten._log_softmax.default: decomposition_table[aten._log_softmax.default],
}

# torch's eager loss kernels: none of them may run under this adapter.
LOSS_KERNELS = frozenset(
    str(op)
    for op in (
        aten.nll_loss_forward.default,
        aten.nll_loss2d_forward.default,
        aten.nll_loss_backward.default,
        aten.nll_loss2d_backward.default,
        aten.binary_cross_entropy.default,
        aten.binary_cross_entropy_backward.default,
        aten.binary_cross_entropy_with_logits.default,
        aten._log_softmax.default,
        aten._log_softmax_backward_data.default,
    )
)

LAST_CALL: dict[str, Counter[str]] = {"decomposed": Counter(), "kernels": Counter()}

# Everything is decomposable: no argument, dtype or pass is declared unsupported.
UNSUPPORTED: dict[str, str] = {}

# ---------------------------------------------------------------------------------------------
# Named divergences: where the decompositions depart from torch's documented semantics (and from its eager
# kernels). Each has a test in tests/adapters/test_decomposed.py that asserts the decomposition's actual
# behaviour, so it fails once torch changes; the rules below exclude the cases they cover, by name.
# ---------------------------------------------------------------------------------------------

CATEGORICAL = nll_decompositions.CATEGORICAL


def known_divergence(case: Any, dtype: Any = None) -> str | None:
    if nll_decompositions.uint8_class_indices(case):
        return (
            "torch 2.13's decomposition of nll_loss_forward gathers with a uint8 class-index target, which gather "
            "rejects (test_uint8_class_indices_raise_in_the_decomposition)"
        )
    if nll_decompositions.unbatched_input_with_target_of_shape_1(case):
        return (
            "torch 2.13's decomposition of nll_loss_forward raises 'size mismatch' for an unbatched input (C,) with "
            "a (1,) target (test_unbatched_input_with_a_target_of_shape_1_raises_in_the_decomposition)"
        )
    if nll_decompositions.class_weights_not_1_dimensional(case):
        return (
            "torch 2.13's decomposition of nll_loss_forward reshapes class weights as if 1-dimensional and raises "
            "for C weights of another shape (test_class_weights_not_1_dimensional_raise_in_the_decomposition)"
        )
    return None


# The defects (verification/rejections.py) that the decompositions do not reject as torch's eager kernels do: the
# rejection property leaves each out with the reason; each named test asserts the decompositions' actual behaviour.
_NO_RANGE_CHECK = (
    "the decomposition of binary_cross_entropy checks no ranges and computes it "
    "(test_bce_decomposition_checks_no_ranges_or_dtypes)"
)
_NO_DTYPE_CHECK = (
    "the decompositions check no dtypes and compute it "
    "(test_bce_decomposition_checks_no_ranges_or_dtypes, test_nll_decomposition_checks_no_dtypes)"
)
_ENLARGES = (
    "the decompositions broadcast weights both ways and enlarge the output, which this defect's draws include "
    "(test_decompositions_accept_weights_that_enlarge_the_output)"
)
_OTHER_CLASS = (
    "the decomposition of nll_loss_forward raises another exception class "
    "(test_nll_decomposition_raises_other_exception_classes)"
)
REJECTION_DIVERGENCES = {
    "binary_cross_entropy: an input outside [0, 1] (NaN included)": _NO_RANGE_CHECK,
    "binary_cross_entropy: a target outside [0, 1] (NaN included)": _NO_RANGE_CHECK,
    "binary_cross_entropy: a target of another dtype than the input": _NO_DTYPE_CHECK,
    "binary_cross_entropy: a weight that would enlarge the output": _ENLARGES,
    "binary_cross_entropy: a weight that does not broadcast to the target": _ENLARGES,
    "binary_cross_entropy_with_logits: a weight that would enlarge the output": _ENLARGES,
    "binary_cross_entropy_with_logits: a weight that does not broadcast to the target": _ENLARGES,
    "binary_cross_entropy_with_logits: a pos_weight that would enlarge the output": _ENLARGES,
    "binary_cross_entropy_with_logits: a pos_weight that does not broadcast to the target": _ENLARGES,
    **{
        f"{loss}: {what}": reason
        for loss in CATEGORICAL
        for what, reason in (
            ("an index target that is neither int64 nor uint8", _NO_DTYPE_CHECK),
            ("class weights of another dtype than the input", _NO_DTYPE_CHECK),
            ("a class index outside [0, C) that is not ignore_index", _OTHER_CLASS),
            ("a 2-dimensional target for an (N, C) input", _OTHER_CLASS),
            ("an unbatched input with a target of more than one class", _OTHER_CLASS),
            ("class weights of the wrong size or rank", _OTHER_CLASS),
        )
    },
}


def known_gradient_divergence(case: Any, dtype: Any = None) -> str | None:
    if nll_decompositions.total_weight_is_0(case):
        return (
            "torch 2.13's decomposition of nll_loss_backward divides every element's gradient by a total weight of "
            "0, giving NaN off the target where the eager kernel gives 0 "
            "(test_nll_gradient_is_nan_off_the_target_where_the_total_weight_is_0_in_the_decomposition)"
        )
    return known_divergence(case, dtype)


class _Decomposing(TorchDispatchMode):
    """Runs each op's decomposition from TABLE instead of its kernel, recursively, counting both."""

    def __init__(self) -> None:
        super().__init__()
        self.decomposed: Counter[str] = Counter()
        self.kernels: Counter[str] = Counter()
        self._open: list[Any] = []  # the ops being decomposed: an op inside its own decomposition runs its kernel

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        decomposition = TABLE.get(func)
        if decomposition is not None and func not in self._open:
            self._open.append(func)
            try:
                with self:  # the decomposition's own ops come back here
                    result = decomposition(*args, **kwargs)
            finally:
                self._open.pop()
            if result is not NotImplemented:
                self.decomposed[str(func)] += 1
                return result
        self.kernels[str(func)] += 1
        return func(*args, **kwargs)

    def check_no_loss_kernel_ran(self, loss: str) -> None:
        LAST_CALL["decomposed"], LAST_CALL["kernels"] = self.decomposed, self.kernels
        ran = sorted(LOSS_KERNELS & set(self.kernels))
        if ran:
            raise AdapterError(f"decomposed {loss} ran torch's eager kernel {', '.join(ran)}: no decomposition took it")


class _BackwardDecomposed(torch.autograd.Function):
    """Carries the input's gradient through a graph built under the decomposing mode, and runs that graph's
    backward under the mode too (the suite calls .backward() outside the adapter)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, loss: str, run: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        with torch.enable_grad():
            leaf = input.detach().requires_grad_(True)
            mode = _Decomposing()
            with mode:
                output = run(leaf)
            mode.check_no_loss_kernel_ran(loss)
        ctx.leaf, ctx.output, ctx.loss = leaf, output, loss
        return output.detach()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Any:
        mode = _Decomposing()
        with mode:
            (grad_input,) = torch.autograd.grad(ctx.output, ctx.leaf, grad_output)
        mode.check_no_loss_kernel_ran(ctx.loss)
        return grad_input, None, None


def _decomposed(loss: str) -> Callable[..., torch.Tensor]:
    torch_function = getattr(F, loss)

    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        def run(x: torch.Tensor) -> torch.Tensor:
            result: torch.Tensor = torch_function(x, target, **kwargs)
            return result

        if input.requires_grad:
            result: torch.Tensor = _BackwardDecomposed.apply(input, loss, run)
            return result
        mode = _Decomposing()
        with mode:
            output = run(input)
        mode.check_no_loss_kernel_ran(loss)
        return output

    call.__name__ = call.__qualname__ = loss
    call.__doc__ = f"torch.nn.functional.{loss}, every op with a decomposition in TABLE decomposed."
    return call


binary_cross_entropy = _decomposed("binary_cross_entropy")
binary_cross_entropy_with_logits = _decomposed("binary_cross_entropy_with_logits")
nll_loss = _decomposed("nll_loss")
cross_entropy = _decomposed("cross_entropy")
kl_div = _decomposed("kl_div")

LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy", "kl_div")

# Sums are bounded for any order in the storage dtype (the tolerance model's documented looser model): the
# decompositions replace NLLLoss's cascade and the softmax kernels by generic ops (a gather and Tensor.sum; amax,
# exp and sum), whose order is not the eager kernels' that verification/tolerance/summation.py bounds.
SUMS_IN_ANY_ORDER = True


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}
