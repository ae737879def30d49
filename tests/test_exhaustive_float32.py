"""The exhaustive float32 sweeps (exhaustive/), on a random slice: 2^20 random inputs of each sweep's domain and its
special inputs, through the same engine as ``nox -s exhaustive`` runs over every float32 input.

Each sweep's results must lie within the tolerance model's bound; the figures of the slice (correctly rounded,
faithful, largest error in ulps) are recorded for the evidence report. ``nox -s exhaustive`` gives them over all
inputs (docs/exhaustive-float32.md).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import reference
from exhaustive import engine, floats, sweeps
from verification import ledger
from verification.compare import ParityError
from verification.dtypes import FLOAT32

SLICE = 2**20
SEED = 20260


@functools.lru_cache(maxsize=4)
def _slice_of(kernel: str, impl: object, device: str) -> dict[str, engine.Tally]:
    """Every sweep of one kernel on the slice (its sweeps share one torch call)."""
    chosen = tuple(s for s in sweeps.SWEEPS if s.kernel.name == kernel)
    loss = chosen[0].kernel.loss
    impls = {} if loss is None or impl is None else {loss: impl}
    return engine.run_slice(chosen, SLICE, SEED, impls, device)


@pytest.mark.parametrize("sweep", sweeps.SWEEPS, ids=lambda s: s.name)
def test_every_result_of_the_slice_is_within_the_bound(sweep, device, implementation):
    """On 2^20 random float32 inputs and the special ones (signed zeros, subnormals, infinities, NaN), every result
    of the sweep lies within the tolerance model's bound of the exact value (NaN where it is NaN); the figures
    against the correctly rounded value are recorded."""
    impl = implementation(sweep.kernel.loss, "functional") if sweep.kernel.loss else None
    is_torch = impl is None or getattr(impl, "label", "torch") == "torch"
    tally = _slice_of(sweep.kernel.name, None if is_torch else impl, device)[sweep.name]
    if tally.over_bound:
        example = tally.over_at[0]
        raise ParityError(
            f"{sweep.name}: {tally.over_bound} of {tally.inputs} results outside the tolerance model's bound; at "
            f"x = {example['input']!r} torch gave {example['torch']!r} where the exact value is "
            f"{example['reference']!r} (bound {example['bound']:.3g})\n\nReproduce with:\n\n"
            f"{sweep.kernel.repro.format(x=example['input_hex'])}\n"
        )
    record = ledger.RECORDS[ledger.current_test()]
    for reason, count in tally.unbounded.items():
        record.excluded[reason] += count
    for claim, count in tally.named.items():
        record.excluded[claim] += count
    record.compared += tally.inputs - sum(tally.unbounded.values()) - sum(tally.named.values()) - 1
    worst = tally.worst_at
    if worst:
        ledger.record_comparison(
            abs(worst["torch"] - worst["reference"]), worst["bound"], tally.worst_ratio, worst["reference"],
            FLOAT32.ulp(worst["reference"]),
        )  # fmt: skip
    else:
        ledger.record_comparison(0.0, 0.0, 0.0, 0.0, FLOAT32.smallest_subnormal)
    top = tally.max_at[0] if tally.max_at else None
    ledger.record_measurement(
        "largest_error_in_ulps",
        {
            "ulps": tally.max_ulps,
            "at_input": top["input"] if top else 0.0,
            "torch": top["torch"] if top else 0.0,
            "reference": top["reference"] if top else 0.0,
            "inputs_swept": tally.inputs,
            "inputs_compared": tally.inputs - sum(tally.unbounded.values()) - sum(tally.named.values()),
        },
    )
    ledger.record_measurement(
        "correct_rounding",
        {
            "correctly_rounded": tally.correct,
            "faithful": tally.faithful,
            "settled_by_mpmath": tally.settled,
            "inputs": tally.inputs,
        },
    )
    assert tally.inputs >= SLICE * 0.99


VALUE_REFERENCES = {
    "bce_with_logits[y=0].value": lambda x: reference.binary_cross_entropy_with_logits(
        x, np.zeros_like(x), reduction="none"
    ),
    "bce_with_logits[y=1].value": lambda x: reference.binary_cross_entropy_with_logits(
        x, np.ones_like(x), reduction="none"
    ),
    "bce_with_logits[y=1,pos_weight=3].value": lambda x: reference.binary_cross_entropy_with_logits(
        x, np.ones_like(x), reduction="none", pos_weight=np.array([3.0])
    ),
    "cross_entropy[logits=(0,x),class=0].value": lambda x: reference.cross_entropy(
        np.stack([np.zeros_like(x), x], axis=1), np.zeros(x.size, dtype=np.int64), reduction="none"
    ),
    "bce[y=1].value": lambda p: reference.binary_cross_entropy(p, np.ones_like(p), reduction="none"),
    "bce[y=0].value": lambda p: reference.binary_cross_entropy(p, np.zeros_like(p), reduction="none"),
}


@pytest.mark.parametrize("name", sorted(VALUE_REFERENCES))
def test_the_sweep_reference_is_the_loss_reference_bit_for_bit(name):
    """The float64 function a value sweep rounds is the suite's reference of the loss (reference/), bit for bit, at
    every finite input of the slice: the sweeps compare with the reference, in its univariate form."""
    sweep = sweeps.BY_NAME[name]
    keys = engine.slice_keys(sweep.domain, 2**16, SEED)
    x = floats.bits_of_keys(keys).view(np.float32)
    x = x[np.isfinite(x)].astype(np.float64)
    with np.errstate(divide="ignore"):
        ours, theirs = sweep.sign * sweep.exact.reference(x), VALUE_REFERENCES[name](x)
    assert np.array_equal(ours, theirs), name
    ledger.record_example()


def test_two_class_cross_entropy_gives_the_same_bits_in_both_layouts(device):
    """The sweep lays the two-class logits out as (N=1, C=2, d=n), where torch vectorises along d; laid out as
    (n, 2), the usual batch, torch gives the same value and gradient bits on the slice."""
    keys = engine.slice_keys(sweeps.LOGITS, 2**18, SEED)
    x = floats.bits_of_keys(keys).view(np.float32)
    x = x[~np.isnan(x)]
    k_dim = torch.stack([torch.zeros(x.size), torch.from_numpy(x)]).unsqueeze(0).to(device).requires_grad_()
    batch = k_dim.detach()[0].T.contiguous().requires_grad_()
    losses = []
    for logits, target in ((k_dim, torch.zeros((1, x.size), dtype=torch.long)), (batch, torch.zeros(x.size).long())):
        loss = torch.nn.functional.cross_entropy(logits, target.to(device), reduction="none")
        loss.backward(torch.ones_like(loss))
        losses.append(loss.detach().reshape(-1))
    assert torch.equal(losses[0].view(torch.int32), losses[1].view(torch.int32))
    assert torch.equal(k_dim.grad[0].T.contiguous().view(torch.int32), batch.grad.view(torch.int32))
    ledger.record_example()
