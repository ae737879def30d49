"""Run the suite against every planted bug through --impl and print the kill table.

    python3 -m tests.meta.mutants [extra pytest arguments]

Each bug meets its loss's parity and rejection checks, at ci depth (derandomized, so every run gives
the same verdicts), stopping at the first failure. Exit status 1 if any bug survives.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.meta.planted_bugs import PLANTED_BUGS

TEST_FILES = {
    "binary_cross_entropy": "tests/test_binary_cross_entropy.py",
    "binary_cross_entropy_with_logits": "tests/test_binary_cross_entropy_with_logits.py",
    "nll_loss": "tests/test_nll_loss.py",
    "cross_entropy": "tests/test_cross_entropy.py",
}


def hunt(bug, extra: list[str]) -> tuple[str, str, float]:
    """(verdict, the first test that failed, seconds) for one planted bug."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "--hypothesis-profile=ci",
        "-o",
        "addopts=",
        TEST_FILES[bug.loss],
        "tests/test_rejections.py",
        "-k",
        f"matches_reference or {bug.loss}:",
        "--impl",
        f"{bug.loss}={bug.target}",
        *extra,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    failed = re.search(r"^FAILED (.+?)(?: - |$)", result.stdout, re.MULTILINE)
    if result.returncode == 1 and failed:
        return "killed", failed.group(1).split("::", 1)[-1], seconds
    if result.returncode == 0:
        return "SURVIVED", "-", seconds
    return f"ERROR (pytest exit {result.returncode})", result.stdout.strip().splitlines()[-1:][0], seconds


def main(extra: list[str]) -> int:
    rows = []
    for bug in PLANTED_BUGS:
        verdict, killer, seconds = hunt(bug, extra)
        rows.append((f"{bug.loss}.{bug.name}", bug.mistake, verdict, killer, seconds))
        print(f"{rows[-1][0]}: {verdict} in {seconds:.1f} s by {killer}", flush=True)
    killed = sum(row[2] == "killed" for row in rows)
    print("\n| bug | mistake it models | verdict | killed by | seconds |\n| --- | --- | --- | --- | ---: |")
    for name, mistake, verdict, killer, seconds in rows:
        print(f"| {name} | {mistake} | {verdict} | {killer} | {seconds:.1f} |")
    print(f"\nMutation score: {killed} of {len(rows)} planted bugs killed.")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
