"""Fixtures for the workspace tests: small real git repositories in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aidp.workspace import WorktreePool
from tests.helpers import init_repo


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A repository on branch main with one commit (README.md, .gitignore, src/app.py)."""
    return init_repo(tmp_path / "repo", {
        "README.md": "hello\n", ".gitignore": "*.log\nbuild/\n", "src/app.py": "x = 1\n",
    })


@pytest.fixture
def pool(git_repo: Path) -> Iterator[WorktreePool]:
    """A worktree pool on ``git_repo``."""
    yield WorktreePool(git_repo)
