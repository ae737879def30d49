"""Run the suite against every planted bug through --impl and print the kill table.

    python3 -m tests.meta.mutants [extra pytest arguments]

Each bug meets its loss's value-parity, gradient-parity and rejection checks, at ci depth (derandomized,
so every run gives the same verdicts), stopping at the first failure. Exit status 1 if any bug survives.
With ``--json PATH`` the kill table is also written there (nox -s mutants puts it in the evidence folder).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from verification import registry

PLANTED_BUGS = registry.all_planted_bugs()


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
        "tests/test_parity.py",
        "tests/test_gradients.py",
        "tests/test_rejections.py",
        "-k",
        # The loss's value and gradient parity tests ("[loss-variant-...]") and its rejections ("[loss: ...]").
        f"(loss_matches_reference and [{bug.loss}-) or (gradient_matches_reference and [{bug.loss}-) or [{bug.loss}:",
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
    json_path = None
    if "--json" in extra:
        at = extra.index("--json")
        json_path, extra = extra[at + 1], extra[:at] + extra[at + 2 :]
    rows = []
    for bug in PLANTED_BUGS:
        verdict, killer, seconds = hunt(bug, extra)
        rows.append((f"{bug.loss}.{bug.name}", bug.mistake, verdict, killer, seconds))
        print(f"{rows[-1][0]}: {verdict} in {seconds:.1f} s by {killer}", flush=True)
    killed = sum(row[2] == "killed" for row in rows)
    print("\n| bug | mistake it models | verdict | killed by | seconds |\n| --- | --- | --- | --- | ---: |")
    for name, mistake, verdict, killer, seconds in rows:
        print(f"| {name} | {mistake} | {verdict} | {killer} | {seconds:.1f} |")
    total = sum(row[4] for row in rows)
    print(f"\nMutation score: {killed} of {len(rows)} planted bugs killed, in {total:.0f} s.")
    if json_path:
        table = [dict(zip(("bug", "mistake", "verdict", "killed_by", "seconds"), row, strict=True)) for row in rows]
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump(
                {"killed": killed, "planted": len(rows), "seconds": round(total, 1), "bugs": table}, out, indent=2
            )
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
