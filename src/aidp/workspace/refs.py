"""Moving a branch in-process (libgit2), compare-and-swap under git's own ref lock.

The engine moves a run's branches only inside the fenced database transaction that records the
move (see :class:`aidp.workspace.checkpoint.RefUpdate`), so this is kept to one short call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aidp.exceptions import StateError

if TYPE_CHECKING:
    import pygit2

__all__ = ["move_branch"]


def move_branch(repo: Path | pygit2.Repository, branch: str, new: str, old: str | None, *,
                message: str) -> None:
    """Point ``refs/heads/<branch>`` at ``new`` if it still points at ``old`` (None: if it does
    not exist), under git's ref lock, with a reflog entry. In-process: no git subprocess.

    Raises:
        StateError: the branch is not where it was expected (somebody else moved it).
    """
    import pygit2

    handle = repo if isinstance(repo, pygit2.Repository) else pygit2.Repository(str(repo))
    name = f"refs/heads/{branch}"
    with handle.transaction() as txn:
        txn.lock_ref(name)  # git's own lock file: a concurrent git or libgit2 writer waits or fails
        ref = handle.references.get(name)
        current = None if ref is None else str(ref.resolve().target)
        if current != old:
            raise StateError(
                f"branch {branch} moved: expected {old or 'no branch'}, found "
                f"{current or 'no branch'}; refusing to move it to {new[:12]}",
                hint="another process changed the branch; `aidp resume` rebuilds from the "
                "recorded checkpoints")
        txn.set_target(name, new, message=message)
