"""torch's decompositions (adapters/decomposed.py): that the adapter really runs them, and the named divergences
where they depart from torch's documented semantics and its eager kernels. Each divergence test asserts what the
decomposition actually does, so it fails once torch changes it; the adapter's rule of the same name then goes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference
from adapters import AdapterError, decomposed
from verification.cases import Case, CaseBatch
from verification.compare import ParityError, check_parity_batch
from verification.divergences import none
from verification.dtypes import FLOAT64


def test_the_loss_kernels_are_decomposed_and_never_run():
    """The adapter decomposes nll_loss_forward, _log_softmax and their backwards, and no eager loss kernel runs."""
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    decomposed.cross_entropy(x, torch.tensor([0, 3, 1]), label_smoothing=0.1).backward()
    ran = decomposed.LAST_CALL
    assert not decomposed.LOSS_KERNELS & set(ran["kernels"])
    for op in ("aten.nll_loss_backward.default", "aten._log_softmax_backward_data.default"):
        assert ran["decomposed"][op] == 1, f"{op} was not decomposed in the backward pass"
    decomposed.binary_cross_entropy_with_logits(torch.randn(3), torch.rand(3))
    assert decomposed.LAST_CALL["decomposed"]["aten.binary_cross_entropy_with_logits.default"] == 1


def test_an_eager_loss_kernel_that_runs_is_an_adapter_error(monkeypatch):
    """Without its decomposition, nll_loss_forward would run torch's eager kernel: the adapter refuses."""
    monkeypatch.delitem(decomposed.TABLE, torch.ops.aten.nll_loss_forward.default)
    with pytest.raises(AdapterError, match="nll_loss_forward"):
        decomposed.nll_loss(torch.randn(2, 3), torch.tensor([0, 2]))


def test_a_planted_bug_in_a_decomposition_is_caught(monkeypatch):
    """A decomposition of nll_loss_forward that drops the class weights fails value parity."""
    original = decomposed.TABLE[torch.ops.aten.nll_loss_forward.default]

    def unweighted(self, target, weight, reduction, ignore_index):
        return original(self, target, None, reduction, ignore_index)

    monkeypatch.setitem(decomposed.TABLE, torch.ops.aten.nll_loss_forward.default, unweighted)
    kwargs = {"weight": np.array([1.0, 1.0, 3.0]), "reduction": "sum"}
    case = Case("nll_loss", np.array([[0.5, -1.0, 2.0]]), np.array([2]), kwargs)
    with pytest.raises(ParityError, match="nll_loss"):
        check_parity_batch(
            CaseBatch.of(case), decomposed.nll_loss, form="functional", dtype=FLOAT64,
            device="cpu", divergence=none,
        )  # fmt: skip


def test_uint8_class_indices_raise_in_the_decomposition():
    """Named divergence: torch 2.13's decomposition of nll_loss_forward gathers with the class-index target as
    index, and gather rejects uint8, which torch's eager kernels accept as class indices (the same value as int64)."""
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    eager = F.nll_loss(x, torch.tensor([2], dtype=torch.uint8))
    assert eager.item() == float(reference.nll_loss(x.numpy(), np.array([2], dtype=np.uint8)))
    with pytest.raises(RuntimeError, match=r"gather\(\): Expected dtype int32/int64 for index"):
        decomposed.nll_loss(x, torch.tensor([2], dtype=torch.uint8))
    with pytest.raises(RuntimeError, match=r"gather\(\): Expected dtype int32/int64 for index"):
        decomposed.cross_entropy(x, torch.tensor([2], dtype=torch.uint8))
    assert decomposed.nll_loss(x, torch.tensor([2])).item() == eager.item()


def test_unbatched_input_with_a_target_of_shape_1_raises_in_the_decomposition():
    """Named divergence: torch 2.13's decomposition of nll_loss_forward raises 'size mismatch' for an unbatched
    input (C,) with a class-index target of shape (1,), which torch's eager forward computes (its backward raises
    the same: test_unbatched_input_with_target_of_shape_1_has_no_backward)."""
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert F.nll_loss(x, torch.tensor([1])).item() == float(reference.nll_loss(x.numpy(), np.array([1])))
    for loss in (decomposed.nll_loss, decomposed.cross_entropy):
        with pytest.raises(RuntimeError, match="size mismatch"):
            loss(x, torch.tensor([1]))


def test_class_weights_not_1_dimensional_raise_in_the_decomposition():
    """Named divergence: torch 2.13's eager NLL takes C class weights of any shape (a (1, C) weight included);
    its decomposition reshapes them as if 1-dimensional and raises."""
    x = torch.tensor([[[0.5], [-1.0]]], dtype=torch.float64)  # (N, C, d) = (1, 2, 1)
    target, weight = torch.tensor([[1]]), torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    want = float(reference.nll_loss(x.numpy(), target.numpy(), weight=weight.numpy()))
    assert F.nll_loss(x, target, weight=weight).item() == want
    with pytest.raises(RuntimeError, match="is invalid for input of size 2"):
        decomposed.nll_loss(x, target, weight=weight)


