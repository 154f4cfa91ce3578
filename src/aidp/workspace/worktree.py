"""A pooled worktree in use (:class:`Worktree`) and as listed (:class:`WorktreeInfo`); the
pool itself is :class:`aidp.workspace.worktrees.WorktreePool`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aidp.exceptions import StateError
from aidp.workspace.git import Identity, resolve_identity

if TYPE_CHECKING:
    import pygit2

__all__ = ["Worktree", "WorktreeInfo"]


class Worktree:
    """A pooled worktree checked out on ``branch``, owned by this process until released.

    Holds the slot's lock (an open file descriptor) and, lazily, an open ``pygit2.Repository``
    for the checkpoint hot path. Not thread-safe: one workstream uses one worktree at a time.
    """

    __slots__ = ("_identity", "_lock_fd", "_pygit", "branch", "path", "repo")

    def __init__(self, path: Path, branch: str, repo: Path, lock_fd: int) -> None:
        self.path = path
        self.branch = branch
        self.repo = repo
        self._lock_fd: int | None = lock_fd
        self._pygit: pygit2.Repository | None = None
        self._identity: Identity | None = None

    @property
    def released(self) -> bool:
        """True once :meth:`WorktreePool.release` gave the worktree back."""
        return self._lock_fd is None

    @property
    def pygit(self) -> pygit2.Repository:
        """The worktree opened with pygit2 (opened on first use, then reused)."""
        if self._lock_fd is None:
            raise StateError(f"worktree {self.path} was released")
        if self._pygit is None:
            import pygit2

            self._pygit = pygit2.Repository(str(self.path))
        return self._pygit

    @property
    def identity(self) -> Identity:
        """Who commits here (resolved once, the way git would; see :func:`resolve_identity`)."""
        if self._identity is None:
            self._identity = resolve_identity(self.path)
        return self._identity

    def _close(self) -> None:
        if self._pygit is not None:
            self._pygit.free()
            self._pygit = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def __repr__(self) -> str:
        return f"Worktree(path={str(self.path)!r}, branch={self.branch!r})"


@dataclass(frozen=True)
class WorktreeInfo:
    """One pooled worktree as seen by :meth:`WorktreePool.list`."""

    path: Path
    branch: str | None
    head: str | None
    in_use: bool
    dirty: bool
