"""A shrink of the suite's own, for the failing case of a batch: hypothesis shrinks the choices it made (the shape,
the arguments, the seeds), and this then tries the structural reductions that hypothesis's order of choices may not
reach, keeping each that still fails: an optional array argument (a weight) dropped, an empty batch, a batch of one,
K-dimensional sizes of one, one rank less, and halvings: the batch and each K-dimensional size of a categorical
case, the leading dimension of a binary or KL case, cut to its first half (never the class dimension: class indices
would fall out of range).

Halving is for the large inputs (up to 2^22 elements): a bug that shows only past a size (torch's parallel grain of
32768 elements) survives no cut to one or to none, but a few halvings bring its case down to between that size and
twice it. Every reduction keeps a prefix of each array (its first entries along each axis it cuts), so a case is known
by its arrays' shapes, and a reduction that did not fail is not rerun when a later round offers it again.

The case it returns fails as surely as the one it was given (each step is rerun), and it is smaller: fewer elements,
or as many in fewer dimensions (a leading dimension of one dropped, so that the next can be halved); or it is the case
it was given, where no reduction failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .cases import ARRAY_KWARGS, Case

# Every reduction reruns the check on one case; a failure's report waits for at most this many reruns. A bug that
# shows only past a size needs about 7 halvings to come down from 2^22 elements to just above torch's grain of 2^15,
# and each round before a halving that works first reruns the smaller candidates whose shapes changed since they
# passed (``minimised`` reruns no other): none for a binary case of rank 1 (10 reruns in all from 2^21 elements), the
# cuts to none or one of the other axes for a categorical case with K-dimensional sizes. Measured from 2^22 elements
# with k = 1 to 3 K-dimensional sizes and a bug that also needs each of them above one and a batch of 3
# (tests/meta/test_minimise_halving.py): 29 to 43 reruns, which 32 would cut short above twice the threshold. 48
# reaches it, and costs little: the reruns past 32 are of cases already halved several times, and a rerun's cost goes
# with its case's size, each round's case about half the last's or less.
MAX_RERUNS = 48

CATEGORICAL = ("nll_loss", "cross_entropy")


def elements(case: Case) -> int:
    """Every element of every array of ``case``: its input, its target, its array arguments."""
    arrays = [case.input, case.target, *(v for k, v in case.kwargs.items() if k in ARRAY_KWARGS)]
    return int(sum(np.size(a) for a in arrays))


def _size(case: Case) -> tuple[int, int]:
    """Fewer elements, or as many in fewer dimensions: (1, 16, 65539) dropping its leading 1 keeps every element, but
    only then can the 16 be halved."""
    arrays = [case.input, case.target, *(v for k, v in case.kwargs.items() if k in ARRAY_KWARGS)]
    return elements(case), sum(np.ndim(a) for a in arrays)


def _shapes(case: Case) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """What tells apart the cases reachable from one case: every reduction keeps a prefix along each axis it cuts
    (or the first entry of an axis it drops), so its arrays' shapes say which entries it kept."""
    arrays = {"input": case.input, "target": case.target, **{k: v for k, v in case.kwargs.items() if k in ARRAY_KWARGS}}
    return tuple((name, tuple(np.shape(a))) for name, a in arrays.items())


def minimised(case: Case, fails: Callable[[Case], bool]) -> Case:
    """The smallest case reached from ``case`` by the reductions below, each kept only where ``fails`` holds for it.

    Each round tries the current case's reductions, smallest first, and moves to the first that fails. A reduction
    that passed is remembered by its shapes and not rerun: a cut to none or to one of an axis that was not halved
    reappears unchanged in the next round, and rerunning it would spend the reruns the halvings need."""
    reruns = 0
    passed: set[tuple[tuple[str, tuple[int, ...]], ...]] = set()
    progress = True
    while progress and reruns < MAX_RERUNS:
        progress = False
        for smaller in sorted(_reductions(case), key=_size):
            if _size(smaller) >= _size(case) or reruns >= MAX_RERUNS or _shapes(smaller) in passed:
                continue
            reruns += 1
            if fails(smaller):
                case, progress = smaller, True
                break
            passed.add(_shapes(smaller))
    return case


