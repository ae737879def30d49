"""ONNX's loss operators in onnxruntime (adapters/onnx_operators.py): that each call runs an onnxruntime session and
no torch loss, that a planted bug in the ONNX graph fails value parity, the adapter's Unsupported declarations and
compositions, and where onnxruntime departs from torch's documented semantics. Each divergence test asserts what
onnxruntime actually does, so it fails once onnxruntime changes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[matrix]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[matrix]')")

import onnx
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph

from adapters import AdapterError, Unsupported, onnx_operators
from adapters.decomposed import LOSS_KERNELS
from verification.cases import Case, CaseBatch
from verification.compare import ParityError, check_parity_batch
from verification.divergences import none
from verification.dtypes import FLOAT64

from .ops_seen import OpsSeen

X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], dtype=torch.float64)
T = torch.tensor([2, 0])
W = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)


@pytest.fixture
def fresh_sessions():
    """No session cached from before, and none kept after (a test that plants a bug builds its own)."""
    onnx_operators._session.cache_clear()
    yield
    onnx_operators._session.cache_clear()


def test_each_call_runs_an_onnxruntime_session(fresh_sessions):
    """Every call runs a session; one graph serves every call with the same dtypes, ranks and attributes."""
    runs, built = onnx_operators.COUNTS["session runs"], onnx_operators.COUNTS["sessions built"]
    for loss in (onnx_operators.nll_loss, onnx_operators.cross_entropy):
        for rows in (1, 2):
            got = loss(X[:rows], T[:rows], weight=W, ignore_index=1)
            torch.testing.assert_close(got, getattr(F, loss.__name__)(X[:rows], T[:rows], weight=W, ignore_index=1))
    assert onnx_operators.COUNTS["session runs"] == runs + 4
    assert onnx_operators.COUNTS["sessions built"] == built + 2


def test_a_call_where_no_session_ran_is_an_adapter_error(monkeypatch):
    """A run that bypasses onnxruntime (here: torch's value handed back) is refused."""
    monkeypatch.setattr(onnx_operators, "run", lambda session, feeds, counts: F.nll_loss(X, T).numpy())
    with pytest.raises(AdapterError, match="no session ran"):
        onnx_operators.nll_loss(X, T)


def test_the_computation_does_not_call_torch(monkeypatch):
    """With torch's losses made to raise, the adapter still computes, and no ATen loss kernel runs in the call."""
    want = {loss: getattr(F, loss)(X, T, weight=W) for loss in onnx_operators.LOSSES}
    for name in (*onnx_operators.LOSSES, "log_softmax", "softmax"):
        monkeypatch.setattr(F, name, lambda *args, **kwargs: pytest.fail("the adapter called torch"))
    for loss in onnx_operators.LOSSES:
        with OpsSeen() as ops:
            got = getattr(onnx_operators, loss)(X, T, weight=W)
        assert not LOSS_KERNELS & ops.ran, ops.ran
        assert all("loss" not in op and "softmax" not in op for op in ops.ran), ops.ran
        torch.testing.assert_close(got, want[loss], rtol=1e-15, atol=0)


def _planted(monkeypatch, op_type, change):
    """onnx.helper.make_node, with ``change(inputs, attributes)`` applied to every ``op_type`` node it makes."""
    make_node = onnx.helper.make_node

    def planted(kind, inputs, outputs, **attributes):
        if kind == op_type:
            inputs, attributes = change(list(inputs), dict(attributes))
        return make_node(kind, inputs, outputs, **attributes)

    monkeypatch.setattr(onnx.helper, "make_node", planted)


def _parity(case, impl):
    check_parity_batch(CaseBatch.of(case), impl, form="functional", dtype=FLOAT64, device="cpu", divergence=none)


def test_a_graph_that_drops_the_class_weights_is_caught(monkeypatch, fresh_sessions):
    """A NegativeLogLikelihoodLoss node built without its weight input fails value parity."""
    _planted(monkeypatch, "NegativeLogLikelihoodLoss", lambda inputs, attributes: (inputs[:2], attributes))
    case = Case("nll_loss", np.array([[0.5, -1.0, 2.0]]), np.array([2]), {"weight": np.array([1.0, 1.0, 3.0])})
    with pytest.raises(ParityError, match="nll_loss"):
        _parity(case.with_kwargs(reduction="sum"), onnx_operators.nll_loss)


def test_a_graph_with_the_wrong_reduction_is_caught(monkeypatch, fresh_sessions):
    """A SoftmaxCrossEntropyLoss node whose 'mean' is a 'sum' fails value parity."""

    def sum_for_mean(inputs, attributes):
        if attributes["reduction"] == "mean":
            attributes["reduction"] = "sum"
        return inputs, attributes

    _planted(monkeypatch, "SoftmaxCrossEntropyLoss", sum_for_mean)
    case = Case("cross_entropy", np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]]), np.array([2, 0]), {})
    with pytest.raises(ParityError, match="cross_entropy"):
        _parity(case, onnx_operators.cross_entropy)


