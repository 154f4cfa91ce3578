"""Checkpoints: one commit per completed step, made in-process with pygit2 (no git subprocess).

The per-step path (:func:`stage_all` + :func:`prepare_checkpoint`) runs through libgit2 because it
is several times cheaper than ``git add -A && git commit`` (see ``bench/bench_checkpoint.py``) and
runs no hooks -- a repository's pre-commit hook must not veto or rewrite an aidp checkpoint.
Reading checkpoints back (:func:`list_checkpoints`) uses one ``git log`` call, because git's own
trailer parser is the reference for what counts as a trailer.

Writing a commit and moving its branch are two moments: :func:`prepare_checkpoint` writes the
commit object and returns a :class:`RefUpdate`; the engine applies it inside the fenced database
transaction that records the step, so that a deposed lease holder -- stopped, its lease taken
over, woken again -- moves no branch (the transaction fails on its stale token first).

Commit message layout::

    <subject>

    <body, optional>

    Aidp-Run: 01J...
    Aidp-Workstream: api
    Aidp-Step: tests
    Aidp-Attempt: 2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aidp.exceptions import InputError, StateError
from aidp.workspace.git import run_git
from aidp.workspace.refs import move_branch
from aidp.workspace.worktrees import Worktree

if TYPE_CHECKING:  # pygit2 (~50-90 ms to import) loads with the first worktree, not at start-up
    import pygit2

__all__ = [
    "TRAILER_ATTEMPT",
    "TRAILER_RUN",
    "TRAILER_STEP",
    "TRAILER_WORKSTREAM",
    "CheckpointCommit",
    "RefUpdate",
    "commit_staged",
    "discard_unstaged",
    "format_message",
    "list_checkpoints",
    "prepare_checkpoint",
    "stage_all",
]

TRAILER_RUN = "Aidp-Run"
TRAILER_WORKSTREAM = "Aidp-Workstream"
TRAILER_STEP = "Aidp-Step"
TRAILER_ATTEMPT = "Aidp-Attempt"

_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


@dataclass(frozen=True)
class CheckpointCommit:
    """A checkpoint commit found on a workstream branch."""

    sha: str
    workstream: str | None
    step: str | None
    attempt: int | None
    subject: str


def _head_tree(repo: pygit2.Repository) -> pygit2.Tree | None:
    import pygit2

    if repo.head_is_unborn:
        return None
    return repo.head.peel(pygit2.Commit).tree


def _changed_paths(repo: pygit2.Repository, index: pygit2.Index) -> list[str]:
    tree = _head_tree(repo)
    if tree is None:
        return sorted(entry.path for entry in index)
    paths: set[str] = set()
    for delta in index.diff_to_tree(tree).deltas:
        paths.add(delta.old_file.path)
        paths.add(delta.new_file.path)
    return sorted(paths)


# libgit2 does not run external filter drivers (git-lfs, git-crypt, custom clean commands) nor
# re-encode working-tree-encoding files: it would commit the raw working-tree bytes.
_CLI_ONLY_ATTRIBUTES = ("filter", "working-tree-encoding")


def _needs_git_cli(repo: pygit2.Repository, paths: list[str]) -> bool:
    for path in paths:
        for name in _CLI_ONLY_ATTRIBUTES:
            if isinstance(repo.get_attr(path, name), str):
                return True
    return False


def stage_all(wt: Worktree) -> list[str]:
    """Stage every change in ``wt`` (like ``git add -A``) and return the changed paths.

    New, modified and deleted files are staged, ignored files are not. The result lists the
    repository-relative POSIX paths whose index entry differs from HEAD (both sides of a rename,
    mode changes included), sorted; empty when the step changed nothing.

    Staging runs in-process through libgit2; when a changed path carries a ``filter`` or
    ``working-tree-encoding`` attribute (git-lfs, for example), which libgit2 cannot apply,
    staging is redone with ``git add -A`` so the committed content is what git would commit.
    """
    repo = wt.pygit
    index = repo.index
    index.read(False)  # pick up index writes made by git subprocesses since the last call
    index.add_all()
    changed = _changed_paths(repo, index)
    if _needs_git_cli(repo, changed):
        run_git(["add", "-A"], wt.path)
        index.read(True)
        return _changed_paths(repo, index)
    if changed:  # else the index on disk already says what HEAD says: no file to replace
        index.write()
    return changed


def format_message(subject: str, body: str | None, trailers: Mapping[str, str]) -> str:
    """Build ``subject`` / blank / ``body`` / blank / ``Key: value`` lines, validated.

    Raises:
        InputError: a multi-line or empty subject, or a trailer git would not parse back.
    """
    subject = subject.strip()
    if not subject or "\n" in subject:
        raise InputError(f"a commit subject must be one non-empty line, got {subject!r}")
    parts = [subject]
    if body and body.strip():
        parts.append(body.strip("\n"))
    lines = []
    for key, value in trailers.items():
        if not _TRAILER_KEY.fullmatch(key):
            raise InputError(f"invalid trailer key {key!r}")
        if "\n" in value or not value.strip():
            raise InputError(f"trailer {key} must be one non-empty line, got {value!r}")
        lines.append(f"{key}: {value.strip()}")
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class RefUpdate:
    """A branch move prepared but not made: :meth:`apply` makes it, compare-and-swap."""

    repo: Path | pygit2.Repository  # the repository, or any of its worktrees
    branch: str
    new: str
    old: str | None  # None: the branch must not exist yet
    message: str

    @property
    def moves(self) -> bool:
        return self.new != self.old

    def apply(self) -> str:
        """Move the branch (if it moves at all); return ``new``."""
        if self.moves:
            move_branch(self.repo, self.branch, self.new, self.old, message=self.message)
        return self.new


def prepare_checkpoint(
    wt: Worktree, *, message: str, trailers: Mapping[str, str], body: str | None = None,
    unchanged: bool = False,
) -> RefUpdate:
    """Write the commit of the index on the worktree's branch; return the branch's move to it.

    The commit's parent is HEAD (none on an unborn branch); an empty commit is made when nothing
    changed, so every completed step has exactly one checkpoint. Author and committer come from
    the repository's configuration, or ``aidp <aidp@localhost>``. Nothing points at the commit
    until the returned :class:`RefUpdate` is applied (the worktree's HEAD follows the branch).

    Args:
        wt: an acquired worktree whose HEAD is ``refs/heads/<wt.branch>``.
        message: the subject line.
        trailers: ``Key: value`` trailers, in order (``Aidp-Run``, ``Aidp-Step``, ...).
        body: optional paragraph between subject and trailers.
        unchanged: :func:`stage_all` found no change (the step's commit reuses its parent's
            tree: no tree is written).

    Raises:
        StateError: HEAD is not on ``wt.branch``.
        InputError: the message or trailers are malformed.
    """
    import pygit2

    text = format_message(message, body, trailers)
    repo = wt.pygit
    head = repo.lookup_reference("HEAD")
    expected = f"refs/heads/{wt.branch}"
    if head.type != pygit2.enums.ReferenceType.SYMBOLIC or head.target != expected:
        raise StateError(f"worktree {wt.path} is not on branch {wt.branch}; refusing to commit")
    parent = None if repo.head_is_unborn else str(repo.head.target)
    if parent is not None and unchanged:  # an empty step: its parent's tree, nothing written
        tree_id = repo[parent].peel(pygit2.Commit).tree_id
    else:
        tree_id = repo.index.write_tree()
    ident = wt.identity
    author = pygit2.Signature(ident.author_name, ident.author_email)
    committer = pygit2.Signature(ident.committer_name, ident.committer_email)
    oid = repo.create_commit(None, author, committer, text, tree_id,
                             [] if parent is None else [parent])
    subject = text.splitlines()[0]
    return RefUpdate(repo, wt.branch, str(oid), parent, f"commit: {subject}")


def commit_staged(
    wt: Worktree, *, message: str, trailers: Mapping[str, str], body: str | None = None
) -> str:
    """:func:`prepare_checkpoint` and move the branch at once; return the new commit's sha."""
    return prepare_checkpoint(wt, message=message, trailers=trailers, body=body).apply()


def discard_unstaged(wt: Worktree, *, to: str | None = None) -> None:
    """Return ``wt`` to its last commit (or to commit ``to``, a prepared checkpoint its branch
    does not point at yet): undo changes, delete untracked files, keep ignored ones.

    Used after acceptance checks, which may leave files behind.
    """
    from pygit2.enums import CheckoutStrategy

    repo = wt.pygit
    repo.index.read(False)
    strategy = CheckoutStrategy.FORCE | CheckoutStrategy.REMOVE_UNTRACKED
    if to is None:
        repo.checkout_head(strategy=strategy)  # type: ignore[no-untyped-call]  # pygit2 stub gap
    else:
        repo.checkout_tree(repo[to], strategy=strategy)  # type: ignore[no-untyped-call]


def list_checkpoints(
    repo: Path,
    branch: str,
    *,
    run_id: str,
    base: str | None = None,
    workstream: str | None = None,
) -> list[CheckpointCommit]:
    """Checkpoints of run ``run_id`` on ``branch``, oldest first.

    Only commits reachable from ``branch`` and not from ``base`` are considered; of those, the
    ones whose ``Aidp-Run`` trailer equals ``run_id`` (and ``Aidp-Workstream`` equals
    ``workstream``, when given -- merged dependency branches carry their own checkpoints).
    A branch that does not exist has no checkpoints.
    """
    fields = [
        "%H",
        f"%(trailers:key={TRAILER_RUN},valueonly,separator=%x1d)",
        f"%(trailers:key={TRAILER_WORKSTREAM},valueonly,separator=%x1d)",
        f"%(trailers:key={TRAILER_STEP},valueonly,separator=%x1d)",
        f"%(trailers:key={TRAILER_ATTEMPT},valueonly,separator=%x1d)",
        "%s",
    ]
    ref = f"refs/heads/{branch}"
    if run_git(["rev-parse", "-q", "--verify", ref], repo, check=False).returncode != 0:
        return []
    args = ["log", "--reverse", "--format=" + "%x1f".join(fields) + "%x1e", ref]
    if base is not None:
        args.append(f"^{base}")
    out = run_git([*args, "--"], repo).stdout
    found = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        sha, run, ws, step, attempt, subject = record.split("\x1f", 5)
        if run_id not in run.split("\x1d"):
            continue
        ws_value = ws.split("\x1d")[0] or None
        if workstream is not None and ws_value != workstream:
            continue
        first_attempt = attempt.split("\x1d")[0]
        found.append(
            CheckpointCommit(
                sha=sha,
                workstream=ws_value,
                step=step.split("\x1d")[0] or None,
                attempt=int(first_attempt) if first_attempt.isdigit() else None,
                subject=subject,
            )
        )
    return found
