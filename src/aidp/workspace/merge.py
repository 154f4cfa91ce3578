"""Merging workstream branches: dependencies into a worktree, results into their target branch.

* :func:`merge_dependencies` -- where a workstream depending on several others starts: the
  first dependency's head with the rest merged in (``--no-ff``), in memory where
  :mod:`aidp.workspace.native` allows it, else by :func:`merge_into_worktree` (``git merge``
  in the worktree, all or nothing).
* :func:`merge_into_target` -- a finished workstream lands on its target branch without any
  worktree: ``git merge-tree --write-tree`` computes the result, ``git commit-tree`` records it,
  ``git update-ref NEW OLD`` moves the branch only if nobody else moved it meanwhile.
  :func:`plan_merge` does the same but leaves the move to the caller (the engine makes it in the
  fenced transaction that records the merge).
* :func:`merge_commit` -- one such merge commit on any base commit: the merge queue chains them
  to build the tree its integration checks run on before the target moves
  (:mod:`aidp.workspace.scratch` checks it out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from aidp.exceptions import GitError, InputError, MergeConflictError, StateError
from aidp.workspace.checkpoint import RefUpdate, format_message
from aidp.workspace.git import git_identity_env, rev_parse, run_git
from aidp.workspace.native import independent, merge_heads
from aidp.workspace.worktrees import Worktree, WorktreePool

__all__ = [
    "checked_out_branches",
    "contains",
    "drop_contained",
    "is_merged",
    "merge_commit",
    "merge_dependencies",
    "merge_into_target",
    "merge_into_worktree",
    "plan_merge",
]


def merge_dependencies(
    pool: WorktreePool, heads: Sequence[str], *, into: str, message: str,
    trailers: Mapping[str, str],
) -> tuple[str | None, Callable[[Worktree], object] | None]:
    """Where a workstream depending on commits ``heads`` starts.

    Returns ``(start, merge_rest)``: the commit to check out (None without dependencies) and,
    on the git CLI path, the merges still to make in the worktree before its branch is created
    (:func:`merge_into_worktree`; None when there are none). In-process, ``start`` is already
    the last merge commit: no git process, nothing checked out twice.

    Raises:
        MergeConflictError: (in-process) a dependency's head conflicts with those before it.
    """
    if len(set(heads)) < 2:  # nothing to merge: no repository to open
        return (heads[0] if heads else None), None
    import pygit2

    git = pygit2.Repository(str(pool.repo))
    try:
        native = pool.capabilities.merge(git)
        shas = independent(git, heads) if native else drop_contained(pool.repo, heads)
        if len(shas) < 2:
            return (shas[0] if shas else None), None
        text = format_message(message, None, trailers)
        if native:
            return merge_heads(git, shas[0], shas[1:], into=into, text=text,
                               identity=pool.identity), None
    finally:
        git.free()

    def merge_rest(wt: Worktree) -> None:
        merge_into_worktree(wt, shas[1:], message=message, trailers=trailers)

    return shas[0], merge_rest


def merge_into_worktree(
    wt: Worktree, branches: Sequence[str], *, message: str, trailers: Mapping[str, str]
) -> str:
    """Merge ``branches`` one by one into the worktree's HEAD; return the resulting HEAD sha.

    Every merge makes a merge commit (``--no-ff``) whose message is ``message`` plus
    ``trailers``. All or nothing: when any merge conflicts, the merge is aborted, HEAD goes back
    to where it was before the first merge, and nothing is left staged or half-merged.

    Raises:
        MergeConflictError: with the branch that conflicted and the conflicting files.
        GitError: git failed for another reason (for example untracked files in the way).
    """
    text = format_message(message, None, trailers)
    env = git_identity_env(wt.path)
    original = run_git(["rev-parse", "HEAD"], wt.path).stdout.strip()
    for branch in branches:
        done = run_git(
            ["merge", "--no-ff", "--no-edit", "--no-verify", "-q", "-m", text, branch],
            wt.path,
            check=False,
            env=env,
        )
        if done.returncode == 0:
            continue
        in_merge = rev_parse(wt.path, "MERGE_HEAD") is not None
        files: list[str] = []
        if in_merge:
            diff = run_git(["diff", "--name-only", "-z", "--diff-filter=U"], wt.path)
            files = sorted(name for name in diff.stdout.split("\0") if name)
            run_git(["merge", "--abort"], wt.path)
        run_git(["reset", "--hard", "-q", original], wt.path)
        if in_merge:
            raise MergeConflictError(into=wt.branch, branch=branch, files=files)
        raise GitError(["merge", branch], done.returncode, done.stderr + done.stdout, cwd=wt.path)
    return run_git(["rev-parse", "HEAD"], wt.path).stdout.strip()


def drop_contained(repo: Path, commits: Sequence[str]) -> list[str]:
    """``commits`` without those another of them already contains (and without repeats), in
    their order: merging a contained commit adds nothing, and starting from one would make a
    merge commit that only fast-forwards to the other (``git merge-base --independent``)."""
    unique = list(dict.fromkeys(commits))
    if len(unique) < 2:
        return unique
    keep = set(run_git(["merge-base", "--independent", *unique], repo).stdout.split())
    return [sha for sha in unique if sha in keep]


def checked_out_branches(repo: Path) -> dict[str, Path]:
    """Branches checked out in any worktree of ``repo`` (the main one included), to the path."""
    out = run_git(["worktree", "list", "--porcelain"], repo).stdout
    result: dict[str, Path] = {}
    for block in out.split("\n\n"):
        path: Path | None = None
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key == "worktree":
                path = Path(value)
            elif key == "branch" and path is not None:
                result[value.removeprefix("refs/heads/")] = path
    return result


def _merge_tree(repo: Path, ours: str, theirs: str) -> tuple[str, list[str] | None]:
    """Return (tree, None) for a clean merge, or (tree, conflicting files)."""
    done = run_git(
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs],
        repo,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise GitError(["merge-tree", ours, theirs], done.returncode, done.stderr, cwd=repo)
    tree, *rest = done.stdout.split("\0")
    if done.returncode == 0:
        return tree.strip(), None
    return tree.strip(), sorted({name for name in rest if name})


def plan_merge(
    repo: Path,
    source: str,
    target: str,
    *,
    strategy: Literal["merge", "squash"],
    message: str,
    trailers: Mapping[str, str],
    create_from: str,
) -> RefUpdate:
    """Prepare landing branch ``source`` on branch ``target`` without touching any worktree:
    write the merge commit, return the target's move to it (``moves`` is False when there is
    nothing to land).

    ``"merge"`` always records a two-parent merge commit (never a fast-forward, so the
    workstream stays visible in history and the commit carries the trailers); ``"squash"``
    records a one-parent commit with the merged tree. When ``source`` is already contained in
    ``target`` (merge) or the merged tree equals the target's (squash) nothing is committed and
    the target stays where it is. A missing ``target`` is created from ``create_from``; the
    branch is created or moved, when the update is applied, with one compare-and-swap.

    Raises:
        StateError: ``target`` is checked out in a worktree.
        InputError: ``source`` or ``create_from`` names no commit; unknown strategy.
        MergeConflictError: the merge conflicts (files named).
    """
    if strategy not in ("merge", "squash"):
        raise InputError(f"unknown merge strategy {strategy!r} (expected merge or squash)")
    holders = checked_out_branches(repo)
    if target in holders:
        raise StateError(
            f"branch {target} is checked out in {holders[target]}; "
            "aidp will not move a checked-out branch",
            hint=f"check out another branch in {holders[target]} (or merge there yourself)",
        )
    source_sha = rev_parse(repo, f"refs/heads/{source}^{{commit}}") or rev_parse(
        repo, f"{source}^{{commit}}"
    )
    if source_sha is None:
        raise InputError(f"cannot merge {source!r}: no such branch or commit")
    old = rev_parse(repo, f"refs/heads/{target}")
    if old is None:
        base = rev_parse(repo, f"{create_from}^{{commit}}")
        if base is None:
            raise InputError(f"cannot create branch {target} from {create_from!r}: no such commit")
    else:
        base = old
    new = merge_commit(repo, base, source_sha, strategy=strategy, message=message,
                       trailers=trailers, into=target, name=source)
    return RefUpdate(repo, target, new, old, f"aidp: {strategy} {source}")


def merge_commit(
    repo: Path,
    base: str,
    source: str,
    *,
    strategy: Literal["merge", "squash"],
    message: str,
    trailers: Mapping[str, str],
    into: str,
    name: str,
) -> str:
    """Write the commit landing commit ``source`` on commit ``base`` (no branch moves, no
    worktree): a two-parent merge commit, or with ``"squash"`` a one-parent commit of the
    merged tree. Returns ``base`` itself when there is nothing to land (``source`` already in
    ``base``, or a squash that changes no file). ``into`` and ``name`` (the target branch and
    the source's name) only word a conflict.

    The merge queue chains these (each workstream's merge on the previous one) to build the
    tree its integration checks run on, one merge commit per workstream.

    Raises:
        MergeConflictError: the merge conflicts (files named).
    """
    if strategy == "merge" and _is_ancestor(repo, source, base):
        return base
    tree, conflicts = _merge_tree(repo, base, source)
    if conflicts is not None:
        raise MergeConflictError(into=into, branch=name, files=conflicts)
    base_tree = run_git(["rev-parse", f"{base}^{{tree}}"], repo).stdout.strip()
    if strategy == "squash" and tree == base_tree:
        return base
    parents = ["-p", base] + (["-p", source] if strategy == "merge" else [])
    return run_git(
        ["commit-tree", tree, *parents, "-F", "-"],
        repo,
        input=format_message(message, None, trailers),
        env=git_identity_env(repo),
    ).stdout.strip()


def merge_into_target(
    repo: Path,
    source: str,
    target: str,
    *,
    strategy: Literal["merge", "squash"],
    message: str,
    trailers: Mapping[str, str],
    create_from: str,
) -> str:
    """:func:`plan_merge` and move ``target`` at once; return its new (or unchanged) sha.

    Raises:
        StateError: ``target`` is checked out in a worktree, or moved while merging.
        InputError, MergeConflictError: as :func:`plan_merge`.
    """
    return plan_merge(repo, source, target, strategy=strategy, message=message,
                      trailers=trailers, create_from=create_from).apply()


def _is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    done = run_git(["merge-base", "--is-ancestor", ancestor, descendant], repo, check=False)
    if done.returncode not in (0, 1):
        raise GitError(
            ["merge-base", "--is-ancestor", ancestor, descendant],
            done.returncode,
            done.stderr,
            cwd=repo,
        )
    return done.returncode == 0


def contains(repo: Path, sha: str, *, outside: str | None = None, only: str | None = None
             ) -> bool:
    """Whether a local branch contains commit ``sha``: any branch whose ref does not start with
    ``outside`` (e.g. ``refs/heads/aidp/``), or, with ``only``, that one branch. False for a
    sha that names no commit (any more)."""
    if rev_parse(repo, f"{sha}^{{commit}}") is None:
        return False
    if only is not None:
        return rev_parse(repo, f"refs/heads/{only}") is not None and _is_ancestor(
            repo, sha, f"refs/heads/{only}")
    refs = run_git(["for-each-ref", "--contains", sha, "--format=%(refname)", "refs/heads/"],
                   repo).stdout.split()
    return any(outside is None or not ref.startswith(outside) for ref in refs)


def is_merged(repo: Path, branch: str, into: str) -> bool:
    """Whether everything on ``branch`` is already in ``into``.

    True when ``branch`` is an ancestor of ``into`` (merged or fast-forwarded), or when merging it
    would not change ``into``'s tree (squash-merged or cherry-picked). False when either branch
    is missing.
    """
    branch_sha = rev_parse(repo, f"refs/heads/{branch}")
    into_sha = rev_parse(repo, f"refs/heads/{into}")
    if branch_sha is None or into_sha is None:
        return False
    if _is_ancestor(repo, branch_sha, into_sha):
        return True
    tree, conflicts = _merge_tree(repo, into_sha, branch_sha)
    if conflicts is not None:
        return False
    return tree == run_git(["rev-parse", f"{into_sha}^{{tree}}"], repo).stdout.strip()
