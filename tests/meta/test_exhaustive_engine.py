"""The exhaustive engine (exhaustive/) checked: its chunks cover every input once, a planted bug at one input is
caught where the random slice misses it, a planted 1-ulp error moves the figures, mpmath settles results at and next
to a rounding midpoint, an interrupted run resumes, and the premises of the shortcuts hold (the reference's accuracy,
the saturated ranges' closed forms, the floors under the tolerance model's bound)."""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import torch

from exhaustive import engine, floats, report, sweeps
from tests.meta import flushing_impl
from tests.test_exhaustive_float32 import SEED, SLICE
from verification import ledger

# -- planted bugs, with torch's functional signature (reachable as --impl LOSS=tests.meta.test_exhaustive_engine:NAME)

PLANTED_AT = float(np.float32(0.785398185253143))  # pi / 4 in float32: one input of 2^32


def bce_with_logits_wrong_at_one_input(input, target, **kwargs):
    """torch's BCEWithLogits, 1 too large at the one input x = PLANTED_AT."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(input, target, **kwargs)
    return loss + (input.detach() == PLANTED_AT).to(loss.dtype)


# 4,096 consecutive float32 inputs from 0.3 on.
ONE_ULP_FROM = floats.key_of(float(np.float32(0.3)))
ONE_ULP_COUNT = 4096


def bce_with_logits_one_ulp_off(input, target, **kwargs):
    """torch's BCEWithLogits, moved 1 ulp away from the exact value (torch's float64 result) at ONE_ULP_COUNT
    inputs: an error the tolerance model's bound allows."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(input, target, **kwargs)
    exact = torch.nn.functional.binary_cross_entropy_with_logits(input.double(), target.double(), reduction="none")
    away = torch.where(loss.double() >= exact, torch.inf, -torch.inf).to(loss.dtype)
    moved = torch.nextafter(loss.detach(), away)
    keys = torch.from_numpy(floats.keys_of_bits(input.detach().numpy().view(np.uint32)).astype(np.int64))
    planted = (keys >= ONE_ULP_FROM) & (keys < ONE_ULP_FROM + ONE_ULP_COUNT)
    return torch.where(planted, loss + (moved - loss.detach()), loss)


# The same flushing implementation, named from this module, which declares no flushing arithmetic.
bce_flushing_undeclared = flushing_impl.bce_flushing


def test_an_implementation_that_declares_it_flushes_subnormals_is_held_to_the_flush_to_zero_bounds(tmp_path):
    """BCE (y = 0) flushing its subnormal results to zero, at the 65,536 subnormal p from 9.2e-41 on, where the loss
    -log1p(-p) = p is a subnormal: beyond the ordinary bound at every input where nothing declares it, within the
    flush-to-zero bound where its module declares FLUSHES_SUBNORMALS, as the suite's properties hold it."""
    chosen = sweeps.select(["bce[y=0].value"])
    only = [(floats.key_of(1e-40) - sweeps.PROBABILITIES.low) >> 16]
    runs = {}
    for spec in (
        "binary_cross_entropy=tests.meta.flushing_impl:bce_flushing",
        "binary_cross_entropy=tests.meta.test_exhaustive_engine:bce_flushing_undeclared",
    ):
        run = engine.run(
            str(tmp_path / spec[-10:]), chosen, chunk_bits=16, impl_specs=(spec,), only=only, progress=False
        )
        runs[spec.endswith("undeclared")] = run.tallies["bce[y=0].value"]
    assert runs[True].over_bound == runs[True].inputs == 65536
    assert runs[False].over_bound == 0 and runs[False].replayed == runs[True].replayed
    ledger.record_example()


def _chunk_of(key: int, bits: int) -> int:
    return (key - sweeps.LOGITS.low) >> bits


def test_the_chunks_cover_every_input_once_in_ascending_order():
    """The full run's chunks of 2^22 keys partition the 2^32 float32 bit patterns (1,024 chunks) and the
    1,065,353,218 in [-0, 1] (255); keys and bit patterns correspond one to one, and ascending keys are ascending
    values."""
    for domain, size, count in ((sweeps.LOGITS, 2**32, 1024), (sweeps.PROBABILITIES, 0x3F800002, 255)):
        chunks = engine.chunks_of(domain, engine.CHUNK_BITS)
        assert domain.size == size and len(chunks) == count
        first, last = chunks[0].keys, chunks[-1].keys
        assert int(first[0]) == domain.low and int(last[-1]) == domain.high
        assert sum(engine._chunk_size(c) for c in chunks) == size
    rng = np.random.default_rng(0)
    keys = np.sort(np.concatenate([rng.integers(0, 2**32, 2**16, dtype=np.uint64).astype(np.uint32),
                                   np.array([0, 2**31 - 1, 2**31, 2**32 - 1], dtype=np.uint32)]))  # fmt: skip
    bits = floats.bits_of_keys(keys)
    assert np.array_equal(floats.keys_of_bits(bits), keys)
    values = bits.view(np.float32)
    finite = values[~np.isnan(values)]
    assert np.all(np.diff(finite.astype(np.float64)) >= 0)
    assert floats.value_of_key(sweeps.PROBABILITIES.low) == 0.0 and floats.value_of_key(sweeps.PROBABILITIES.high) == 1
    ledger.record_example()


