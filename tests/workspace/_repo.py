"""Helpers for tests that drive real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = ("Test Person", "test@example.com")


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with the test identity and return stdout (raises on failure)."""
    done = subprocess.run(
        ["git", "-c", f"user.name={IDENTITY[0]}", "-c", f"user.email={IDENTITY[1]}", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def commit_files(cwd: Path, files: dict[str, str], message: str) -> str:
    """Write ``files`` (relative path -> text), commit them all, return the new sha."""
    for name, text in files.items():
        write(cwd / name, text)
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD").strip()


def init_repo(path: Path) -> Path:
    """Create a repository with a local identity, a .gitignore and one commit on main."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", IDENTITY[0])
    git(path, "config", "user.email", IDENTITY[1])
    git(path, "config", "commit.gpgsign", "false")
    commit_files(
        path,
        {"README.md": "hello\n", ".gitignore": "*.log\nbuild/\n", "src/app.py": "x = 1\n"},
        "initial",
    )
    return path
