"""Helpers shared by the model and CLI tests (git, repositories and the CLI: ``tests.helpers``)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import git


def assert_untouched(repo: Path) -> None:
    """Nothing was written: a clean ``git status`` and no ``.aidp/`` directory."""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not (repo / ".aidp").exists()
