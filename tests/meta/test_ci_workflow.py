"""The GitHub Actions workflow (.github/workflows/) is valid and does what it promises: actionlint finds no problem in
it, actionlint does find a mistake planted in a copy of it (so the lint check has power), and the workflow runs the
`verify` nox session on push and on a schedule, keeping evidence/ as an artifact even when the run fails.

actionlint comes from the test extra (a PyPI package that installs the `actionlint` executable into the
environment's scripts folder). Where it is missing these tests fail, not skip: CI installs the test extra, so a
missing linter there is a broken install, not a reason to pass.

The workflow is checked as text, not parsed: PyYAML is not a dependency of the project and is not added for this.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
VERIFY = WORKFLOWS / "verify.yml"

# actionlint's exit status when it ran and found problems (0: none; 2: bad command line; 3: it crashed).
PROBLEMS_FOUND = 1


def _actionlint() -> str:
    """The actionlint executable: the one installed beside this interpreter (the test extra's), else one on PATH."""
    name = "actionlint.exe" if os.name == "nt" else "actionlint"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("actionlint")
    if found is None:
        pytest.fail(
            "actionlint is not installed in this environment: run `pip install -e '.[test]'` "
            "(the test extra ships it); CI installs the test extra, so this check never skips",
            pytrace=False,
        )
    return found


def _lint(*files: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-no-color", *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def _code_lines(text: str) -> list[str]:
    """The lines of a YAML file with whole-line comments blanked, so that a comment never satisfies a check."""
    return ["" if line.lstrip().startswith("#") else line for line in text.splitlines()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int) -> list[str]:
    """The line at `start` and every following line indented deeper than it (blank lines included), i.e. the YAML
    node that starts there. For a sequence item (`- key: ...`) that is the whole item."""
    head = _indent(lines[start])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > head):
        end += 1
    return lines[start:end]


def _top_level(lines: list[str], key: str) -> list[str]:
    """The block of a top-level key (`on:`, `jobs:`, ...); YAML 1.1 readers take a bare `on` for a boolean, so the
    key may be quoted."""
    pattern = re.compile(rf"""^["']?{re.escape(key)}["']?:\s*$""")
    for index, line in enumerate(lines):
        if pattern.match(line):
            return _block(lines, index)
    return []


def _step_using(lines: list[str], action: str) -> list[str]:
    """The whole step (sequence item) whose `uses:` names `action` (any version), or [] where there is none."""
    uses = re.compile(rf"""^\s*(?:-\s+)?uses:\s*["']?{re.escape(action)}@""")
    for index, line in enumerate(lines):
        if uses.match(line):
            item = index
            while not re.match(r"^\s*-\s", lines[item]):
                item -= 1
            return _block(lines, item)
    return []


def test_actionlint_reports_no_problem_in_any_workflow():
    """actionlint, run from the repository root on every file in .github/workflows/, reports no problem."""
    files = _workflow_files()
    assert VERIFY in files, f"{VERIFY.relative_to(ROOT)} is missing; found {[str(f) for f in files]}"
    result = _lint(*(path.relative_to(ROOT) for path in files))
    assert result.returncode == 0, (
        f"actionlint exited {result.returncode} on {[str(path.relative_to(ROOT)) for path in files]}:\n"
        f"{result.stdout}{result.stderr}"
    )


def _unknown_step_key(text: str) -> str:
    # A key no step has, added to the checkout step at the step's own indentation.
    return re.sub(
        r"^(\s*)- uses: actions/checkout@(\S+)$",
        lambda match: f"{match.group(0)}\n{match.group(1)}  bogus-key: true",
        text,
        count=1,
        flags=re.MULTILINE,
    )


def _undefined_matrix_value(text: str) -> str:
    # The job has no matrix, so `matrix.nope` names a property that does not exist.
    return re.sub(
        r"^(\s*run: python -m nox -s verify)$",
        lambda match: match.group(1) + " -- ${{ matrix.nope }}",
        text,
        count=1,
        flags=re.MULTILINE,
    )


@pytest.mark.parametrize(
    ("plant", "named"),
    [(_unknown_step_key, "bogus-key"), (_undefined_matrix_value, "nope")],
    ids=["unknown-step-key", "undefined-matrix-property"],
)
def test_actionlint_rejects_a_copy_of_the_workflow_with_a_planted_mistake(tmp_path, plant, named):
    """The lint check has power: a copy of verify.yml with one planted mistake (an unknown key under a step, or an
    expression naming an undefined `matrix` property) is rejected by actionlint, which names the mistake."""
    original = VERIFY.read_text(encoding="utf-8")
    planted = plant(original)
    assert planted != original, "the mistake could not be planted: the line it is planted on is gone from verify.yml"
    copy = tmp_path / ".github" / "workflows" / "verify.yml"
    copy.parent.mkdir(parents=True)
    copy.write_text(planted, encoding="utf-8")
    result = _lint(copy, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == PROBLEMS_FOUND, f"actionlint exited {result.returncode}:\n{output}"
    assert named in output, f"actionlint rejected the copy, but not for the planted mistake:\n{output}"


def test_the_workflow_runs_the_verify_nox_session():
    """A step of verify.yml runs `nox -s verify` (the verification run that writes evidence/)."""
    lines = _code_lines(VERIFY.read_text(encoding="utf-8"))
    verify = re.compile(
        r"""^\s*(?:-\s+)?run:\s*(?:python\d*(?:\.\d+)? -m )?nox\b.*\s(?:-s|--sessions?)[ =]["']?verify\b"""
    )
    assert any(verify.match(line) for line in lines), "no step of verify.yml runs `nox -s verify`"


def test_the_workflow_keeps_the_evidence_as_an_artifact_even_when_verification_fails():
    """verify.yml uploads evidence/ with actions/upload-artifact in a step guarded by `if: always()`, so a failed
    verification still keeps its report."""
    lines = _code_lines(VERIFY.read_text(encoding="utf-8"))
    step = _step_using(lines, "actions/upload-artifact")
    assert step, "no step of verify.yml uses actions/upload-artifact"
    text = "\n".join(step)
    always = re.compile(r"""^\s*(?:-\s+)?if:\s*["']?(?:\$\{\{\s*)?always\(\)(?:\s*\}\})?["']?\s*(?:#.*)?$""", re.M)
    assert always.search(text), f"the upload step is not guarded by `if: always()`:\n{text}"
    assert re.search(r"""^\s*path:\s*["']?evidence/?["']?\s*(?:#.*)?$""", text, re.M), (
        f"the upload step does not upload evidence/:\n{text}"
    )


def test_the_workflow_is_triggered_by_push_and_on_a_schedule():
    """verify.yml's `on:` names `push` and a `schedule` with at least one cron line (and pull_request and
    workflow_dispatch beside them)."""
    lines = _code_lines(VERIFY.read_text(encoding="utf-8"))
    on = _top_level(lines, "on")
    assert on, "verify.yml has no block-style top-level `on:`"
    events = {match.group(1) for line in on if (match := re.match(r"^  ([a-z_]+):", line))}
    assert {"push", "schedule", "pull_request", "workflow_dispatch"} <= events, f"triggers found: {sorted(events)}"
    crons = [line for line in on if re.match(r"""^\s*-\s+cron:\s*["']?(?:\S+\s+){4}\S+?["']?\s*$""", line)]
    assert crons, "the schedule has no `- cron:` line with five fields:\n" + "\n".join(on)


def test_the_workflows_default_torch_pin_is_the_noxfiles():
    """Where no torch pin is given (every event but a by-hand run), verify.yml passes the same LOSS_PARITY_TORCH
    that noxfile.py defaults to, so the workflow verifies the release the rest of the project does."""
    nox_default = re.search(
        r"""os\.environ\.get\(\s*["']LOSS_PARITY_TORCH["']\s*,\s*["']([^"']+)["']""",
        (ROOT / "noxfile.py").read_text(encoding="utf-8"),
    )
    assert nox_default, "noxfile.py no longer reads LOSS_PARITY_TORCH with a default; update this check"
    lines = _code_lines(VERIFY.read_text(encoding="utf-8"))
    env = [match.group(1) for line in lines if (match := re.match(r"^\s*LOSS_PARITY_TORCH:\s*(.+?)\s*$", line))]
    assert len(env) == 1, f"verify.yml sets LOSS_PARITY_TORCH {len(env)} times: {env}"
    assert re.search(rf"""\|\|\s*'{re.escape(nox_default.group(1))}'\s*}}}}""", env[0]), (
        f"verify.yml's default LOSS_PARITY_TORCH ({env[0]}) is not noxfile.py's ({nox_default.group(1)})"
    )
