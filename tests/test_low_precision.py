"""Where torch's float16 and bfloat16 results part from the mathematics, stated as named divergences.

Each test asserts torch's actual behaviour at the exact condition, next to the reference's value, so it
fails loudly the day torch changes. The parity properties never reach these conditions by accident: the
tolerance model gives no finite bound where a sum leaves the dtype's range (those examples are excluded
with that reason in the report), and the strategies draw finite logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reference
from verification.dtypes import FLOAT16, PARITY_DTYPES
from verification.implementations import FORMS, torch_impl

# float16 values at or above this round to inf (65504 is the largest; the midpoint to the next power of
# two, 65520, rounds up under round-to-nearest-even).
FLOAT16_OVERFLOW = 65520


def _cpu_only(device: str) -> None:
    if device != "cpu":
        pytest.skip(f"measured on CPU kernels only; not yet established on {device}")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("loss", ["nll_loss", "cross_entropy"])
def test_float16_mean_is_0_or_nan_once_the_total_weight_reaches_65520(loss, form, device):
    """Named divergence (CPU): NLLLoss and CrossEntropyLoss in float16 with reduction 'mean' store the total weight
    sum(w[y_i]) in float16, so once it reaches 65520 it is inf and the mean is sum / inf = 0 (weighted sum still
    finite) or inf / inf = NaN (weighted sum overflowed too), although the mean itself is representable."""
    _cpu_only(device)
    impl = torch_impl(loss, form)
    n = FLOAT16_OVERFLOW
    for log_p, expected in ((-0.5, 0.0), (-1.0, float("nan"))):
        # Both losses see a row whose target class has -log p = |log_p| (for CE: logits that are log-probabilities).
        x = np.full((n, 2), np.log1p(-np.exp(log_p)))
        x[:, 0] = log_p
        target = np.zeros(n, dtype=np.int64)
        want = getattr(reference, loss)(x, target)
        got = impl(torch.as_tensor(x, dtype=torch.float16), torch.as_tensor(target)).item()
        assert want == pytest.approx(-log_p, rel=1e-12), "the reference gives the mean itself"
        if np.isnan(expected):
            assert np.isnan(got), f"{loss} mean with -log p = {-log_p}: torch gave {got}, the divergence says NaN"
        else:
            assert got == expected, f"{loss} mean with -log p = {-log_p}: torch gave {got}, the divergence says 0"
        # One sample fewer, the total weight 65519 rounds to 65504 and the mean is right to float16 precision.
        below = impl(torch.as_tensor(x[:-1], dtype=torch.float16), torch.as_tensor(target[:-1])).item()
        assert below == pytest.approx(-log_p, rel=FLOAT16.unit_roundoff * 8), "just below the threshold torch is right"


@pytest.mark.parametrize("form", FORMS)
def test_float16_index_label_smoothing_overflows_before_scaling(form, device):
    """Named divergence (CPU): CrossEntropyLoss with class indices and label smoothing sums w_j * log p_j over the
    classes in float16 before scaling by eps / C, so the loss is inf whenever that sum passes 65504, even where the
    loss is a few thousand; the same call with one-hot probability targets gives the right value."""
    _cpu_only(device)
    impl = torch_impl("cross_entropy", form)
    x = np.array([[0.0, 0.0, 40000.0]])
    eps = 0.125
    want = reference.cross_entropy(x, np.array([2]), label_smoothing=eps, reduction="none")
    assert want[0] == pytest.approx(eps / 3 * 80000, rel=1e-12)
    xt = torch.as_tensor(x, dtype=torch.float16)
    by_index = impl(xt, torch.tensor([2]), label_smoothing=eps, reduction="none")
    assert torch.isinf(by_index).all(), f"torch gave {by_index.tolist()}; the divergence says inf"
    one_hot = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float16)
    by_probability = impl(xt, one_hot, label_smoothing=eps, reduction="none")
    assert by_probability.item() == pytest.approx(want[0], rel=8 * FLOAT16.unit_roundoff)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("pos_weight", [None, 3.0], ids=["no pos_weight", "pos_weight 3"])
def test_bce_with_logits_is_nan_at_infinite_logits_where_the_limit_is_0_or_inf(form, dtype, pos_weight, device):
    """Named divergence (every dtype): BCEWithLogitsLoss computes (1 - y) x - ((pw - 1) y + 1) log sigmoid(x), which
    is 0 * inf or inf - inf at x = -inf (any target) and at x = +inf with y = 1, and returns NaN there; the loss has a
    limit (0 when the logit agrees with its target, inf otherwise), which the reference gives."""
    x = np.array([np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf])
    y = np.array([0.0, 0.25, 1.0, 0.0, 0.25, 1.0])
    kwargs = {"reduction": "none"} | ({} if pos_weight is None else {"pos_weight": np.array([pos_weight])})
    want = reference.binary_cross_entropy_with_logits(x, y, **kwargs)
    np.testing.assert_array_equal(want, [np.inf, np.inf, 0.0, 0.0, np.inf, np.inf], err_msg="the limits")
    torch_kwargs = {
        k: torch.as_tensor(v, dtype=dtype.torch, device=device) if isinstance(v, np.ndarray) else v
        for k, v in kwargs.items()
    }
    got = (
        torch_impl("binary_cross_entropy_with_logits", form)(
            torch.as_tensor(x, dtype=dtype.torch, device=device),
            torch.as_tensor(y, dtype=dtype.torch, device=device),
            **torch_kwargs,
        )
        .to("cpu", torch.float64)
        .numpy()
    )
    predicted_nan = (x == -np.inf) | ((x == np.inf) & (y == 1))
    np.testing.assert_array_equal(np.isnan(got), predicted_nan, err_msg=f"torch gave {got.tolist()}")
    np.testing.assert_array_equal(got[~predicted_nan], want[~predicted_nan], err_msg="elsewhere torch has the limit")


# Where (1 - y) x and log sigmoid(x) cancel to nothing: -ln(4u) rounded to each dtype, so that softplus(x) < u |x|.
CANCELLING_LOGIT = {"float64": -37.0, "float32": -17.0, "float16": -7.62109375, "bfloat16": -7.625}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
def test_bce_with_logits_loses_all_relative_accuracy_for_target_0_and_negative_logits(form, dtype, device):
    """Named divergence (every dtype; within the tolerance model, which bounds torch's own order of evaluation):
    BCEWithLogitsLoss computes (1 - y) x - log sigmoid(x), which for y = 0 and x < 0 subtracts two numbers near |x|,
    so where the loss softplus(x) is below u |x| it returns exactly 0: at x = -7.62 in float16 and bfloat16, -17 in
    float32 and -37 in float64, where the loss is 4.9e-4, 4.1e-8 and 8.5e-17; F.softplus(x) gives it to the ulp."""
    x = np.array([CANCELLING_LOGIT[dtype.name]])
    y = np.zeros(1)
    want = reference.binary_cross_entropy_with_logits(x, y, reduction="none")
    xt = torch.as_tensor(x, dtype=dtype.torch, device=device)
    got = torch_impl("binary_cross_entropy_with_logits", form)(xt, torch.zeros_like(xt), reduction="none")
    assert got.item() == 0.0, f"torch gave {got.item()!r}; the divergence says 0"
    assert want[0] > 0 and want[0] == pytest.approx(float(reference.softplus(x)[0]), rel=1e-15)
    softplus = torch.nn.functional.softplus(xt).item()
    assert softplus == pytest.approx(want[0], rel=4 * dtype.unit_roundoff), "the loss is representable: softplus has it"
