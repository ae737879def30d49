"""torch's ONNX exporter run by onnxruntime (adapters/onnx_export.py): that each call runs an exported onnxruntime
session and, once exported, neither torch's loss functions nor its eager loss kernels; that a planted bug in the
exported graph fails value parity; the Unsupported declarations; and where the exporter departs from torch's
documented semantics. Each divergence test asserts what the exporter actually does, so it fails once it changes.

Every new combination of loss, shapes and keyword arguments is an export of about 1.5 s: the tests share a few."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[matrix]')")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e '.[matrix]')")

from adapters import AdapterError, Unsupported, onnx_export
from adapters.decomposed import LOSS_KERNELS
from verification.cases import Case, CaseBatch
from verification.compare import ParityError, check_parity_batch
from verification.divergences import none
from verification.dtypes import FLOAT64

from .ops_seen import OpsSeen

X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], dtype=torch.float64)
T = torch.tensor([2, 0])
W = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
P = torch.tensor([[0.25, 0.5, 1.0], [0.0, 0.75, 0.5]], dtype=torch.float64)  # probabilities and binary targets

# One call of each loss, with a tensor keyword argument where the loss takes one.
CALLS = {
    "binary_cross_entropy": (torch.sigmoid(X), P, {"weight": W}),
    "binary_cross_entropy_with_logits": (X, P, {"weight": W, "pos_weight": W.flip(0)}),
    "nll_loss": (X, T, {"weight": W, "ignore_index": 1}),
    "cross_entropy": (X, T, {"weight": W, "reduction": "sum"}),
    "kl_div": (X, P, {"reduction": "batchmean"}),
}


def test_each_call_runs_an_exported_session_with_tensor_arguments_as_graph_inputs():
    """One export per key; every call runs the session; weight and pos_weight are fed, not baked into the graph."""
    x, target, kwargs = CALLS["binary_cross_entropy_with_logits"]
    onnx_export.binary_cross_entropy_with_logits(x, target, **kwargs)
    exports, runs = onnx_export.COUNTS["exports"], onnx_export.COUNTS["session runs"]
    for scale in (2.0, 3.0):
        other = {name: value * scale for name, value in kwargs.items()}
        got = onnx_export.binary_cross_entropy_with_logits(x, target, **other)
        torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(x, target, **other), rtol=1e-15, atol=0)
    assert onnx_export.COUNTS["exports"] == exports
    assert onnx_export.COUNTS["session runs"] == runs + 2
    session = next(reversed(onnx_export._SESSIONS.values()))
    assert [value.name for value in session.get_inputs()] == ["input", "target", "weight", "pos_weight"]


def test_a_call_where_no_session_ran_is_an_adapter_error(monkeypatch):
    """A run that bypasses onnxruntime (here: torch's value handed back) is refused."""
    x, target, kwargs = CALLS["nll_loss"]
    monkeypatch.setattr(onnx_export, "run", lambda session, feeds, counts: F.nll_loss(x, target, **kwargs).numpy())
    with pytest.raises(AdapterError, match="no onnxruntime session ran"):
        onnx_export.nll_loss(x, target, **kwargs)


@pytest.mark.parametrize("loss", onnx_export.LOSSES)
def test_once_exported_no_torch_loss_runs(loss, monkeypatch):
    """After the export, with torch's losses and the exporter made to raise, the loss is still computed, and no ATen
    loss kernel runs in the call: the computation is onnxruntime's."""
    x, target, kwargs = CALLS[loss]
    want = getattr(F, loss)(x, target, **kwargs)
    getattr(onnx_export, loss)(x, target, **kwargs)  # exported here, or found in the cache
    for name in (*onnx_export.LOSSES, "log_softmax", "softmax", "logsigmoid"):
        monkeypatch.setattr(F, name, lambda *args, **kwargs: pytest.fail("the adapter called torch's loss"))
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: pytest.fail("the adapter exported again"))
    with OpsSeen() as ops:
        got = getattr(onnx_export, loss)(x, target, **kwargs)
    assert not LOSS_KERNELS & ops.ran, ops.ran
    assert all("loss" not in op and "softmax" not in op and "log" not in op for op in ops.ran), ops.ran
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)


