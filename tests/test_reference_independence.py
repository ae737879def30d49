"""The reference is independent of what it verifies: it never imports torch."""

import ast
import pathlib
import subprocess
import sys

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "reference"


def test_importing_the_reference_leaves_torch_unloaded():
    """Importing and using reference/ in a fresh interpreter does not load torch, directly or through a dependency."""
    program = (
        "import sys, numpy as np, reference; "
        "reference.cross_entropy(np.zeros((2, 3)), np.array([0, 1])); "
        "reference.binary_cross_entropy_with_logits(np.zeros(2), np.ones(2)); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REFERENCE.parent, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", f"importing reference loaded: {result.stdout.strip()}"


def test_no_reference_module_names_torch_in_an_import():
    """No module under reference/ has an import statement naming torch (even one that is never executed)."""
    offenders = []
    for path in sorted(REFERENCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "torch"]
    assert not offenders, "; ".join(offenders)
