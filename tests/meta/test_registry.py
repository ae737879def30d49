"""The registry is the one place a loss is declared, and it is complete: every part of every entry is present or
declared a gap with its reason; every table the suite keys by a loss name agrees with it; the named divergences it
lists are exactly the suite's; the README's table is its output; and the import graph keeps the layers apart."""

from __future__ import annotations

import ast
import functools
import inspect
import pathlib
import re

import pytest

import reference
from verification import registry
from verification.registry import PARTS, LossInfo

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENTRIES = registry.LOSSES


def _ids(entry: LossInfo) -> str:
    return entry.name


def missing_parts(entry: LossInfo) -> list[str]:
    """The parts an entry neither has nor declares a gap for."""
    return [part for part in PARTS if not entry.present(part) and part not in entry.gaps]


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_every_part_of_an_entry_is_present_or_a_declared_gap(entry):
    """Each entry has each part of PARTS, or declares it a gap with a reason of at least a sentence; a gap is
    never declared for a part that is present (a stale gap would hide a check that now exists)."""
    assert not missing_parts(entry), f"{entry.name} lacks {missing_parts(entry)} and declares no gap for them"
    for part, reason in entry.gaps.items():
        assert part in PARTS, f"{entry.name} declares a gap for an unknown part {part!r}"
        assert not entry.present(part), f"{entry.name} declares {part} a gap but has it"
        assert len(reason.split()) >= 5, f"{entry.name}'s gap in {part} gives no real reason: {reason!r}"


def test_an_entry_without_a_part_and_without_a_gap_is_reported():
    """The completeness check has power: an entry that drops its oracle and declares nothing is reported as
    lacking it, and declaring the gap clears it."""
    dropped = registry.replace_parts(registry.info("kl_div"), oracle=None)
    assert missing_parts(dropped) == ["oracle"]
    declared = registry.replace_parts(dropped, gaps={"oracle": "no oracle, for the purpose of this test only"})
    assert missing_parts(declared) == []


def test_the_readme_table_is_the_registry_table():
    """README.md's table of losses and their parts is exactly what `python -m verification.registry --markdown`
    prints, so a new loss or a closed gap shows there or this fails."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert registry.markdown_table() in readme, "regenerate it: python -m verification.registry --markdown"


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_an_entry_names_its_own_loss_everywhere(entry):
    """Every variant, rejection and planted bug of an entry is about that loss; the reference and its gradient
    are the functions of that name (the reproducers spell them so); the strategy is the one named after the loss
    (in its loss's own module, beside its entry); torch's functional and module are those of its name."""
    for part in (entry.variants, entry.large_inputs, entry.rejections):
        assert all(item.loss == entry.name for item in part), entry.name
    assert all(item.loss == entry.name for item in entry.planted_bugs), entry.name
    assert entry.reference is getattr(reference, entry.name)
    assert entry.reference_gradient is not None and entry.reference_gradient.__name__ == f"{entry.name}_grad"
    assert entry.reference_gradient.__module__.startswith("reference.")
    assert entry.cases is not None and entry.cases.__module__ == f"verification.losses.{entry.name}"
    if entry.functional is not None:
        assert entry.functional.__name__ == entry.name
    if entry.module is not None:
        assert entry.module.__module__.startswith("torch.nn")


def test_names_are_unique():
    """One entry per loss, one variant name per loss, one planted-bug name and one defect per loss."""
    assert len({entry.name for entry in ENTRIES}) == len(ENTRIES)
    for entry in ENTRIES:
        for items, key in ((entry.variants, "name"), (entry.planted_bugs, "name"), (entry.rejections, "what")):
            names = [getattr(item, key) for item in items]
            assert len(set(names)) == len(names), f"{entry.name}: repeated {key} in {names}"


def _named_divergence_tests() -> set[str]:
    """Every test function in tests/ whose docstring says it is a named divergence, as "path::name"."""
    found = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if (ast.get_docstring(node) or "").startswith("Named divergence"):
                    found.add(f"{path.relative_to(ROOT).as_posix()}::{node.name}")
    return found


def test_the_registry_declares_exactly_the_named_divergences_the_suite_asserts():
    """Each named-divergence test in tests/ belongs to exactly one entry, and each divergence an entry declares is
    such a test: one that exists, where the entry says, and says so in its docstring."""
    declared = [divergence.node for divergence in registry.all_divergences()]
    assert len(set(declared)) == len(declared), "a divergence is declared twice"
    assert set(declared) == _named_divergence_tests()


def test_the_divergences_table_in_the_docs_lists_every_declared_divergence():
    """docs/divergences.md has a row naming each declared divergence's test, and no row naming another test."""
    table = (ROOT / "docs" / "divergences.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\| `(test_\w+)` \|", table))
    assert named == {divergence.test for divergence in registry.all_divergences()}


def test_each_planted_bug_is_importable_where_impl_finds_it():
    """A planted bug's --impl target resolves to the bug itself (the mutants session and the reproducers use it)."""
    for bug in registry.all_planted_bugs():
        module, _, attribute = bug.target.partition(":")
        assert getattr(__import__(module, fromlist=[attribute]), attribute) is bug.impl


# --- the import graph ---------------------------------------------------------------------------------------

PACKAGES = ("reference", "verification", "reporting", "examples", "benchmarks", "tests")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """The modules of this repository that ``path`` imports, anywhere in it (a function-level import is an edge)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from package import module" imports the module where one of that name exists
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return {module for module in found if module.split(".")[0] in PACKAGES}


@functools.cache
def _graph() -> dict[str, set[str]]:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    modules = {_module_name(path): path for path in files}
    graph = {}
    for module, path in modules.items():
        # An import of "a.b.c" reaches the longest prefix that is a module here.
        targets = set()
        for imported in _imports(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            # A module's own packages are initialised before it by Python itself: no edge back to them.
            if imported and imported != module and not module.startswith(imported + "."):
                targets.add(imported)
        graph[module] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports, as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    """No module of the repository imports, directly or through others, a module that imports it."""
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    """The cycle check has power: a planted cycle through three modules is found."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", ["verification", "reporting", "examples", "benchmarks", "reference"])
def test_the_core_and_what_uses_it_import_nothing_from_tests(package):
    """The verification core, the report, the examples, the benchmarks and the reference import nothing from
    tests/: what they share lives in verification/."""
    graph = _graph()
    offenders = {m: sorted(t for t in targets if t.startswith("tests")) for m, targets in graph.items()}
    offenders = {m: t for m, t in offenders.items() if m.split(".")[0] == package and t}
    assert not offenders


def test_the_reference_imports_only_itself_of_this_repository():
    """reference/ is what everything trusts: of this repository it imports only its own modules (its
    independence from torch is checked by tests/test_reference_independence.py)."""
    graph = _graph()
    outside = {m: sorted(t for t in targets if not t.startswith("reference")) for m, targets in graph.items()}
    assert not {m: t for m, t in outside.items() if m.startswith("reference") and t}


def test_the_import_graph_sees_function_level_imports():
    """The graph has power: reporting's lazy import of the registry is an edge (a cycle through it would count)."""
    assert "verification.registry" in _graph()["reporting.plugin"]
    assert inspect.getsource(registry).count("import tests") == 0
