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

from onnxruntime.capi.onnxruntime_pybind11_state import Fail
from torch.onnx._internal.exporter._errors import TorchExportError

import reference
from adapters import AdapterError, Unsupported, onnx_export
from adapters.decomposed import LOSS_KERNELS
from verification.cases import Case, CaseBatch
from verification.compare import ParityError, check_parity_batch
from verification.divergences import none
from verification.dtypes import FLOAT32, FLOAT64

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


def test_the_exported_cross_entropy_of_a_zero_size_at_target_position_2_is_an_invalid_model():
    """As for an empty batch: the node's reshape back to the target's shape reads the 0 as 'copy this dimension'."""
    x, target = torch.zeros(1, 1, 1, 0, dtype=torch.float64), torch.zeros(1, 1, 0, dtype=torch.int64)
    assert torch.isnan(F.cross_entropy(x, target))
    with pytest.raises(Fail, match="Reshape"):
        onnx_export.cross_entropy(x, target)


def test_the_exported_bce_takes_log1p_as_log_of_1_plus_x():
    """torch's decomposition of binary_cross_entropy takes log1p(-p), which onnxscript translates as Log(1 + (-p)):
    1 - p is rounded, so for a small p the term (1 - y) log1p(-p) keeps only an absolute accuracy of about one unit
    of roundoff (float64: 1e-9 comes out as 9.99999972e-10, where torch is exact to the last bit)."""
    p, zero = torch.tensor([1e-9, 0.75], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    want = F.binary_cross_entropy(p, zero, reduction="none")
    assert want[0].item() == 1.0000000005000001e-09
    got = onnx_export.binary_cross_entropy(p, zero, reduction="none")
    assert abs(got[0].item() - want[0].item()) > 1e-17  # 2.8e-17 off, a relative error of 2.8e-8
    assert got[1].item() == want[1].item()  # above 0.5, 1 - p is exact
    # bfloat16, which onnxruntime computes in float32: 1.2014e-07 comes out as 1.1921e-07, 0.8% off
    p, zero = torch.tensor(1.2e-7, dtype=torch.bfloat16), torch.tensor(0.0, dtype=torch.bfloat16)
    assert p.item() == 1.2014061212539673e-07
    assert F.binary_cross_entropy(p, zero).item() == p.item()
    assert onnx_export.binary_cross_entropy(p, zero).item() == 1.1920928955078125e-07


def test_the_exported_bce_with_logits_is_inaccurate_for_positive_logits_where_the_log_sigmoid_is_the_loss():
    """For a target of 1 the loss is -log(sigmoid(x)) ~ e^-x: Log(Sigmoid(x)) keeps it only to about one unit of
    roundoff absolutely: at x = 30 (float64) it is 9.348e-14 where torch gives 9.358e-14 (a relative error of
    1e-3), and at x = 40 it is 0."""
    x, one = torch.tensor([30.0, 40.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    want = F.binary_cross_entropy_with_logits(x, one, reduction="none")
    assert want[0].item() == pytest.approx(9.357622968839299e-14, rel=1e-12)
    got = onnx_export.binary_cross_entropy_with_logits(x, one, reduction="none")
    assert abs(got[0].item() / want[0].item() - 1) > 1e-4
    assert got[1].item() == 0.0 < want[1].item()


# --- what the export rejects, and what it does not ------------------------------------------------------------

F64 = torch.float64
V = torch.tensor([0.25, 0.75], dtype=F64)  # probabilities, binary targets, logits
K = X.reshape(1, 3, 2)  # (N, C, d) = (1, 3, 2)

# (loss, input, target, keyword arguments, the exception torch raises, the one the export fails with as its cause:
# torch's decomposition of nll_loss_forward raises its own for three): calls torch rejects while torch.export traces
# the loss, one for each defect of verification/rejections.py named so.
TRACED = [
    ("binary_cross_entropy", V, V, {"reduction": "Mean"}, ValueError, ValueError),
    ("binary_cross_entropy", V, V[:1], {}, ValueError, ValueError),
    ("binary_cross_entropy", V, V, {"weight": torch.ones(3, dtype=F64)}, RuntimeError, RuntimeError),
    ("binary_cross_entropy_with_logits", V, V, {"reduction": ""}, ValueError, ValueError),
    ("binary_cross_entropy_with_logits", V, V[:1], {}, ValueError, ValueError),
    ("binary_cross_entropy_with_logits", V, V, {"pos_weight": torch.ones(3, dtype=F64)}, RuntimeError, RuntimeError),
    ("kl_div", V, V, {"reduction": "batch"}, ValueError, ValueError),
    ("kl_div", torch.tensor([1, 2]), V, {}, RuntimeError, RuntimeError),
    ("kl_div", V, torch.ones(3, dtype=F64), {}, RuntimeError, RuntimeError),
    *[
        (loss, *call)
        for loss in ("nll_loss", "cross_entropy")
        for call in (
            (X, T, {"reduction": "Sum"}, ValueError, ValueError),
            (X, torch.tensor([2, 0, 1]), {}, ValueError, ValueError),
            (X, T, {"weight": torch.ones(4, dtype=F64)}, RuntimeError, AssertionError),
            (X, T.to(torch.int16), {}, RuntimeError, RuntimeError),
            (X, T.reshape(2, 1).repeat(1, 2), {}, RuntimeError, AssertionError),
            (K, torch.zeros(1, 3, dtype=torch.int64), {}, RuntimeError, RuntimeError),
            (X[0], torch.tensor([0, 1]), {}, ValueError, RuntimeError),
            (K, torch.tensor([[2, 0]], dtype=torch.uint8), {}, RuntimeError, RuntimeError),
        )
    ],
    ("nll_loss", X[0, 0], torch.tensor(0), {}, ValueError, ValueError),
    ("cross_entropy", X[0, 0], torch.tensor(0), {}, RuntimeError, RuntimeError),
    ("cross_entropy", X, T, {"label_smoothing": 1.5}, RuntimeError, RuntimeError),
    ("cross_entropy", X, torch.softmax(X, 1), {"ignore_index": 0}, RuntimeError, RuntimeError),
    ("cross_entropy", X, torch.softmax(X, 1), {"weight": torch.ones(4, dtype=F64)}, RuntimeError, RuntimeError),
    (
        "cross_entropy",
        K,
        torch.tensor([[2, 0]]),
        {"weight": W.reshape(1, 3), "label_smoothing": 0.5},
        RuntimeError,
        RuntimeError,
    ),
    ("cross_entropy", X, torch.zeros(2, 3, dtype=torch.int64), {}, RuntimeError, RuntimeError),
]


@pytest.mark.parametrize("loss, input, target, kwargs, torch_class, cause", TRACED, ids=lambda value: None)
def test_what_torch_rejects_while_tracing_fails_the_export_with_torch_export_error(
    loss, input, target, kwargs, torch_class, cause
):
    """Named divergence: where torch's own checks reject a call while torch.export traces the loss, the export
    fails with the exporter's TorchExportError (a subclass of RuntimeError, never of ValueError), its cause torch's
    exception, or for three defects of nll_loss the one torch's decomposition raises (AssertionError for class
    weights of the wrong size and a 2-dimensional target, RuntimeError 'size mismatch' for an unbatched input with
    a target of several classes): not the class torch raises."""
    with pytest.raises(torch_class):
        getattr(F, loss)(input, target, **kwargs)
    with pytest.raises(TorchExportError) as raised:
        getattr(onnx_export, loss)(input, target, **kwargs)
    assert type(raised.value.__cause__) is cause, raised.value.__cause__


def test_what_torch_checks_on_values_the_exported_graph_computes():
    """Named divergence: torch's BCE raises RuntimeError for an input or target outside [0, 1] and for a target of
    another dtype, and BCE and BCEWithLogits for a weight or pos_weight that would enlarge the output; the checks
    are on values or are not traced, and the exported graph computes each (broadcasting the weights both ways)."""
    outside, half, scalar = torch.tensor([1.5, 0.5], dtype=F64), V, torch.tensor(0.5, dtype=F64)
    for input, target in ((outside, half), (half, outside), (half, half.float())):
        assert _outcome(F.binary_cross_entropy, input, target) is RuntimeError
        assert onnx_export.binary_cross_entropy(input, target).shape == ()
    for loss, kwargs in (
        ("binary_cross_entropy", {"weight": torch.ones(3, dtype=F64)}),
        ("binary_cross_entropy_with_logits", {"weight": torch.ones(3, dtype=F64)}),
        ("binary_cross_entropy_with_logits", {"pos_weight": torch.ones(3, dtype=F64)}),
    ):
        assert _outcome(getattr(F, loss), scalar, scalar, reduction="none", **kwargs) is RuntimeError
        assert getattr(onnx_export, loss)(scalar, scalar, reduction="none", **kwargs).shape == (3,)


def test_the_exported_nll_computes_int32_targets_and_counts_negative_class_indices_from_the_end():
    """Named divergence: torch rejects int32 class indices (RuntimeError) and a class index outside [0, C)
    (IndexError); the exported graph computes int32 targets, and onnxruntime's GatherElements takes a class index
    in [-C, -1] as counting from the last class (as in adapters.onnx_operators)."""
    for loss in ("nll_loss", "cross_entropy"):
        want = getattr(F, loss)(X, T)
        assert _outcome(getattr(F, loss), X, T.int()) is RuntimeError
        assert _outcome(getattr(F, loss), X, torch.tensor([-1, 0])) is IndexError
        assert getattr(onnx_export, loss)(X, T.int()).item() == want.item()
        assert getattr(onnx_export, loss)(X, torch.tensor([-1, 0])).item() == want.item()


@pytest.mark.parametrize("loss", ["nll_loss", "cross_entropy"])
def test_onnxruntime_rejects_what_the_export_does_not_check_with_its_own_exception_classes(loss):
    """Named divergence: a class index below -C or from C on, and class weights of another dtype than the input,
    pass the export; onnxruntime rejects them with its Fail, not torch's IndexError and RuntimeError. An unbatched
    cross_entropy input is an invalid model whatever its target."""
    for target, kwargs, torch_class in (
        (torch.tensor([3, 0]), {}, IndexError),
        (torch.tensor([-4, 0]), {}, IndexError),
        (T, {"weight": W.float()}, RuntimeError),
    ):
        assert _outcome(getattr(F, loss), X, target, **kwargs) is torch_class
        with pytest.raises(Fail):
            getattr(onnx_export, loss)(X, target, **kwargs)
    if loss == "cross_entropy":
        assert _outcome(F.cross_entropy, X[0], torch.tensor(3)) is IndexError
        with pytest.raises(Fail, match="Reshape"):
            onnx_export.cross_entropy(X[0], torch.tensor(3))


def _outcome(function, *args, **kwargs):
    """The exception class ``function(*args, **kwargs)`` raises, or None if it returns."""
    try:
        function(*args, **kwargs)
    except Exception as error:
        return type(error)
    return None


def test_every_named_divergence_names_a_test_of_this_module():
    """Each rejection reason ends with the tests that pin it; every test a reason of the adapter names (value rules
    included) is a test here."""
    import inspect
    import re

    module = globals()
    for reason in onnx_export.REJECTION_DIVERGENCES.values():
        assert re.fullmatch(r".*\((test_[a-z0-9_, ]+)\)", reason, re.DOTALL), reason
    named = re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", inspect.getsource(onnx_export))
    assert len(set(named)) >= 15
    for name in named:
        assert callable(module.get(name)), name


@pytest.mark.parametrize("dtype", [FLOAT64, FLOAT32], ids=str)
def test_outside_the_accuracy_rules_the_exported_binary_losses_are_within_torchs_bound(dtype):
    """The thresholds of LOG_SIGMOID_INACCURATE and LOG1P_INACCURATE_BELOW leave nothing out that the export
    computes within the tolerance model's bound: on a grid of logits in [-1.5, 1.5] and of inputs in [0.001, 1], for
    targets in [0, 1], the cases no rule names are all within it."""
    from verification import registry

    x = dtype.snap(np.linspace(-1.5, 1.5, 301))
    p = dtype.snap(np.concatenate([np.geomspace(1e-3, 0.5, 150), np.linspace(0.5, 1.0, 151)]))
    for loss, input in (("binary_cross_entropy_with_logits", x), ("binary_cross_entropy", p)):
        for y in (0.0, 0.25, 0.5, 1.0):
            target = np.full_like(input, y)
            kept = [
                k
                for k in range(len(input))
                if onnx_export.known_divergence(Case(loss, input[k : k + 1], target[k : k + 1], {}), dtype) is None
            ]
            assert kept
            got = getattr(onnx_export, loss)(
                torch.tensor(input[kept]).to(dtype.torch), torch.tensor(target[kept]).to(dtype.torch), reduction="none"
            )
            want = getattr(reference, loss)(input[kept], target[kept], reduction="none")
            bound = registry.error_bound(loss, dtype, input[kept], target[kept], reduction="none")
            error = np.abs(got.double().numpy() - want)
            assert np.all(error <= bound), (loss, y, input[kept][error > bound])
