"""Helpers for the detector tests: run a real tool in a tmp project, wrap what it printed as the
evidence the engine would hand to the detectors."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from aidp.errors import AttemptEvidence, CheckEvidence

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
LINT_BIN = ROOT / ".tools" / "lint" / "node_modules" / ".bin"
FIXTURES = Path(__file__).parent / "fixtures"


def tool_env() -> dict[str, str]:
    """The environment for a real tool: ours, minus pytest's own variables and colours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def run_check(argv: list[str], cwd: Path, timeout: float = 120) -> CheckEvidence:
    """Run ``argv`` in ``cwd`` as an acceptance check would (stdout and stderr merged)."""
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, stdin=subprocess.DEVNULL, env=tool_env(), timeout=timeout,
                          check=False)
    signal = -proc.returncode if proc.returncode < 0 else None
    return CheckEvidence(name="check", command=shlex.join(argv),
                         exit_code=proc.returncode if proc.returncode >= 0 else None,
                         signal=signal, timed_out=False, output=proc.stdout, worktree=cwd)


def as_attempt(check: CheckEvidence, adapter: str = "shell") -> AttemptEvidence:
    """The same output seen as a tool attempt of ``adapter``."""
    return AttemptEvidence(tool=adapter, adapter=adapter, exit_code=check.exit_code,
                           signal=check.signal, timed_out=check.timed_out, duration_s=0.1,
                           output=check.output, worktree=check.worktree)


def attempt(output: str, adapter: str = "aider", *, exit_code: int | None = 0,
            worktree: Path | None = None, events: tuple[dict[str, object], ...] = (),
            signal: int | None = None, timed_out: bool = False) -> AttemptEvidence:
    """Attempt evidence holding ``output``."""
    return AttemptEvidence(tool=adapter, adapter=adapter, exit_code=exit_code, signal=signal,
                           timed_out=timed_out, duration_s=1.0, output=output,
                           worktree=worktree, events=events)


def fixture_text(name: str) -> str:
    """A captured output in tests/errors/fixtures, without its leading ``#`` provenance lines."""
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def python_bin(name: str) -> str:
    """A tool of aidp's own virtual environment (ruff, mypy)."""
    return str(VENV_BIN / name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project directory (the worktree) with a pytest.ini anchoring pytest's rootdir."""
    root = tmp_path / "wt"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` under ``root``; return ``root``."""
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root
