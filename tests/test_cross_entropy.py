"""CrossEntropyLoss: its named divergences (its parity properties are generated from the registry: test_parity.py)."""

import numpy as np
import pytest
import torch

import reference
from verification.implementations import FORMS, torch_impl


@pytest.mark.parametrize("form", FORMS)
def test_unbatched_input_with_target_of_shape_1_and_smoothing_is_rejected_by_torch(form):
    """Named divergence: torch 2.13 raises a broadcast RuntimeError for input (C,), target (1,) and
    label_smoothing > 0, which the documented semantics define (the reference computes it as target ())."""
    x = np.array([0.5, -1.0, 2.0])
    t = np.array([1])
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        torch_impl("cross_entropy", form)(torch.as_tensor(x), torch.as_tensor(t), label_smoothing=0.25)
    # The reference gives the value the same call has with target of shape ().
    with_scalar_target = torch.nn.functional.cross_entropy(
        torch.as_tensor(x), torch.as_tensor(t[0]), label_smoothing=0.25
    ).item()
    assert reference.cross_entropy(x, t, label_smoothing=0.25) == pytest.approx(with_scalar_target, rel=1e-15)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=["unbatched", "batched"])
def test_uint8_target_with_weight_smoothing_and_mean_is_rejected_by_torch(form, shape):
    """Named divergence (no upstream issue found): torch 2.13 accepts uint8 class-index targets, but raises
    "gather(): Expected dtype int32/int64 for index" when they meet class weights, label_smoothing > 0 and
    reduction 'mean'; the reference computes the documented value, which torch gives for the same int64 target."""
    x = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)
    t = np.array(1, dtype=np.uint8) if len(shape) == 1 else np.array([0, 2], dtype=np.uint8)
    weight = np.array([0.5, 1.0, 2.0])
    kwargs = {"label_smoothing": 0.25, "weight": torch.as_tensor(weight)}
    with pytest.raises(RuntimeError, match="gather"):
        torch_impl("cross_entropy", form)(torch.as_tensor(x), torch.as_tensor(t), **kwargs)
    as_int64 = torch_impl("cross_entropy", form)(torch.as_tensor(x), torch.as_tensor(t.astype(np.int64)), **kwargs)
    ours = reference.cross_entropy(x, t, weight=weight, label_smoothing=0.25)
    assert ours == pytest.approx(as_int64.item(), rel=1e-14)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("ignore_index", [-100, 256, -255])
def test_uint8_targets_lose_smoothing_where_ignore_index_wraps_modulo_256(form, ignore_index):
    """Named divergence (no upstream issue found): with uint8 class indices and label_smoothing > 0, torch 2.13
    builds the smoothing term's ignore mask as target == ignore_index in uint8, so ignore_index wraps modulo 256:
    with the default -100, every target of class 156 keeps its NLL term but loses its smoothing term."""
    n_classes, eps = 260, 0.25
    wrapped = ignore_index % 256
    x = np.linspace(-3.0, 3.0, 2 * n_classes).reshape(2, n_classes)
    t = np.array([wrapped, 3], dtype=np.uint8)
    impl = torch_impl("cross_entropy", form)
    kwargs = {"label_smoothing": eps, "reduction": "none", "ignore_index": ignore_index}
    got = impl(torch.as_tensor(x), torch.as_tensor(t), **kwargs).numpy()
    want = reference.cross_entropy(x, t, **kwargs)
    smoothing_term = -(eps / n_classes) * np.sum(reference.log_softmax(x, 1), axis=1)
    assert got[1] == pytest.approx(want[1], rel=1e-13), "the target that does not wrap is unaffected"
    assert got[0] == pytest.approx(want[0] - smoothing_term[0], rel=1e-13), "class 156's smoothing term is dropped"
    as_int64 = impl(torch.as_tensor(x), torch.as_tensor(t.astype(np.int64)), **kwargs).numpy()
    assert as_int64 == pytest.approx(want, rel=1e-13), "int64 targets of the same classes agree with the reference"
