"""How small each planted bug's shrunk counterexample is: the properties that catch it
(tests/meta/test_planted_bugs.py), at ci depth, with hypothesis shrinking the failure as a run of the suite does.

    python3 -m tests.meta.shrinking [--json PATH]

Prints, per planted bug, the property family that caught it, the element count of the counterexample its failure
names (input, target and array arguments together, from the shapes in the failure's first sentence) and the seconds
it took. Run it with LOSS_PARITY_DRAWING=element-wise LOSS_PARITY_CASES_PER_EXAMPLE=1 for the previous way of drawing:
tests/meta/test_planted_bugs.py compares the two.
"""

from __future__ import annotations

import json
import sys

from tests.meta.hunting import PLANTED_BUGS, hunt


def main(arguments: list[str]) -> int:
    sizes = {}
    for bug in PLANTED_BUGS:
        caught = hunt(bug, shrink=True)
        sizes[f"{bug.loss}.{bug.name}"] = {
            "family": caught.family,
            "elements": caught.elements,
            "counterexample": caught.counterexample,
            "seconds": caught.seconds,
        }
    for name, row in sizes.items():
        print(f"{name}: {row['elements']} elements ({row['family']}, {row['seconds']} s): {row['counterexample']}")
    if "--json" in arguments:
        with open(arguments[arguments.index("--json") + 1], "w", encoding="utf-8") as out:
            json.dump(sizes, out, indent=2)
    return 0 if all(row["family"] for row in sizes.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
