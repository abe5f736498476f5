"""The structure: no module of the core names a task, scd's modules import each other without a circle, and each
package imports only the layers below it, counting the imports inside functions too (not those for type checkers
only). Task packages are found, not listed. Each check is shown to fail on a tree that breaks it."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

# scd's packages and top-level modules from the ground floor up; a module may import its own layer and those below.
# Tasks that bring their own package (task_packages) sit above everything: nothing in the core imports them.
LAYERS = (
    {"scd.io", "scd.metrics", "scd.signals", "scd.provenance"},
    {"scd.data"},
    {"scd.models", "scd.config", "scd.components", "scd.loggers", "scd.rundir", "scd.progress"},
    {"scd.task"},
    {"scd.teacher"},  # the teacher borrows nothing from the student (its answer parser and progress live lower)
    {"scd.student"},
    {"scd.evaluation"},
    {"scd.summary", "scd.report"},
    {"scd.pipeline", "scd.cli", "scd.predict", "scd.compare"},
)


def modules(root: Path) -> dict[str, Path]:
    """Every module under ``root/scd`` by dotted name (a package by its own name)."""
    return {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
            for path in (root / "scd").rglob("*.py")}  # fmt: skip


def imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements in ``node``, at any depth (inside functions and classes too), except those under
    ``if TYPE_CHECKING``, which only type checkers run."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for statement in child.orelse:
                yield from imports(statement)
        else:
            yield from imports(child)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the scd modules it imports, at module level or inside a function (which imports them when it runs),
    not under ``if TYPE_CHECKING``."""
    found = modules(root)
    graph = {}
    for name, path in found.items():
        imported: set[str] = set()
        for node in imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scd"):
                imported.add(node.module)
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("scd")}
        graph[name] = {module for module in imported if module in found and module != name}
    return graph


def defines_a_task(path: Path) -> bool:
    """Whether the module defines a subclass of ``scd.task.Task`` (by the base's name: ``Task`` or ``x.Task``)."""
    bases = (base for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
             for base in node.bases)  # fmt: skip
    return any(ast.unparse(base).split(".")[-1] == "Task" for base in bases)


def task_packages(root: Path) -> list[str]:
    """The packages ``scd/<name>/`` that define a task (a ``Task`` subclass) and that no module outside them imports:
    a task that brings its own package, such as scd/toyworld."""
    graph = import_graph(root)
    found = []
    for package in sorted(path.parent for path in (root / "scd").glob("*/__init__.py")):
        name = f"scd.{package.name}"
        inside = [module for module in graph if module == name or module.startswith(name + ".")]
        imported_from_outside = any(target in inside for source, targets in graph.items() if source not in inside
                                    for target in targets)  # fmt: skip
        if any(defines_a_task(path) for path in package.rglob("*.py")) and not imported_from_outside:
            found.append(package.name)
    return found


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


def layer(module: str, tasks: list[str]) -> int:
    """The module's floor; a task package (``tasks``) is above every layer."""
    top = ".".join(module.split(".")[:2])
    if top.removeprefix("scd.") in tasks:
        return len(LAYERS)
    for level, members in enumerate(LAYERS):
        if top in members:
            return level
    raise AssertionError(f"{top} is in no layer of tests/test_architecture.py and is no task package: place it")


def upward_imports(graph: dict[str, set[str]], tasks: list[str]) -> list[str]:
    return sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                  if layer(target, tasks) > layer(source, tasks))  # fmt: skip


def task_mentions(root: Path, tasks: list[str]) -> list[str]:
    """Lines of the core (scd/ outside a task's own package) that name a task."""
    word = re.compile("|".join(tasks), re.IGNORECASE)
    hits = []
    for path in sorted((root / "scd").rglob("*")):
        relative = path.relative_to(root / "scd")
        if not path.is_file() or relative.parts[0] in tasks or "__pycache__" in relative.parts:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if word.search(line):
                hits.append(f"scd/{relative}:{number}: {line.strip()}")
    return hits


def test_no_core_module_names_a_task():
    assert "toyworld" in task_packages(ROOT)  # and any other package that defines a Task
    assert task_mentions(ROOT, task_packages(ROOT)) == []


def test_scd_has_no_import_circle_and_no_upward_import():
    graph = import_graph(ROOT)
    assert len(graph) > 50
    assert circles(graph) == []
    assert upward_imports(graph, task_packages(ROOT)) == []


@pytest.fixture
def broken_tree(tmp_path: Path) -> Path:
    """A copy of scd with a circle (the data layer importing the pipeline), an upward import inside a function (the
    config importing the teacher), a task named in the core, and a new task package."""
    for path in (ROOT / "scd").rglob("*.py"):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    records = tmp_path / "scd" / "data" / "records.py"
    records.write_text(records.read_text() + "\nfrom scd.pipeline import run\n")
    summary = tmp_path / "scd" / "summary.py"
    summary.write_text(summary.read_text() + "\nCUE = 'toyworld/accuracy_cue_agrees'\n")
    config = tmp_path / "scd" / "config.py"
    config.write_text(config.read_text() + "\n\ndef check():\n    from scd.teacher.icl import AnsweringPrompt\n"
                      "\n\nif TYPE_CHECKING:\n    from scd.pipeline import run\n")
    new_task = tmp_path / "scd" / "made_up_task"  # a name no real package has
    new_task.mkdir()
    (new_task / "__init__.py").write_text("")
    (new_task / "task.py").write_text("import scd.task\nfrom scd.evaluation.stage import run_evaluate_stage\n\n\n"
                                    "class ParityTask(scd.task.Task):\n    pass\n")
    return tmp_path


def test_the_checks_fail_on_a_tree_that_breaks_them(broken_tree: Path):
    graph = import_graph(broken_tree)
    tasks = task_packages(broken_tree)
    assert {"made_up_task", "toyworld"} <= set(tasks)  # found by its Task subclass; nothing listed it
    assert any("scd.data.records" in group and "scd.pipeline" in group for group in circles(graph))
    assert any("scd.config" in group and "scd.teacher.icl" in group for group in circles(graph))
    upward = upward_imports(graph, tasks)
    assert {"scd.data.records -> scd.pipeline", "scd.config -> scd.teacher.icl"} <= set(upward)
    assert "scd.config -> scd.pipeline" not in upward  # for type checkers only
    assert not any(line.startswith("scd.made_up_task") for line in upward)  # a task package may import the core
    assert task_mentions(broken_tree, tasks) == ["scd/summary.py:" + str(len((broken_tree / "scd" / "summary.py")
                                                 .read_text().splitlines())) + ": CUE = 'toyworld/accuracy_cue_agrees'"]