def test_a_planted_bug_in_the_exported_graph_is_caught(monkeypatch):
    """An export of nll_loss that drops the class weights fails value parity."""

    class Unweighted(onnx_export._Loss):
        def forward(self, input, target, *tensors):
            return F.nll_loss(input, target, **self.fixed)

    monkeypatch.setattr(onnx_export, "_Loss", Unweighted)
    monkeypatch.setattr(onnx_export, "_SESSIONS", OrderedDict())
    kwargs = {"weight": np.array([1.0, 1.0, 3.0]), "reduction": "sum"}
    case = Case("nll_loss", np.array([[0.5, -1.0, 2.0]]), np.array([2]), kwargs)
    with pytest.raises(ParityError, match="nll_loss"):
        check_parity_batch(
            CaseBatch.of(case), onnx_export.nll_loss, form="functional", dtype=FLOAT64, device="cpu", divergence=none
        )


def test_the_backward_pass_is_unsupported_as_a_whole():
    for loss in onnx_export.LOSSES:
        x, target, kwargs = CALLS[loss]
        with pytest.raises(Unsupported) as raised:
            getattr(onnx_export, loss)(x.clone().requires_grad_(True), target, **kwargs)
        assert raised.value.whole
        assert raised.value.reason == onnx_export.UNSUPPORTED["backward pass"]


def test_a_dtype_without_kernels_is_unsupported_as_a_whole_with_onnxruntimes_message():
    """bfloat16: onnxruntime 1.32 has no CPU kernel for Mul, Sub, Where... in bfloat16. Either a later onnxruntime
    computes it, or the reason is onnxruntime's own NOT_IMPLEMENTED message."""
    x, target = X.to(torch.bfloat16), P.to(torch.bfloat16)
    try:
        got = onnx_export.kl_div(x, target)
    except Unsupported as unsupported:
        assert unsupported.whole
        assert "NOT_IMPLEMENTED" in unsupported.reason
    else:
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got, F.kl_div(x, target))


def test_versions():
    assert set(onnx_export.versions()) == {"torch", "onnxscript", "onnx", "onnxruntime", "opset"}


# ---------------------------------------------------------------------------------------------
# Where torch's exporter (torch 2.13, onnxscript 0.7) departs from torch's documented semantics.
# ---------------------------------------------------------------------------------------------


def test_the_exported_cross_entropy_drops_label_smoothing():
    """onnxscript's translation of aten::cross_entropy_loss is one SoftmaxCrossEntropyLoss node, which has no label
    smoothing: the exported loss is the unsmoothed one ("label_smoothing ... this was ignored due to ONNX not
    support", onnxscript/function_libs/torch_lib/ops/nn.py)."""
    got = onnx_export.cross_entropy(X, T, label_smoothing=0.25)
    torch.testing.assert_close(got, F.cross_entropy(X, T), rtol=1e-15, atol=0)
    assert abs(got.item() - F.cross_entropy(X, T, label_smoothing=0.25).item()) > 0.1


def test_the_exported_cross_entropy_of_probability_targets_is_an_invalid_model():
    """The same translation puts floating probability targets into SoftmaxCrossEntropyLoss's labels, which must
    be integers: onnxruntime refuses the model."""
    with pytest.raises(Exception, match=r"INVALID_GRAPH.*tensor\(double\).*labels|INVALID_GRAPH.*target"):
        onnx_export.cross_entropy(X, torch.softmax(P, 1))


def test_the_exported_cross_entropy_of_an_unbatched_input_is_an_invalid_model():
    """The translation passes an unbatched input (C,) to SoftmaxCrossEntropyLoss, which needs (N, C): its function
    body's Reshape fails shape inference."""
    with pytest.raises(Exception, match="Reshape"):
        onnx_export.cross_entropy(X[0], torch.tensor(2))


