"""torch's ONNX exporter: each loss, ``torch.nn.functional.<loss>`` with the call's keyword arguments fixed, exported
with ``torch.onnx.export`` and run by onnxruntime on the CPU, behind torch's functional signature.

The exporter is torch's default one (``dynamo=True``: torch.export traces the loss, onnxscript's torchlib
translates each ATen op), at opset 22 rather than its default 20: at 20 ``NegativeLogLikelihoodLoss`` is not typed
for bfloat16, so a bfloat16 nll_loss or cross_entropy is exported as an invalid model (INVALID_GRAPH); at 22 the
model is valid and a dtype onnxruntime cannot run shows as its own NOT_IMPLEMENTED error (``adapters.onnx_operators``
runs the same opset). The tensor keyword arguments (``weight``, ``pos_weight``) are graph inputs, fed on each call;
the others (``reduction``, ``ignore_index``, ``label_smoothing``, ``log_target``) are fixed in the graph, as the
exporter fixes any Python scalar. Shapes are static: every size of every tensor is part of the cache key, so a graph
never runs on a shape it was not traced for (torch.export specialises sizes 0 and 1, and guards that a dynamic graph
would carry are not checked by onnxruntime).

What runs at call time is onnxruntime alone: the session is built from the exported model once per key (loss,
dtype and shape of every tensor, every other keyword argument), and a call converts its tensors to NumPy, runs the
session and converts the output back (``COUNTS`` counts exports, sessions run; a call with no session run is an
``AdapterError``). torch traces the loss while exporting it, and runs no loss at call time.

Export dominates the cost: a new key costs 1.3 to 3 s here (a shared 2-core machine; the first export in a process
about 5.5 s), about 1.3 s of it spent by ``torch.onnx.export`` rebuilding onnxscript's registry of torchlib
functions on every call, the rest in torch.export, its decompositions and the ONNX optimiser; the session build adds
about 10 ms. A call on a cached session costs about 0.25 ms. A property at the ci profile's 100 examples exports
about once per example (ignore_index, label_smoothing and shapes change from one to the next): 2 to 6 minutes.

A bfloat16 output leaves the graph as float32 (the module casts it; exact), since onnxruntime's OrtValue has no
NumPy view of bfloat16. Arguments are not validated: torch's checks run while the exporter traces (a shape or dtype
torch rejects fails the export, with the exporter's exception), the rest is onnxruntime's.

Where the exported losses depart from torch's documented semantics, each pinned by a test in
tests/adapters/test_onnx_export.py (no rule here excludes them: the properties report them): cross_entropy drops
label_smoothing, is an invalid model for probability targets, for an unbatched input and for an empty batch (its
SoftmaxCrossEntropyLoss node, as in adapters.onnx_operators); torch.export fails on a uint8 class-index target, an
unbatched input with a target of shape (1,), and K-dimensional class weights not 1-dimensional (torch's own
decomposition of nll_loss_forward); BCEWithLogits takes log(sigmoid(x)), which onnxruntime's Sigmoid makes inf
(float32) or far off (float64) for negative logits; a 'mean' over an empty input is 0, not NaN.
"""

from __future__ import annotations

import warnings
from collections import Counter, OrderedDict
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from . import AdapterError, Unsupported
from .onnx_operators import build_session, run

OPSET = 22

LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy", "kl_div")

# Keyword arguments that are tensors: inputs of the exported graph rather than constants.
TENSOR_KWARGS = ("weight", "pos_weight")

COUNTS: Counter[str] = Counter()

UNSUPPORTED: dict[str, str] = {
    "backward pass": "an onnxruntime InferenceSession computes no gradients",
    "a dtype onnxruntime has no CPU kernel for": "the NOT_IMPLEMENTED error onnxruntime raises building the session",
}


class _Loss(torch.nn.Module):
    """``F.<loss>(input, target, **tensors, **fixed)``: what is exported, with the tensors as inputs."""

    def __init__(self, loss: str, tensor_names: tuple[str, ...], fixed: dict[str, Any]) -> None:
        super().__init__()
        self.loss, self.tensor_names, self.fixed = loss, tensor_names, fixed

    def forward(self, input: torch.Tensor, target: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = getattr(F, self.loss)(
            input, target, **dict(zip(self.tensor_names, tensors, strict=True)), **self.fixed
        )
        return result.float() if result.dtype == torch.bfloat16 else result


def _spec(tensor: torch.Tensor) -> tuple[str, tuple[int, ...]]:
    return str(tensor.dtype), tuple(tensor.shape)


# (loss, dtype and shape of every tensor, the other keyword arguments) -> session, the least recently used dropped.
_SESSIONS: OrderedDict[tuple[Any, ...], ort.InferenceSession] = OrderedDict()
MAX_SESSIONS = 512


def _export(
    loss: str, input: torch.Tensor, target: torch.Tensor, tensors: dict[str, torch.Tensor], fixed: dict[str, Any]
) -> ort.InferenceSession:
    names = tuple(tensors)
    module = _Loss(loss, names, fixed).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notices (deprecations, its own progress), not results
        program = torch.onnx.export(
            module,
            (input, target, *tensors.values()),
            dynamo=True,
            opset_version=OPSET,
            input_names=["input", "target", *names],
            output_names=["loss"],
            verbose=False,
        )
    COUNTS["exports"] += 1
    dtype = str(input.dtype).removeprefix("torch.")
    session = build_session(program.model_proto.SerializeToString(), f"torch's export of {loss} in {dtype}")
    COUNTS["sessions built"] += 1
    return session


def _session(
    loss: str, input: torch.Tensor, target: torch.Tensor, tensors: dict[str, torch.Tensor], fixed: dict[str, Any]
) -> ort.InferenceSession:
    key = (
        loss,
        _spec(input),
        _spec(target),
        tuple((name, *_spec(tensor)) for name, tensor in tensors.items()),
        tuple((name, repr(value)) for name, value in sorted(fixed.items())),  # repr: a NaN equals itself
    )
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = _export(loss, input, target, tensors, fixed)
        if len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    else:
        _SESSIONS.move_to_end(key)
    return session


def _exported_loss(loss: str) -> Any:
    def call(input: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if input.requires_grad:
            raise Unsupported(UNSUPPORTED["backward pass"], whole=True)
        tensors = {name: kwargs.pop(name) for name in TENSOR_KWARGS if kwargs.get(name) is not None}
        kwargs = {name: value for name, value in kwargs.items() if name not in TENSOR_KWARGS}
        session = _session(loss, input.detach(), target.detach(), tensors, kwargs)
        runs = COUNTS["session runs"]
        output = run(session, {"input": input, "target": target, **tensors}, COUNTS)
        if COUNTS["session runs"] == runs:
            raise AdapterError(f"exported {loss}: no onnxruntime session ran")
        return torch.from_numpy(np.asarray(output)).to(device=input.device, dtype=input.dtype)

    call.__name__ = call.__qualname__ = loss
    call.__doc__ = f"torch.nn.functional.{loss} exported by torch.onnx.export (opset {OPSET}), run by onnxruntime."
    return call


binary_cross_entropy = _exported_loss("binary_cross_entropy")
binary_cross_entropy_with_logits = _exported_loss("binary_cross_entropy_with_logits")
nll_loss = _exported_loss("nll_loss")
cross_entropy = _exported_loss("cross_entropy")
kl_div = _exported_loss("kl_div")


def versions() -> dict[str, str]:
    import onnxscript

    return {
        "torch": torch.__version__,
        "onnxscript": onnxscript.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "opset": str(OPSET),
    }
