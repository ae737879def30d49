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

Export dominates the cost. ``torch.onnx.export`` rebuilds its registry of onnxscript's torchlib functions on every
call (about 0.9 s here), the same registry for the same opset, which the export only reads: the adapter builds it
once per opset and hands the exporter that one (``_one_registry``). A new key then costs 0.25 to 0.5 s (1 to 1.6 s
without the shared registry; the first export in a process about 5 s), spent in torch.export, its decompositions
and the ONNX optimiser; the session build adds about 10 ms. A call on a cached session costs about 0.25 ms. A
property at the ci profile's 100 examples exports about once per example (ignore_index, label_smoothing and shapes
change from one to the next).

A bfloat16 output leaves the graph as float32 (the module casts it; exact), since onnxruntime's OrtValue has no
NumPy view of bfloat16. Arguments are not validated: torch's checks run while the exporter traces (a shape or dtype
torch rejects fails the export, with the exporter's exception), the rest is onnxruntime's.

Where the exported losses depart from torch's documented semantics, each pinned by a test in
tests/adapters/test_onnx_export.py that asserts what the export does, and named by the rules below
(``known_divergence``, ``REJECTION_DIVERGENCES``), which leave out the cases or defects they cover under that name:
cross_entropy drops label_smoothing, is an invalid model for probability targets, for an unbatched input and for an
empty batch (its SoftmaxCrossEntropyLoss node, as in adapters.onnx_operators); torch.export fails on a uint8
class-index target, an unbatched input with a target of shape (1,), and K-dimensional class weights not
1-dimensional (torch's own decomposition of nll_loss_forward); onnxscript translates logsigmoid as Log(Sigmoid(x))
and log1p as Log(1 + x), so BCEWithLogits loses accuracy for logits below about -1.5 (and above 1.5 where the
loss is the log-sigmoid's alone) and BCE for small losses of an input below 0.5; a 'mean' over an empty input is
0, not NaN. What torch rejects while the exporter traces fails the export with the exporter's TorchExportError,
torch's exception as its cause; what torch checks on values the graph computes, or onnxruntime rejects with its
own exception classes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from . import AdapterError, Unsupported
from .onnx_operators import build_session, empty_softmax_cross_entropy, run

OPSET = 22

LOSSES = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy", "kl_div")

# Sums are bounded for any order in the storage dtype (the tolerance model's documented looser model): onnxruntime's
# ReduceSum and softmax kernels have their own order and accumulator, not torch's eager kernels' that
# verification/tolerance/summation.py bounds.
SUMS_IN_ANY_ORDER = True

# Keyword arguments that are tensors: inputs of the exported graph rather than constants.
TENSOR_KWARGS = ("weight", "pos_weight")

COUNTS: Counter[str] = Counter()

UNSUPPORTED: dict[str, str] = {
    "backward pass": "an onnxruntime InferenceSession computes no gradients",
    "a dtype onnxruntime has no CPU kernel for": "the NOT_IMPLEMENTED error onnxruntime raises building the session",
}


# ---------------------------------------------------------------------------------------------
# Named divergences: where the exported losses depart from torch's documented semantics. Each reason names the test
# in tests/adapters/test_onnx_export.py that asserts what the export does (so it fails once the exporter or
# onnxruntime changes); the rules leave out the cases and defects they cover.
# ---------------------------------------------------------------------------------------------

CATEGORICAL = ("nll_loss", "cross_entropy")
MEAN_REDUCED = ("binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div")

# Log(Sigmoid(x)) for logsigmoid: where onnxruntime's Sigmoid, exact to about one unit of roundoff in absolute
# terms, leaves log(sigmoid(x)) beyond torch's bound. Below -LOW the relative error of sigmoid(x) grows as e^-x;
# above HIGH, log(sigmoid(x)) ~ -e^-x is 1 - sigmoid(x) rounded, which matters only where the log-sigmoid term is
# most of the loss. Measured on the tolerance model's bounds (float64 and float32 from -1.97 and 1.78 on; float16,
# computed with a float16 Sigmoid, from -12.1 on and never above), with a margin.
LOG_SIGMOID_INACCURATE = {"float64": (-1.5, 1.5), "float32": (-1.5, 1.5), "float16": (-11.5, np.inf)}
# Log(1 + x) for log1p: for an input p below 0.5, 1 - p is rounded, an absolute error of about one unit of
# roundoff in log1p(-p) (bfloat16: of float32, in which onnxruntime computes it), beyond torch's bound where the
# element's loss is below a quarter of the (1 - y) weight of that term (measured in float64, float32 and bfloat16;
# float16 showed none).
LOG1P_INACCURATE_BELOW = 0.25


def _arrays(case: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(case.input, dtype=np.float64), np.asarray(case.target, dtype=np.float64)


def _log_sigmoid_inaccurate(case: Any, dtype: Any) -> bool:
    if case.loss != "binary_cross_entropy_with_logits":
        return False
    low, high = LOG_SIGMOID_INACCURATE.get(getattr(dtype, "name", ""), LOG_SIGMOID_INACCURATE["float32"])
    x, y = _arrays(case)
    pos_weight = case.kwargs.get("pos_weight")
    log_weight = (np.asarray(1.0 if pos_weight is None else pos_weight, dtype=np.float64) - 1.0) * y + 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        risky = (x < low) | ((x > high) & (np.abs((1.0 - y) * x) < 2.0 * np.abs(log_weight)))
    return bool(np.any(risky))


def _log1p_inaccurate(case: Any, dtype: Any) -> bool:
    if case.loss != "binary_cross_entropy" or getattr(dtype, "name", "") not in ("float64", "float32", "bfloat16"):
        return False
    p, y = _arrays(case)
    if p.shape != y.shape:
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = -(y * np.maximum(np.log(p), -100.0) + (1.0 - y) * np.maximum(np.log1p(-p), -100.0))
        risky = (p < 0.5) & (loss < LOG1P_INACCURATE_BELOW * np.abs(1.0 - y))
    return bool(np.any(risky))


def _empty_mean(case: Any) -> bool:
    if case.loss not in MEAN_REDUCED or case.kwargs.get("reduction", "mean") != "mean":
        return False
    try:
        shape = np.broadcast_shapes(np.shape(case.input), np.shape(case.target))
    except ValueError:
        return False
    return 0 in shape


def known_divergence(case: Any, dtype: Any = None) -> str | None:
    index_target = case.loss in CATEGORICAL and np.asarray(case.target).dtype.kind in "iu"
    if case.loss == "cross_entropy":
        smoothing = case.kwargs.get("label_smoothing", 0.0)
        if not index_target:
            return (
                "onnxscript translates cross_entropy with probability targets to a SoftmaxCrossEntropyLoss node, whose "
                "labels must be integers: onnxruntime refuses the model "
                "(test_the_exported_cross_entropy_of_probability_targets_is_an_invalid_model)"
            )
        if np.ndim(case.input) == 1:
            return (
                "onnxscript passes an unbatched input (C,) to SoftmaxCrossEntropyLoss, which needs (N, C): an invalid "
                "model (test_the_exported_cross_entropy_of_an_unbatched_input_is_an_invalid_model)"
            )
        if empty_softmax_cross_entropy(case):
            return (
                "the exported SoftmaxCrossEntropyLoss node is an invalid model for an empty batch, or a size 0 at "
                "target position 2 or later (test_the_exported_cross_entropy_of_an_empty_batch_is_an_invalid_model)"
            )
        if smoothing > 0:  # a negative or NaN smoothing is none in torch too
            return (
                "onnxscript's cross_entropy drops label_smoothing (its SoftmaxCrossEntropyLoss node has none) "
                "(test_the_exported_cross_entropy_drops_label_smoothing)"
            )
    if index_target and np.asarray(case.target).dtype == np.uint8:
        return (
            "torch.export runs torch's decomposition of nll_loss_forward, which gathers with the uint8 target and "
            "fails (test_uint8_class_indices_fail_the_export)"
        )
    if index_target and np.ndim(case.input) == 1 and np.shape(case.target) == (1,):
        return (
            "torch.export's tracing of nll_loss raises 'size mismatch' for an unbatched input (C,) with a (1,) target "
            "(test_an_unbatched_input_with_a_target_of_shape_1_fails_the_export)"
        )
    weight = case.kwargs.get("weight")
    if index_target and weight is not None and np.ndim(weight) != 1:
        return (
            "torch.export's tracing of nll_loss reshapes class weights as if 1-dimensional and raises for C weights "
            "of another shape (test_class_weights_not_1_dimensional_fail_the_export)"
        )
    if _empty_mean(case):
        return (
            "the exported 'mean' is onnxruntime's ReduceMean, which gives 0 for an empty tensor where torch gives NaN "
            "(test_the_exported_mean_of_an_empty_input_is_0)"
        )
    if _log_sigmoid_inaccurate(case, dtype):
        return (
            "onnxscript translates logsigmoid as Log(Sigmoid(x)), which onnxruntime computes far off torch's bound "
            "for logits below -1.5 (or, where the log-sigmoid is most of the loss, above 1.5; float16: below -11.5) "
            "(related: microsoft/onnxruntime#22557) "
            "(test_the_exported_bce_with_logits_loses_the_log_sigmoid_of_negative_logits, "
            "test_the_exported_bce_with_logits_is_inaccurate_for_positive_logits_where_the_log_sigmoid_is_the_loss)"
        )
    if _log1p_inaccurate(case, dtype):
        return (
            "onnxscript translates log1p(-p) as Log(1 - p), which rounds 1 - p: off torch's bound for an input below "
            "0.5 whose element's loss is below a quarter of its (1 - target) (float64, float32, bfloat16) "
            "(test_the_exported_bce_takes_log1p_as_log_of_1_plus_x)"
        )
    return None


def known_gradient_divergence(case: Any, dtype: Any = None) -> str | None:
    # No gradient is computed (the backward pass is UNSUPPORTED as a whole); the forward's rules hold alike.
    return known_divergence(case, dtype)


# The defects (verification/rejections.py) that the export does not reject as torch does: the rejection property
# leaves each out with the reason.
_TRACED = (
    "torch's own check rejects it while torch.export traces the loss, and the export fails with the exporter's "
    "TorchExportError, torch's exception its cause, not the class torch raises "
    "(test_what_torch_rejects_while_tracing_fails_the_export_with_torch_export_error)"
)
_COMPUTED = (
    "torch checks it on values, which torch.export does not trace: the exported graph computes it "
    "(test_what_torch_checks_on_values_the_exported_graph_computes)"
)
_BROADCAST = (
    "the exported graph broadcasts a weight both ways and computes the enlarged output, and a weight that does "
    "not broadcast at all fails the export with TorchExportError "
    "(test_what_torch_checks_on_values_the_exported_graph_computes, "
    "test_what_torch_rejects_while_tracing_fails_the_export_with_torch_export_error)"
)
_ORT_CLASS = (
    "torch checks it on values or not at all while tracing: the export succeeds and onnxruntime rejects it with its "
    "own Fail (test_onnxruntime_rejects_what_the_export_does_not_check_with_its_own_exception_classes)"
)
REJECTION_DIVERGENCES = {
    **{
        f"{loss}: {what}": _TRACED
        for loss in ("binary_cross_entropy", "binary_cross_entropy_with_logits")
        for what in ("an unknown reduction string", "a target shape that differs from the input's")
    },
    **{
        f"{loss}: a {name} that {how}": _BROADCAST
        for loss, names in (
            ("binary_cross_entropy", ("weight",)),
            ("binary_cross_entropy_with_logits", ("weight", "pos_weight")),
        )
        for name in names
        for how in ("would enlarge the output", "does not broadcast to the target")
    },
    "binary_cross_entropy: an input outside [0, 1] (NaN included)": _COMPUTED,
    "binary_cross_entropy: a target outside [0, 1] (NaN included)": _COMPUTED,
    "binary_cross_entropy: a target of another dtype than the input": _COMPUTED,
    **{
        f"kl_div: {what}": _TRACED
        for what in (
            "an unknown reduction string",
            "an integral input",
            "an input and a target whose shapes do not broadcast",
        )
    },
    **{
        f"{loss}: {what}": _TRACED
        for loss in CATEGORICAL
        for what in (
            "an unknown reduction string",
            "a 0-dimensional input",
            "a target batch size that differs from the input's",
            "class weights of the wrong size or rank",
            "a 2-dimensional target for an (N, C) input",
            "a K-dimensional target whose extra sizes differ from the input's",
            "an unbatched input with a target of more than one class",
            "a uint8 target for a K-dimensional input",
        )
    },
    **{
        f"{loss}: {what}": reason
        for loss in CATEGORICAL
        for what, reason in (
            (
                "an index target that is neither int64 nor uint8",
                "int32 class indices are exported and computed, other dtypes fail the export with TorchExportError "
                "(test_the_exported_nll_computes_int32_targets_and_counts_negative_class_indices_from_the_end, "
                "test_what_torch_rejects_while_tracing_fails_the_export_with_torch_export_error)",
            ),
            (
                "a class index outside [0, C) that is not ignore_index",
                "onnxruntime's GatherElements takes a class index in [-C, -1] as counting from the last class and "
                "raises its own Fail below -C or from C on "
                "(test_the_exported_nll_computes_int32_targets_and_counts_negative_class_indices_from_the_end, "
                "test_onnxruntime_rejects_what_the_export_does_not_check_with_its_own_exception_classes)",
            ),
            ("class weights of another dtype than the input", _ORT_CLASS),
        )
    },
    **{
        f"cross_entropy: {what}": _TRACED
        for what in (
            "label_smoothing above 1",
            "probability targets with an ignore_index >= 0",
            "an integer target of the input's shape (read as probabilities)",
            "label smoothing with a K-dimensional input and a (1, C) weight",
            "probability targets with class weights of the wrong size",
        )
    },
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


# opset -> onnxscript's torchlib registry for it, built once.
_REGISTRIES: dict[int, Any] = {}


@contextlib.contextmanager
def _one_registry() -> Iterator[None]:
    """Within: torch.onnx.export takes onnxscript's torchlib registry built once per opset instead of building it
    again (its one mutation, ``register_op``, is for a custom translation table, which this adapter never passes)."""
    from torch.onnx._internal.exporter import _constants, _registration

    registry = _registration.ONNXRegistry
    built = registry.__dict__["from_torchlib"]

    def from_torchlib(cls: type, opset_version: int = _constants.TORCHLIB_OPSET) -> Any:
        if opset_version not in _REGISTRIES:
            _REGISTRIES[opset_version] = built.__func__(cls, opset_version=opset_version)
        return _REGISTRIES[opset_version]

    registry.from_torchlib = classmethod(from_torchlib)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        registry.from_torchlib = built  # type: ignore[method-assign]


def _export(
    loss: str, input: torch.Tensor, target: torch.Tensor, tensors: dict[str, torch.Tensor], fixed: dict[str, Any]
) -> ort.InferenceSession:
    names = tuple(tensors)
    module = _Loss(loss, names, fixed).eval()
    with warnings.catch_warnings(), _one_registry():
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