def test_a_bug_at_one_input_is_caught_by_the_exhaustive_run_and_missed_by_the_random_slice(tmp_path):
    """A BCEWithLogits 1 too large at one float32 input (beyond the bound there): the exhaustive run, over the chunk
    that holds it (the chunks partition the inputs, above), reports that input outside the bound and exits 1; the
    suite's random slice of 2^20 inputs does not hold it and finds every result within the bound."""
    chosen = sweeps.select(["bce_with_logits[y=0]"])
    spec = "binary_cross_entropy_with_logits=tests.meta.test_exhaustive_engine:bce_with_logits_wrong_at_one_input"
    key = floats.key_of(PLANTED_AT)
    found = engine.run(str(tmp_path), chosen, chunk_bits=16, impl_specs=(spec,), only=[_chunk_of(key, 16)],
                       progress=False)  # fmt: skip
    value = found.tallies["bce_with_logits[y=0].value"]
    assert value.over_bound == 1 and value.over_at[0]["input"] == PLANTED_AT
    written = report.write(str(tmp_path), chosen, found.tallies, {"mode": "one chunk"}, figure=False)
    assert not written["every_result_within_bound"]
    assert json.loads((tmp_path / "report.json").read_text())["sweeps"][0]["within_bound"] is False

    impl = {"binary_cross_entropy_with_logits": bce_with_logits_wrong_at_one_input}
    sliced = engine.run_slice(chosen, SLICE, SEED, impl)
    assert key not in engine.slice_keys(sweeps.LOGITS, SLICE, SEED)
    assert all(tally.over_bound == 0 for tally in sliced.values())
    ledger.record_example()


def test_a_bug_of_one_ulp_at_a_few_thousand_inputs_moves_the_correctly_rounded_count_and_the_largest_error(tmp_path):
    """A BCEWithLogits (y = 1) 1 ulp further from the exact value at 4,096 inputs: within the bound, so the run
    passes, but its report counts fewer results correctly rounded and a larger maximum error in ulps than torch's."""
    chosen = sweeps.select(["bce_with_logits[y=1].value"])
    only = [_chunk_of(ONE_ULP_FROM, 16)]
    spec = "binary_cross_entropy_with_logits=tests.meta.test_exhaustive_engine:bce_with_logits_one_ulp_off"
    clean = engine.run(str(tmp_path / "torch"), chosen, chunk_bits=16, only=only, progress=False)
    planted = engine.run(str(tmp_path / "planted"), chosen, chunk_bits=16, impl_specs=(spec,), only=only,
                         progress=False)  # fmt: skip
    before, after = (r.tallies["bce_with_logits[y=1].value"] for r in (clean, planted))
    assert before.over_bound == after.over_bound == 0
    # Every planted result is now beyond faithful (it was correctly rounded or 1 ulp off; now 1 or 2 ulps the
    # wrong way), and those that were correctly rounded are not any more.
    assert before.faithful - after.faithful == ONE_ULP_COUNT
    assert before.correct > after.correct
    assert before.max_ulps < 1 <= after.max_ulps
    figures = [report.sweep_record(chosen[0], t) for t in (before, after)]
    assert figures[0]["correctly_rounded"] > figures[1]["correctly_rounded"]
    assert figures[0]["max_ulps"] < figures[1]["max_ulps"] and figures[1]["within_bound"]
    ledger.record_example()


def _midpoint_input(k: int) -> np.float32:
    """x = -(2^23 + 3) 2^(k - 18): -3x = (2N + 1) 2^(k - 17) with N even, the midpoint between two float32 numbers
    whose lower one is even, so ties-to-even of -3x alone gives the lower."""
    return np.float32(-(2**23 + 3) * 2.0 ** (k - 18))