def test_uint8_class_indices_fail_the_export():
    """torch.export runs torch's decomposition of nll_loss_forward, which gathers with the uint8 target, and
    gather rejects uint8 (the same as adapters.decomposed's named divergence)."""
    assert F.nll_loss(X, T.to(torch.uint8)).item() == F.nll_loss(X, T).item()
    with pytest.raises(Exception, match=r"gather\(\): Expected dtype int32/int64 for index"):
        onnx_export.nll_loss(X, T.to(torch.uint8))


def test_an_unbatched_input_with_a_target_of_shape_1_fails_the_export():
    """torch computes an unbatched input (C,) with a target of shape (1,); torch.export's tracing of nll_loss
    raises 'size mismatch' for it (the same as adapters.decomposed's named divergence)."""
    assert F.nll_loss(X[0], torch.tensor([2])).item() == -2.0
    with pytest.raises(Exception, match="size mismatch"):
        onnx_export.nll_loss(X[0], torch.tensor([2]))


def test_class_weights_not_1_dimensional_fail_the_export():
    """torch's K-dimensional NLL takes C class weights of any shape (a (1, C) weight included); torch.export's
    tracing of nll_loss reshapes them as if 1-dimensional and raises (the same as adapters.decomposed's named
    divergence)."""
    x = torch.tensor([[[0.5], [-1.0]]], dtype=torch.float64)  # (N, C, d) = (1, 2, 1)
    target, weight = torch.tensor([[1]]), torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    assert F.nll_loss(x, target, weight=weight).item() == F.nll_loss(x, target, weight=weight.flatten()).item()
    with pytest.raises(Exception, match="is invalid for input of size 2"):
        onnx_export.nll_loss(x, target, weight=weight)


def test_the_exported_bce_with_logits_loses_the_log_sigmoid_of_negative_logits():
    """torch's decomposition of binary_cross_entropy_with_logits takes logsigmoid(x), which onnxscript translates
    as Log(Sigmoid(x)); onnxruntime's CPU Sigmoid loses the relative accuracy of small results (float32: exactly 0
    from about x = -18 down, so the loss is inf; float64: a relative error of about 2^-53 / sigmoid(x), so the loss
    at x = -20, target 0 is negative)."""
    x, one = torch.tensor(-20.0), torch.tensor(1.0)
    assert F.binary_cross_entropy_with_logits(x, one).item() == 20.0
    assert onnx_export.binary_cross_entropy_with_logits(x, one).item() == float("inf")
    x, zero = x.double(), torch.tensor(0.0, dtype=torch.float64)
    assert F.binary_cross_entropy_with_logits(x, zero).item() == pytest.approx(2.0611536e-09, rel=1e-7)
    assert onnx_export.binary_cross_entropy_with_logits(x, zero).item() < 0


def test_the_exported_mean_of_an_empty_input_is_0():
    """torch's 'mean' of the element-wise losses over an empty input is NaN (0 / 0); the exported graph takes it
    with ReduceMean, which onnxruntime returns as 0 for an empty tensor."""
    empty = torch.zeros(0, dtype=torch.float64)
    assert torch.isnan(F.binary_cross_entropy(empty, empty))
    assert onnx_export.binary_cross_entropy(empty, empty).item() == 0.0


def test_the_exported_cross_entropy_of_an_empty_batch_is_an_invalid_model():
    """torch: NaN. The exported SoftmaxCrossEntropyLoss node's function body reshapes the scores to (N, C, -1),
    which shape inference refuses for N = 0 (test_softmax_cross_entropy_fails_on_an_empty_batch in
    tests/adapters/test_onnx_operators.py)."""
    x, target = torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
    assert torch.isnan(F.cross_entropy(x, target))
    with pytest.raises(Exception, match="Reshape"):
        onnx_export.cross_entropy(x, target)
