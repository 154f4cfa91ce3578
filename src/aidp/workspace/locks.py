"""Removal of git lock files that a killed process left behind.

git guards the index, HEAD, refs and config with ``<file>.lock`` files created with ``O_EXCL``;
a process killed mid-command leaves them, and every later git command on that file fails with
"Unable to create '.../index.lock': File exists". aidp kills tools (and git, on timeout) by
process group, so after a crash it removes the locks -- but only once the caller has made sure
no process that could hold them is alive: deleting a live lock corrupts the repository.
"""

from __future__ import annotations

from pathlib import Path

from aidp.workspace.git import common_dir

__all__ = ["clean_stale_locks"]

_WORKTREE_LOCKS = ("index.lock", "HEAD.lock")
_COMMON_LOCKS = ("index.lock", "HEAD.lock", "packed-refs.lock", "config.lock")


def _worktree_gitdir(worktree: Path) -> Path | None:
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
        gitdir = _worktree_gitdir(worktree)
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
