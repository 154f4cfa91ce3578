"""The shared git remote of a Dask cluster: where the orchestrator publishes a workstream's head
before an attempt, where a worker fetches it and pushes its checkpoint back.

Every branch move on the remote is a compare-and-swap
(``git push --force-with-lease=REF:EXPECTED``):
a worker moves a workstream's branch only from the head its attempt started at, so two workers
that ran the same attempt (one thought dead) cannot both land a checkpoint. Fetched heads go to
``refs/aidp-fetch/...`` (never a branch a worktree has checked out), without ``FETCH_HEAD``:
several attempts fetch at once in one clone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aidp.workspace.git import run_git

__all__ = ["RemoteBranch", "commit_info", "drop_branch", "fetch_branch", "is_checkpoint_of",
           "push_branch"]

_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RemoteBranch:
    """A workstream branch on the shared remote, as seen from one clone."""

    clone: Path
    remote: str  # a remote's name in ``clone`` or a URL
    branch: str

    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @property
    def fetched(self) -> str:
        return f"refs/aidp-fetch/{self.branch}"


def fetch_branch(where: RemoteBranch) -> str | None:
    """Fetch the branch into ``refs/aidp-fetch/BRANCH`` of the clone; its commit, or None when
    the remote has no such branch."""
    done = run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", where.remote,
                    f"+{where.ref}:{where.fetched}"], where.clone, check=False,
                   timeout_s=_TIMEOUT_S)
    if done.returncode != 0:
        if "couldn't find remote ref" in done.stderr:
            return None
        run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", where.remote,
                 f"+{where.ref}:{where.fetched}"], where.clone, timeout_s=_TIMEOUT_S)
    return _read_ref(where.clone, where.fetched)


def _read_ref(clone: Path, ref: str) -> str | None:
    """The commit ``ref`` names in ``clone`` (in-process: one git process less per fetch)."""
    import pygit2

    try:
        return str(pygit2.Repository(str(clone)).references[ref].resolve().target)
    except (KeyError, pygit2.GitError):
        return None


def drop_branch(clone: Path, branch: str) -> None:
    """Delete a local branch of ``clone`` if it exists (in-process)."""
    import pygit2

    try:
        pygit2.Repository(str(clone)).references.delete(f"refs/heads/{branch}")
    except (KeyError, pygit2.GitError):
        pass


def push_branch(where: RemoteBranch, sha: str, expected: str | None) -> bool:
    """Move the remote branch to ``sha`` if it is at ``expected`` (None: if it does not exist);
    False when it was somewhere else (nothing moved)."""
    lease = f"--force-with-lease={where.ref}:{expected or ''}"
    done = run_git(["push", "--quiet", "--no-verify", lease, where.remote,
                    f"{sha}:{where.ref}"], where.clone, check=False, timeout_s=_TIMEOUT_S)
    if done.returncode == 0:
        return True
    if "stale info" in done.stderr or "rejected" in done.stderr:
        return False
    run_git(["push", "--quiet", "--no-verify", lease, where.remote, f"{sha}:{where.ref}"],
            where.clone, timeout_s=_TIMEOUT_S)  # raises GitError with git's message
    return True


def commit_info(clone: Path, sha: str) -> tuple[list[str], dict[str, str]]:
    """A commit's parents and its ``Aidp-*`` trailers."""
    out = run_git(["show", "-s", "--format=%P%n%(trailers:only,unfold)", sha], clone,
                  timeout_s=_TIMEOUT_S).stdout.splitlines()
    parents = out[0].split() if out else []
    trailers = {}
    for line in out[1:]:
        key, _, value = line.partition(":")
        if key.startswith("Aidp-"):
            trailers[key] = value.strip()
    return parents, trailers


def is_checkpoint_of(clone: Path, sha: str, start: str, run_id: str, ws_id: str,
                     step_id: str) -> bool:
    """``sha`` is a checkpoint of step ``ws_id/step_id`` of run ``run_id`` made on top of
    ``start`` (what a worker pushed): the one test adoption uses, on both sides."""
    parents, trailers = commit_info(clone, sha)
    return (parents == [start] and trailers.get("Aidp-Run") == run_id
            and trailers.get("Aidp-Workstream") == ws_id and trailers.get("Aidp-Step") == step_id)
