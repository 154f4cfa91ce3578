"""Commands: the changes an interface may make to runs, breakers and the worktree pool.

Create and drive a run, cancel it, roll a workstream back, decide a human gate, reset a
breaker, prune idle worktrees. Each command takes an opened
:class:`~aidp.app.context.AppContext`, resolves the user's references through
:mod:`aidp.app.queries` and calls the engine (:mod:`aidp.engine.orchestrator`,
:mod:`aidp.engine.control`), the breaker book or the worktree pool, which own the rules: this
module decides nothing they decide, and it prints nothing (an interface renders the outcome).
Heavy imports happen inside the functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aidp.app import queries
from aidp.app.views import (
    CancelOutcome,
    PruneOutcome,
    ReopenedView,
    RollbackOutcome,
    StepRef,
    WorktreeView,
)
from aidp.exceptions import NotFoundError

if TYPE_CHECKING:
    from aidp.app.context import AppContext
    from aidp.engine.replay import ReplayReport
    from aidp.engine.run import Reporter, RunSummary
    from aidp.model.plan import Plan

__all__ = [
    "cancel_run",
    "create_run",
    "decide_gate",
    "describe_paths",
    "drive_run",
    "prune_worktrees",
    "replay_step",
    "reset_breaker",
    "rollback_run",
    "uncommitted_changes",
]

#: Run statuses after which a cancelled run's orchestrator has let go.
_ENDED = ("cancelled", "completed", "failed")


def create_run(app: AppContext, plan: Plan, *, parallel: int, change_id: str | None = None,
               by: str = "aidp") -> str:
    """Record a new run of ``plan`` and return its id (the database is created if missing).

    The plan is checked against the repository first (the rules of ``aidp validate``: bases
    are commits, tools and capabilities are configured, declared environment variables are
    set, merge targets are not checked out): nothing is written when it fails. With
    ``change_id`` the OpenSpec change's proposal must be approved (unless ``[specs]
    require_approval = false``) and moves to in progress, recorded as done ``by``.

    Raises:
        ValidationError: the plan does not fit the repository or the settings (every
            problem, located).
        ConfigError: ``[executor] kind = "dask"`` and no scheduler answers.
        StateError: the change is not approved.
    """
    from aidp.engine.run import create_run as record_run
    from aidp.engine.run import preflight

    bases = preflight(app.repo, plan, app.settings)  # before any write
    if app.settings.executor.kind == "dask":  # a cluster nobody answers for: nothing written
        from aidp.engine.distributed.executor import check_cluster

        check_cluster(app.settings)
    if change_id is not None:
        from aidp.app.proposals import start_change

        start_change(app, change_id, by=by)
    return record_run(app.store(create=True), app.repo, plan, parallel=parallel,
                      settings=app.settings, bases=bases)


def uncommitted_changes(app: AppContext, *, refuse: bool = False) -> list[str]:
    """The paths with uncommitted changes in the repository (aidp's own ``.aidp/`` aside),
    which a new run does not see: it starts from HEAD. ``[run] dirty = "ignore"``: none.

    Raises:
        InputError: there are some and ``refuse`` or ``[run] dirty = "refuse"``; nothing was
            written.
    """
    from aidp.exceptions import InputError
    from aidp.workspace.git import uncommitted_paths

    mode = "refuse" if refuse else app.settings.run.dirty
    if mode == "ignore":
        return []
    paths = uncommitted_paths(app.repo)
    if paths and mode == "refuse":
        raise InputError(
            f"{len(paths)} uncommitted change{'s' if len(paths) != 1 else ''} in the "
            f"repository (a run starts from HEAD): {describe_paths(paths)}",
            hint="commit or stash them, or set [run] dirty = \"warn\" to run anyway")
    return paths


def describe_paths(paths: list[str], limit: int = 10) -> str:
    """``paths`` joined by commas, the first ``limit`` of them, then how many more."""
    shown = ", ".join(paths[:limit])
    return shown + (f" ... and {len(paths) - limit} more" if len(paths) > limit else "")


def drive_run(app: AppContext, run_id: str, *, reporter: Reporter | None = None,
              decide: Callable[..., str] | None = None, parallel: int | None = None,
              on_note: Callable[[str], None] | None = None) -> RunSummary:
    """Drive run ``run_id`` until every workstream is finished (a new run, or ``resume``: steps
    already done are not redone).

    Args:
        reporter: receives the run's events and tool output as they happen.
        decide: asked what to do about a failed step (``retry``, ``skip`` or ``abort``);
            None lets the run's retry rules decide.
        parallel: steps running at once (default: the run's setting).
        on_note: receives a line for each CCPM task file updated as the run goes (when the
            repository has ``.claude/epics/`` tasks for the run's workstreams).

    Returns:
        The run's summary (its ``to_dict()`` is what ``aidp run --json`` prints).

    Raises:
        NotFoundError: no such run. StateError: another orchestrator holds the run.
    """
    from aidp.engine.orchestrator import drive_run as drive
    from aidp.engine.run import SilentReporter

    if (app.repo / ".claude" / "epics").is_dir():  # CCPM task status follows the run
        from aidp.specs.sync import EpicStatusReporter, epic_task_files

        tasks = epic_task_files(app.repo)
        plan = queries.run_plan(app, run_id)
        files = {ws.id: tasks[ws.id] for ws in plan.workstreams if ws.id in tasks}
        if files:
            reporter = EpicStatusReporter(reporter or SilentReporter(), files, on_note or _ignore)
    return drive(app.store(), app.repo, run_id, app.settings, reporter=reporter,
                 decide=decide,  # type: ignore[arg-type]  # Decision is a str Literal
                 parallel=parallel)


def _ignore(line: str) -> None:
    return None


def cancel_run(app: AppContext, run_ref: str | None, *, wait_s: float = 30.0,
               on_wait: Callable[[str], None] | None = None, by: str = "aidp cancel"
               ) -> CancelOutcome:
    """Cancel run ``run_ref`` (default: the newest); ``by`` is journaled as who asked.

    A run nobody drives is cancelled here and now; a live run's orchestrator is asked to stop
    its tools and end the run, and this waits up to ``wait_s`` seconds for it (calling
    ``on_wait(run_id)`` first).

    Raises:
        NotFoundError: no such run. StateError: the run already completed.
    """
    from aidp.engine.control import cancel_run as cancel

    store = app.store()
    run_id = store.resolve_run(run_ref)
    live = cancel(store, run_id, by=by)
    if live:
        if on_wait is not None:
            on_wait(run_id)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if store.run(run_id).status in _ENDED:
                break
            time.sleep(0.2)
    return CancelOutcome(run_id=run_id, live=live, status=store.run(run_id).status)


def rollback_run(app: AppContext, run_ref: str, to_step: str, *, by: str | None = None
                 ) -> RollbackOutcome:
    """Move the workstream of ``to_step`` (``WS/STEP`` or a unique step id) of run ``run_ref``
    back to that step's checkpoint; the steps after it become pending again (``by``: who asked,
    journaled).

    Raises:
        NotFoundError: unknown run or step, or the step has no checkpoint.
        LeaseHeldError: the run is live.
    """
    from aidp.engine.control import rollback_run as rollback

    step = queries.resolve_step(app, run_ref, to_step)
    done = rollback(app.store(), app.repo, step.run_id, step.ws_id, step.step_id, by=by)
    return RollbackOutcome(step=step, reopened=tuple(done.reopened), to=done.to,
                           workstreams=tuple(ReopenedView(
                               ws_id=w.ws_id, steps=w.steps, rebuilt=w.rebuilt,
                               merged_into=w.merged_into, merged_sha=w.merged_sha)
                               for w in done.workstreams))


def decide_gate(app: AppContext, run_ref: str, step_ref: str, *, approve: bool, by: str,
                reason: str | None = None) -> StepRef:
    """Approve or reject step ``step_ref`` of run ``run_ref``, waiting at a human gate; the
    decision is journaled for the run's orchestrator. Returns the resolved step.

    Raises:
        NotFoundError: unknown run or step.
        StateError: the step is not awaiting approval, or a rejection has no reason.
    """
    from aidp.engine.control import decide_gate as decide

    step = queries.resolve_step(app, run_ref, step_ref)
    decide(app.store(), step.run_id, step.ws_id, step.step_id, approve=approve, by=by,
           reason=reason)
    return step


def reset_breaker(app: AppContext, key: str, *, by: str | None = None) -> str | None:
    """Close circuit breaker ``key`` by hand (journaled as ``breaker.reset`` of no run, naming
    ``by``). Returns the state it was in (None if it was never stored).

    Raises:
        NotFoundError: there is no database yet; InputError: ``key`` is malformed.
    """
    from aidp.state.breakers import BreakerBook

    if not app.has_database():
        raise NotFoundError(f"no breaker {key!r}", hint="there is no aidp database here yet")
    book = BreakerBook(app.store())
    before = book.snapshot(key)
    book.reset(key, by=by)
    return None if before is None else before.state.value


def prune_worktrees(app: AppContext, *, force: bool = False, keep_branches: int | None = None
                    ) -> PruneOutcome:
    """Remove idle pooled worktrees, then the merged branches of finished runs older than the
    newest ``keep_branches`` runs (default: ``[run] keep_branches``).

    Worktrees in use are never touched; idle ones holding uncommitted files are kept (and
    returned as kept) unless ``force``. Branches of running, interrupted or failed (resumable)
    runs are never deleted; a branch whose work is not merged anywhere is kept (and returned)
    unless ``force`` (the rule: :mod:`aidp.engine.retention`)."""
    from aidp.workspace.worktrees import WorktreePool

    pool = WorktreePool(app.repo)
    kept = [WorktreeView(path=i.path, branch=i.branch, head=i.head, in_use=i.in_use,
                         dirty=i.dirty)
            for i in pool.list() if i.dirty and not i.in_use and not force]
    removed = pool.prune(force=force)
    if not app.has_database():
        return PruneOutcome(removed=tuple(removed), kept=tuple(kept))
    from aidp.engine.retention import prune_branches

    keep = app.settings.run.keep_branches if keep_branches is None else keep_branches
    branches = prune_branches(app.store(), app.repo, keep_runs=keep, force=force)
    return PruneOutcome(removed=tuple(removed), kept=tuple(kept),
                        branches_deleted=branches.deleted, branches_unmerged=branches.unmerged)


def replay_step(app: AppContext, run_ref: str | None, step_ref: str, *,
                attempt: int | None = None, profile: str | None = None) -> ReplayReport:
    """Run a recorded attempt of a step again: offline against its recorded model exchanges,
    or live on ``profile``; report whether it reproduces the checkpoint's tree
    (:func:`aidp.engine.replay.replay_step`). Changes no run, branch or worktree of aidp's."""
    from aidp.engine.replay import replay_step as replay

    step = queries.resolve_step(app, run_ref, step_ref)
    return replay(app.store(), app.repo, app.settings, step.run_id, step.ws_id, step.step_id,
                  attempt=attempt, profile_name=profile)

