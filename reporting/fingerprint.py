"""Fingerprints of the environment a run used and of the suite that ran."""

from __future__ import annotations

import hashlib
import importlib.metadata
import pathlib
import platform
import subprocess
import sys
from typing import Any


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_capability() -> str | None:
    """The instruction set torch's CPU kernels were dispatched for (DEFAULT, AVX2, AVX512, ...): each level is its own
    build of the vectorised kernels, with its own vector width and its own exp and log, so a result verified at one
    level says nothing about another. The environment variable ATEN_CPU_CAPABILITY lowers it (``default``: the
    kernels without vector instructions)."""
    import torch

    backends_cpu: Any = torch.backends.cpu
    get = getattr(backends_cpu, "get_cpu_capability", None)  # torch 2.1 and later
    return str(get()) if get else None


def environment(device: str) -> dict[str, Any]:
    import torch

    accelerator = None
    if device.startswith("cuda") and torch.cuda.is_available():
        accelerator = torch.cuda.get_device_name(torch.device(device))
    cudnn_module: Any = torch.backends.cudnn
    cudnn = cudnn_module.version() if cudnn_module.is_available() else None
    return {
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "device": device,
        "device_name": accelerator or cpu_name(),
        "numpy": _version("numpy"),
        "hypothesis": _version("hypothesis"),
        "pytest": _version("pytest"),
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu": cpu_name(),
        "cpu_capability": cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }


def _tree_hash(root: pathlib.Path, folder: str) -> str:
    digest = hashlib.sha256()
    for path in sorted((root / folder).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _git(root: pathlib.Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def suite(root: pathlib.Path) -> dict[str, Any]:
    code = ("reference", "verification", "tests", "adapters", "conftest.py", "reporting")
    status = _git(root, "status", "--porcelain", "--", *code)
    return {
        "version": _version("loss-parity"),
        "git_commit": _git(root, "rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "reference_sha256": _tree_hash(root, "reference"),
        "verification_sha256": _tree_hash(root, "verification"),
        "tests_sha256": _tree_hash(root, "tests"),
        # What an --impl run checks: the adapter's code decides what the implementation is given.
        "adapters_sha256": _tree_hash(root, "adapters"),
        "python_executable": sys.executable,
    }
