"""The engine: chunks of the input space dealt to every core, each chunk's figures written to disk as it finishes
(so that a run resumes where it was interrupted), the figures merged into the report.

A chunk is an interval of keys (floats.py), so an interval of float32 inputs in ascending order. For each kernel
(one torch call for the chunk) and each exact function its sweeps compare with, the chunk is cut into the
saturated ranges (the correctly rounded value known in closed form), the NaN inputs (the exact value is NaN) and
the rest, where the float64 reference rounded to float32, with mpmath near midpoints, gives it. Every input is
then classified by the distance in ulps between torch's result and the correctly rounded value, and every result
that is not correctly rounded is compared with the tolerance model's bound (``check_bound``). Memory: a chunk's
inputs, its torch results and one reference at a time (about 40 bytes per input and result).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import torch

from reporting.fingerprint import cpu_capability
from verification.dtypes import FLOAT32
from verification.implementations import ImplUnderTest, flushes_subnormals, torch_impl
from verification.tolerance.tracked import RULES, flushing_subnormals

from . import floats
from .floats import F32, F64
from .sweeps import Domain, Exact, Impl, Kernel, Saturated, Sweep

CHUNK_BITS = 22  # 4 Mi inputs a chunk: 1024 chunks for the 2^32 logits
PLOT_BINS = 64  # per chunk, the largest error in each of this many runs of consecutive inputs, for the plot
# Histogram of the distance in ulps to the correctly rounded value: 0, 1, 2, 3-4, 5-8, ..., up to 2^32.
HISTOGRAM_BINS = 34
EXAMPLES = 4


class EngineError(RuntimeError):
    """The engine's own premise failed (a saturated range's closed form disagrees with the reference)."""


def histogram_labels() -> list[str]:
    labels = ["0", "1", "2"]
    for k in range(3, HISTOGRAM_BINS):
        low, high = 2 ** (k - 2) + 1, 2 ** (k - 1)
        labels.append(f"{low}-{high}")
    return labels


@dataclass
class Tally:
    """One sweep's figures over some inputs; ``merge`` adds another's."""

    inputs: int = 0
    correct: int = 0  # the correctly rounded value (NaN where the exact value is NaN)
    faithful: int = 0  # one of the two float32 numbers around the exact value (the correctly rounded ones included)
    settled: int = 0  # inputs whose correctly rounded value mpmath settled (the reference near a midpoint)
    signed_zero: int = 0  # correctly rounded to zero, with the other sign
    nonfinite: int = 0  # NaN or an infinity where the exact value is not that
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    max_ulps: float = 0.0  # the largest error in ulps, |torch - exact| / ulp, among the results not correctly rounded
    max_at: list[dict[str, Any]] = field(default_factory=list)
    unfaithful_at: list[dict[str, Any]] = field(default_factory=list)  # the first few, in input order
    nonfinite_at: list[dict[str, Any]] = field(default_factory=list)
    replayed: int = 0  # results compared with the tolerance model's replayed bound
    over_bound: int = 0
    worst_ratio: float = 0.0  # the largest |torch - reference| / bound among those
    worst_at: dict[str, Any] | None = None
    over_at: list[dict[str, Any]] = field(default_factory=list)
    unbounded: dict[str, int] = field(default_factory=dict)  # results without a finite bound, by the rule's reason
    named: dict[str, int] = field(default_factory=dict)  # NaN or inf results a named divergence accounts for
    specials: list[dict[str, Any]] = field(default_factory=list)
    # The plot: (first key, last key, largest error in ulps) of runs of consecutive inputs.
    plot: list[list[float]] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        for name in ("inputs", "correct", "faithful", "settled", "signed_zero", "nonfinite", "replayed", "over_bound"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]
        if other.max_ulps > self.max_ulps:
            self.max_ulps, self.max_at = other.max_ulps, list(other.max_at)
        elif other.max_ulps == self.max_ulps and other.max_ulps > 0:
            self.max_at = (self.max_at + other.max_at)[:EXAMPLES]
        self.unfaithful_at = (self.unfaithful_at + other.unfaithful_at)[:EXAMPLES]
        self.nonfinite_at = (self.nonfinite_at + other.nonfinite_at)[:EXAMPLES]
        self.over_at = (self.over_at + other.over_at)[:EXAMPLES]
        if other.worst_ratio > self.worst_ratio:
            self.worst_ratio, self.worst_at = other.worst_ratio, other.worst_at
        for table, theirs in ((self.unbounded, other.unbounded), (self.named, other.named)):
            for reason, count in theirs.items():
                table[reason] = table.get(reason, 0) + count
        self.specials += other.specials
        self.plot += other.plot

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Tally:
        return Tally(**data)


def _example(x: float, got: float, correct: float, reference: float, **more: Any) -> dict[str, Any]:
    return {"input": x, "input_hex": float(x).hex(), "torch": got, "correctly_rounded": correct,
            "reference": reference, **more}  # fmt: skip


# -- one segment: inputs of one kind (saturated, NaN, or compared through the reference) -------------------------


@dataclass
class Classified:
    """What ``_classify`` found on a segment: the figures (a Tally without the bound's), the plot's largest errors
    per run, and the results not correctly rounded, for the bound."""

    tally: Tally
    runs: npt.NDArray[np.intp]
    run_max: F64
    x: F32
    got: F32
    reference: F64
    nonfinite: npt.NDArray[np.bool_]


def _classify(
    exact: Exact,
    sign: float,
    x: F32,
    got: F32,
    candidate: F32 | np.float32,
    reference: F64 | None,
    saturated: Saturated | None,
    bin_of: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.intp]],
) -> Classified:
    """Classify ``got`` against the correctly rounded ``candidate`` (sign applied) at the inputs ``x``.

    ``reference`` is the float64 reference (sign applied) where it was computed for every input; in a saturated
    range it is computed for the inputs where torch differs, and must give the range's value there."""
    tally = Tally(inputs=x.size)
    c = np.asarray(candidate, dtype=np.float32)
    if c.ndim == 0 and not np.isnan(c):
        # A constant (a saturated range): equal in value, one pass; a zero of the other sign, one more.
        differ = np.flatnonzero(got != c)
        if c == 0:
            tally.signed_zero += int(np.count_nonzero(got.view(np.uint32) == (c.view(np.uint32) ^ floats.SIGN)))
        return _classify_differing(tally, exact, sign, x, got, c, reference, saturated, bin_of, differ)
    # Bitwise first (one pass): most inputs match to the bit; only the others are looked at further.
    differ = np.flatnonzero(got.view(np.uint32) != c.view(np.uint32))
    if differ.size:
        gd, cd = got[differ], (c[differ] if c.ndim else c)
        with np.errstate(invalid="ignore"):
            nan_both = np.isnan(gd) & np.isnan(cd)
            equal = (gd == cd) | nan_both
        tally.signed_zero += int(np.count_nonzero(equal & ~nan_both))  # +0 against -0
        wrong = differ[~equal]
    else:
        wrong = differ
    return _classify_differing(tally, exact, sign, x, got, c, reference, saturated, bin_of, wrong)


def _classify_differing(
    tally: Tally,
    exact: Exact,
    sign: float,
    x: F32,
    got: F32,
    c: F32,
    reference: F64 | None,
    saturated: Saturated | None,
    bin_of: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.intp]],
    wrong: npt.NDArray[np.intp],
) -> Classified:
    """The rest of ``_classify``, given the indices of the results that are not correctly rounded."""
    n = x.size
    same = n - wrong.size
    tally.correct = tally.faithful = tally.histogram[0] = same
    empty = np.zeros(0)
    if not wrong.size:
        return Classified(tally, empty.astype(np.int64), empty, x[:0], got[:0], empty, empty.astype(bool))
    xw, gw = x[wrong], got[wrong]
    if reference is None:
        with np.errstate(invalid="ignore"):
            rw = sign * exact.reference(xw.astype(np.float64))
        crw = np.broadcast_to(c, x.shape)[wrong]
        # The closed form must agree with the reference wherever the reference alone decides the rounding (near a
        # midpoint the closed form's own reasoning decides: -3x + tiny at a midpoint -3x, where float64 has no tiny).
        rounded, near_midpoint = floats.rounded_unless_near_midpoint(sign * rw)
        rounded = (np.float32(sign) * rounded).astype(np.float32)
        decided = np.ones(rounded.shape, dtype=bool)
        decided[near_midpoint] = False
        disagree = decided & ~((rounded == crw) | (np.isnan(rounded) & np.isnan(crw)))
        if disagree.any():
            bad = int(np.argmax(disagree))
            where = f" [{saturated.low}, {saturated.high}]" if saturated else ""
            raise EngineError(
                f"{exact.name}: the saturated range{where} gives {crw[bad]!r} at x = {xw[bad]!r}, "
                f"the reference {rounded[bad]!r}"
            )
    else:
        rw = reference[wrong]
        crw = np.broadcast_to(c, x.shape)[wrong]
    found_got, found_correct = gw, crw
    # Where the exact value is NaN or infinite, any other result is wrong in kind, not by some ulps; a NaN result too.
    nonfinite = ~(np.isfinite(gw) & np.isfinite(crw))
    all_finite = not nonfinite.any()
    finite = ~nonfinite
    if not all_finite:  # the classification below reads finite pairs: give the others harmless values
        gw, crw = np.where(finite, gw, 0).astype(np.float32), np.where(finite, crw, 0).astype(np.float32)
    g64, cr64 = gw.astype(np.float64), crw.astype(np.float64)
    with np.errstate(invalid="ignore"):
        rf = rw if all_finite else np.where(finite, rw, 0.0)
    steps = np.subtract(floats.ordinal32(gw), floats.ordinal32(crw), dtype=np.int64)
    # Faithful: the other float32 neighbour of the exact value, on the reference's side of the correctly rounded.
    faithful = ((steps == 1) & (rf > cr64)) | ((steps == -1) & (rf < cr64))
    if not all_finite:
        faithful &= finite
    tally.faithful += int(np.count_nonzero(faithful))
    tally.nonfinite += int(np.count_nonzero(nonfinite))
    distance = np.abs(steps if all_finite else steps[finite])
    # The bin of a distance d >= 1: 1 for 1, k for d in (2^(k-2), 2^(k-1)] above, the exponent of d - 1 plus one.
    counts = np.bincount(np.frexp((distance - 1).astype(np.float64))[1] + 1, minlength=HISTOGRAM_BINS)
    tally.histogram = [a + int(b) for a, b in zip(tally.histogram, counts, strict=True)]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        in_ulps = np.abs(g64 - rf) / FLOAT32.ulps(cr64)
    if not all_finite:
        in_ulps[nonfinite] = 0.0
        gw, crw = found_got, found_correct
    # The largest error in each run of the plot (``wrong`` ascends, so its runs are contiguous).
    runs = bin_of(wrong)
    starts = np.flatnonzero(np.concatenate([[True], runs[1:] != runs[:-1]]))
    if finite.any():
        top = float(in_ulps.max())
        if top > tally.max_ulps:
            tally.max_ulps, tally.max_at = top, []
        if top == tally.max_ulps and len(tally.max_at) < EXAMPLES:
            for i in np.flatnonzero(in_ulps == top)[: EXAMPLES - len(tally.max_at)]:
                tally.max_at.append(_example(float(xw[i]), float(gw[i]), float(crw[i]), float(rw[i]), ulps=top))
    for i in np.flatnonzero(finite & ~faithful)[: max(0, EXAMPLES - len(tally.unfaithful_at))]:
        tally.unfaithful_at.append(
            _example(float(xw[i]), float(gw[i]), float(crw[i]), float(rw[i]), ulps=float(in_ulps[i]))
        )
    for i in np.flatnonzero(nonfinite)[: max(0, EXAMPLES - len(tally.nonfinite_at))]:
        tally.nonfinite_at.append(_example(float(xw[i]), float(gw[i]), float(crw[i]), float(rw[i])))
    return Classified(tally, runs[starts], np.maximum.reduceat(in_ulps, starts), xw, gw, rw, nonfinite)


