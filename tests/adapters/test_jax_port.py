"""The JAX port (adapters/jax_port.py): that it computes in JAX and not in torch, that a planted bug in it fails
value parity, and its named divergence."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

jax_port = pytest.importorskip("adapters.jax_port", reason="jax is not installed (pip install -e '.[matrix]')")

from tests.adapters.rejection_divergences import assert_still_diverges  # noqa: E402
from verification.cases import Case, CaseBatch  # noqa: E402
from verification.compare import ParityError, check_gradient_parity_batch, check_parity_batch  # noqa: E402
from verification.divergences import none  # noqa: E402
from verification.dtypes import FLOAT16, FLOAT32, FLOAT64  # noqa: E402
from verification.implementations import ImplUnderTest  # noqa: E402


def test_the_port_computes_in_jax_not_torch(monkeypatch):
    """With torch's loss functions made to raise, the port still computes each loss, value and gradient, and
    every result came back from JAX."""
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    want = F.cross_entropy(x, torch.tensor([2]), label_smoothing=0.1)
    for name in jax_port.LOSSES:
        monkeypatch.setattr(F, name, lambda *args, **kwargs: pytest.fail("the port called torch"))
    results = jax_port.COUNTS["jax results"]
    got = jax_port.cross_entropy(x, torch.tensor([2]), label_smoothing=0.1)
    got.backward()
    assert jax_port.COUNTS["jax results"] == results + 2  # the value, then the gradient
    assert got.item() == pytest.approx(want.item(), rel=1e-15)
    assert x.grad is not None


def test_each_loss_runs_as_one_compiled_computation_per_shape():
    """The port runs jitted: a shape it has not seen builds one XLA executable for the forward and one for the
    backward, and the same call again builds none (op by op, every primitive would build one per new shape)."""
    x = torch.tensor([[0.25, -1.5, 2.0, 0.0, 1.0, 3.0, -2.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([4])
    built = jax_port.COUNTS["xla executables"]
    jax_port.cross_entropy(x, target, label_smoothing=0.2, reduction="sum").backward()
    assert jax_port.COUNTS["xla executables"] == built + 2
    jax_port.cross_entropy(x, target, label_smoothing=0.2, reduction="sum").backward()
    assert jax_port.COUNTS["xla executables"] == built + 2


def test_a_planted_bug_in_the_port_is_caught(monkeypatch):
    """A port whose BCEWithLogits drops pos_weight fails value parity."""
    original = jax_port.bce_with_logits

    def without_pos_weight(x, y, weight=None, reduction="mean", pos_weight=None):
        return original(x, y, weight, reduction)

    planted = jax_port._port("binary_cross_entropy_with_logits", without_pos_weight, ("weight", "pos_weight"))
    kwargs = {"pos_weight": np.array([3.0]), "reduction": "sum"}
    case = Case("binary_cross_entropy_with_logits", np.array([0.5, -1.0]), np.array([1.0, 1.0]), kwargs)
    with pytest.raises(ParityError, match="binary_cross_entropy_with_logits"):
        check_parity_batch(CaseBatch.of(case), planted, form="functional", dtype=FLOAT64, device="cpu", divergence=none)


def test_xla_flushes_subnormals_to_zero_on_the_cpu():
    """Named divergence (jax-ml/jax#16200): XLA on the CPU reads subnormal inputs as 0 and flushes subnormal results
    to 0, in float32, float64 and bfloat16; torch computes them. float16, which XLA computes in float32, keeps its
    subnormals. BCEWithLogits of a subnormal weight is 0 in the port and the weight times log 2 in torch."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # subnormal in float32
    assert F.binary_cross_entropy_with_logits(torch.zeros(1), torch.zeros(1), weight=tiny).item() > 0
    assert jax_port.binary_cross_entropy_with_logits(torch.zeros(1), torch.zeros(1), weight=tiny).item() == 0.0
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        smallest_normal = torch.finfo(dtype).smallest_normal
        normal = torch.tensor([smallest_normal], dtype=dtype)
        # log 2 times the smallest normal number: a subnormal result, flushed to 0 where XLA flushes, kept by torch
        args = (torch.zeros(1, dtype=dtype), torch.zeros(1, dtype=dtype))
        assert F.binary_cross_entropy_with_logits(*args, weight=normal).item() > 0
        port = jax_port.binary_cross_entropy_with_logits(*args, weight=normal).item()
        assert (port == 0.0) == (str(dtype).removeprefix("torch.") in jax_port.FLUSHES_SUBNORMALS), dtype
    case = Case("binary_cross_entropy_with_logits", np.zeros(1), np.zeros(1), {"weight": np.array([1e-39])})
    assert "reads subnormal inputs as zero" in jax_port.known_divergence(case, FLOAT32)
    assert jax_port.known_divergence(case, FLOAT64) is None  # 1e-39 is normal in float64
    half_normal = Case("binary_cross_entropy_with_logits", np.zeros(1), np.zeros(1), {"weight": np.array([3e-5])})
    assert jax_port.known_divergence(half_normal, FLOAT16) is None  # a float16 subnormal, kept by XLA


def test_a_subnormal_smoothing_constant_is_read_as_zero():
    """Named divergence (jax-ml/jax#16200, a constant the port derives): the port smooths with label_smoothing / C as
    a constant of the input's dtype, and where that is subnormal XLA reads it as 0. With the smallest normal float32
    as label_smoothing over 2 classes, and the target's class weighted 0, torch's loss is the smoothing term alone
    (about 3.5e-36); the port's is 0. Where the constant is normal the port smooths."""
    x, t, w = torch.tensor([[0.0, -600.0]]), torch.tensor([0]), torch.tensor([0.0, 1.0])
    smallest_normal = torch.finfo(torch.float32).smallest_normal
    assert F.cross_entropy(x, t, weight=w, reduction="none", label_smoothing=smallest_normal).item() > 0
    assert jax_port.cross_entropy(x, t, weight=w, reduction="none", label_smoothing=smallest_normal).item() == 0.0
    assert jax_port.cross_entropy(x, t, weight=w, reduction="none", label_smoothing=4 * smallest_normal).item() > 0
    case = Case("cross_entropy", x.double().numpy(), t.numpy(), {"label_smoothing": smallest_normal})
    assert "label_smoothing / C is subnormal" in jax_port.known_divergence(case, FLOAT32)
    assert jax_port.known_divergence(case, FLOAT64) is None  # normal in float64
    assert jax_port.known_divergence(case.with_kwargs(label_smoothing=4 * smallest_normal), FLOAT32) is None


def test_a_subnormal_flushed_inside_the_computation_is_within_the_flush_to_zero_bounds():
    """KLDiv with log targets computes exp(t) (t - x): exp(-88.5) is a float32 subnormal, which XLA flushes to 0,
    and (t - x) = 1e30 makes that a loss of 3.8e-9. The tolerance model for a flushing arithmetic (the adapter's
    FLUSHES_SUBNORMALS: an absolute error of up to the smallest normal number per operation) bounds it; the model for
    gradual underflow does not, so the same port without the declaration fails."""
    case = Case("kl_div", np.array([-1e30]), np.array([-88.5]), {"reduction": "sum", "log_target": True})
    declared = ImplUnderTest("kl_div=adapters.jax_port:kl_div").call
    check_parity_batch(CaseBatch.of(case), declared, form="functional", dtype=FLOAT32, device="cpu", divergence=none)
    with pytest.raises(ParityError, match="exceeds the tolerance model's bound"):
        check_parity_batch(
            CaseBatch.of(case), jax_port.kl_div, form="functional", dtype=FLOAT32, device="cpu", divergence=none
        )


def test_xla_float64_log1p_is_far_off_near_minus_0_414():
    """Named divergence (jax-ml/jax#39707): XLA's float64 log1p on the CPU is up to 129 ulps off for arguments
    between about -0.53 and -0.28, so the port's BCE, which takes log1p(-p), is tens of ulps off for p there;
    torch's BCE is within 1 ulp of the exact value."""
    import mpmath

    p = 0.41395588246519277
    mpmath.mp.prec = 200
    exact = -float(mpmath.log(1 - mpmath.mpf(p)))  # BCE with target 0: -log(1 - p)
    ulp = np.spacing(exact)
    ours = jax_port.binary_cross_entropy(torch.tensor(p, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    theirs = F.binary_cross_entropy(torch.tensor(p, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    assert abs(ours.item() - exact) > 50 * ulp
    assert abs(theirs.item() - exact) <= ulp
    case = Case("binary_cross_entropy", np.array([p]), np.array([0.0]), {})
    assert "jax-ml/jax#39707" in jax_port.known_divergence(case, FLOAT64)
    assert jax_port.known_divergence(case, FLOAT32) is None


@pytest.mark.parametrize("defect", sorted(jax_port.REJECTION_DIVERGENCES), ids=str)
def test_the_port_does_not_reject_as_torch_does(defect):
    """Named divergence: for each defect the port is named for, some input with that defect is computed by the port,
    or rejected with another exception class than torch's (the port validates nothing, as JAX code usually does
    not); the test fails once the port rejects every such input as torch does."""
    assert_still_diverges(jax_port, defect)


@pytest.mark.parametrize(
    ("loss", "input", "target", "kwargs"),
    [
        # p near a soft target: JAX's -(y / p) + (1 - y) / (1 - p) cancels
        ("binary_cross_entropy", [0.30000000000000004, 0.7], [0.3, 0.7000000000000001], {"reduction": "sum"}),
        # |x| = 30: e^(x - softplus(x)) carries softplus's rounding of about u |x|
        ("binary_cross_entropy_with_logits", [-30.0, 30.0], [0.25, 0.75], {"reduction": "sum"}),
    ],
)
def test_autodiff_gradients_are_bounded_for_their_own_order(loss, input, target, kwargs):
    """The port's gradient of BCE and BCEWithLogits (JAX's reverse mode through the forward formula) passes the
    bound replayed for that order (GRADIENT_ALGORITHMS), and exceeds the bound for torch's backward formula, which
    the same port without the declaration is held to. A gradient off by 1e-9 relative fails either way."""
    case = Case(loss, np.array(input), np.array(target), kwargs)
    declared = ImplUnderTest(f"{loss}=adapters.jax_port:{loss}").call
    check = functools.partial(
        check_gradient_parity_batch, CaseBatch.of(case), np.ones((1,)), form="functional", dtype=FLOAT64, device="cpu"
    )
    check(declared, divergence=none)
    with pytest.raises(ParityError, match="exceeds the tolerance model's bound"):
        check(getattr(jax_port, loss), divergence=none)

    def off(input, target, **kwargs):
        return declared(input * (1 + 1e-9), target, **kwargs)

    off.gradient_algorithms = declared.gradient_algorithms
    with pytest.raises(ParityError, match="exceeds the tolerance model's bound"):
        check(off, divergence=none)
