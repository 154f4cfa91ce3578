"""The layers of DESIGN.md, pinned: which package may import which."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aidp"


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, relative imports
    resolved; ``from X import name`` counts as ``X`` and as ``X.name`` (which may be a module)."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_cli_uses_only_the_application_layer() -> None:
    """No module of aidp.cli imports the store, the breaker book, the worktree pool (nor any
    other part of aidp.state or aidp.engine): the CLI reaches state only through aidp.app."""
    forbidden = ("aidp.state.store", "aidp.state.breakers", "aidp.workspace.worktrees",
                 "aidp.state", "aidp.engine")
    modules = sorted((SRC / "cli").rglob("*.py"))
    assert modules, "no CLI modules found"
    offences = [f"{path.relative_to(SRC.parent)} imports {name}"
                for path in modules for name in sorted(_imported_modules(path))
                if any(name == bad or name.startswith(bad + ".") for bad in forbidden)]
    assert offences == []
