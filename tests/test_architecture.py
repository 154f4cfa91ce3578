"""Architecture rules checked on the source tree of src/aidp (read with :mod:`ast`, nothing run)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "aidp"


def test_subprocess_only_in_process_runner() -> None:
    """Only aidp.process.runner starts processes (subprocess.Popen/run/call/check_*)."""
    starters = {"Popen", "run", "call", "check_call", "check_output", "getoutput",
                "getstatusoutput"}
    runner = {SRC / "process" / "runner.py"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path in runner:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            used = (
                isinstance(node, ast.Attribute) and node.attr in starters
                and isinstance(node.value, ast.Name) and node.value.id == "subprocess"
            ) or (
                isinstance(node, ast.ImportFrom) and node.module == "subprocess"
                and any(alias.name in starters for alias in node.names)
            )
            if used:
                found.append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    assert SRC.is_dir() and found == [], "start processes with aidp.process.runner: " + str(found)


def test_killpg_only_in_process_runner() -> None:
    """Only aidp.process.runner kills process groups (os.killpg)."""
    runner = {SRC / "process" / "runner.py"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path in runner:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            used = (
                isinstance(node, ast.Attribute) and node.attr == "killpg"
                and isinstance(node.value, ast.Name) and node.value.id == "os"
            ) or (
                isinstance(node, ast.ImportFrom) and node.module == "os"
                and any(alias.name == "killpg" for alias in node.names)
            )
            if used:
                found.append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    assert SRC.is_dir() and found == [], "kill process groups in aidp.process.runner: " + str(found)
