"""What each property saw: examples compared, examples excluded and why, the worst error.

Nothing is excluded silently: ``exclude(reason)`` is the only way a property drops an
example, and conftest prints every reason with its count at the end of the run.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import hypothesis


@dataclass
class PropertyRecord:
    compared: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    # The worst example: largest |torch - reference| / bound, with the error and bound, the
    # error relative to the reference value and in units in the last place of the dtype.
    worst_ratio: float = 0.0
    worst_error: float = 0.0
    worst_bound: float = 0.0
    worst_relative_error: float = 0.0
    worst_ulps: float = 0.0
    # The most elements of any one case's input that was compared (the evidence of how far the sizes reached).
    largest_input: int = 0
    # Data a check measured for the report's figures, by name (lists of numbers).
    series: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # Single facts a check measured (for example the largest error in ulps and where it occurred), by name.
    measurements: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            **({"series": self.series} if self.series else {}),
            **({"measurements": self.measurements} if self.measurements else {}),
            "examples_compared": self.compared,
            **({"largest_input_elements": self.largest_input} if self.largest_input else {}),
            "examples_excluded": dict(sorted(self.excluded.items())),
            "worst": {
                "abs_error": self.worst_error,
                "rel_error": self.worst_relative_error,
                "ulp_error": self.worst_ulps,
                "bound": self.worst_bound,
                "error_over_bound": self.worst_ratio,
            },
        }


RECORDS: defaultdict[str, PropertyRecord] = defaultdict(PropertyRecord)

# While a failing case is minimised, its reruns compare nothing that counts: the record stays as the property left it.
_paused = False


@contextlib.contextmanager
def measuring_nothing() -> Iterator[None]:
    """Within: comparisons and examples are not recorded (the minimiser's reruns of a failing case)."""
    global _paused
    previous, _paused = _paused, True
    try:
        yield
    finally:
        _paused = previous


def current_test() -> str:
    # pytest sets this to "path::name[params] (call)" while a test runs.
    return os.environ.get("PYTEST_CURRENT_TEST", "<outside pytest>").rsplit(" ", 1)[0]


def exclude(reason: str) -> None:
    """Drop the current hypothesis example, counting ``reason`` for the run's summary."""
    RECORDS[current_test()].excluded[reason] += 1
    hypothesis.event(f"excluded: {reason}")
    hypothesis.reject()


# The prefixes of the reasons a case is excluded under because of the implementation under test itself: it lacks one
# of the case's arguments (verification.compare's ``Unsupported`` handling), or the case falls under one of its
# named divergences (verification.implementations.known_divergence).
UNSUPPORTED_BY = "unsupported by "
NAMED_DIVERGENCE_OF = "named divergence of "
# Ends the skip of a check the implementation lacks as a whole (a dtype, the backward pass), whatever its cases: the
# matrix reads such a cell as UNSUPPORTED even where a named divergence had left out every case before the
# implementation was asked.
WHOLE_CHECK = " (the whole check)"


def _of_the_implementation(reason: str) -> bool:
    return reason.startswith((UNSUPPORTED_BY, NAMED_DIVERGENCE_OF))


def exclude_cases(reasons: list[str], *, of: int) -> None:
    """Count the cases of a batch of ``of`` that were excluded, one reason each; drop the hypothesis example if that
    was every case (as ``exclude`` drops a single case's), so that hypothesis draws another in its place.

    An example whose every case was left out because of the implementation under test (an argument it lacks, or one
    of its named divergences) is not dropped: the cases of an example share their arguments, so a variant built on
    such an argument would have every example dropped and end in hypothesis's health check; it is counted instead,
    and ``left_out_by_the_implementation`` names it."""
    for reason in reasons:
        RECORDS[current_test()].excluded[reason] += 1
        hypothesis.event(f"excluded: {reason}")
    if reasons and len(reasons) == of and not all(_of_the_implementation(reason) for reason in reasons):
        hypothesis.reject()


def left_out_by_the_implementation(test: str) -> str | None:
    """If ``test`` compared nothing and cases were left out because of the implementation under test: why, for the
    skip that the matrix reads as UNSUPPORTED (an argument it lacks) or NAMED DIVERGENCE (the other exclusions stay
    counted in the report). None otherwise."""
    record = RECORDS.get(test)
    if record is None or record.compared:
        return None
    unsupported = sorted(reason for reason in record.excluded if reason.startswith(UNSUPPORTED_BY))
    if unsupported:
        return "; ".join("UNSUPPORTED by " + reason.removeprefix(UNSUPPORTED_BY) for reason in unsupported)
    named = sorted(reason for reason in record.excluded if reason.startswith(NAMED_DIVERGENCE_OF))
    return "; ".join(named) or None


def record_comparison(
    error: float, bound: float, ratio: float, expected: float, ulp: float, input_elements: int = 0
) -> None:
    """Count one compared example and keep the worst error / bound ratio seen, and the largest input compared."""
    if _paused:
        return
    record = RECORDS[current_test()]
    record.compared += 1
    record.largest_input = max(record.largest_input, input_elements)
    # An infinite bound only ever meets an exactly matching NaN or infinity: nothing to rank.
    if math.isfinite(bound) and (ratio > record.worst_ratio or record.worst_bound == 0):
        record.worst_ratio, record.worst_error, record.worst_bound = ratio, error, bound
        record.worst_relative_error = error / abs(expected) if expected else (0.0 if error == 0 else math.inf)
        record.worst_ulps = error / ulp


def record_example() -> None:
    """Count one checked example of a property that asserts a fact rather than measuring an error."""
    if _paused:
        return
    RECORDS[current_test()].compared += 1


def record_measurement(name: str, value: object) -> None:
    """Keep one measured fact for the evidence report (a number, a string, or a small dict of them)."""
    RECORDS[current_test()].measurements[name] = value


def record_series(name: str, **columns: list[float]) -> None:
    """Keep measured data for the evidence report's figures (columns of equal length)."""
    RECORDS[current_test()].series[name] = {key: [float(v) for v in values] for key, values in columns.items()}
