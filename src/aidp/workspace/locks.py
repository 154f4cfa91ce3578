"""Removal of git lock files that a killed process left behind.

git guards the index, HEAD, refs and config with ``<file>.lock`` files created with ``O_EXCL``;
a process killed mid-command leaves them, and every later git command on that file fails with
"Unable to create '.../index.lock': File exists". aidp kills tools (and git, on timeout) by
process group, so after a crash it removes the locks -- but only once the caller has made sure
no process that could hold them is alive: deleting a live lock corrupts the repository.

A copied repository (``cp -a``) inherits another kind of leftover that blocks it: registrations
of the original's pooled worktrees, which hold their branches "checked out" in the copy.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

from aidp.workspace.git import common_dir

__all__ = ["clean_stale_locks", "clean_worktree_locks", "forget_foreign_slots", "keep_mark",
           "try_lock", "worktree_gitdir"]

_SLOT = re.compile(r"pool-(\d+)")

_WORKTREE_LOCKS = ("index.lock", "HEAD.lock")
_COMMON_LOCKS = ("index.lock", "HEAD.lock", "packed-refs.lock", "config.lock")


def keep_mark(slot: Path) -> Path:
    """The file marking a pooled slot whose files are work to keep (a human gate's, see
    :meth:`~aidp.workspace.worktrees.WorktreePool.keep`): no other workstream may take it."""
    return slot.with_name(slot.name + ".keep")


def worktree_gitdir(worktree: Path) -> Path | None:
    """The administrative directory of ``worktree`` (``.git/worktrees/<name>`` or ``.git``)."""
    dotgit = worktree / ".git"
    if dotgit.is_dir():
        return dotgit
    try:
        text = dotgit.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(text[len("gitdir:") :].strip())
    return gitdir if gitdir.is_absolute() else (worktree / gitdir)


def clean_stale_locks(repo: Path, worktree: Path | None) -> list[Path]:
    """Delete stale git lock files of ``repo`` (and of ``worktree``); return what was removed.

    Removes the worktree's own ``index.lock`` and ``HEAD.lock``, the common directory's
    ``index.lock``, ``HEAD.lock``, ``packed-refs.lock`` and ``config.lock``, and every
    ``refs/heads/aidp/**/*.lock``. The caller guarantees that no process which could hold one of
    these locks is still alive.
    """
    common = common_dir(repo)
    candidates = [common / name for name in _COMMON_LOCKS]
    if worktree is not None:
        gitdir = worktree_gitdir(worktree)
        if gitdir is not None:
            candidates.extend(gitdir / name for name in _WORKTREE_LOCKS)
    aidp_refs = common / "refs" / "heads" / "aidp"
    if aidp_refs.is_dir():
        candidates.extend(sorted(aidp_refs.rglob("*.lock")))
    removed: list[Path] = []
    for path in dict.fromkeys(candidates):  # the main worktree's gitdir is the common dir
        try:
            if path.is_file():
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def _in_use(worktree: Path, locks: list[Path]) -> bool:
    """Whether a live process works in ``worktree`` (its cwd) or has one of ``locks`` open: a
    git process orphaned by a killed orchestrator may still be finishing there."""
    inside = os.path.realpath(worktree)
    wanted = {os.path.realpath(lock) for lock in locks}
    me = str(os.getpid())
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit() and name != me]
    except OSError:
        return True  # no way to tell: keep the locks
    for pid in pids:
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue  # gone, or not ours to see
        if cwd == inside or cwd.startswith(inside + os.sep):
            return True
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return True
            except OSError:
                continue
    return False


def clean_worktree_locks(worktree: Path) -> list[Path]:
    """Delete every ``*.lock`` file in ``worktree``'s administrative directory (index, HEAD,
    ORIG_HEAD, its own refs); return what was removed.

    The caller holds the pool slot's lock (so no live aidp process uses the worktree); the locks
    are kept when any live process still works in the worktree or has one of them open.
    """
    gitdir = worktree_gitdir(worktree)
    if gitdir is None or not gitdir.is_dir():
        return []
    locks = sorted(path for path in gitdir.rglob("*.lock") if path.is_file())
    if not locks or _in_use(worktree, locks):
        return []
    removed: list[Path] = []
    for path in locks:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _points_at(dotgit: Path) -> Path | None:
    """The administrative directory a worktree's ``.git`` file names (resolved), if any."""
    try:
        text = dotgit.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if not text.startswith("gitdir:"):
        return None
    target = Path(text[len("gitdir:") :].strip())
    return Path(os.path.realpath(target if target.is_absolute() else dotgit.parent / target))


def forget_foreign_slots(common: Path) -> list[Path]:
    """Delete registrations in ``common/worktrees/`` of pooled worktrees (``pool-<n>``) that
    belong to another repository; return the administrative directories removed.

    A ``cp -a`` copy of a repository keeps the original's registrations: each names one of the
    original's slots, whose ``.git`` file names the original's administrative directory, not the
    copy's. git then counts their branches as checked out, and the copy cannot check them out.
    Only the copy's own entries are deleted; the original's worktrees are never written to.
    Locked registrations (``git worktree lock``) are kept. Call with git's worktree
    administration serialised.
    """
    admin = common / "worktrees"
    if not admin.is_dir():
        return []
    removed: list[Path] = []
    for entry in sorted(admin.iterdir()):
        if entry.is_symlink() or not entry.is_dir() or (entry / "locked").exists():
            continue
        try:
            dotgit = Path(entry.joinpath("gitdir").read_text(encoding="utf-8").strip())
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not dotgit.is_absolute() or not _SLOT.fullmatch(dotgit.parent.name):
            continue
        target = _points_at(dotgit)
        if target is None or target == Path(os.path.realpath(entry)):
            continue  # missing (git prunes it) or really ours
        shutil.rmtree(entry)
        removed.append(entry)
    return removed


def try_lock(lock_path: Path) -> int | None:
    """Take ``lock_path`` (a pool slot's lock file) exclusively without waiting; return the
    descriptor (the pid written in it) or None."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # prune() unlinks lock files of removed slots while holding them; if that happened
        # between our open and flock we hold an orphan inode, so look again.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            # Written over, then cut to length: a truncation to zero before the write would
            # make ext4 flush the file at close (auto_da_alloc), 1-2 ms per slot taken.
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(fd, pid, 0)
            os.ftruncate(fd, len(pid))
            return fd
        os.close(fd)