def _apply(tally: Tally, plot: F64, sweep: Sweep, found: Classified, flushing: bool = False) -> None:
    """Add a segment's figures to a sweep's, and compare its results that are not correctly rounded with the bound
    (derived for an arithmetic that flushes subnormal results to zero where ``flushing``: the implementation under
    test declares it, as the suite's properties honour)."""
    tally.merge(found.tally)
    if found.runs.size:
        plot[found.runs] = np.maximum(plot[found.runs], found.run_max)
    xw, gw, rw, nonfinite = found.x, found.got, found.reference, found.nonfinite
    # A NaN or infinity that a named divergence (or the reference's stated convention) accounts for is counted
    # under its name, as the suite excludes such examples, and not held against the bound.
    for named in sweep.named:
        hit = nonfinite & named.where(xw)
        if hit.any():
            tally.named[named.claim] = tally.named.get(named.claim, 0) + int(np.count_nonzero(hit))
            keep = ~hit
            xw, gw, rw, nonfinite = xw[keep], gw[keep], rw[keep], nonfinite[keep]
    if xw.size:
        with flushing_subnormals(flushing):
            check_bound(tally, sweep, xw, gw, rw, nonfinite)


def _compare_all(
    tallies: dict[str, Tally],
    plots: dict[str, F64],
    mine: list[Sweep],
    results: dict[str, F32],
    start: int,
    stop: int,
    classify: Callable[[float, F32], Classified],
    flushing: dict[str, bool],
) -> None:
    """Each sweep on one segment; a sweep whose results are bitwise those of an earlier one with the same sign (the
    same arithmetic: BCEWithLogits with pos_weight at y = 0, its gradient and sigmoid) reuses its classification."""
    done: list[tuple[float, F32, Classified]] = []
    for sweep in mine:
        got = results[sweep.name][start:stop]
        bits = got.view(np.uint32)
        found = next(
            (f for sign, earlier, f in done if sign == sweep.sign and np.array_equal(earlier.view(np.uint32), bits)),
            None,
        )
        if found is None:
            found = classify(sweep.sign, got)
            done.append((sweep.sign, got, found))
        _apply(tallies[sweep.name], plots[sweep.name], sweep, found, flushing[sweep.name])


