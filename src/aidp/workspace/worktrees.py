"""A pool of reusable git worktrees under ``<repo>/.aidp/worktrees/``.

Creating a worktree costs seconds on a large repository (every file is written), while
re-pointing an existing one at another branch touches only the files that differ. So finished
worktrees are kept, detached, and handed to the next workstream.

Ownership is decided by ``flock`` on ``<slot>.lock`` next to each slot directory ``pool-<n>``:
a slot is idle when its lock can be taken without waiting. The lock is held for as long as the
:class:`Worktree` is in use and the kernel drops it when the holding process dies, so a crashed
run never leaves a worktree stuck "in use". Slot directories are created only while holding the
slot's lock, which makes picking a new name atomic across threads and processes.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.exceptions import GitError, InputError, StateError
from aidp.workspace.git import (
    Identity,
    common_dir,
    ensure_excluded,
    git_env,
    repo_root,
    resolve_identity,
    rev_parse,
    run_git,
)
from aidp.workspace.locks import clean_worktree_locks, forget_foreign_slots, keep_mark, try_lock
from aidp.workspace.native import Capabilities, checkout_clean
from aidp.workspace.refs import attach_head, move_branch
from aidp.workspace.worktree import Worktree, WorktreeInfo

if TYPE_CHECKING:
    pass

__all__ = ["Worktree", "WorktreeInfo", "WorktreePool", "reset_worktree"]

_SLOT = re.compile(r"pool-(\d+)")
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


_RELEASED_RETRIES = 20  # 5 ms apart: a slot this pool released, briefly locked by a fork


def _is_worktree_dir(path: Path, common: Path) -> bool:
    """Whether ``path`` is a worktree whose admin directory still exists, registered in the
    repository whose common git directory is ``common`` (a copied repository's slots point at
    the original's, and a checkout there would commit into the other repository)."""
    dotgit = path / ".git"
    try:
        text = dotgit.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    if not text.startswith("gitdir:"):
        return False
    gitdir = Path(text[len("gitdir:") :].strip())
    if not gitdir.is_absolute():
        gitdir = path / gitdir
    if Path(os.path.realpath(gitdir.parent.parent)) != common:
        return False
    return (gitdir / "HEAD").exists()


def _checked_out_elsewhere(exc: GitError) -> bool:
    return "already checked out at" in exc.stderr or "is already used by worktree" in exc.stderr


class WorktreePool:
    """Hands out worktrees of ``repo``; slots live under ``root`` (``<repo>/.aidp/worktrees``).

    Safe to use from several threads and processes at once: two pools never hand out the same
    worktree.
    """

    def __init__(self, repo: Path, root: Path | None = None, *, detach_on_release: bool = True,
                 always_detach: Collection[str] = ()) -> None:
        """``detach_on_release=False``: :meth:`release` leaves the branch checked out in the
        idle slot (a HEAD and reflog write less per workstream) until the slot is acquired
        again or :meth:`detach_released` runs -- which the owner must call when done (a
        branch in ``always_detach``, a merge target for example, is still detached at once).
        The next :meth:`acquire` of such a branch elsewhere detaches it from its idle slot."""
        # A directory holding .git is its work tree's top: no git process to ask.
        self.repo = (repo if (repo / ".git").exists() else repo_root(repo)).resolve()
        self.root = (root if root is not None else self.repo / ".aidp" / "worktrees").resolve()
        self._prepared = False
        self._identity: Identity | None = None
        self.detach_on_release = detach_on_release
        self.always_detach = frozenset(always_detach)
        # Branches only this pool's owner may hold (a run's branches, while it holds the run's
        # lease): one still checked out in a slot another live process holds belongs to a
        # deposed lease holder, which moves no branch any more -- :meth:`acquire` checks it out
        # beside it instead of failing.
        self.owned: frozenset[str] = frozenset()
        self._attached: set[Path] = set()  # released idle slots still holding their branch
        self._attached_lock = threading.Lock()
        # Slots this pool gave back, newest last: tried before scanning the pool directory
        # (which reads every slot's .git file) -- the common case of a run reusing its slots.
        self._released: list[Path] = []
        self._git_env = git_env()  # for the checkouts and cleans of every acquire
        self._common: Path | None = None
        self._capabilities: Capabilities | None = None

    @property
    def common(self) -> Path:
        """The repository's common git directory (resolved), where its worktrees register."""
        if self._common is None:
            dotgit = self.repo / ".git"
            self._common = (dotgit if dotgit.is_dir() else common_dir(self.repo)).resolve()
        return self._common

    @property
    def capabilities(self) -> Capabilities:
        """What this repository lets aidp do in-process (see :mod:`aidp.workspace.native`)."""
        if self._capabilities is None:
            self._capabilities = Capabilities(self.common)
        return self._capabilities

    @property
    def identity(self) -> Identity:
        """Who commits in this repository (its configuration, read once; see
        :func:`~aidp.workspace.git.resolve_identity`)."""
        if self._identity is None:
            self._identity = resolve_identity(self.repo)
        return self._identity

    def tracked_files(self) -> int:
        """How many files the repository's index lists (its header says): what a new slot
        checks out. 0 when there is no index."""
        try:
            with open(self.common / "index", "rb") as index:
                header = index.read(12)
        except OSError:
            return 0
        return int.from_bytes(header[8:12], "big") if header[:4] == b"DIRC" else 0

    # -- acquire / release -------------------------------------------------------------------

    def acquire(
        self, branch: str, start_point: str | None, *, prefer: Path | None = None,
        keep_changes: bool = False, guard: Callable[[], AbstractContextManager[Any]] | None = None,
        before_branch: Callable[[Worktree], object] | None = None,
    ) -> Worktree:
        """Take an idle worktree (or create one) and check ``branch`` out in it, clean.

        Args:
            branch: branch to check out.
            start_point: when given, the branch is (re)set to it (``checkout -f -B``); when
                None, the existing branch is checked out as it is (resume).
            prefer: a slot path to try first (the worktree the workstream had before).
            keep_changes: when the slot taken is ``prefer`` (``start_point`` None), its files
                stay as they are, uncommitted and untracked ones too (a human gate's work).
            guard: with ``start_point``, the branch is created (or reset) only inside this
                context (the engine's fenced transaction: a deposed run holder moves no
                branch); the files are checked out before it, so that it is held briefly.
            before_branch: with ``guard``, called on the worktree (HEAD detached at
                ``start_point``) before the branch is created at its HEAD: merges of further
                dependencies land on the branch with it, inside ``guard``.

        Raises:
            InputError: invalid branch name; ``start_point`` names no commit; or it is None and
                ``branch`` does not exist.
            StateError: ``branch`` is checked out in another worktree.
            GitError: git failed.
        """
        import pygit2

        if branch.startswith("-") or not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
            raise InputError(f"invalid branch name {branch!r}")
        if start_point is None:
            if rev_parse(self.repo, f"refs/heads/{branch}") is None:
                raise InputError(f"branch {branch} does not exist")
            commit = None
        elif _FULL_SHA.fullmatch(start_point):
            commit = start_point  # the engine passes resolved commits: no git process needed
        else:
            # Resolved here, in the main repository: "HEAD" must not mean the slot's old HEAD.
            commit = rev_parse(self.repo, f"{start_point}^{{commit}}")
            if commit is None:
                raise InputError(f"cannot start branch {branch} at {start_point!r}: no such commit")
        self._prepare_root()
        path, fd = self._claim_slot(prefer)
        if self._attached:
            with self._attached_lock:
                self._attached.discard(path)
        keep = (keep_changes and commit is None and prefer is not None
                and path == prefer.resolve() and _is_worktree_dir(path, self.common))
        wt = Worktree(path, branch, self.repo, fd)
        try:
            self._materialise(path, commit if commit is not None else f"refs/heads/{branch}")
            if guard is not None and commit is not None:
                self._start_branch(wt, commit, guard, before_branch)
            else:
                self._switch(path, branch, commit, keep=keep)
        except BaseException:
            wt._close()
            raise
        wt._identity = self.identity  # the repository's config: the same for every slot
        return wt

    def release(self, wt: Worktree) -> None:
        """Detach HEAD (freeing the branch for use elsewhere), keep the directory, unlock.

        Files are left as they are (the next :meth:`acquire` cleans), so a crashed step's output
        can still be inspected.
        """
        if wt.released:
            return
        try:
            if not self.detach_on_release and wt.branch not in self.always_detach:
                with self._attached_lock:
                    self._attached.add(wt.path)
            elif wt._pygit is not None:
                # In-process: no git process, and no index refresh (which stat()s every file).
                wt._pygit.set_head(wt._pygit.head.target)  # an Oid: detached
            elif wt.path.exists():
                # Same effect as `checkout --detach` on files (none change) without refreshing
                # the index -- that stat()s every file, 60 ms on 20,000 files.
                run_git(
                    ["update-ref", "--no-deref", "-m", "aidp: release", "HEAD", "HEAD"], wt.path
                )
        finally:
            wt._close()
            if wt.path.parent == self.root:
                self._released.append(wt.path)

    def keep(self, wt: Worktree, note: str) -> None:
        """Mark ``wt``'s slot as holding uncommitted work (a human gate's): only an acquire
        preferring it takes it, :meth:`prune` leaves it, until :meth:`unkeep`. A file next to
        the slot: it outlives this process however it ends."""
        keep_mark(wt.path).write_text(note + "\n", encoding="utf-8")

    def unkeep(self, path: Path) -> None:
        """The slot's work is committed or given up: it may be reused."""
        keep_mark(path).unlink(missing_ok=True)

    def detach_released(self) -> builtins.list[Path]:
        """Detach HEAD in the idle slots :meth:`release` left on their branch (see
        ``detach_on_release``); slots in use by anyone are skipped. Returns those detached."""
        with self._attached_lock:
            paths, self._attached = sorted(self._attached), set()
        if not paths:
            return []
        import pygit2

        detached: builtins.list[Path] = []
        for path in paths:
            fd = try_lock(self._lock_path(path))
            if fd is None:
                continue  # taken again (by another process): its holder detaches it
            try:
                repo = pygit2.Repository(str(path))
                try:
                    if not repo.head_is_detached and not repo.head_is_unborn:
                        repo.set_head(repo.head.target)
                        detached.append(path)
                finally:
                    repo.free()
            except (pygit2.GitError, KeyError, ValueError):
                # an unreadable slot: git itself then, as release does without pygit2
                run_git(["update-ref", "--no-deref", "-m", "aidp: release", "HEAD", "HEAD"],
                        path, check=False)
            finally:
                os.close(fd)
        return detached

    def detach_idle(self, branches: Collection[str]) -> builtins.list[Path]:
        """Detach HEAD in idle pooled worktrees that have one of ``branches`` checked out.

        A process killed while holding a worktree leaves its branch checked out there; a
        resume calls this first, so that no other workstream's claim of that idle slot can
        race the branch's own checkout elsewhere. Returns the slots detached.
        """
        wanted = set(branches)
        detached: builtins.list[Path] = []
        for path, (branch, _head) in self._registered().items():
            if branch not in wanted or path.parent != self.root:
                continue
            fd = try_lock(self._lock_path(path))
            if fd is None:
                continue  # in use by a live process: not ours to touch
            try:
                run_git(["update-ref", "--no-deref", "-m", "aidp: recover", "HEAD", "HEAD"], path)
                detached.append(path)
            finally:
                os.close(fd)
        return detached

    def clean_idle_locks(self) -> builtins.list[Path]:
        """Delete the git lock files a dead process left in idle slots' administrative
        directories (see :func:`~aidp.workspace.locks.clean_worktree_locks`); slots in use are
        skipped. Returns the files removed."""
        removed: builtins.list[Path] = []
        for path in self._slot_dirs():
            fd = try_lock(self._lock_path(path))
            if fd is None:
                continue  # a live aidp process holds it: its locks may be live
            try:
                if _is_worktree_dir(path, self.common):
                    removed += clean_worktree_locks(path)
            finally:
                os.close(fd)
        return removed

    def forget_foreign(self) -> builtins.list[Path]:
        """Drop the registrations a ``cp -a`` copy inherited of the original's slots (they hold
        its branches); see :func:`~aidp.workspace.locks.forget_foreign_slots`."""
        if not (self.common / "worktrees").is_dir():
            return []
        with self._admin_lock():
            return forget_foreign_slots(self.common)

    # -- inspection / cleanup ----------------------------------------------------------------

    def list(self) -> builtins.list[WorktreeInfo]:
        """Describe every pooled worktree: branch, head, whether in use, whether dirty."""
        registered = self._registered()
        infos = []
        for path in self._slot_dirs():
            if path not in registered:
                continue
            fd = try_lock(self._lock_path(path))
            if fd is not None:
                os.close(fd)
            branch, head = registered[path]
            infos.append(
                WorktreeInfo(
                    path=path, branch=branch, head=head, in_use=fd is None, dirty=_is_dirty(path)
                )
            )
        return infos

    def prune(self, *, force: bool = False) -> builtins.list[Path]:
        """Remove idle pooled worktrees; return the paths removed.

        A dirty idle worktree (uncommitted or untracked, non-ignored files) or one marked by
        :meth:`keep` is kept unless ``force``; worktrees in use are never touched.
        """
        removed: builtins.list[Path] = []
        for path in self._slot_dirs():
            lock_path = self._lock_path(path)
            fd = try_lock(lock_path)
            if fd is None:
                continue
            try:
                if _is_worktree_dir(path, self.common):
                    if (_is_dirty(path) or keep_mark(path).exists()) and not force:
                        continue
                    with self._admin_lock():
                        run_git(["worktree", "remove", "--force", str(path)], self.repo)
                if path.exists():  # a half-created slot left by a crash
                    shutil.rmtree(path)
                lock_path.unlink(missing_ok=True)
                keep_mark(path).unlink(missing_ok=True)
                removed.append(path)
            finally:
                os.close(fd)
        for lock_path in self.root.glob("pool-*.lock") if self.root.is_dir() else []:
            slot = lock_path.with_name(lock_path.name.removesuffix(".lock"))
            if slot.exists() or not _SLOT.fullmatch(slot.name):
                continue
            fd = try_lock(lock_path)  # a lock file without a slot: an acquire that failed early
            if fd is not None:
                lock_path.unlink(missing_ok=True)
                os.close(fd)
        with self._admin_lock():
            run_git(["worktree", "prune"], self.repo)
        return removed

    # -- internals ---------------------------------------------------------------------------

    def _prepare_root(self) -> None:
        if self._prepared:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self.root.is_relative_to(self.repo / ".aidp"):
            ensure_excluded(self.repo, ".aidp/", common=self.common)
        self._prepared = True

    def slot_is_idle(self, path: Path) -> bool:
        """Whether no live process holds the pool slot at ``path`` (its holder, if any, died)."""
        fd = try_lock(self._lock_path(path.resolve()))
        if fd is None:
            return False
        os.close(fd)
        return True

    def _lock_path(self, path: Path) -> Path:
        return path.with_name(path.name + ".lock")

    def _slot_dirs(self) -> builtins.list[Path]:
        """Existing slot directories, by number."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _SLOT.fullmatch(entry.name)
            if match and entry.is_dir():
                found.append((int(match.group(1)), entry))
        return [entry for _, entry in sorted(found)]

    def _claim_slot(self, prefer: Path | None) -> tuple[Path, int]:
        """Lock a slot: the preferred one, else an idle existing one, else a new one."""
        candidates: builtins.list[Path] = []
        if prefer is not None:
            prefer = prefer.resolve()
            if prefer.parent == self.root and _SLOT.fullmatch(prefer.name):
                candidates.append(prefer)
        for path in candidates:
            fd = try_lock(self._lock_path(path))
            if fd is not None:
                return path, fd
        # Released slots one at a time (list.pop is atomic: threads never get the same entry);
        # those not taken stay listed for the next acquire instead of a directory scan.
        while True:
            try:
                path = self._released.pop()
            except IndexError:
                break
            if keep_mark(path).exists():
                continue
            fd = try_lock(self._lock_path(path))
            # A child process another thread is starting shares our descriptors until it
            # execs, the released slot's lock too: wait for that rather than make a new slot.
            for _ in range(_RELEASED_RETRIES):
                if fd is not None:
                    break
                time.sleep(0.005)
                fd = try_lock(self._lock_path(path))
            if fd is not None:
                return path, fd
        for path in self._slot_dirs():
            if _is_worktree_dir(path, self.common) and not keep_mark(path).exists():
                fd = try_lock(self._lock_path(path))
                if fd is not None:
                    return path, fd
        number = 0
        while True:  # first free number; the lock, not the directory, decides who owns it
            path = self.root / f"pool-{number}"
            fd = None if keep_mark(path).exists() else try_lock(self._lock_path(path))
            if fd is not None:
                return path, fd
            number += 1

    @contextmanager
    def _admin_lock(self) -> Iterator[None]:
        """Serialise git's worktree administration (add, remove, prune, list) across threads and
        processes: concurrent `git worktree add` calls read each other's half-written
        `.git/worktrees/<name>/` ("failed to read .../commondir")."""
        lock_path = self.common / "aidp-worktree-admin.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _materialise(self, path: Path, commitish: str) -> None:
        """Make sure the locked slot ``path`` is a registered worktree (create it if needed)."""
        if _is_worktree_dir(path, self.common):
            return
        if path.exists():  # debris of a crash before registration, or a copied repo's slot
            shutil.rmtree(path)
        # --no-checkout: the checkout below writes every file once, instead of twice.
        with self._admin_lock():
            run_git(
                ["worktree", "add", "--force", "--detach", "--no-checkout", str(path), commitish],
                self.repo,
            )

    def _start_branch(self, wt: Worktree, commit: str,
                      guard: Callable[[], AbstractContextManager[Any]],
                      before: Callable[[Worktree], object] | None) -> None:
        """Check ``commit`` out detached and clean (in-process where that does what git would)
        and run ``before``, then -- inside ``guard`` -- create the branch at HEAD and attach HEAD
        to it, in-process. An existing branch (a rebuilt workstream) is reset the checked way
        (``checkout -B``, inside ``guard`` too)."""
        repo = wt.pygit
        native = self.capabilities.checkout(repo, commit, self.tracked_files())
        if native:
            checkout_clean(repo, commit, detach=before is not None)
        else:
            run_git(["checkout", "-q", "-f", "--detach", commit, "--"], wt.path,
                    base_env=self._git_env)
            run_git(["clean", "-q", "-ffdx"], wt.path, base_env=self._git_env)
        name = f"refs/heads/{wt.branch}"
        if repo.references.get(name) is not None:  # rare: reset the branch as git would
            with guard():
                self._switch(wt.path, wt.branch, commit)
                if before is not None:
                    before(wt)
            return
        if before is not None:
            before(wt)
        head = commit if native and before is None else str(repo.head.target)
        with guard():  # held briefly: other threads' fenced writes wait for it
            move_branch(repo, wt.branch, head, None, message=f"branch: Created from {commit}")
        # The branch is new: no other worktree can hold it, and the slot is ours.
        attach_head(repo, wt.branch, identity=self.identity,
                    message=f"checkout: moving to {wt.branch}")

    def _switch(self, path: Path, branch: str, start_point: str | None, *,
                keep: bool = False) -> None:
        if keep:  # carry the files over (git refuses rather than overwrite one): no clean
            args = ["checkout", "-q", branch, "--"]
        elif start_point is None:
            args = ["checkout", "-q", "-f", branch, "--"]
        else:
            args = ["checkout", "-q", "-f", "-B", branch, start_point, "--"]
        try:
            try:
                run_git(args, path, base_env=self._git_env)
            except GitError as exc:
                # A process that died while holding a worktree left its branch checked out
                # there; take it back from that (now idle) slot and try once more.
                if not _checked_out_elsewhere(exc):
                    raise
                if not self._detach_idle_holder(branch, path):
                    if branch not in self.owned:
                        raise
                    args.insert(1, "--ignore-other-worktrees")  # a deposed holder's slot
                run_git(args, path, base_env=self._git_env)
        except GitError as exc:
            if _checked_out_elsewhere(exc):
                raise StateError(
                    f"branch {branch} is checked out in another worktree",
                    hint="release that worktree first (or run `git worktree list`)",
                ) from exc
            raise
        if not keep:
            run_git(["clean", "-q", "-ffdx"], path, base_env=self._git_env)

    def _detach_idle_holder(self, branch: str, exclude: Path) -> bool:
        """Detach ``branch`` in the idle pool slot holding it; False if none could be freed."""
        for path, (held_branch, _head) in self._registered().items():
            if held_branch != branch or path == exclude or path.parent != self.root:
                continue
            fd = try_lock(self._lock_path(path))
            if fd is None:
                return False  # in use by a live workstream: that is a real conflict
            try:
                run_git(["update-ref", "--no-deref", "-m", "aidp: reclaim", "HEAD", "HEAD"], path)
            finally:
                os.close(fd)
            return True
        return False

    def _registered(self) -> dict[Path, tuple[str | None, str | None]]:
        """Worktrees git knows about, by resolved path: (branch, head)."""
        with self._admin_lock():
            out = run_git(["worktree", "list", "--porcelain"], self.repo).stdout
        result: dict[Path, tuple[str | None, str | None]] = {}
        for block in out.split("\n\n"):
            fields: dict[str, str] = {}
            for line in block.splitlines():
                key, _, value = line.partition(" ")
                fields[key] = value
            if "worktree" not in fields:
                continue
            branch = fields.get("branch")
            if branch is not None:
                branch = branch.removeprefix("refs/heads/")
            result[Path(fields["worktree"]).resolve()] = (branch, fields.get("HEAD"))
        return result


def _is_dirty(path: Path) -> bool:
    """Uncommitted changes or untracked (non-ignored) files."""
    out = run_git(["status", "--porcelain", "--untracked-files=normal"], path).stdout
    return bool(out.strip())


def reset_worktree(wt: Worktree, *, remove_ignored: bool = True) -> None:
    """Bring ``wt`` back to its branch head: discard changes, remove untracked files.

    Ignored files are removed too unless ``remove_ignored`` is False (keeps build caches).
    """
    run_git(["reset", "--hard", "-q"], wt.path)
    run_git(["clean", "-q", "-ffdx" if remove_ignored else "-ffd"], wt.path)
