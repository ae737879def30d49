"""torch.compile (adapters/compiled.py): that the adapter really runs compiled code, that a call which ran eagerly
is caught, and that a planted bug in a compiled function fails value parity."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adapters import AdapterError, compiled
from tests.adapters.rejection_divergences import assert_still_diverges
from verification.cases import Case, CaseBatch
from verification.compare import ParityError, check_parity_batch
from verification.divergences import none
from verification.dtypes import BFLOAT16, FLOAT16, FLOAT32, FLOAT64


def test_each_call_runs_compiled_code():
    """A call compiles a graph the first time and runs compiled code every time, backward pass included."""
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    runs = compiled.COUNTS["compiled runs"]
    value = compiled.cross_entropy(x, torch.tensor([0, 3, 1]), label_smoothing=0.25)
    value.backward()
    assert compiled.COUNTS["compiled runs"] == runs + 1
    assert compiled.COUNTS["graphs compiled"] >= 1
    x_eager = x.detach().requires_grad_(True)
    F.cross_entropy(x_eager, torch.tensor([0, 3, 1]), label_smoothing=0.25).backward()
    torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-14, atol=1e-15)


def test_the_adapter_names_the_vector_instructions_inductor_generates_code_for():
    """The run's versions name inductor's instruction set, which follows torch's CPU capability: none under
    ATEN_CPU_CAPABILITY=default (so that a matrix of such a run neither merges with nor reads as one of vectorised
    compiled code)."""
    read = "from adapters import compiled; print(compiled.versions()['vector instructions'])"
    environment = os.environ | {"ATEN_CPU_CAPABILITY": "default"}
    printed = subprocess.run([sys.executable, "-c", read], env=environment, capture_output=True, text=True)
    assert printed.stdout.strip() == "INVALID_VEC_ISA", printed.stderr


def test_a_call_that_ran_eagerly_is_an_adapter_error():
    """Under the 'force_eager' stance, torch.compile runs the function eagerly, as dynamo's fall back does: the
    adapter refuses to call that compiled."""
    with torch.compiler.set_stance("force_eager"), pytest.raises(AdapterError, match="ran eagerly"):
        compiled.nll_loss(torch.randn(2, 3), torch.tensor([0, 2]))


def test_a_planted_bug_in_a_compiled_function_is_caught():
    """A compiled cross-entropy that drops the label smoothing fails value parity."""

    def without_smoothing(input, target, **kwargs):
        kwargs.pop("label_smoothing", None)
        return F.cross_entropy(input, target, **kwargs)

    planted = compiled.compiled_function("cross_entropy", without_smoothing)
    case = Case("cross_entropy", np.array([[0.5, -1.0, 2.0]]), np.array([2]), {"label_smoothing": 0.5})
    with pytest.raises(ParityError, match="cross_entropy"):
        check_parity_batch(CaseBatch.of(case), planted, form="functional", dtype=FLOAT64, device="cpu", divergence=none)


@pytest.mark.parametrize("defect", sorted(compiled.REJECTION_DIVERGENCES), ids=str)
def test_compiled_code_does_not_reject_as_torch_does(defect):
    """Named divergence: for each defect compiled code is named for, some input with that defect is computed by the
    compiled graph, or rejected with another exception class than torch's eager kernels raise (dynamo's
    TorchRuntimeError for what fails while tracing, inductor's RuntimeError for a class index out of range); the
    test fails once torch.compile rejects every such input as eager torch does."""
    assert_still_diverges(compiled, defect)


# --- named divergences on valid calls ------------------------------------------------------------------------


def test_uint8_class_indices_raise_under_compile():
    """Named divergence: torch's eager NLL and cross-entropy take uint8 class indices (the same values as int64);
    compiled code gathers with the uint8 target while dynamo traces the call, and gather rejects it."""
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    for loss in ("nll_loss", "cross_entropy"):
        eager = getattr(F, loss)(x, torch.tensor([2], dtype=torch.uint8))
        assert eager.item() == getattr(F, loss)(x, torch.tensor([2])).item()
        with pytest.raises(RuntimeError, match=r"gather\(\): Expected dtype int32/int64 for index"):
            getattr(compiled, loss)(x, torch.tensor([2], dtype=torch.uint8))
    case = Case("cross_entropy", x.numpy(), np.array([2], dtype=np.uint8))
    assert "uint8" in compiled.known_divergence(case, FLOAT64)
    assert compiled.known_divergence(Case("cross_entropy", x.numpy(), np.array([2])), FLOAT64) is None


def test_unbatched_input_with_a_target_of_shape_1_raises_under_compile():
    """Named divergence: compiled NLL and cross-entropy raise 'size mismatch' for an unbatched input (C,) with a
    class-index target of shape (1,), which torch's eager forward computes (its backward raises the same:
    test_unbatched_input_with_target_of_shape_1_has_no_backward)."""
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert F.nll_loss(x, torch.tensor([1])).item() == F.nll_loss(x, torch.tensor(1)).item()
    for loss in (compiled.nll_loss, compiled.cross_entropy):
        with pytest.raises(RuntimeError, match="size mismatch"):
            loss(x, torch.tensor([1]))
    assert "size mismatch" in compiled.known_divergence(Case("nll_loss", x.numpy(), np.array([1])), FLOAT64)


def test_class_weights_not_1_dimensional_raise_under_compile():
    """Named divergence: torch's eager NLL on a K-dimensional input takes C class weights of any shape (a (1, C)
    weight included); compiled code reshapes them as if 1-dimensional and raises."""
    x = torch.tensor([[[0.5], [-1.0]]], dtype=torch.float64)  # (N, C, d) = (1, 2, 1)
    target, weight = torch.tensor([[1]]), torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    assert F.nll_loss(x, target, weight=weight).item() == F.nll_loss(x, target, weight=weight.reshape(2)).item()
    with pytest.raises(RuntimeError, match="is invalid for input of size"):
        compiled.nll_loss(x, target, weight=weight)
    case = Case("nll_loss", x.numpy(), target.numpy(), {"weight": weight.numpy()})
    assert "1-dimensional" in compiled.known_divergence(case, FLOAT64)


def test_nll_gradient_is_nan_off_the_target_where_the_total_weight_is_0_under_compile():
    """Named divergence: with 'mean' and class weights that sum to 0 over the targets, torch's eager NLL backward
    gives NaN at the target and 0 elsewhere (as the reference does); compiled code's backward divides every element
    by the total weight of 0 and gives NaN everywhere."""
    weight = torch.tensor([0.0, 1.0, 1.0])
    eager = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    F.nll_loss(eager, torch.tensor(0), weight=weight).backward()
    torch.testing.assert_close(eager.grad, torch.tensor([float("nan"), 0.0, 0.0]), equal_nan=True)
    ours = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    compiled.nll_loss(ours, torch.tensor(0), weight=weight).backward()
    assert torch.isnan(ours.grad).all()
    case = Case("nll_loss", np.zeros(3), np.array(0), {"weight": weight.double().numpy()})
    assert "total weight of 0" in compiled.known_gradient_divergence(case, FLOAT32)


def _value_and_first_gradient(loss, x, target, **kwargs):
    x = x.clone().requires_grad_(True)
    value = loss(x, target, **kwargs)
    value.backward()
    return value.item(), x.grad.flatten()[0].item()


@pytest.mark.parametrize("count", [compiled.FLOAT16_OVERFLOW - 1, compiled.FLOAT16_OVERFLOW])
def test_a_float16_mean_over_65520_or_more_is_0_under_compile(count):
    """Named divergence: in float16, compiled code divides by a count held in float16, which is inf from 65520 on;
    torch's eager kernels divide in float32. So at 65520 a BCEWithLogits or KL 'mean' has a gradient of 0 (its value
    is right), and a KL 'batchmean' over 65520 rows or a cross-entropy 'mean' over 65520 positions of probability
    targets a value and a gradient of 0; one fewer, compiled code and the eager kernels agree."""
    half = torch.float16
    zeros, halves = torch.zeros(count, dtype=half), torch.full((count,), 0.5, dtype=half)
    one_hot = torch.tensor([[1.0, 0.0]], dtype=half).expand(count, 2).contiguous()
    calls = [  # (loss, input, target, keyword arguments, which of value and gradient diverge)
        ("binary_cross_entropy_with_logits", zeros, zeros, {}, "gradient"),
        ("kl_div", zeros, halves, {}, "gradient"),
        ("kl_div", zeros[:, None], halves[:, None], {"reduction": "batchmean"}, "value and gradient"),
        ("cross_entropy", torch.zeros(count, 2, dtype=half), one_hot, {}, "value and gradient"),
    ]
    for loss, x, target, kwargs, diverging in calls:
        eager_value, eager_gradient = _value_and_first_gradient(getattr(F, loss), x, target, **kwargs)
        value, gradient = _value_and_first_gradient(getattr(compiled, loss), x, target, **kwargs)
        assert eager_gradient != 0 and abs(eager_value) > 0.3  # the eager kernels' mean, 7.6e-6 per element
        overflows = count >= compiled.FLOAT16_OVERFLOW
        assert (gradient == 0) == overflows, (loss, kwargs, gradient)
        assert (value == 0) == (overflows and "value" in diverging), (loss, kwargs, value)
        case = Case(loss, x.double().numpy(), target.double().numpy(), kwargs)
        said = compiled.known_divergence(case, FLOAT16), compiled.known_gradient_divergence(case, FLOAT16)
        assert ("count of 65520" in (said[0] or "")) == (overflows and "value" in diverging), (loss, said)
        assert ("count of 65520" in (said[1] or "")) == overflows, (loss, said)
        assert compiled.known_gradient_divergence(case, BFLOAT16) is None  # bfloat16 holds 65520