@pytest.mark.parametrize(("k", "where"), [(2, "at"), (0, "next to")])
def test_mpmath_settles_a_float64_result_at_or_next_to_a_float32_midpoint(k, where):
    """3 softplus(-x) = -3x + 3 log1p(e^x) where -3x is a float32 midpoint: at x near -128 the float64 reference is
    the midpoint exactly, near -32 a few float64 ulps above it. Both are sent to mpmath, which rounds up (the exact
    value is above the midpoint) where rounding the float64 value to nearest-even would give the lower neighbour at
    the midpoint; the saturated range's closed form agrees."""
    x = _midpoint_input(k)
    midpoint = -3.0 * float(x)
    low = float(np.float32(midpoint))  # ties to even: the lower neighbour
    high = float(np.nextafter(np.float32(low), np.float32(np.inf)))
    assert floats.midpoint(low, high) == midpoint and low < high
    ref = sweeps.SOFTPLUS_NEG_3.reference(np.array([x], dtype=np.float64))
    if where == "at":
        assert ref[0] == midpoint
    else:
        assert 0 < ref[0] - midpoint <= 8 * np.spacing(midpoint)
    rounded, settled = floats.correctly_rounded(ref, np.array([x]), sweeps.SOFTPLUS_NEG_3.mp)
    assert settled == 1 and float(rounded[0]) == high
    closed_form = next(r for r in sweeps.SOFTPLUS_NEG_3.saturated if r.low <= x <= r.high)
    assert closed_form.rule is not None and float(closed_form.rule(np.array([x]))[0]) == high
    ledger.record_example()


def test_mpmath_breaks_exact_ties_to_even_and_follows_the_exact_value_against_the_float64_one():
    """At a midpoint exactly (a tail of 0) the one with the even last bit wins, whichever side it is on; just below
    a midpoint the lower neighbour wins even where the float64 value lies just above it."""
    low = float(np.float32(1.0))
    high = float(np.nextafter(np.float32(1.0), np.float32(2.0)))  # 1 + 2^-23, odd
    mid = floats.midpoint(low, high)
    at_midpoint = lambda x: (mpmath.mpf(mid), mpmath.mpf(0))  # noqa: E731
    assert floats.settle(0.0, low, high, at_midpoint) == low  # 1.0 is even
    odd_low, even_high = high, float(np.nextafter(np.float32(high), np.float32(2.0)))
    odd_mid = floats.midpoint(odd_low, even_high)
    assert floats.settle(0.0, odd_low, even_high, lambda x: (mpmath.mpf(odd_mid), mpmath.mpf(0))) == even_high
    just_below = lambda x: (mpmath.mpf(mid), -(mpmath.mpf(2) ** -90))  # noqa: E731
    ref = np.array([mid * (1 + 2.0**-52)])  # the float64 value: one float64 ulp above the midpoint
    assert float(np.float32(ref[0])) == high
    rounded, settled = floats.correctly_rounded(ref, np.array([0.0]), just_below)
    assert settled == 1 and float(rounded[0]) == low
    # The overflow midpoint: ties go to +inf (the largest float32 is odd).
    largest = float(np.finfo(np.float32).max)
    tie = lambda x: (mpmath.mpf(floats.OVERFLOW_MIDPOINT), mpmath.mpf(0))  # noqa: E731
    assert floats.settle(0.0, largest, np.inf, tie) == np.inf
    ledger.record_example()


def test_an_interrupted_run_resumes_from_the_chunks_on_disk(tmp_path):
    """A run stopped after 2 of 6 chunks leaves them on disk; the next run computes only the other 4, ignores a
    chunk whose write was cut short, and reports what one uninterrupted run reports. (In process: the worker pool
    runs the same function per chunk, and takes seconds to start.)"""
    chosen = sweeps.select(["sigmoid", "log_sigmoid"])
    only = list(range(_chunk_of(floats.key_of(1.0), 12), _chunk_of(floats.key_of(1.0), 12) + 6))
    out = tmp_path / "resumed"
    first = engine.run(str(out), chosen, chunk_bits=12, only=only, stop_after=2, progress=False)
    assert (first.computed, first.chunks_done, first.chunks_total) == (2, 2, 6)
    (out / "chunks" / "logit-12-999999-cut.json.tmp").write_text('{"chunk": ')
    second = engine.run(str(out), chosen, chunk_bits=12, only=only, progress=False)
    assert (second.computed, second.chunks_done) == (4, 6)
    whole = engine.run(str(tmp_path / "whole"), chosen, chunk_bits=12, only=only, resume=False, progress=False)
    for name in whole.tallies:
        assert second.tallies[name].as_dict() == whole.tallies[name].as_dict(), name
    assert whole.tallies["sigmoid"].inputs == 6 * 2**12
    ledger.record_example()