def test_label_smoothing_and_probability_targets_are_unsupported_arguments():
    """What SoftmaxCrossEntropyLoss lacks leaves the case out; a negative or NaN smoothing is none, computed."""
    for kwargs, target in (({"label_smoothing": 0.1}, T), ({}, torch.softmax(X, 1))):
        with pytest.raises(Unsupported) as raised:
            onnx_operators.cross_entropy(X, target, **kwargs)
        assert not raised.value.whole
        assert raised.value.reason in onnx_operators.UNSUPPORTED.values()
    for smoothing in (0.0, -0.5, float("nan")):
        got = onnx_operators.cross_entropy(X, T, label_smoothing=smoothing)
        torch.testing.assert_close(got, F.cross_entropy(X, T, label_smoothing=smoothing), rtol=1e-15, atol=0)


def test_the_backward_pass_is_unsupported_as_a_whole():
    x = X.clone().requires_grad_(True)
    for loss in onnx_operators.LOSSES:
        with pytest.raises(Unsupported) as raised:
            getattr(onnx_operators, loss)(x, T)
        assert raised.value.whole
        assert raised.value.reason == onnx_operators.UNSUPPORTED["backward pass"]


def test_a_dtype_without_kernels_is_unsupported_as_a_whole_with_onnxruntimes_message():
    """bfloat16: onnxruntime 1.32 has no CPU kernel for ops of the expanded functions (Where, ReduceMax). Either a
    later onnxruntime computes it, or the reason is onnxruntime's own NOT_IMPLEMENTED message."""
    for loss in onnx_operators.LOSSES:
        x = X.to(torch.bfloat16)
        try:
            got = getattr(onnx_operators, loss)(x, T)
        except Unsupported as unsupported:
            assert unsupported.whole
            assert "NOT_IMPLEMENTED" in unsupported.reason
        else:
            assert got.dtype == torch.bfloat16
            torch.testing.assert_close(got, getattr(F, loss)(x, T))


@pytest.mark.parametrize("loss", onnx_operators.LOSSES)
def test_the_compositions_around_the_operator_equal_torch(loss):
    """An unbatched input with a target of shape () or (1,), a uint8 target up to (N, C), and a (1, C) class weight
    for a K-dimensional input: torch's semantics composed around the operator, equal to torch."""
    adapter, torch_loss = getattr(onnx_operators, loss), getattr(F, loss)
    for target in (torch.tensor(2), torch.tensor([2])):
        for reduction in ("none", "mean", "sum"):
            got, want = adapter(X[0], target, reduction=reduction), torch_loss(X[0], target, reduction=reduction)
            assert got.shape == want.shape == ()
            torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    uint8 = T.to(torch.uint8)
    torch.testing.assert_close(adapter(X, uint8, weight=W), torch_loss(X, uint8, weight=W), rtol=1e-15, atol=0)
    k_dim, k_target = X.reshape(1, 2, 3), torch.tensor([[1, 0, 1]])
    weight = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(
        adapter(k_dim, k_target, weight=weight), torch_loss(k_dim, k_target, weight=weight), rtol=1e-15, atol=0
    )


def test_versions():
    assert set(onnx_operators.versions()) == {"onnx", "onnxruntime", "opset"}


# ---------------------------------------------------------------------------------------------
# Where onnxruntime 1.32, running the operators' ONNX function bodies, departs from torch's documented semantics.
# ---------------------------------------------------------------------------------------------


def _empty(shape):
    return torch.zeros(shape, dtype=torch.float64), torch.zeros((shape[0], *shape[2:]), dtype=torch.int64)


