"""ONNX's own loss operators, run by onnxruntime on the CPU: ``NegativeLogLikelihoodLoss`` for ``nll_loss`` and
``SoftmaxCrossEntropyLoss`` for ``cross_entropy``, behind torch's functional signature. No torch in the computation:
each call builds (or finds in a cache) a one-node ONNX model made with ``onnx.helper``, hands the tensors to an
``onnxruntime.InferenceSession`` (CPUExecutionProvider) as NumPy arrays, and returns its output as a torch tensor
of the input's dtype.

Opset 22: the first at which ``NegativeLogLikelihoodLoss`` admits bfloat16 (``SoftmaxCrossEntropyLoss`` has since
13). At a lower opset a bfloat16 model is invalid ONNX (INVALID_GRAPH), which would say nothing about onnxruntime;
at 22 the model is valid and a dtype onnxruntime cannot run shows as its own NOT_IMPLEMENTED error. Neither operator
changes after 22. onnxruntime 1.32 has no CPU kernel of either operator: it expands each into its ONNX function body
(``GatherElements``, ``Where``, ``Neg``, ``ReduceSum``, ``Div``; ``LogSoftmax`` first for cross-entropy) and runs
those kernels, so what is verified is the operators' ONNX definitions as onnxruntime executes them.

Torch's semantics composed around the operator, each exact (a reshape or a lossless integer cast):

* an unbatched input (C,) with a target of shape () or (1,) runs as (1, C) with a target of shape (1,), and the
  result (shape (1,) under 'none') is reshaped to (), torch's shape for it;
* a uint8 class-index target is cast to int64 where torch takes uint8 (inputs up to (N, C)): ONNX's labels are
  int32 or int64 only. Torch rejects uint8 for K-dimensional inputs, and there the uint8 target goes to onnxruntime
  as it is;
* C class weights of another rank (torch's K-dimensional path takes them, a (1, C) weight included) are flattened
  to (C,) for a K-dimensional input; elsewhere they go to onnxruntime as they are;
* ``label_smoothing`` that is negative or NaN is no smoothing in torch, and runs the operator as it is.

Arguments are not validated: what torch rejects goes to onnxruntime, which computes it or fails with its own
exception classes (``onnxruntime.capi.onnxruntime_pybind11_state.Fail``, ``InvalidArgument``, ``InvalidGraph``...,
subclasses of ``Exception``, not of torch's ``RuntimeError``/``ValueError``/``IndexError``); the rejection
properties report what it does.

Sessions are cached by what changes the graph: the loss, the dtypes and ranks of input, target and weight, the
reduction and ignore_index (an attribute). A new session costs about 4 ms (NegativeLogLikelihoodLoss) and 6 ms
(SoftmaxCrossEntropyLoss) here: the onnx.helper model, its serialisation and the InferenceSession that expands the
function (medians of 200 builds on a shared 2-core machine; 9 ms at the 90th percentile). A call on a cached session
costs about 0.25 ms, 0.15 ms of it in onnxruntime's run. ``COUNTS`` counts the sessions built and run; every call checks
that a session ran (``AdapterError`` otherwise).

Where onnxruntime 1.32 departs from torch's documented semantics, each pinned by a test in
tests/adapters/test_onnx_operators.py that asserts what onnxruntime does, and named by the rules below
(``known_divergence``, ``REJECTION_DIVERGENCES``), which leave out the cases or defects they cover under that name:
SoftmaxCrossEntropyLoss fails on an empty batch (and on a zero size at target position 2 or later); both operators
take an unknown reduction as 'sum', a class index in [-C, -1] as counting from the last class, int32 targets, more
than C class weights, and a target with fewer rows or positions than the input, all of which torch rejects; what
else torch rejects, onnxruntime rejects with its own exception classes.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

from . import AdapterError, Unsupported

OPSET = 22
# IR version 10 (ONNX 1.16's), not the installed onnx's newest: an onnxruntime older than onnx refuses a newer IR.
IR_VERSION = 10

COUNTS: Counter[str] = Counter()

UNSUPPORTED: dict[str, str] = {
    "backward pass": "an onnxruntime InferenceSession computes no gradients",
    "label_smoothing > 0": "SoftmaxCrossEntropyLoss has no label smoothing",
    "probability targets": "SoftmaxCrossEntropyLoss takes class indices only (labels of type int32 or int64)",
    "a dtype onnxruntime has no CPU kernel for": "the NOT_IMPLEMENTED error onnxruntime raises building the session",
}

LOSSES = ("nll_loss", "cross_entropy")

# Sums are bounded for any order in the storage dtype (the tolerance model's documented looser model): onnxruntime's
# loss operators have their own order and accumulator, not torch's eager kernels' that
# verification/tolerance/summation.py bounds.
SUMS_IN_ANY_ORDER = True

OPERATORS = {"nll_loss": "NegativeLogLikelihoodLoss", "cross_entropy": "SoftmaxCrossEntropyLoss"}

# ---------------------------------------------------------------------------------------------
# Named divergences: where onnxruntime, running the operators' ONNX function bodies, departs from torch's
# documented semantics. Each reason names the test in tests/adapters/test_onnx_operators.py that asserts what
# onnxruntime does (so it fails once onnxruntime changes); the rules leave out the cases and defects they cover.
# ---------------------------------------------------------------------------------------------


def empty_softmax_cross_entropy(case: Any) -> bool:
    """An index-target cross_entropy that SoftmaxCrossEntropyLoss's function body cannot reshape: a batch of 0
    (its Reshape of the scores to (N, C, -1)), or a size 0 at target position 2 or later (its Reshape back to the
    target's shape reads that 0 as 'copy the dimension'). A size 0 at position 1 only is computed."""
    input, target = np.asarray(case.input), np.asarray(case.target)
    if case.loss != "cross_entropy" or target.dtype.kind not in "iu" or input.ndim < 2:
        return False
    return bool(input.shape[0] == 0 or 0 in input.shape[3:])


def known_divergence(case: Any, dtype: Any = None) -> str | None:
    if empty_softmax_cross_entropy(case):
        return (
            "onnxruntime 1.32's SoftmaxCrossEntropyLoss fails in its function body's Reshape on an empty batch, or on "
            "a size 0 at target position 2 or later, where torch gives NaN, 0 or an empty tensor "
            "(test_softmax_cross_entropy_fails_on_an_empty_batch)"
        )
    return None


def known_gradient_divergence(case: Any, dtype: Any = None) -> str | None:
    # No gradient is computed (the backward pass is UNSUPPORTED as a whole); the forward's rules hold alike.
    return known_divergence(case, dtype)


# The defects (verification/rejections.py) that onnxruntime does not reject as torch does: the rejection property
# leaves each out with the reason.
_OTHER_CLASS = (
    "onnxruntime raises its own exception class (Fail, InvalidArgument or InvalidGraph), not torch's "
    "(test_onnxruntime_rejects_with_its_own_exception_classes)"
)
_CATEGORICAL_REJECTIONS = {
    "an unknown reduction string": (
        "both operators take a reduction other than 'none' or 'mean' as 'sum' (test_an_unknown_reduction_is_a_sum)"
    ),
    "a 0-dimensional input": _OTHER_CLASS,
    "a target batch size that differs from the input's": (
        "a target with more rows than the input raises onnxruntime's InvalidArgument, one with fewer is computed on "
        "the leading rows (test_onnxruntime_rejects_with_its_own_exception_classes, "
        "test_arguments_torch_rejects_that_onnxruntime_computes)"
    ),
    "a class index outside [0, C) that is not ignore_index": (
        "GatherElements takes a class index in [-C, -1] as counting from the last class and raises onnxruntime's "
        "Fail below -C or from C on (test_a_class_index_from_minus_c_to_minus_1_counts_from_the_end, "
        "test_onnxruntime_rejects_with_its_own_exception_classes)"
    ),
    "class weights of the wrong size or rank": (
        "more than C class weights are computed with the first C, and a (1, C) weight raises onnxruntime's Fail "
        "(test_arguments_torch_rejects_that_onnxruntime_computes, "
        "test_onnxruntime_rejects_with_its_own_exception_classes)"
    ),
    "class weights of another dtype than the input": _OTHER_CLASS,
    "an index target that is neither int64 nor uint8": (
        "int32 class indices are computed, other dtypes raise onnxruntime's InvalidGraph "
        "(test_arguments_torch_rejects_that_onnxruntime_computes, "
        "test_onnxruntime_rejects_with_its_own_exception_classes)"
    ),
    "a 2-dimensional target for an (N, C) input": _OTHER_CLASS,
    "a K-dimensional target whose extra sizes differ from the input's": (
        "a target larger than the input's extra sizes raises onnxruntime's InvalidArgument, a smaller one is "
        "computed on the leading positions (test_onnxruntime_rejects_with_its_own_exception_classes, "
        "test_arguments_torch_rejects_that_onnxruntime_computes)"
    ),
    "an unbatched input with a target of more than one class": _OTHER_CLASS,
    "a uint8 target for a K-dimensional input": _OTHER_CLASS,
}
REJECTION_DIVERGENCES = {
    **{f"{loss}: {what}": reason for loss in LOSSES for what, reason in _CATEGORICAL_REJECTIONS.items()},
    "cross_entropy: an integer target of the input's shape (read as probabilities)": _OTHER_CLASS,
}


def onnx_type(dtype: torch.dtype) -> int:
    """The ONNX element type of a torch dtype (numpy has no bfloat16: that one by name)."""
    if dtype == torch.bfloat16:
        return TensorProto.BFLOAT16
    return int(helper.np_dtype_to_tensor_dtype(torch.empty((), dtype=dtype).numpy().dtype))


def ort_value(tensor: torch.Tensor) -> tuple[ort.OrtValue, np.ndarray]:
    """An OrtValue on the tensor's memory, and the array it is built on (which must outlive it)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: the bits, typed for onnxruntime
        array = tensor.view(torch.int16).numpy()
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array, TensorProto.BFLOAT16), array
    array = tensor.numpy()
    return ort.OrtValue.ortvalue_from_numpy(array), array


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    # The tensors are tiny, and the machine may be shared: one thread each, no spinning pool.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # fatal only: an error reaches the caller as the exception that carries it
    return options


def build_session(model: bytes, what: str) -> ort.InferenceSession:
    """An InferenceSession on the CPU for ``model``; a dtype onnxruntime has no CPU kernel for is ``Unsupported``
    as a whole, with onnxruntime's own message."""
    try:
        return ort.InferenceSession(model, session_options(), providers=["CPUExecutionProvider"])
    except OrtNotImplemented as error:
        raise Unsupported(f"onnxruntime {ort.__version__} cannot run {what}: {error}", whole=True) from error


def run(session: ort.InferenceSession, feeds: dict[str, torch.Tensor], counts: Counter[str]) -> np.ndarray:
    """The session's one output for ``feeds``, counted in ``counts['session runs']``."""
    values = {name: ort_value(tensor) for name, tensor in feeds.items()}
    (output,) = session.run_with_ort_values(None, {name: value for name, (value, _) in values.items()})
    counts["session runs"] += 1
    result: np.ndarray = output.numpy()
    return result


@functools.lru_cache(maxsize=2048)
def _session(
    loss: str,
    input_type: int,
    input_rank: int,
    target_type: int,
    target_rank: int,
    weight: tuple[int, int] | None,
    reduction: str,
    ignore_index: int,
) -> ort.InferenceSession:
    """The session of one graph: ``weight`` is (element type, rank) or None (no weight input)."""
    inputs = [
        helper.make_tensor_value_info("input", input_type, [None] * input_rank),
        helper.make_tensor_value_info("target", target_type, [None] * target_rank),
    ]
    if weight is not None:
        inputs.append(helper.make_tensor_value_info("weight", weight[0], [None] * weight[1]))
    # bfloat16 leaves the graph as float32 (exact), since onnxruntime's OrtValue has no NumPy view of bfloat16.
    bfloat16 = input_type == TensorProto.BFLOAT16
    nodes = [
        helper.make_node(
            OPERATORS[loss],
            [value.name for value in inputs],
            ["loss_in_input_type" if bfloat16 else "loss"],
            reduction=reduction,
            ignore_index=ignore_index,
        )
    ]
    if bfloat16:
        nodes.append(helper.make_node("Cast", ["loss_in_input_type"], ["loss"], to=TensorProto.FLOAT))
    output = helper.make_tensor_value_info("loss", TensorProto.FLOAT if bfloat16 else input_type, None)
    graph = helper.make_graph(nodes, loss, inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    what = f"{OPERATORS[loss]} on {TensorProto.DataType.Name(input_type).lower()}"
    session = build_session(model.SerializeToString(), what)
    COUNTS["sessions built"] += 1
    return session


def _reduction(reduction: str, size_average: bool | None, reduce: bool | None) -> str:
    if size_average is not None or reduce is not None:  # torch's legacy arguments, by torch's own rule
        return str(torch.nn._reduction.legacy_get_string(size_average, reduce))
    return reduction


def _index_loss(
    loss: str,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    compose: bool = True,
) -> torch.Tensor:
    """The loss by ONNX's operator; with ``compose``, torch's semantics composed around it (the module docstring)."""
    if input.requires_grad:
        raise Unsupported(UNSUPPORTED["backward pass"], whole=True)
    unbatched = compose and input.dim() == 1 and target.dim() <= 1 and target.numel() == 1
    if unbatched:
        input, target = input.reshape(1, -1), target.reshape(1)
    if compose and target.dtype == torch.uint8 and input.dim() <= 2:
        target = target.to(torch.int64)
    if compose and weight is not None and input.dim() > 2 and weight.dim() != 1 and weight.numel() == input.shape[1]:
        weight = weight.reshape(-1)
    session = _session(
        loss,
        onnx_type(input.dtype),
        input.dim(),
        onnx_type(target.dtype),
        target.dim(),
        None if weight is None else (onnx_type(weight.dtype), weight.dim()),
        reduction,
        int(ignore_index),
    )
    feeds = {"input": input, "target": target, **({} if weight is None else {"weight": weight})}
    runs = COUNTS["session runs"]
    output = run(session, feeds, COUNTS)
    if COUNTS["session runs"] == runs:
        raise AdapterError(f"onnxruntime {loss}: no session ran")
    result = torch.from_numpy(np.asarray(output)).to(device=input.device, dtype=input.dtype)
    return result.reshape(()) if unbatched else result


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """torch.nn.functional.nll_loss computed by ONNX's NegativeLogLikelihoodLoss in onnxruntime."""
    return _index_loss("nll_loss", input, target, weight, ignore_index, _reduction(reduction, size_average, reduce))


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """torch.nn.functional.cross_entropy computed by ONNX's SoftmaxCrossEntropyLoss in onnxruntime."""
    if input.requires_grad:
        raise Unsupported(UNSUPPORTED["backward pass"], whole=True)
    # torch reads a target of the input's shape as class probabilities, and rejects it unless it is floating: an
    # integer one goes to onnxruntime as it is, without the unbatched composition.
    probabilities = target.shape == input.shape
    if probabilities and target.is_floating_point():
        raise Unsupported(UNSUPPORTED["probability targets"])
    if label_smoothing > 0:  # torch takes a negative or NaN smoothing as none
        raise Unsupported(UNSUPPORTED["label_smoothing > 0"])
    reduction = _reduction(reduction, size_average, reduce)
    return _index_loss("cross_entropy", input, target, weight, ignore_index, reduction, compose=not probabilities)


def versions() -> dict[str, str]:
    return {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "opset": str(OPSET)}