def check_bound(tally: Tally, sweep: Sweep, x: F32, got: F32, reference: F64, nonfinite: npt.NDArray[np.bool_]) -> None:
    """Results not correctly rounded, against the tolerance model's bound: |torch - reference| <= bound, NaN where
    the reference is NaN, the same infinity where it is infinite; a result without a finite bound is counted under
    the reason of the rule that made it so (as tests/test_exhaustive.py counts them).

    The bound is replayed only where the error passes the sweep's floor (``Sweep.floor``): a lower bound on the
    model's bound, from the roundings its replay adds at the least (tests/meta/test_exhaustive_engine.py checks it
    below the replayed bound at every input of every sweep's slice). A correctly rounded result is within the bound:
    its error is at most half an ulp, and every floor is at least u |value| + eta, more than that."""
    with np.errstate(invalid="ignore"):
        g64 = got.astype(np.float64)
        error = np.abs(g64 - reference)
        replay = np.flatnonzero(nonfinite | ~(error <= sweep.floor(x.astype(np.float64), reference)))
    if not replay.size:
        return
    tally.replayed += int(replay.size)
    xr, gr, rr = x[replay], g64[replay], reference[replay]
    with np.errstate(invalid="ignore"):
        replayed = sweep.bound(xr.astype(np.float64))
    bound = np.broadcast_to(replayed.error, xr.shape)
    bounded = np.isfinite(bound) | ~np.isfinite(rr)
    codes, counts = np.unique(np.broadcast_to(replayed.unbounded_by, xr.shape)[~bounded], return_counts=True)
    for code, count in zip(codes, counts, strict=True):
        reason = RULES[int(code)].exclusion
        tally.unbounded[reason] = tally.unbounded.get(reason, 0) + int(count)
    finite = np.isfinite(rr)
    with np.errstate(invalid="ignore"):
        mismatched = bounded & (
            (np.isnan(gr) != np.isnan(rr)) | (np.isinf(rr) & (gr != rr)) | (finite & ~np.isfinite(gr))
        )
        err = np.where(bounded & finite, np.abs(gr - np.where(finite, rr, 0.0)), 0.0)
        over = mismatched | (bounded & finite & (err > bound))
        ratio = np.where(
            bounded & finite & (bound > 0), err / bound, np.where(bounded & finite & (err > 0), np.inf, 0.0)
        )
    ratio = np.where(mismatched, np.inf, ratio)
    tally.over_bound += int(np.count_nonzero(over))
    if ratio.size:
        worst = int(np.argmax(ratio))
        if ratio[worst] > tally.worst_ratio:
            tally.worst_ratio = float(ratio[worst])
            tally.worst_at = {"input": float(xr[worst]), "input_hex": float(xr[worst]).hex(),
                              "torch": float(gr[worst]), "reference": float(rr[worst]),
                              "bound": float(bound[worst])}  # fmt: skip
    for i in np.flatnonzero(over)[: max(0, EXAMPLES - len(tally.over_at))]:
        tally.over_at.append({"input": float(xr[i]), "input_hex": float(xr[i]).hex(), "torch": float(gr[i]),
                              "reference": float(rr[i]), "bound": float(bound[i])})  # fmt: skip


