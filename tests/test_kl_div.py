"""KLDivLoss: its named divergence (its parity properties are generated from the registry: test_parity.py)."""

import numpy as np
import pytest
import torch

import reference
from verification.dtypes import PARITY_DTYPES
from verification.implementations import FORMS, torch_impl


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
def test_kl_div_is_nan_where_a_zero_probability_meets_an_infinite_log(form, dtype, device):
    """Named divergence (every dtype): a term with p = 0 contributes 0 to KL(p || q), but torch computes
    xlogy(p, p) - p log q, which is 0 * inf = NaN where log q = -inf, and with log_target exp(log p) (log p - log q),
    which is 0 * inf = NaN wherever log p = -inf; elsewhere it agrees with the reference, which gives 0 there."""
    impl = torch_impl("kl_div", form)

    def torch_values(x, t, **kwargs):
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype.torch, device=device)  # noqa: E731
        return impl(as_tensor(x), as_tensor(t), reduction="none", **kwargs).to("cpu", torch.float64).numpy()

    log_q, p = np.array([-np.inf, -1.0, -np.inf]), np.array([0.0, 0.0, 0.5])
    got = torch_values(log_q, p)
    np.testing.assert_array_equal(reference.kl_div(log_q, p, reduction="none")[:2], [0.0, 0.0])
    assert np.isnan(got[0]) and got[1] == 0.0 and got[2] == np.inf, f"torch gave {got.tolist()}"

    log_q, log_p = np.array([-1.0, -np.inf, 0.0]), np.array([-np.inf, -np.inf, 0.0])
    got = torch_values(log_q, log_p, log_target=True)
    np.testing.assert_array_equal(reference.kl_div(log_q, log_p, reduction="none", log_target=True), [0.0, 0.0, 0.0])
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == 0.0, f"torch gave {got.tolist()}"