def test_a_run_resumes_only_from_chunks_of_the_same_torch_build(tmp_path, monkeypatch):
    """Chunks on disk computed by another torch release or kernel build (ATEN_CPU_CAPABILITY) are not read back as
    this run's: the run computes every chunk again."""
    chosen = sweeps.select(["sigmoid"])
    only = [_chunk_of(floats.key_of(1.0), 12)]
    out = str(tmp_path / "out")
    assert engine.run(out, chosen, chunk_bits=12, only=only, progress=False).computed == 1
    assert engine.run(out, chosen, chunk_bits=12, only=only, progress=False).computed == 0  # resumed
    monkeypatch.setattr(engine, "torch_build", lambda: "torch 2.13.0 (abc), CPU kernels for DEFAULT")
    assert engine.run(out, chosen, chunk_bits=12, only=only, progress=False).computed == 1
    ledger.record_example()


@pytest.mark.parametrize("sweep", sweeps.SWEEPS, ids=lambda s: s.name)
def test_the_floor_lies_below_the_tolerance_models_bound(sweep):
    """Where a result is not correctly rounded but its error is below the sweep's floor, the engine does not replay
    the bound: the floor must lie below the replayed bound, as checked here at 2^16 random inputs and 2^16 inputs
    of the range where the reference decides (the floors are derived from the replays' roundings)."""
    keys = engine.slice_keys(sweep.domain, 2**16, 7)
    start = floats.key_of(-20.0) if sweep.domain is sweeps.LOGITS else floats.key_of(1e-8)
    dense = np.arange(start, start + 2**16 * 701, 701, dtype=np.uint64).astype(np.uint32)
    for chosen in (keys, dense[dense <= sweep.domain.high]):
        x = floats.bits_of_keys(chosen).view(np.float32)
        x = x[~np.isnan(x)].astype(np.float64)
        with np.errstate(all="ignore"):
            r = sweep.sign * sweep.exact.reference(x)
            bound = sweep.bound(x).error
            floor = sweep.floor(x, r)
        checked = np.isfinite(bound) & np.isfinite(r)
        assert np.all(floor[checked] <= bound[checked]), x[checked][floor[checked] > bound[checked]][:3]
    ledger.record_example()


def _exact_value(exact: sweeps.Exact, x: float) -> mpmath.mpf:
    with mpmath.workprec(200):
        head, tail = exact.mp(mpmath.mpf(x))
        return head + tail


@pytest.mark.parametrize("exact", sweeps.EXACTS, ids=lambda e: e.name)
def test_the_reference_is_accurate_enough_and_the_saturated_ranges_are_right(exact):
    """The float64 reference is within 2^-44 of the exact value (mpmath) at random inputs where it decides, so its
    interval settles the rounding everywhere but near midpoints; each saturated range's closed form is the
    correctly rounded value at its two ends, the inputs just inside them and random inputs within."""
    domain = sweeps.PROBABILITIES if exact.name.startswith("min") else sweeps.LOGITS
    rng = np.random.default_rng(3)
    keys = rng.integers(domain.low, domain.high + 1, 3000, dtype=np.uint64).astype(np.uint32)
    x = floats.bits_of_keys(keys).view(np.float32)
    x = x[np.isfinite(x)]
    saturated = np.zeros(x.shape, dtype=bool)
    for r in exact.saturated:
        saturated |= (x >= r.low) & (x <= r.high)
    deciding = x[~saturated][:400]
    with np.errstate(divide="ignore"):
        ref = exact.reference(deciding.astype(np.float64))
    for xi, ri in zip(deciding, ref, strict=True):
        true = _exact_value(exact, float(xi))
        assert abs(mpmath.mpf(float(ri)) - true) <= abs(true) * mpmath.mpf(2) ** -44, (xi, ri, true)
    for r in exact.saturated:
        low, high = floats.key_of(r.low), floats.key_of(r.high)
        inside = [low, min(low + 1, high), max(high - 1, low), high]
        inside += [int(k) for k in rng.integers(low, high + 1, 20, dtype=np.uint64)]
        xs = floats.bits_of_keys(np.array(inside, dtype=np.uint32)).view(np.float32)
        xs = xs[np.isfinite(xs)]
        closed = np.full(xs.shape, r.value, dtype=np.float32) if r.rule is None else r.rule(xs)
        with np.errstate(divide="ignore", over="ignore"):
            rounded, _ = floats.correctly_rounded(exact.reference(xs.astype(np.float64)), xs, exact.mp)
        assert np.array_equal(rounded, closed), (r.why, xs[rounded != closed][:3])
    ledger.record_example()
