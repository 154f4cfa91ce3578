"""A scratch worktree: a detached checkout of any commit, for checks that belong to no branch.

The merge queue (:mod:`aidp.engine.mergequeue`) runs a target's integration checks on a merged
tree nobody's branch points at yet. A pool slot (:class:`~aidp.workspace.worktrees.WorktreePool`)
always checks a branch out; this one never does (HEAD detached), so it moves no ref, leaves no
branch behind, and cannot hold the target that the queue moves meanwhile. One directory per
target under ``<repo>/.aidp/merge-queue/``, reused from batch to batch (a checkout touches only
the files that differ) and removed when the queue is done.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from aidp.workspace.git import ensure_excluded, run_git

__all__ = ["ScratchTree"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ScratchTree:
    """A detached worktree of ``repo`` for ``name`` (a target branch), made on first use."""

    def __init__(self, repo: Path, name: str) -> None:
        self.repo = repo
        # a readable, collision-free directory name for any branch name (a/b and a-b differ)
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        self.path = repo / ".aidp" / "merge-queue" / f"{_UNSAFE.sub('-', name)[:40]}-{digest}"
        self._made = False

    def checkout(self, commit: str) -> Path:
        """Check ``commit`` out (detached, clean: untracked and ignored files removed); return
        the directory.

        Raises:
            GitError: git failed.
        """
        if not self._made:
            ensure_excluded(self.repo, ".aidp/")
            self._drop()  # what a crashed run may have left there
            self.path.parent.mkdir(parents=True, exist_ok=True)
            run_git(["worktree", "add", "--detach", "-f", "-q", str(self.path), commit],
                    self.repo)
            self._made = True
            return self.path
        run_git(["checkout", "--detach", "-f", "-q", commit], self.path)
        run_git(["clean", "-ffdxq"], self.path)
        return self.path

    def remove(self) -> None:
        """Remove the directory and its registration (nothing to do if never made)."""
        if self._made:
            self._drop()
            self._made = False

    def _drop(self) -> None:
        if self.path.exists():
            run_git(["worktree", "remove", "--force", "--force", str(self.path)], self.repo,
                    check=False)
            shutil.rmtree(self.path, ignore_errors=True)
        run_git(["worktree", "prune"], self.repo, check=False)
