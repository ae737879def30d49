"""Value parity, generated from the registry: every loss torch has, in module and functional form, in every
dtype, against the reference, one property per parity variant (each variant's claim is in its registry entry)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verification import registry
from verification.dtypes import PARITY_DTYPES
from verification.implementations import FORMS
from verification.properties import CASES_PER_EXAMPLE, batch_matches_reference


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", registry.parity_variants(), ids=lambda v: f"{v.loss}-{v.name}")
@given(data=st.data())
def test_loss_matches_reference(data, variant, dtype, form, device, implementation):
    """The loss equals the reference within the tolerance model (each variant's claim: verification/registry.py),
    on CASES_PER_EXAMPLE cases per example that share a shape and arguments."""
    batch = data.draw(variant.batches(dtype, CASES_PER_EXAMPLE), label="cases")
    batch_matches_reference(batch, implementation(variant.loss, form), form=form, dtype=dtype, device=device)
