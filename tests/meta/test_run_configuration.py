"""The run's configuration refuses what it cannot honour, instead of silently doing something else."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("device", "reason"),
    [("no-such-device", "is not a torch device string"), ("cuda:99", "is not available on this machine")],
)
def test_naming_a_device_this_machine_lacks_is_a_usage_error(device, reason):
    """`--device` with an unknown or absent device stops the run with pytest's usage-error exit (4) and says why."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--device",
            device,
            "--collect-only",
            "-q",
            "tests/test_reference_independence.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert reason in result.stderr, result.stderr
