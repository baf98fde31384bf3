"""Dependencies point one way: models ← domain modules ← views and realtime (issue #8 §9).

Read from the source with `ast`, so an import inside a function counts as much as one at the
top of a module: both run, and both tie the modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storyboard", "accounts")
ABOVE_THE_DOMAIN = {"storyboard.views", "storyboard.forms", "storyboard.realtime",
                    "storyboard.api"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(path): path
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _imports_of(name: str, source: str, known: set[str]) -> set[str]:
    """Our modules that `source` (module `name`) imports, anywhere in it."""
    package = name if name in known and _is_package(name, known) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from storyboard import realtime` imports a module; `from x import y` a name.
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def _is_package(name: str, known: set[str]) -> bool:
    return any(other.startswith(f"{name}.") for other in known)


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    known = set(sources)
    return {name: _imports_of(name, path.read_text(), known) for name, path in sources.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first walk (each reported once, from where it closed)."""
    cycles, state = [], dict.fromkeys(graph, "new")

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif state.get(target) == "new":
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if state[module] == "new":
            visit(module, [module])
    return cycles


def test_storyboard_modules_import_each_other_without_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_imports_inside_functions():
    known = {"storyboard", "storyboard.generation", "storyboard.tasks"}
    late = "def enqueue():\n    from storyboard.tasks import run_generation\n"
    graph = {"storyboard.generation": _imports_of("storyboard.generation", late, known),
             "storyboard.tasks": _imports_of("storyboard.tasks",
                                             "from storyboard import generation\n", known)}
    assert _cycles(graph) == [["storyboard.generation", "storyboard.tasks",
                               "storyboard.generation"]]


def test_models_and_domain_modules_never_import_views_forms_or_realtime():
    graph = _graph()
    lower = ["storyboard.models", "storyboard.selectors", "storyboard.catalogue",
             "storyboard.money", "storyboard.house", "storyboard.previz", "storyboard.media",
             "storyboard.animatic",
             *(name for name in graph if name.startswith("storyboard.providers"))]
    reaching_up = {name: graph[name] & ABOVE_THE_DOMAIN for name in lower}
    assert {name: up for name, up in reaching_up.items() if up} == {}


def test_realtime_never_imports_views_or_forms():
    assert _graph()["storyboard.realtime"] & ABOVE_THE_DOMAIN == set()


def test_models_import_no_template_tags():
    assert not any("templatetags" in name for name in _graph()["storyboard.models"])


def test_generation_enqueues_the_task_tasks_py_defines():
    from storyboard import generation, tasks

    # Named, not imported (the import would run back up into tasks.py): the name must hold.
    assert import_string(generation.DRIVE_TASK) is tasks.run_generation


def test_the_chain_hooks_name_what_they_call():
    from storyboard import chainrun, generation, models, tasks

    # A take's end queues its chain, and the reconciler resumes chains, by name (the imports
    # would run back up): the names must hold.
    assert import_string(models.CHAIN_TASK) is tasks.advance_chain
    assert import_string(generation.CHAIN_RESUME) is chainrun.resume


def test_the_export_hook_names_what_it_calls():
    from storyboard import export, tasks

    # An export queues its task by name (the import would run back up into tasks.py), and the
    # reconciler fails stale exports by name (export.py builds on generation.py).
    assert import_string(export.EXPORT_TASK) is tasks.run_export
    from storyboard import generation

    assert import_string(generation.EXPORT_RESUME) is export.resume
