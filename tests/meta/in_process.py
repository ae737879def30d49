"""The suite's own tests run by pytest inside this process, for the meta tests that check what a run does: torch,
hypothesis and the suite are imported once, instead of once per run in a fresh interpreter (about 4 s each here)."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest with ``args`` (paths relative to the repository's root) on the repository's own configuration, in this
    process. The inner run loads its own hypothesis profile, which is global: the outer run's is restored after."""
    profile = settings.get_current_profile_name()
    paths = [str(ROOT / arg) if arg.startswith(("tests/", "examples/")) else arg for arg in args]
    try:
        return pytester.runpytest_inprocess("--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), *paths)
    finally:
        settings.load_profile(profile)