def test_softmax_cross_entropy_fails_on_an_empty_batch():
    """Named divergence. torch: NaN for 'mean', 0 for 'sum', an empty tensor for 'none'. SoftmaxCrossEntropyLoss's
    function body reshapes the scores to (N, C, -1), which onnxruntime cannot do for N = 0; and for a zero size at
    target position 2 or later, its reshape back to the target's shape reads the 0 as 'copy this dimension' and
    fails. A zero size at position 1 only is computed. NegativeLogLikelihoodLoss computes them all."""
    for shape in ((0, 3), (0, 3, 2), (1, 1, 1, 0), (2, 3, 2, 0, 1), (2, 3, 0, 0)):
        x, target = _empty(shape)
        assert torch.isnan(F.cross_entropy(x, target))
        for reduction in ("mean", "sum", "none"):
            with pytest.raises(Fail, match="Reshape"):
                onnx_operators.cross_entropy(x, target, reduction=reduction)
        assert torch.isnan(onnx_operators.nll_loss(x, target))
    for shape in ((2, 3, 0), (1, 3, 0, 2)):
        x, target = _empty(shape)
        assert torch.isnan(onnx_operators.cross_entropy(x, target))
        assert (
            onnx_operators.cross_entropy(x, target, reduction="none").shape
            == F.cross_entropy(x, target, reduction="none").shape
        )


def test_the_empty_batch_rule_covers_the_shapes_that_fail_and_no_others():
    """known_divergence names exactly the index-target cross_entropy shapes of the test above."""
    for shape, named in (((0, 3), True), ((1, 1, 1, 0), True), ((2, 3, 0), False), ((1, 3, 0, 2), False)):
        x, target = _empty(shape)
        for loss in onnx_operators.LOSSES:
            case = Case(loss, x.numpy(), target.numpy(), {})
            reason = onnx_operators.known_divergence(case)
            assert (reason is not None) == (named and loss == "cross_entropy"), (shape, loss)
            if reason:
                assert "(test_softmax_cross_entropy_fails_on_an_empty_batch)" in reason
    probabilities = Case("cross_entropy", np.zeros((0, 3)), np.zeros((0, 3)), {})
    assert onnx_operators.known_divergence(probabilities) is None  # left out as unsupported, not as this


def test_an_unknown_reduction_is_a_sum():
    """torch raises ValueError for a reduction other than 'none', 'mean' or 'sum'; both operators take any other
    string as 'sum'."""
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.nll_loss(X, T, reduction="Mean")
    for loss in onnx_operators.LOSSES:
        adapter = getattr(onnx_operators, loss)
        for reduction in ("", "Mean", "average"):
            assert adapter(X, T, reduction=reduction).item() == adapter(X, T, reduction="sum").item()


def test_a_class_index_from_minus_c_to_minus_1_counts_from_the_end():
    """torch raises IndexError for a class index outside [0, C) that is not ignore_index; onnxruntime's
    GatherElements takes an index in [-C, -1] as counting from the last class, and fails only below -C."""
    with pytest.raises(IndexError, match="out of bounds"):
        F.nll_loss(X, torch.tensor([-1, 0]))
    for loss in onnx_operators.LOSSES:
        adapter = getattr(onnx_operators, loss)
        assert adapter(X, torch.tensor([-1, 0])).item() == adapter(X, torch.tensor([2, 0])).item()
        with pytest.raises(Exception, match="GatherElements"):
            adapter(X, torch.tensor([-4, 0]))


