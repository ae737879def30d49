"""Value parity, generated from the registry: every loss torch has, in module and functional form, in every
dtype, against the reference, one property per parity variant (each variant's claim is in its registry entry)."""

import pytest
from hypothesis import given, settings
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


# A large example costs what thousands of small ones do (most of it the tolerance model's replay of millions of
# elements): the large-input properties draw a few. Hypothesis runs the simplest example first, which the large
# strategies make one of at least 2^20 elements (2^15 classes for the categorical losses): verification/kernel_paths.py.
LARGE_BUDGET = settings(max_examples=max(2, settings.default.max_examples // 50))


@LARGE_BUDGET
@pytest.mark.parametrize("dtype", PARITY_DTYPES, ids=str)
@pytest.mark.parametrize("variant", registry.large_variants(), ids=lambda v: f"{v.loss}-{v.name}")
@given(data=st.data())
def test_large_input_matches_reference(data, variant, dtype, device, implementation, forms_of):
    """On inputs of up to millions of elements, at the sizes where torch's kernels change path, the loss equals the
    reference within the tolerance model, in module and functional form (one drawn case, checked in each form)."""
    batch = data.draw(variant.batches(dtype, 1), label="case")
    for form in forms_of(variant.loss):
        batch_matches_reference(batch, implementation(variant.loss, form), form=form, dtype=dtype, device=device)