# -- one chunk ---------------------------------------------------------------------------------------------------

NAN_LOW = ("NaN", floats.key_of(-np.inf) - 1)  # keys below -inf's are the negative NaNs
NAN_HIGH = ("NaN", floats.key_of(np.inf) + 1)


def segments(keys: npt.NDArray[np.uint32], exact: Exact) -> Iterator[tuple[int, int, Saturated | str | None]]:
    """(start, stop, kind) cutting the ascending ``keys``: a saturated range, "NaN", or None (the reference)."""
    marks: list[tuple[int, int, Saturated | str]] = [(0, NAN_LOW[1], "NaN"), (NAN_HIGH[1], 2**32 - 1, "NaN")]
    marks += [(*r.keys(), r) for r in exact.saturated]
    marks.sort(key=lambda mark: mark[0])
    at = 0
    for low, high, kind in marks:
        start = int(np.searchsorted(keys, np.uint32(low), "left"))
        stop = int(np.searchsorted(keys, np.uint32(high), "right"))
        if start > at:
            yield at, start, None
        if stop > start:
            yield start, stop, kind
        at = max(at, stop)
    if at < keys.size:
        yield at, keys.size, None


SPECIAL_VALUES = (
    0.0, -0.0, floats.value_of_key(floats.key_of(0.0) + 1), -floats.value_of_key(floats.key_of(0.0) + 1),
    float(np.finfo(np.float32).smallest_normal), 1.0, -1.0, float(np.finfo(np.float32).max),
    -float(np.finfo(np.float32).max), math.inf, -math.inf,
)  # fmt: skip
SPECIAL_KEYS = np.array(
    sorted({floats.key_of(v) for v in SPECIAL_VALUES} | {int(floats.keys_of_bits(np.array([0x7FC00000]))[0])}),
    dtype=np.uint32,
)


