"""The structure: no module of the core names a task, scd's modules import each other without a circle, and each
package imports only the layers below it. Each check is shown to fail on a tree that breaks it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

# scd's packages and top-level modules from the ground floor up; a module may import its own layer and those below.
# Tasks that bring their own package (scd/toyworld) sit above everything: nothing in the core imports them.
LAYERS = (
    {"scd.io", "scd.metrics", "scd.signals", "scd.provenance"},
    {"scd.data"},
    {"scd.models", "scd.config", "scd.loggers", "scd.rundir", "scd.progress"},
    {"scd.task"},
    {"scd.teacher"},  # the teacher borrows nothing from the student (its answer parser and progress live lower)
    {"scd.student"},
    {"scd.evaluation"},
    {"scd.summary", "scd.report"},
    {"scd.pipeline", "scd.cli", "scd.predict", "scd.compare"},
    {"scd.toyworld"},
)
TASK_PACKAGES = ("toyworld",)


def modules(root: Path) -> dict[str, Path]:
    """Every module under ``root/scd`` by dotted name (a package by its own name)."""
    return {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
            for path in (root / "scd").rglob("*.py")}  # fmt: skip


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the scd modules it imports when it is imported: top-level imports, not those under
    ``if TYPE_CHECKING`` nor inside functions (they run later, once every module is loaded)."""
    found = modules(root)
    graph = {}
    for name, path in found.items():
        imported: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If):
                continue  # TYPE_CHECKING blocks
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scd"):
                imported.add(node.module)
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("scd")}
        graph[name] = {module for module in imported if module in found and module != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def layer(module: str) -> int:
    top = ".".join(module.split(".")[:2])
    for level, members in enumerate(LAYERS):
        if top in members:
            return level
    raise AssertionError(f"{top} is in no layer of tests/test_architecture.py: place it")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                  if layer(target) > layer(source))  # fmt: skip


def task_mentions(root: Path) -> list[str]:
    """Lines of the core (scd/ outside a task's own package) that name a task."""
    word = re.compile("|".join(TASK_PACKAGES), re.IGNORECASE)
    hits = []
    for path in sorted((root / "scd").rglob("*")):
        relative = path.relative_to(root / "scd")
        if not path.is_file() or relative.parts[0] in TASK_PACKAGES or "__pycache__" in relative.parts:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if word.search(line):
                hits.append(f"scd/{relative}:{number}: {line.strip()}")
    return hits


def test_no_core_module_names_a_task():
    assert task_mentions(ROOT) == []


def test_scd_has_no_import_circle_and_no_upward_import():
    graph = import_graph(ROOT)
    assert len(graph) > 50
    assert circles(graph) == []
    assert upward_imports(graph) == []


@pytest.fixture
def broken_tree(tmp_path: Path) -> Path:
    """A copy of scd with a circle (the data layer importing the pipeline) and a task named in the core."""
    for path in (ROOT / "scd").rglob("*.py"):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    records = tmp_path / "scd" / "data" / "records.py"
    records.write_text(records.read_text() + "\nfrom scd.pipeline import run\n")
    summary = tmp_path / "scd" / "summary.py"
    summary.write_text(summary.read_text() + "\nCUE = 'toyworld/accuracy_cue_agrees'\n")
    return tmp_path


def test_the_checks_fail_on_a_tree_that_breaks_them(broken_tree: Path):
    graph = import_graph(broken_tree)
    assert any("scd.data.records" in group and "scd.pipeline" in group for group in circles(graph))
    assert "scd.data.records -> scd.pipeline" in upward_imports(graph)
    assert task_mentions(broken_tree) == ["scd/summary.py:" + str(len((broken_tree / "scd" / "summary.py")
                                          .read_text().splitlines())) + ": CUE = 'toyworld/accuracy_cue_agrees'"]
