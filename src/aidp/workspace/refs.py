"""Moving a branch in-process (libgit2), compare-and-swap under git's own ref lock.

The engine moves a run's branches only inside the fenced database transaction that records the
move (see :class:`aidp.workspace.checkpoint.RefUpdate`), so this is kept to one short call.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aidp.exceptions import StateError
from aidp.workspace.git import Identity

if TYPE_CHECKING:
    import pygit2

__all__ = ["attach_head", "move_branch"]


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


def attach_head(repo: pygit2.Repository, branch: str, *, identity: Identity,
                message: str) -> None:
    """Point the worktree's HEAD at ``refs/heads/<branch>`` as ``git symbolic-ref`` does (its
    lock file, then a rename), with a reflog entry.

    Only for a branch no other worktree can have checked out -- one the caller has just
    created: libgit2's ``set_head`` would check every worktree of the repository first (5 ms
    with a pool of a few slots, growing with the pool).

    Raises:
        StateError: HEAD is locked (a git process is changing it).
    """
    gitdir = Path(repo.path)
    old = "0" * 40 if repo.head_is_unborn else str(repo.head.target)
    lock = gitdir / "HEAD.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise StateError(f"{lock} exists: a git process is changing HEAD",
                         hint="if no git process runs there, `aidp resume` removes the stale "
                         "lock") from None
    try:
        try:
            os.write(fd, f"ref: refs/heads/{branch}\n".encode())
        finally:
            os.close(fd)
        os.replace(lock, gitdir / "HEAD")
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    new = str(repo.head.target)
    offset = time.localtime().tm_gmtoff // 60
    zone = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    entry = (f"{old} {new} {identity.committer_name} <{identity.committer_email}> "
             f"{int(time.time())} {zone}\t{message}\n")
    (gitdir / "logs").mkdir(exist_ok=True)
    with open(gitdir / "logs" / "HEAD", "a", encoding="utf-8") as reflog:
        reflog.write(entry)