@dataclass
class Timings:
    torch: float = 0.0
    reference: float = 0.0
    total: float = 0.0


def check_keys(
    keys: npt.NDArray[np.uint32], sweeps: tuple[Sweep, ...], impls: dict[str, Impl], device: str
) -> tuple[dict[str, Tally], Timings]:
    """Every sweep of ``sweeps`` (all of one domain) at the inputs with the ascending ``keys``; ``impls``: the
    implementation under test of a loss (torch's functional signature) where it is not torch's."""
    started = time.perf_counter()
    timings = Timings()
    x = floats.bits_of_keys(keys).view(np.float32)
    results: dict[str, F32] = {}
    for kernel in _kernels(sweeps):
        impl = impls[kernel.loss] if kernel.loss in impls else _torch(kernel)
        begun = time.perf_counter()
        outputs = kernel.run(x, impl, device)
        timings.torch += time.perf_counter() - begun
        for sweep in sweeps:
            if sweep.kernel is kernel:
                results[sweep.name] = outputs[sweep.output_index]
    tallies = {sweep.name: Tally() for sweep in sweeps}
    # An implementation under test that flushes float32's subnormal results (an adapter's FLUSHES_SUBNORMALS) is
    # held to the bounds of that arithmetic, as in the suite's properties.
    flushing = {
        sweep.name: bool(sweep.kernel.loss in impls and flushes_subnormals(impls[sweep.kernel.loss], FLOAT32))
        for sweep in sweeps
    }
    references: dict[str, tuple[int, F64]] = {}
    bins = max(1, min(PLOT_BINS, keys.size))
    plots = {sweep.name: np.zeros(bins) for sweep in sweeps}
    for exact in {sweep.exact.name: sweep.exact for sweep in sweeps}.values():
        mine = [sweep for sweep in sweeps if sweep.exact is exact]
        for start, stop, kind in segments(keys, exact):
            xs = x[start:stop]
            where = _bins(start, bins, keys.size)
            if kind == "NaN":
                classify = _classifier(exact, xs, np.float32(np.nan), None, None, where)
            elif isinstance(kind, Saturated):
                base = np.float32(kind.value) if kind.rule is None else kind.rule(xs)
                classify = _classifier(exact, xs, base, None, kind, where)
            else:
                begun = time.perf_counter()
                reference = _reference(exact, xs.astype(np.float64), references, start)
                rounded, settled = floats.correctly_rounded(reference, xs, exact.mp)
                timings.reference += time.perf_counter() - begun
                for sweep in mine:
                    tallies[sweep.name].settled += settled
                classify = _classifier(exact, xs, rounded, reference, None, where)
            _compare_all(tallies, plots, mine, results, start, stop, classify, flushing)
    at = np.minimum(np.searchsorted(keys, SPECIAL_KEYS).astype(np.int64), keys.size - 1)
    special = np.unique(at[keys[at] == SPECIAL_KEYS])
    for sweep in sweeps:
        tally = tallies[sweep.name]
        for i in special:
            xi = x[i : i + 1]
            tally.specials.append({"input": float(xi[0]), "input_hex": float(xi[0]).hex(),
                                   "torch": float(results[sweep.name][i]),
                                   "correctly_rounded": float(_correctly_rounded_at(sweep, xi)[0])})  # fmt: skip
        edges = -(-np.arange(bins + 1) * keys.size // bins)  # the first input of each run
        tally.plot = [
            [int(keys[edges[b]]), int(keys[edges[b + 1] - 1]), float(plots[sweep.name][b])]
            for b in range(bins)
            if edges[b + 1] > edges[b]
        ]
    timings.total = time.perf_counter() - started
    return tallies, timings


def _bins(start: int, bins: int, size: int) -> Callable[[npt.NDArray[np.intp]], npt.NDArray[np.intp]]:
    """The plot's run of each input of a segment starting at ``start``, from its index in the segment."""
    return lambda i: (start + i) * bins // size


class _Negated(TypedDict, total=False):
    """A segment's correctly rounded value and reference, negated once for the sweeps of sign -1."""

    rounded: F32 | np.float32
    reference: F64 | None


def _classifier(
    exact: Exact,
    x: F32,
    rounded: F32 | np.float32,
    reference: F64 | None,
    saturated: Saturated | None,
    bin_of: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.intp]],
) -> Callable[[float, F32], Classified]:
    """``_classify`` of a segment for a sweep of either sign: the correctly rounded value and reference negate."""

    negated: _Negated = {}

    def classify(sign: float, got: F32) -> Classified:
        if sign > 0:
            return _classify(exact, sign, x, got, rounded, reference, saturated, bin_of)
        if not negated:  # once per segment, for every sweep of sign -1
            negated["rounded"] = (-rounded).astype(np.float32)
            negated["reference"] = None if reference is None else -reference
        return _classify(exact, sign, x, got, negated["rounded"], negated["reference"], saturated, bin_of)

    return classify


