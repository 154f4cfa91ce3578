"""Read models the service pages and addresses one by one: runs page by page, a workstream, a
step, an attempt's log file and diff.

The CLI shows a whole run (:func:`aidp.app.queries.get_run`); the API also serves its parts by
address (``/runs/{id}/workstreams/{ws}``, ``/runs/{id}/steps/{ws}/{step}/attempts/{n}``) and
lists runs with filters and an opaque cursor. Every part comes from the same views, so the two
interfaces never disagree about a run. Nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.app import queries
from aidp.app.views import (
    AttemptView,
    RunListItemView,
    StepRef,
    StepView,
    WorkstreamView,
    shown_state,
)
from aidp.exceptions import InputError, NotFoundError, StateError

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = [
    "CURSOR_PATTERN", "RUN_STATES", "LogFile", "RunPage", "attempt_diff", "attempt_exchanges",
    "attempt_log", "attempt_prompt", "get_step", "get_workstream", "page_runs", "run_is_live",
    "step_ref",
]

#: Run states a list may be filtered by (``interrupted``: running, but nobody drives it).
RUN_STATES = ("pending", "running", "interrupted", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunPage:
    """One page of runs and the cursor of the next (None: this was the last page)."""

    items: tuple[RunListItemView, ...]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [i.to_dict() for i in self.items], "next_cursor": self.next_cursor}


#: What a cursor looks like: ``CREATED_AT~RUN_ID`` (opaque to clients; the API's schema
#: states the pattern so that any cursor matching it is a valid position).
CURSOR_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,20})?~[0-9A-Za-z]{1,64}$"


def _encode(created_at: float, run_id: str) -> str:
    return f"{created_at!r}~{run_id}"


def _decode(cursor: str) -> tuple[float, str]:
    import re

    if re.fullmatch(CURSOR_PATTERN, cursor) is None:
        raise InputError(f"invalid cursor {cursor[:60]!r}: pass back a next_cursor as given")
    created_at, _, run_id = cursor.partition("~")
    return float(created_at), run_id


def page_runs(app: AppContext, *, limit: int = 20, cursor: str | None = None,
              status: str | None = None, since: float | None = None,
              change: str | None = None) -> RunPage:
    """Runs newest first, ``limit`` at a time, optionally in state ``status`` (as shown:
    ``interrupted`` is a running run nobody drives), created at or after ``since``, or run
    from OpenSpec change ``change``. The cursor is keyset-based: walking the pages lists every
    run exactly once even while new runs start. A filtered page may hold fewer than ``limit``
    runs; only ``next_cursor`` None means the end.

    Raises:
        InputError: an unknown ``status`` or a malformed ``cursor``.
    """
    if status is not None and status not in RUN_STATES:
        raise InputError(f"unknown run status {status!r}", hint="one of " + ", ".join(RUN_STATES))
    before = _decode(cursor) if cursor else None
    if not app.has_database():
        return RunPage((), None)
    from aidp.state.lease import lease_is_live

    store = app.store()
    recorded = ("running",) if status == "interrupted" else (status,) if status else ()
    rows = store.runs_page(limit, before=before, statuses=recorded, since=since)
    items = []
    for r in rows:
        live = lease_is_live(store.lease(r.id))
        if status is not None and shown_state(r.status, live) != status:
            continue
        if change is not None and not _from_change(r.sources, change):
            continue
        workstreams = store.workstreams(r.id)
        items.append(RunListItemView(
            run_id=r.id, status=r.status, created_at=r.created_at, finished_at=r.finished_at,
            workstreams=len(workstreams), live=live,
            completed=sum(1 for w in workstreams if w.status == "completed")))
    last = rows[-1] if len(rows) == limit else None
    return RunPage(tuple(items), None if last is None else _encode(last.created_at, last.id))


def _from_change(sources: str | None, change: str) -> bool:
    """Whether a run's plan came from the compiled file of OpenSpec change ``change``
    (``.aidp/changes/CHANGE.yaml``, see :func:`aidp.app.compile_change`)."""
    try:
        declared = json.loads(sources or "{}")
    except ValueError:
        return False
    for where in declared.values() if isinstance(declared, dict) else ():
        path = Path(str(where).rpartition(":")[0] or str(where))
        if path.name == f"{change}.yaml" and path.parent.name == "changes":
            return True
    return False


def get_workstream(app: AppContext, run_ref: str, ws_id: str) -> WorkstreamView:
    """Workstream ``ws_id`` of run ``run_ref`` with its steps.

    Raises:
        NotFoundError: unknown run or workstream.
    """
    run = queries.get_run(app, queries.resolve_run(app, run_ref))
    for ws in run.workstreams:
        if ws.id == ws_id:
            return ws
    raise NotFoundError(f"no workstream {ws_id!r} in run {run.run_id}")


def step_ref(app: AppContext, run_ref: str, ws_id: str, step_id: str) -> StepRef:
    """The step ``ws_id/step_id`` of run ``run_ref``. Raises NotFoundError."""
    return queries.resolve_step(app, run_ref, f"{ws_id}/{step_id}")


def get_step(app: AppContext, step: StepRef) -> StepView:
    """The step with its attempts, findings, compensations and open gate."""
    found = queries.get_run(app, step.run_id).step(step.ws_id, step.step_id)
    if found is None:  # resolved a moment ago: only a concurrent delete gets here
        raise NotFoundError(f"no step {step.ws_id}/{step.step_id} in run {step.run_id}")
    return found


@dataclass(frozen=True)
class LogFile:
    """Where an attempt's log is (None: it wrote none) and whether the attempt ended."""

    attempt: AttemptView
    path: Path | None

    @property
    def finished(self) -> bool:
        return self.attempt.finished


