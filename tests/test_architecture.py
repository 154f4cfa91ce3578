"""Architecture rules, read from the source tree of src/aidp with :mod:`ast` (nothing run):
the layers of DESIGN.md, which package may import which, one process runner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "aidp"


RUNNER = SRC / "process" / "runner.py"


def _uses(module: str, names: set[str]) -> list[str]:
    """Where a module of src/aidp other than the process runner uses ``module.NAME`` or
    ``from module import NAME`` for one of ``names``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == RUNNER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            used = (
                isinstance(node, ast.Attribute) and node.attr in names
                and isinstance(node.value, ast.Name) and node.value.id == module
            ) or (
                isinstance(node, ast.ImportFrom) and node.module == module
                and any(alias.name in names for alias in node.names)
            )
            if used:
                found.append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    assert RUNNER.is_file()
    return found


def test_subprocess_only_in_process_runner() -> None:
    """Only aidp.process.runner starts processes (subprocess.Popen/run/call/check_*)."""
    starters = {"Popen", "run", "call", "check_call", "check_output", "getoutput",
                "getstatusoutput"}
    assert _uses("subprocess", starters) == [], "start processes with aidp.process.runner"


def test_killpg_only_in_process_runner() -> None:
    """Only aidp.process.runner kills process groups (os.killpg)."""
    assert _uses("os", {"killpg"}) == [], "kill process groups in aidp.process.runner"


def _imports(path: Path) -> set[str]:
    """Every ``aidp.*`` module that ``path`` imports, at module level or inside functions (and
    under ``TYPE_CHECKING``): the strictest graph."""
    module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("aidp.")}


def _package_of(module: str) -> str:
    """``aidp.engine.executor`` -> ``engine``; top-level modules are their own package."""
    return module.split(".")[1] if module.count(".") else module


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        source = _package_of(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        targets = {_package_of(name) for name in _imports(path)}
        graph.setdefault(source, set()).update(
            t for t in targets if (SRC / t).is_dir() or (SRC / f"{t}.py").exists())
        graph[source].discard(source)
    return graph


def test_no_import_cycle_between_packages() -> None:
    """The packages of src/aidp form a DAG, counting function-level and type-only imports."""
    from graphlib import CycleError, TopologicalSorter

    try:
        TopologicalSorter(_package_graph()).prepare()
    except CycleError as exc:
        raise AssertionError(f"import cycle between packages: {' -> '.join(exc.args[1])}") \
            from None


def test_base_layer_imports_nothing_else_of_aidp() -> None:
    """aidp.core (the vocabulary) and aidp.exceptions import no other part of aidp."""
    base = {"core", "exceptions"}
    found = {
        f"{path.relative_to(SRC.parent)} imports {name}"
        for path in [*(SRC / "core").rglob("*.py"), SRC / "exceptions.py"]
        for name in _imports(path)
        if _package_of(name) not in base
    }
    assert (SRC / "core").is_dir() and found == set(), sorted(found)


@pytest.mark.parametrize("interface", ["cli", "api", "web"])
def test_interfaces_use_only_the_application_layer(interface: str) -> None:
    """No module of aidp.cli, aidp.api or aidp.web imports the store, the breaker book, the
    worktree pool (nor any other part of aidp.state or aidp.engine): the interfaces reach state
    only through aidp.app, so no behaviour is implemented twice."""
    forbidden = ("aidp.state.store", "aidp.state.breakers", "aidp.workspace.worktrees",
                 "aidp.state", "aidp.engine")
    modules = sorted((SRC / interface).rglob("*.py"))
    assert modules, f"no {interface} modules found"
    offences = [f"{path.relative_to(SRC.parent)} imports {name}"
                for path in modules for name in sorted(_imports(path))
                if any(name == bad or name.startswith(bad + ".") for bad in forbidden)]
    assert offences == []


def test_no_module_over_600_lines() -> None:
    """Every module of src/aidp holds one concept: none is over 600 lines."""
    long = {str(path.relative_to(SRC.parent)): n for path in SRC.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert SRC.is_dir() and long == {}, long


#: The layers of DESIGN.md, bottom up; a package may import its own layer and those below.
LAYERS: dict[str, int] = {
    "core": 1, "exceptions": 1,
    "process": 2, "model": 2, "config": 2, "state": 2, "workspace": 2, "errors": 2,
    "resilience": 2, "tools": 2, "specs": 2, "testing": 2,
    "notify": 2,
    "engine": 3,
    "app": 4,
    "cli": 5, "api": 5, "web": 5,
}


def test_every_package_imports_only_its_layer_and_below() -> None:
    """No package imports a layer above its own (parts never import the engine, the engine
    never the application layer, nothing below the CLI imports the CLI)."""
    graph = _package_graph()
    graph.pop("__init__", None)  # src/aidp/__init__.py only carries the version
    unplaced = sorted(set(graph) - set(LAYERS))
    assert unplaced == [], f"place these packages in LAYERS: {unplaced}"
    upward = sorted(f"{source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[target]})"
                    for source, targets in graph.items() for target in targets
                    if LAYERS[target] > LAYERS[source])
    assert upward == []