def _reference(exact: Exact, x: F64, computed: dict[str, tuple[int, F64]], start: int) -> F64:
    """The float64 reference on a segment, from another exact function's if it is a multiple of it (3 softplus(-x)
    from softplus(-x): the same bits as computing it afresh), kept for the functions derived from it."""
    if exact.multiple_of is not None:
        factor, base = exact.multiple_of
        kept = computed.get(base.name)
        if kept is not None and kept[0] <= start and kept[0] + kept[1].size >= start + x.size:
            offset = start - kept[0]
            return factor * kept[1][offset : offset + x.size]
    value = exact.reference(x)
    computed[exact.name] = (start, value)
    return value


def _correctly_rounded_at(sweep: Sweep, x: F32) -> F32:
    """The correctly rounded value (sign applied) at a few inputs, through the reference (NaN at NaN)."""
    with np.errstate(invalid="ignore"):
        reference = sweep.exact.reference(x.astype(np.float64))
    rounded, _ = floats.correctly_rounded(reference, x, sweep.exact.mp)
    return (np.float32(sweep.sign) * rounded).astype(np.float32)


def _kernels(sweeps: tuple[Sweep, ...]) -> list[Kernel]:
    return list({sweep.kernel.name: sweep.kernel for sweep in sweeps}.values())


def _torch(kernel: Kernel) -> Impl | None:
    return torch_impl(kernel.loss, "functional") if kernel.loss else None