def attempt_log(app: AppContext, step: StepRef, number: int) -> LogFile:
    """The log file of attempt ``number`` of ``step`` (as ``aidp logs`` reads it).

    Raises:
        NotFoundError: no such attempt.
    """
    chosen = queries.get_attempt(app, step, number)
    return LogFile(chosen, Path(chosen.log_path) if chosen.log_path else None)


def run_is_live(app: AppContext, run_id: str) -> bool:
    """Whether an orchestrator holds run ``run_id`` now (an unfinished attempt of a run nobody
    drives will not end until the run is resumed)."""
    from aidp.state.lease import lease_is_live

    return lease_is_live(app.store().lease(run_id))


def attempt_diff(app: AppContext, step: StepRef, number: int) -> dict[str, Any]:
    """What attempt ``number`` of ``step`` changed: for the attempt that completed the step,
    the diff of its checkpoint commit against the previous checkpoint of the workstream (or the
    workstream's base); for a failed attempt, the uncommitted diff its diagnostics bundle kept.

    Raises:
        NotFoundError: no such attempt. StateError: the attempt has no diff (still running,
            or ended without a checkpoint or diagnostics).
    """
    chosen = queries.get_attempt(app, step, number)
    if chosen.candidate_sha:  # a best-of candidate's commit, on its own branch: its own diff
        return _commit_diff(app, step, number, f"{chosen.candidate_sha}^", chosen.candidate_sha)
    if chosen.diagnostics_path:
        bundle = queries.get_diagnostics(app, step, number).bundle
        git = bundle.get("git") or {}
        return {"kind": "diagnostics", "attempt": number, "base": git.get("head"),
                "checkpoint": None, "diff": str(git.get("diff") or ""),
                "cut": bool(git.get("diff_cut"))}
    view = get_step(app, step)
    attempts = [a for a in view.attempt_list if a.outcome == "succeeded"]
    if not view.checkpoint or not attempts or attempts[-1].number != number:
        raise StateError(f"attempt {number} of {step.ws_id}/{step.step_id} has no diff: "
                         f"it is {'running' if not chosen.finished else chosen.outcome} and "
                         "made neither the step's checkpoint nor a diagnostics bundle")
    return _commit_diff(app, step, number, _previous_checkpoint(app, step), view.checkpoint)


def _commit_diff(app: AppContext, step: StepRef, number: int, base: str, commit: str
                 ) -> dict[str, Any]:
    from aidp.app.masking import mask_text, run_secret_names
    from aidp.workspace.git import run_git

    diff = run_git(["diff", "--stat", "--patch", base, commit], app.repo).stdout
    names = run_secret_names(app.store().run(step.run_id).plan_json, app.settings)
    diff = mask_text(diff, names)  # the step's output is the user's; aidp shows it masked
    return {"kind": "checkpoint", "attempt": number, "base": base,
            "checkpoint": commit, "diff": diff, "cut": False}


def _previous_checkpoint(app: AppContext, step: StepRef) -> str:
    """The commit the step started from: the checkpoint of the step before it in its
    workstream, or the workstream's base."""
    ws = get_workstream(app, step.run_id, step.ws_id)
    previous = ws.base or ""
    for s in ws.steps:
        if s.id == step.step_id:
            break
        previous = s.checkpoint or previous
    return previous


#: The most of a prompt :func:`attempt_prompt` reads (characters).
PROMPT_MAX_CHARS = 200_000


def attempt_prompt(app: AppContext, step: StepRef, number: int) -> str | None:
    """The prompt attempt ``number`` of ``step`` was sent, as the executor recorded it under
    ``.aidp/runs/RUN/prompts/WS/`` (a fix attempt's own ``STEP.N.md``, else the step's
    ``STEP.md``), masked like the step's diff; None when no prompt was recorded (a command
    step).

    Raises:
        NotFoundError: no such attempt.
    """
    queries.get_attempt(app, step, number)
    folder = app.repo / ".aidp" / "runs" / step.run_id / "prompts" / step.ws_id
    for name in (f"{step.step_id}.{number}.md", f"{step.step_id}.md"):
        path = folder / name
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                text = fh.read(PROMPT_MAX_CHARS)
        except OSError:
            continue
        from aidp.app.masking import mask_text, run_secret_names

        names = run_secret_names(app.store().run(step.run_id).plan_json, app.settings)
        return mask_text(text, names)
    return None


def attempt_exchanges(app: AppContext, step: StepRef, number: int) -> list[dict[str, Any]]:
    """The model exchanges of attempt ``number`` as the gateway recorded them (method, path,
    model, status, latency, finding, the start of the request and of the answer), masked like
    the step's diff; [] when its tool sent none through the gateway.

    Raises:
        NotFoundError: no such attempt.
    """
    from aidp.tools.exchanges import recording_path, summaries

    queries.get_attempt(app, step, number)
    found = summaries(recording_path(app.repo, step.run_id, step.ws_id, step.step_id, number))
    if not found:
        return found
    from aidp.app.masking import mask_text, run_secret_names

    names = run_secret_names(app.store().run(step.run_id).plan_json, app.settings)
    for exchange in found:
        for field in ("request", "response", "finding"):
            if isinstance(exchange.get(field), str):
                exchange[field] = mask_text(exchange[field], names)
    return found

