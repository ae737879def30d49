"""torch.compile (adapters/compiled.py): that the adapter really runs compiled code, that a call which ran eagerly
is caught, and that a planted bug in a compiled function fails value parity."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adapters import AdapterError, compiled
from tests.adapters.rejection_divergences import assert_still_diverges
from verification.cases import Case, CaseBatch
from verification.compare import ParityError, check_parity_batch
from verification.divergences import none
from verification.dtypes import FLOAT64


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
