"""How small each planted bug's shrunk counterexample is: the properties that catch it
(tests/meta/test_planted_bugs.py), at ci depth, with hypothesis shrinking the failure as a run of the suite does.

    python3 -m tests.meta.shrinking [--json PATH]

Prints, per planted bug, the property family that caught it, the element count of the counterexample its failure
names (input, target and array arguments together, from the shapes in the failure's first sentence) and the seconds
it took. Run it with LOSS_PARITY_DRAWING=element-wise LOSS_PARITY_CASES_PER_EXAMPLE=1 for the previous way of drawing:
tests/meta/test_shrinking.py compares the two.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time

from tests.meta.test_planted_bugs import FAMILIES, PLANTED_BUGS, _checks
from verification.compare import ParityError, RejectionMismatch
from verification.planted_bugs import PlantedBug

# The shapes a failure's first sentence gives: "loss(input [2, 3], target [2], weight=<float64 [3]>) in ...".
_SHAPE = re.compile(r"\[([0-9, ]*)\]")


def elements_named(failure: str) -> int:
    """The element count of the case a failure's first sentence describes (every array shape it names)."""
    call = failure.split(" in ", 1)[0].split(" on ", 1)[0]
    shapes = [[int(size) for size in match.split(",") if size.strip()] for match in _SHAPE.findall(call)]
    return sum(math.prod(shape) for shape in shapes)


def shrunk(bug: PlantedBug, device: str = "cpu") -> dict[str, object]:
    """The first property (its family first, as the planted-bug test tries them) that fails on ``bug``, shrunk."""
    started = time.perf_counter()
    for family in sorted(FAMILIES, key=lambda family: family != bug.area):
        for check in _checks(family, bug, device, shrink=True):
            try:
                check()
            except (ParityError, RejectionMismatch, AssertionError) as error:
                failure = str(error)
                return {
                    "family": family,
                    "elements": elements_named(failure),
                    "counterexample": failure.split(":", 1)[0],
                    "seconds": round(time.perf_counter() - started, 1),
                }
    return {
        "family": None,
        "elements": None,
        "counterexample": None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(arguments: list[str]) -> int:
    sizes = {f"{bug.loss}.{bug.name}": shrunk(bug) for bug in PLANTED_BUGS}
    for name, row in sizes.items():
        print(f"{name}: {row['elements']} elements ({row['family']}, {row['seconds']} s): {row['counterexample']}")
    if "--json" in arguments:
        with open(arguments[arguments.index("--json") + 1], "w", encoding="utf-8") as out:
            json.dump(sizes, out, indent=2)
    return 0 if all(row["family"] for row in sizes.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