# -- chunks, on disk -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    domain: Domain
    index: int
    chunk_bits: int

    @property
    def keys(self) -> npt.NDArray[np.uint32]:
        low = self.domain.low + (self.index << self.chunk_bits)
        high = min(low + (1 << self.chunk_bits), self.domain.high + 1)
        return np.arange(low, high, dtype=np.uint64).astype(np.uint32)

    @property
    def name(self) -> str:
        return f"{self.domain.name}-{self.chunk_bits}-{self.index:06d}"


def chunk_count(domain: Domain, chunk_bits: int) -> int:
    return -(-domain.size // (1 << chunk_bits))


def chunks_of(domain: Domain, chunk_bits: int) -> list[Chunk]:
    return [Chunk(domain, i, chunk_bits) for i in range(chunk_count(domain, chunk_bits))]


def slice_keys(domain: Domain, size: int, seed: int) -> npt.NDArray[np.uint32]:
    """``size`` distinct random keys of the domain, with the special inputs in it, ascending: the random slice."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(domain.low, domain.high + 1, size=size, dtype=np.uint64, endpoint=False)
    special = SPECIAL_KEYS[(SPECIAL_KEYS >= domain.low) & (SPECIAL_KEYS <= domain.high)]
    keys = np.sort(np.concatenate([drawn.astype(np.uint32), special]))
    first: npt.NDArray[np.bool_] = np.concatenate([[True], keys[1:] != keys[:-1]])
    return keys[first]


def _chunk_path(out: str, chunk: Chunk, what: str) -> str:
    """A chunk's file, named by what was run on it (the sweeps, the implementations, the device): a run resumes
    only from chunks of the same run."""
    digest = hashlib.sha256(what.encode()).hexdigest()[:12]
    return os.path.join(out, "chunks", f"{chunk.name}-{digest}.json")


def torch_build() -> str:
    """What besides the sweeps decides a chunk's figures: torch's release and commit, and the build of its CPU kernels
    it dispatched to (ATEN_CPU_CAPABILITY lowers it), each with its own exp, log and vector width."""
    return f"torch {torch.__version__} ({torch.version.git_version}), CPU kernels for {cpu_capability()}"


def _what(names: tuple[str, ...], impl_specs: tuple[str, ...], device: str) -> str:
    return json.dumps([sorted(names), sorted(impl_specs), device, torch_build()])


MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(2**31), "MALLOC_TRIM_THRESHOLD_": str(2**34)}


def _worker_setup() -> None:
    # One intra-op thread per worker: the workers are the parallelism, one per core.
    torch.set_num_threads(1)


def _run_chunk(job: tuple[str, Chunk, tuple[str, ...], tuple[str, ...], str]) -> tuple[str, int, dict[str, float]]:
    out, chunk, names, impl_specs, device = job
    from .sweeps import select

    sweeps = tuple(s for s in select(list(names)) if s.domain == chunk.domain)
    tallies, timings = check_keys(chunk.keys, sweeps, implementations(impl_specs), device)
    record = {
        "chunk": chunk.name,
        "inputs": int(chunk.keys.size),
        "timings": timings.__dict__,
        "tallies": {name: tally.as_dict() for name, tally in tallies.items()},
    }
    path = _chunk_path(out, chunk, _what(names, impl_specs, device))
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(record, file)
    os.replace(path + ".tmp", path)  # a chunk on disk is whole: an interrupted write leaves only the .tmp
    return chunk.name, int(chunk.keys.size), timings.__dict__


@dataclass
class RunResult:
    tallies: dict[str, Tally]
    timings: Timings
    chunks_done: int
    chunks_total: int
    computed: int  # chunks computed by this run (the rest were read back from disk)
    wall: float
    inputs: int


def run(
    out: str,
    sweeps: tuple[Sweep, ...],
    workers: int = 1,
    resume: bool = True,
    chunk_bits: int = CHUNK_BITS,
    impl_specs: tuple[str, ...] = (),
    device: str = "cpu",
    only: list[int] | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Every chunk of every domain the sweeps take (or the chunk indices ``only``); chunks already on disk in
    ``out`` are read back when ``resume``. ``stop_after``: stop after computing that many (an interruption)."""
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
    names = tuple(sweep.name for sweep in sweeps)
    what = _what(names, impl_specs, device)
    domains = list({sweep.domain.name: sweep.domain for sweep in sweeps}.values())
    every = [
        Chunk(d, i, chunk_bits)
        for d in domains
        for i in (range(chunk_count(d, chunk_bits)) if only is None else sorted(set(only)))
        if i < chunk_count(d, chunk_bits)
    ]
    done = {c.name for c in every if resume and os.path.exists(_chunk_path(out, c, what))}
    if not resume:
        for c in every:
            if os.path.exists(_chunk_path(out, c, what)):
                os.remove(_chunk_path(out, c, what))
    todo = [c for c in every if c.name not in done]
    # Largest work first: the logit chunks (several kernels each) before the probability chunks.
    todo.sort(key=lambda c: (c.domain.name != "logit", c.index))
    if stop_after is not None:
        todo = todo[:stop_after]
    jobs = [(out, c, names, impl_specs, device) for c in todo]
    started, computed, inputs_done = time.perf_counter(), 0, 0
    total_inputs = sum(_chunk_size(c) for c in todo)
    last = 0.0

    def report_progress(name: str, size: int) -> None:
        nonlocal computed, inputs_done, last
        computed += 1
        inputs_done += size
        now = time.perf_counter() - started
        if progress and (now - last > 5 or computed == len(jobs)):
            last = now
            rate = inputs_done / now if now else 0.0
            eta = (total_inputs - inputs_done) / rate if rate else math.inf
            print(
                f"exhaustive: {computed + len(done)}/{len(every)} chunks ({len(done)} from an earlier run), "
                f"{rate / 1e6:.1f} M inputs/s, {now:.0f} s, about {eta:.0f} s to go",
                file=sys.stderr,
                flush=True,
            )

    if workers <= 1:
        for job in jobs:
            name, size, _ = _run_chunk(job)
            report_progress(name, size)
    else:
        context = multiprocessing.get_context("spawn")
        # glibc hands each chunk's arrays (tens of MB) back to the system and faults them in afresh for the next;
        # kept in the heap, the workers spend that time computing. The workers read these as they start.
        saved = {name: os.environ.get(name) for name in MALLOC_SETTINGS}
        os.environ.update(MALLOC_SETTINGS)
        try:
            with context.Pool(workers, initializer=_worker_setup) as pool:
                for name, size, _ in pool.imap_unordered(_run_chunk, jobs):
                    report_progress(name, size)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name)
                else:
                    os.environ[name] = value
    wall = time.perf_counter() - started
    return gather(out, sweeps, every, what, computed, wall)


