"""Git in-process (libgit2, through pygit2) on the per-workstream hot path, and when it must not be.

A workstream's start used to cost about six git processes: ``merge-base --independent`` over its
dependencies' heads, per further dependency a ``git merge`` with ``rev-parse`` and ``config``
around it, then ``checkout -f --detach`` and ``clean -ffdx`` of the pooled worktree -- 3-5 ms of
CPU each, most of it process start-up. Here the same work runs in-process:

* :func:`independent` -- the heads none of the others contains (``merge-base --independent``);
* :func:`merge_heads` -- the further dependencies merged in memory (``merge_commits``), one
  ``--no-ff`` merge commit each, with the same message, trailers and identity, and a conflict
  reported as :class:`~aidp.exceptions.MergeConflictError` naming the same files;
* :func:`checkout_clean` -- ``checkout -f --detach C`` + ``clean -ffdx`` in one libgit2 checkout
  (force, remove untracked and ignored files; nested repositories, which libgit2 leaves, are
  removed afterwards as ``clean -ffdx`` removes them).

The git CLI stays where it is the only correct tool, decided by :class:`Capabilities` (once per
repository, then per tree): a ``filter`` or ``working-tree-encoding`` attribute anywhere (libgit2
runs no filter drivers and does not re-encode), a ``post-checkout`` or ``post-merge`` hook (the
user asked git to run it), a sparse checkout, more tracked files than :data:`MAX_NATIVE_FILES`
(where git's own checkout is faster), or
``AIDP_GIT=cli`` in the environment: every operation through the git CLI, the tested fallback.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.exceptions import MergeConflictError
from aidp.workspace.git import Identity

if TYPE_CHECKING:
    import pygit2

__all__ = [
    "CLI_ENV",
    "MAX_NATIVE_FILES",
    "Capabilities",
    "checkout_clean",
    "cli_forced",
    "independent",
    "merge_heads",
]

CLI_ENV = "AIDP_GIT"
# Above this many tracked files a checkout goes to the git CLI, which is then the faster of the two
# (bench/bench_native.py, a reused slot, one file apart, load 4-5: in-process/CLI 0.31x at 100
# files, 0.55x at 1,000, 0.86x at 5,000, 1.15x at 10,000, 1.31x at 20,000). The GIL is not the
# reason: a 1 ms ticker thread's longest gap during the checkout was no longer in-process.
MAX_NATIVE_FILES = 5_000
_CLI_ATTRIBUTES = (b"filter", b"working-tree-encoding")


def cli_forced() -> bool:
    """``AIDP_GIT=cli``: every git operation through the git CLI (the in-process path off)."""
    return os.environ.get(CLI_ENV, "").strip().lower() == "cli"


class Capabilities:
    """What one repository lets aidp do in-process instead of with the git CLI.

    The repository-wide facts (configuration, hooks, attribute files outside the tree) are read
    once; a tree's ``.gitattributes`` files are read once per tree id, so a checkout after a
    small change reads only the directories that changed. Safe to share between threads.
    """

    def __init__(self, common: Path) -> None:
        self.common = common
        self._lock = threading.Lock()
        self._repo_wide: tuple[bool, bool] | None = None  # (checkout ok, merge ok)
        self._risky_trees: dict[str, bool] = {}

    def checkout(self, repo: pygit2.Repository, commit: str, tracked_files: int) -> bool:
        """Whether checking ``commit`` out (and cleaning) in-process does what git would."""
        if cli_forced() or tracked_files > MAX_NATIVE_FILES:
            return False
        import pygit2

        checkout_ok, _ = self._wide(repo)
        tree_id = repo[commit].peel(pygit2.Commit).tree_id
        return checkout_ok and not self._risky(repo, str(tree_id))

    def merge(self, repo: pygit2.Repository) -> bool:
        """Whether merging dependencies in memory does what ``git merge`` would."""
        return not cli_forced() and self._wide(repo)[1]

    def _wide(self, repo: pygit2.Repository) -> tuple[bool, bool]:
        if self._repo_wide is None:
            with self._lock:
                if self._repo_wide is None:
                    self._repo_wide = _repo_wide(repo, self.common)
        return self._repo_wide

    def _risky(self, repo: pygit2.Repository, tree_id: str) -> bool:
        """Whether a ``.gitattributes`` in the tree (or a subtree) names a filter or an encoding."""
        known = self._risky_trees.get(tree_id)
        if known is not None:
            return known
        risky = False
        for entry in repo[tree_id]:  # type: ignore[attr-defined]  # a Tree is iterable
            if entry.type_str == "tree":
                risky = self._risky(repo, str(entry.id))
            elif entry.name == ".gitattributes" and entry.type_str == "blob":
                risky = _names_cli_attribute(repo[entry.id].data)  # type: ignore[attr-defined]
            if risky:
                break
        self._risky_trees[tree_id] = risky
        return risky


def _names_cli_attribute(text: bytes) -> bool:
    return any(word in text for word in _CLI_ATTRIBUTES)


def _repo_wide(repo: pygit2.Repository, common: Path) -> tuple[bool, bool]:
    """(checkout in-process ok, merge in-process ok) from configuration, hooks and the
    attribute files outside the tree."""
    config = repo.config

    def get(name: str) -> str | None:
        try:
            return str(config[name])
        except (KeyError, ValueError):
            return None

    if (get("core.sparseCheckout") or "").lower() in ("true", "yes", "on", "1"):
        return False, True
    hooks_path = get("core.hooksPath")
    hooks = (Path(os.path.expanduser(hooks_path)) if hooks_path else common / "hooks")
    if not hooks.is_absolute():
        hooks = Path(repo.workdir or common) / hooks

    def has_hook(name: str) -> bool:
        return os.access(hooks / name, os.X_OK)

    attribute_files = [common / "info" / "attributes", Path("/etc/gitattributes")]
    configured = get("core.attributesFile")
    if configured:
        attribute_files.append(Path(os.path.expanduser(configured)))
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    attribute_files.append(Path(xdg) / "git" / "attributes")
    for path in attribute_files:
        try:
            if _names_cli_attribute(path.read_bytes()):
                return False, True
        except OSError:
            continue
    return not has_hook("post-checkout"), not has_hook("post-merge")


def independent(repo: pygit2.Repository, commits: Sequence[str]) -> list[str]:
    """``commits`` without those another of them contains (and without repeats), in their
    order -- ``git merge-base --independent``, in-process."""
    unique = list(dict.fromkeys(commits))
    return [sha for sha in unique
            if not any(other != sha and repo.descendant_of(other, sha) for other in unique)]


def merge_heads(repo: pygit2.Repository, start: str, others: Sequence[str], *, into: str,
                text: str, identity: Identity) -> str:
    """Merge ``others`` one by one onto ``start`` in memory; return the last merge commit.

    Each merge is a two-parent commit (``--no-ff``) with message ``text``; nothing is checked
    out and no branch moves (the commits are unreferenced until the caller's branch points at
    the result). All or nothing: a conflict raises before any branch could point at a half.

    Raises:
        MergeConflictError: ``into`` is the branch being prepared, ``branch`` the head that
            conflicted, ``files`` the conflicting paths (as ``git diff --diff-filter=U``).
    """
    import pygit2

    author = pygit2.Signature(identity.author_name, identity.author_email)
    committer = pygit2.Signature(identity.committer_name, identity.committer_email)
    head = start
    for other in others:
        index = repo.merge_commits(head, other)
        if index.conflicts is not None:
            files = sorted({entry.path for conflict in index.conflicts
                            for entry in conflict if entry is not None})
            raise MergeConflictError(into=into, branch=other, files=files)
        tree = index.write_tree(repo)
        head = str(repo.create_commit(None, author, committer, text, tree, [head, other]))
    return head


def checkout_clean(repo: pygit2.Repository, commit: str, *, detach: bool = True) -> None:
    """``git checkout -q -f --detach COMMIT -- && git clean -q -ffdx`` in-process: the files,
    the index and a detached HEAD at ``commit``; untracked and ignored files removed, nested
    repositories included. ``detach=False``: HEAD is left alone (the caller points it at a
    branch next: one write of HEAD, not two)."""
    from pygit2.enums import CheckoutStrategy

    met = _collector()()
    target = repo[commit]
    repo.checkout_tree(  # type: ignore[no-untyped-call]  # pygit2 stub gap
        target, strategy=CheckoutStrategy.FORCE | CheckoutStrategy.REMOVE_UNTRACKED
        | CheckoutStrategy.REMOVE_IGNORED, callbacks=met)
    if detach:
        repo.set_head(target.id)
    top = repo.workdir
    for relative in met.paths:  # left only if libgit2 would not remove it: a nested repository
        path = os.path.join(top, relative.rstrip("/"))
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)


@functools.cache
def _collector() -> type[Any]:
    """Checkout callbacks noting every untracked or ignored path libgit2 meets (a class made on
    first use: pygit2 is imported with the first worktree, not at start-up)."""
    import pygit2
    from pygit2.enums import CheckoutNotify

    class Collector(pygit2.CheckoutCallbacks):
        def __init__(self) -> None:
            super().__init__()
            self.paths: list[str] = []

        def checkout_notify_flags(self) -> CheckoutNotify:
            return CheckoutNotify.UNTRACKED | CheckoutNotify.IGNORED

        def checkout_notify(self, why: CheckoutNotify, path: str, baseline: Any, target: Any,
                            workdir: Any) -> None:
            self.paths.append(path)

    return Collector
