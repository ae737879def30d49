"""BCEWithLogitsLoss and F.binary_cross_entropy_with_logits against the reference."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.common.dtypes import PARITY_DTYPES
from tests.common.implementations import FORMS
from tests.common.properties import loss_matches_reference, variants_of


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", variants_of("binary_cross_entropy_with_logits"), ids=str)
@given(data=st.data())
def test_binary_cross_entropy_with_logits_matches_reference(data, variant, dtype, form, device, implementation):
    """BCEWithLogitsLoss equals the reference within the tolerance model (each variant's claim: properties.py)."""
    case = data.draw(variant.cases(dtype), label="case")
    impl = implementation("binary_cross_entropy_with_logits", form)
    loss_matches_reference(case, impl, form=form, dtype=dtype, device=device)