def _half(size: int) -> int | None:
    """The first half of an axis of ``size`` entries (rounded up), where that is neither the whole nor the cut to one
    that is tried anyway."""
    half = -(-size // 2)
    return half if 1 < half < size else None


def _prefix(array: np.ndarray, axis: int, length: int) -> np.ndarray:
    return array[(slice(None),) * axis + (slice(0, length),)]


def _reductions(case: Case) -> Iterator[Case]:
    for name in ARRAY_KWARGS:
        if name in case.kwargs:
            yield case.with_arrays(case.input, case.target, {k: v for k, v in case.kwargs.items() if k != name})
    if case.loss in CATEGORICAL:
        yield from _categorical(case)
    else:
        yield from _leading(case)


def _categorical(case: Case) -> Iterator[Case]:
    """(C,) becomes an empty batch (0, C); (N, C, ...) keeps 0 or 1 of its N; K-dimensional sizes become 1; N and each
    K-dimensional size are halved. C is never cut."""
    x, t = case.input, case.target
    if x.ndim == 1:
        if case.has_index_target:
            yield case.with_arrays(x.reshape(1, -1)[:0], t.reshape(-1)[:0], case.kwargs)
        else:
            yield case.with_arrays(x.reshape(1, -1)[:0], t.reshape(1, -1)[:0], case.kwargs)
        return
    for n in (0, 1):
        if x.shape[0] > n:
            yield case.with_arrays(x[:n], t[:n], case.kwargs)
    for axis in range(2, x.ndim):
        if x.shape[axis] > 1:
            target_axis = axis if not case.has_index_target else axis - 1
            yield case.with_arrays(np.take(x, [0], axis), np.take(t, [0], target_axis), case.kwargs)
    half = _half(x.shape[0])
    if half is not None:
        yield case.with_arrays(x[:half], t[:half], case.kwargs)
    for axis in range(2, x.ndim):
        half = _half(x.shape[axis])
        if half is not None:
            target_axis = axis if not case.has_index_target else axis - 1
            yield case.with_arrays(_prefix(x, axis, half), _prefix(t, target_axis, half), case.kwargs)


def _leading(case: Case) -> Iterator[Case]:
    """Binary and KL cases (arrays broadcast from the right): the leading dimension cut to 0 or 1, halved, or dropped;
    the arrays that span it cut with it (one of size 1 there broadcasts, and stays as it is)."""
    rank = max(np.ndim(case.input), np.ndim(case.target))
    if rank == 0:
        return
    arrays = {
        "input": case.input,
        "target": case.target,
        **{k: v for k, v in case.kwargs.items() if k in ARRAY_KWARGS},
    }
    spanning = [np.asarray(a) for a in arrays.values() if np.ndim(a) == rank]
    half = _half(max(a.shape[0] for a in spanning))
    cuts: list[slice | int] = [slice(0, 0), slice(0, 1), 0]
    if half is not None:
        cuts.append(slice(0, half))
    for cut in cuts:
        reduced = {}
        if not isinstance(cut, slice) and any(a.shape[0] == 0 for a in spanning):
            continue  # an empty leading dimension has no first entry to keep
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.ndim == rank:  # spans the leading dimension (its size there, or 1 broadcast along it)
                if isinstance(cut, slice) and array.shape[0] == 1:
                    reduced[name] = array  # a size of 1 broadcasts to whatever the others are cut to
                else:
                    reduced[name] = array[cut]
            else:
                reduced[name] = array
        kwargs = {k: reduced.get(k, v) for k, v in case.kwargs.items()}
        smaller = case.with_arrays(reduced["input"], reduced["target"], kwargs)
        try:
            np.broadcast_shapes(*(np.shape(a) for a in reduced.values()))
        except ValueError:
            continue
        yield smaller