def _chunk_size(chunk: Chunk) -> int:
    low = chunk.domain.low + (chunk.index << chunk.chunk_bits)
    return min(1 << chunk.chunk_bits, chunk.domain.high + 1 - low)


def gather(out: str, sweeps: tuple[Sweep, ...], every: list[Chunk], what: str, computed: int, wall: float) -> RunResult:
    tallies = {sweep.name: Tally() for sweep in sweeps}
    timings, done, inputs = Timings(), 0, 0
    for chunk in every:
        path = _chunk_path(out, chunk, what)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as file:
            record = json.load(file)
        done += 1
        inputs += record["inputs"]
        for name, value in record["timings"].items():
            setattr(timings, name, getattr(timings, name) + value)
        for name, data in record["tallies"].items():
            if name in tallies:
                tallies[name].merge(Tally.from_dict(data))
    return RunResult(tallies, timings, done, len(every), computed, wall, inputs)


def implementations(specs: tuple[str, ...]) -> dict[str, Impl]:
    """--impl specs (LOSS=module:attribute) as the implementation of each loss they name."""
    return {impl.loss: impl.call for impl in (ImplUnderTest(spec) for spec in specs)}


def run_slice(
    sweeps: tuple[Sweep, ...],
    size: int,
    seed: int,
    impls: dict[str, Impl] | None = None,
    device: str = "cpu",
) -> dict[str, Tally]:
    """The random slice: ``size`` random inputs of each sweep's domain (and the special inputs), in this process."""
    tallies: dict[str, Tally] = {}
    for domain in {sweep.domain.name: sweep.domain for sweep in sweeps}.values():
        mine = tuple(sweep for sweep in sweeps if sweep.domain == domain)
        found, _ = check_keys(slice_keys(domain, size, seed), mine, impls or {}, device)
        tallies.update(found)
    return tallies