def test_nll_gradient_is_nan_off_the_target_where_the_total_weight_is_0_in_the_decomposition():
    """Named divergence: with 'mean' and class weights that sum to 0 over the targets, torch's eager NLL backward
    gives NaN at the target and 0 elsewhere (as the reference does); the decomposition of nll_loss_backward
    divides every element by the total weight of 0 and gives NaN everywhere."""
    weight = torch.tensor([0.0, 1.0, 1.0])
    eager = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    F.nll_loss(eager, torch.tensor(0), weight=weight).backward()
    torch.testing.assert_close(eager.grad, torch.tensor([float("nan"), 0.0, 0.0]), equal_nan=True)
    ours = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    decomposed.nll_loss(ours, torch.tensor(0), weight=weight).backward()
    assert torch.isnan(ours.grad).all()


# --- what the decompositions reject, and what they do not ----------------------------------------------------

F64 = torch.float64


def _outcome(function, *args, **kwargs):
    """The exception class ``function(*args, **kwargs)`` raises, or None if it returns."""
    try:
        function(*args, **kwargs)
    except Exception as error:
        return type(error)
    return None


def test_bce_decomposition_checks_no_ranges_or_dtypes():
    """Named divergence: torch's eager BCE raises RuntimeError for an input or a target outside [0, 1] (NaN
    included) and for a target of another dtype; its decomposition checks none of them and computes a value."""
    half = torch.tensor([0.5], dtype=F64)
    for input, target in (
        (torch.tensor([1.5], dtype=F64), half),
        (torch.tensor([float("nan")], dtype=F64), half),
        (half, torch.tensor([2.0], dtype=F64)),
        (half, torch.tensor([0.5], dtype=torch.float32)),
    ):
        assert _outcome(F.binary_cross_entropy, input, target) is RuntimeError
        assert _outcome(decomposed.binary_cross_entropy, input, target) is None


def test_decompositions_accept_weights_that_enlarge_the_output():
    """Named divergence: torch's eager BCE and BCEWithLogits raise RuntimeError for a weight (or pos_weight) that
    would enlarge the output; the decompositions broadcast it and return the larger shape. A weight that does not
    broadcast at all raises RuntimeError in both."""
    scalar, three = torch.tensor(0.5, dtype=F64), torch.ones(3, dtype=F64)
    for loss, kwargs in (
        ("binary_cross_entropy", {"weight": three}),
        ("binary_cross_entropy_with_logits", {"weight": three}),
        ("binary_cross_entropy_with_logits", {"pos_weight": three}),
    ):
        assert _outcome(getattr(F, loss), scalar, scalar, reduction="none", **kwargs) is RuntimeError
        assert getattr(decomposed, loss)(scalar, scalar, reduction="none", **kwargs).shape == (3,)
        pair = torch.full((2,), 0.5, dtype=F64)
        assert _outcome(getattr(decomposed, loss), pair, pair, **kwargs) is RuntimeError


def test_nll_decomposition_checks_no_dtypes():
    """Named divergence: torch's eager NLL and cross-entropy raise RuntimeError for int32 class indices and for
    class weights of another dtype than the input; the decompositions compute both."""
    x = torch.tensor([[0.5, 1.0]], dtype=F64)
    for loss in ("nll_loss", "cross_entropy"):
        for target, kwargs in (
            (torch.tensor([1], dtype=torch.int32), {}),
            (torch.tensor([1]), {"weight": torch.ones(2)}),
        ):
            assert _outcome(getattr(F, loss), x, target, **kwargs) is RuntimeError
            assert _outcome(getattr(decomposed, loss), x, target, **kwargs) is None


def test_nll_decomposition_raises_other_exception_classes():
    """Named divergence: where torch's eager NLL raises IndexError (a class index out of range), ValueError (an
    unbatched input with a target of two classes) or RuntimeError (a 2-dimensional target for an (N, C) input,
    class weights of the wrong size), the decomposition raises RuntimeError, RuntimeError, AssertionError and
    AssertionError."""
    x, unbatched = torch.tensor([[0.5, 1.0]], dtype=F64), torch.tensor([0.5], dtype=F64)
    for loss in ("nll_loss", "cross_entropy"):
        for input, target, kwargs, eager, ours in (
            (x, torch.tensor([2]), {}, IndexError, RuntimeError),
            (unbatched, torch.tensor([0, 0]), {}, ValueError, RuntimeError),  # (C,) = (1,), target (2,)
            (x[:, :1], torch.tensor([[0, 0]]), {}, RuntimeError, AssertionError),  # (N, C) = (1, 1), target (1, 2)
            (x, torch.tensor([1]), {"weight": torch.ones(3, dtype=F64)}, RuntimeError, AssertionError),
        ):
            assert _outcome(getattr(F, loss), input, target, **kwargs) is eager
            assert _outcome(getattr(decomposed, loss), input, target, **kwargs) is ours