def test_arguments_torch_rejects_that_onnxruntime_computes():
    """Named divergence: torch rejects int32 targets, class weights of more than C entries, and a target with
    fewer rows (or positions) than the input; onnxruntime computes them all, the last two on the leading block of
    the input."""
    k_dim, k_target = X.reshape(1, 3, 2), torch.tensor([[2]])  # (N, C, d) = (1, 3, 2), a target of 1 position
    with pytest.raises(RuntimeError, match="expected target dtype"):
        F.nll_loss(X, T.to(torch.int32))
    with pytest.raises(RuntimeError, match="weight tensor should be defined"):
        F.nll_loss(X, T, weight=torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch_size"):
        F.nll_loss(X, T[:1])
    with pytest.raises(RuntimeError, match="Expected target size"):
        F.nll_loss(k_dim, k_target)
    for loss in onnx_operators.LOSSES:
        adapter, torch_loss = getattr(onnx_operators, loss), getattr(F, loss)
        torch.testing.assert_close(adapter(X, T.to(torch.int32)), torch_loss(X, T), rtol=1e-15, atol=0)
        longer = torch.cat([W, torch.tensor([7.0], dtype=torch.float64)])
        torch.testing.assert_close(adapter(X, T, weight=longer), torch_loss(X, T, weight=W), rtol=1e-15, atol=0)
        torch.testing.assert_close(adapter(X, T[:1]), torch_loss(X[:1], T[:1]), rtol=1e-15, atol=0)
        got, want = adapter(k_dim, k_target, reduction="none"), torch_loss(k_dim[..., :1], k_target, reduction="none")
        torch.testing.assert_close(got, want, rtol=1e-15, atol=0)


# (what is wrong, input, target, keyword arguments, torch's exception class, onnxruntime's): one call of each
# defect of verification/rejections.py that onnxruntime rejects, for both losses.
OWN_CLASSES = [
    ("a 0-dimensional input", X[0, 0], torch.tensor(0), {}, None, Fail),
    ("a target with more rows", X, torch.tensor([2, 0, 1]), {}, ValueError, InvalidArgument),
    ("a class index of C", X, torch.tensor([3, 0]), {}, IndexError, Fail),
    ("a class index below -C", X, torch.tensor([-4, 0]), {}, IndexError, Fail),
    ("a (1, C) class weight for an (N, C) input", X, T, {"weight": W.reshape(1, 3)}, RuntimeError, Fail),
    ("class weights of another dtype", X, T, {"weight": W.float()}, RuntimeError, Fail),
    ("an int16 target", X, T.to(torch.int16), {}, RuntimeError, InvalidGraph),
    ("a float64 target", X, T.double(), {}, RuntimeError, InvalidGraph),
    ("a 2-dimensional target for an (N, C) input", X, T.reshape(2, 1).repeat(1, 2), {}, RuntimeError, Fail),
    (
        "a K-dimensional target larger than the input",
        X.reshape(1, 3, 2),
        torch.zeros(1, 3, dtype=torch.int64),
        {},
        RuntimeError,
        InvalidArgument,
    ),
    ("an unbatched input with a target of 2 classes", X[0], torch.tensor([0, 1]), {}, ValueError, Fail),
    (
        "a uint8 target for a K-dimensional input",
        X.reshape(1, 3, 2),
        torch.tensor([[2, 0]], dtype=torch.uint8),
        {},
        RuntimeError,
        InvalidGraph,
    ),
]


@pytest.mark.parametrize("loss", onnx_operators.LOSSES)
@pytest.mark.parametrize(
    "what, input, target, kwargs, torch_class, ort_class", OWN_CLASSES, ids=[c[0] for c in OWN_CLASSES]
)
def test_onnxruntime_rejects_with_its_own_exception_classes(loss, what, input, target, kwargs, torch_class, ort_class):
    """Named divergence: what torch rejects with RuntimeError, ValueError or IndexError (and onnxruntime does not
    compute), onnxruntime rejects with its own classes, Fail, InvalidArgument or InvalidGraph (no subclasses of
    torch's). A 0-dimensional input is torch's ValueError for nll_loss, RuntimeError for cross_entropy."""
    if torch_class is None:
        torch_class = ValueError if loss == "nll_loss" else RuntimeError
    with pytest.raises(torch_class):
        getattr(F, loss)(input, target, **kwargs)
    with pytest.raises(Exception) as raised:
        getattr(onnx_operators, loss)(input, target, **kwargs)
    assert type(raised.value) is ort_class, raised.value
    assert not isinstance(raised.value, RuntimeError | ValueError | IndexError)


def test_cross_entropy_of_an_integer_target_of_the_inputs_shape_raises_onnxruntimes_fail():
    """Named divergence: torch reads a target of the input's shape as probabilities and raises RuntimeError for an
    integer one; the adapter hands it to SoftmaxCrossEntropyLoss as labels, whose shape inference raises Fail."""
    for input in (X, X[0]):
        target = torch.zeros(input.shape, dtype=torch.int64)
        with pytest.raises(RuntimeError, match="Expected floating point type"):
            F.cross_entropy(input, target)
        with pytest.raises(Fail):
            onnx_operators.cross_entropy(input, target)


def test_every_named_divergence_names_a_test_of_this_module():
    """Each rejection reason ends with the tests that pin it; every test a reason of the adapter names (the value
    rule's included) is a test here."""
    import inspect
    import re

    module = globals()
    for defect, reason in onnx_operators.REJECTION_DIVERGENCES.items():
        assert re.fullmatch(r".*\((test_[a-z0-9_, ]+)\)", reason, re.DOTALL), defect
    named = re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", inspect.getsource(onnx_operators))
    assert len(set(named)) >= 5
    for name in named:
        assert callable(module.get(name)), name
