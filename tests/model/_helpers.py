"""Helpers shared by the model and CLI tests: tiny git repositories and the real ``aidp``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Person",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test Person",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def aidp_executable() -> str:
    """The installed ``aidp`` script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "aidp"
    found = str(beside) if beside.exists() else shutil.which("aidp")
    assert found, "the aidp console script is not installed (run scripts/setup.sh)"
    return found


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a test identity; return stdout, fail the test on error."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_IDENTITY},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def make_repo(path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A git repository at ``path`` with ``files`` (and a README) committed; returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in {"README.md": "# test\n", **(files or {})}.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def run_aidp(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``aidp`` command in ``cwd``; never raises on a non-zero exit."""
    return subprocess.run(
        [aidp_executable(), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def assert_untouched(repo: Path) -> None:
    """Nothing was written: a clean ``git status`` and no ``.aidp/`` directory."""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (repo / ".aidp").exists()
