"""A shrink of the suite's own, for the failing case of a batch: hypothesis shrinks the choices it made (the shape,
the arguments, the seeds), and this then tries the structural reductions that hypothesis's order of choices may not
reach, keeping each that still fails: an empty batch, a batch of one, K-dimensional sizes of one, one rank less.

The case it returns fails as surely as the one it was given (each step is rerun), and it has fewer elements."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .cases import ARRAY_KWARGS, Case

# Every reduction reruns the check on one case; a failure's report waits for at most this many reruns.
MAX_RERUNS = 32

CATEGORICAL = ("nll_loss", "cross_entropy")


def elements(case: Case) -> int:
    """Every element of every array of ``case``: its input, its target, its array arguments."""
    arrays = [case.input, case.target, *(v for k, v in case.kwargs.items() if k in ARRAY_KWARGS)]
    return int(sum(np.size(a) for a in arrays))


def minimised(case: Case, fails: Callable[[Case], bool]) -> Case:
    """The smallest case reached from ``case`` by the reductions below, each kept only where ``fails`` holds for it."""
    reruns = 0
    progress = True
    while progress and reruns < MAX_RERUNS:
        progress = False
        for smaller in sorted(_reductions(case), key=elements):
            if elements(smaller) >= elements(case) or reruns >= MAX_RERUNS:
                continue
            reruns += 1
            if fails(smaller):
                case, progress = smaller, True
                break
    return case


def _reductions(case: Case) -> Iterator[Case]:
    if case.loss in CATEGORICAL:
        yield from _categorical(case)
    else:
        yield from _leading(case)


def _categorical(case: Case) -> Iterator[Case]:
    """(C,) becomes an empty batch (0, C); (N, C, ...) keeps 0 or 1 of its N; K-dimensional sizes become 1."""
    x, t = case.input, case.target
    if x.ndim == 1:
        if case.has_index_target:
            yield Case(case.loss, x.reshape(1, -1)[:0], t.reshape(-1)[:0], case.kwargs)
        else:
            yield Case(case.loss, x.reshape(1, -1)[:0], t.reshape(1, -1)[:0], case.kwargs)
        return
    for n in (0, 1):
        if x.shape[0] > n:
            yield Case(case.loss, x[:n], t[:n], case.kwargs)
    for axis in range(2, x.ndim):
        if x.shape[axis] > 1:
            target_axis = axis if not case.has_index_target else axis - 1
            yield Case(case.loss, np.take(x, [0], axis), np.take(t, [0], target_axis), case.kwargs)


def _leading(case: Case) -> Iterator[Case]:
    """Binary and KL cases (arrays broadcast from the right): the leading dimension cut to 0 or 1, or dropped; the
    arrays that span it cut with it."""
    rank = max(np.ndim(case.input), np.ndim(case.target))
    if rank == 0:
        return
    for cut in (slice(0, 0), slice(0, 1), 0):
        arrays = {
            "input": case.input,
            "target": case.target,
            **{k: v for k, v in case.kwargs.items() if k in ARRAY_KWARGS},
        }
        reduced = {}
        spanning = [np.asarray(a) for a in arrays.values() if np.ndim(a) == rank]
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
        smaller = Case(case.loss, reduced["input"], reduced["target"], kwargs)
        try:
            np.broadcast_shapes(*(np.shape(a) for a in reduced.values()))
        except ValueError:
            continue
        yield smaller
