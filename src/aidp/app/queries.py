"""Queries: read models of the run database, the worktree pool and the breaker book.

Every function takes an opened :class:`~aidp.app.context.AppContext` and returns views of
:mod:`aidp.app.views`; none writes (except that a query on a repository without a database
raises NotFoundError rather than creating one). This module owns how rows become views and how
a user's references (a run id prefix, ``WS/STEP``) are resolved. It may read through the store,
the breaker book and the worktree pool; it changes nothing and holds no engine logic. Heavy
imports (the store's drivers, pygit2) happen inside the functions, so importing it is cheap.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.app.views import (
    AttemptView,
    BreakerView,
    CompensationView,
    DiagnosticsView,
    EventView,
    FindingView,
    GateView,
    RunListItemView,
    RunView,
    StepRef,
    StepView,
    UsageView,
    WorkstreamView,
    WorktreeView,
)
from aidp.core.states import WorkstreamState
from aidp.exceptions import NotFoundError

if TYPE_CHECKING:
    from aidp.app.context import AppContext
    from aidp.model.plan import Plan

__all__ = [
    "get_attempt", "get_diagnostics", "get_run", "get_usage", "list_attempts", "list_breakers",
    "list_events", "list_findings", "list_runs", "list_worktrees", "resolve_run", "resolve_step",
    "run_plan", "split_step_ref",
]

_USAGE_FIELDS = ("attempts", "input_tokens", "output_tokens", "cached_tokens", "cost_usd",
                 "requests", "latency_ms")


def resolve_run(app: AppContext, ref: str | None) -> str:
    """The id of the run ``ref`` names: a full id, a unique prefix (any case), or None for the
    newest run.

    Raises:
        NotFoundError: no database, no run, no match, or an ambiguous prefix.
    """
    return app.cached(("resolve_run", ref), lambda: app.store().resolve_run(ref))


def split_step_ref(ref: str, known: list[tuple[str, str]]) -> tuple[str, str]:
    """``(ws_id, step_id)`` of ``ref`` (``WS/STEP``, or a step id unique among ``known``).

    Raises:
        NotFoundError: no such step, or a bare step id that several workstreams have.
    """
    if "/" in ref:
        ws_id, step_id = ref.split("/", 1)
        if (ws_id, step_id) in known:
            return ws_id, step_id
        raise NotFoundError(f"no step {ref!r} in this run")
    matches = [pair for pair in known if pair[1] == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"no step {ref!r} in this run")
    raise NotFoundError(f"step id {ref!r} is ambiguous",
                        hint="use WORKSTREAM/STEP: " + ", ".join(f"{w}/{s}" for w, s in matches))


def resolve_step(app: AppContext, run_ref: str | None, step_ref: str) -> StepRef:
    """The step ``step_ref`` (``WS/STEP`` or a step id unique in the run) of run ``run_ref``
    (see :func:`resolve_run`).

    Raises:
        NotFoundError: unknown run or step, or an ambiguous reference.
    """
    run_id = resolve_run(app, run_ref)
    steps = app.cached(("step_ids", run_id), lambda: [
        (s.ws_id, s.step_id) for s in app.store().steps(run_id)])
    ws_id, step_id = split_step_ref(step_ref, steps)
    return StepRef(run_id, ws_id, step_id)


def _finding(row: Any) -> FindingView:
    return FindingView(
        ws_id=row.ws_id, step_id=row.step_id, attempt=row.attempt, source=row.source,
        detector=row.detector, file=row.file, line=row.line, column=row.col, code=row.code,
        message=row.message, severity=row.severity, failure_class=row.failure_class,
        fingerprint=row.fingerprint, retry_after=row.retry_after)


def _attempt(row: Any, found: tuple[FindingView, ...] = ()) -> AttemptView:
    return AttemptView(
        id=row.id, ws_id=row.ws_id, step_id=row.step_id, number=row.number, kind=row.kind,
        profile=row.profile, adapter=row.adapter, outcome=row.outcome,
        failure_class=row.failure_class, reason=row.error, exit_code=row.exit_code,
        signal=row.signal, interrupted=bool(row.interrupted), started_at=row.started_at,
        finished_at=row.finished_at, choice_reason=row.choice_reason,
        tool_version=row.tool_version, input_tokens=row.input_tokens,
        output_tokens=row.output_tokens, cost_usd=row.cost_usd, requests=row.requests,
        diagnostics_path=row.diagnostics_path, log_path=row.log_path, findings=found,
        round=row.round, candidate=row.candidate, verdict=row.verdict,
        verdict_reason=row.verdict_reason, candidate_sha=row.candidate_sha,
        diff_files=row.diff_files, diff_lines=row.diff_lines)


def get_run(app: AppContext, run_id: str) -> RunView:
    """The whole state of run ``run_id``: workstreams, steps, attempts with their findings,
    compensations, and whether an orchestrator holds its lease now.

    Raises:
        NotFoundError: no database or no such run.
    """
    from aidp.state.lease import lease_is_live

    view = app.cached(("run", run_id), lambda: _read_run(app, run_id))
    lease = app.store().lease(run_id)  # live or not is a matter of the clock: never cached
    live = lease_is_live(lease)
    return replace(view, live=live, holder=lease.holder if live and lease is not None else None)


def _read_run(app: AppContext, run_id: str) -> RunView:
    """:func:`get_run` as recorded (``live`` False, no holder)."""
    store = app.store()
    row = store.run(run_id)
    found: dict[tuple[str, str, int], list[FindingView]] = {}
    for f in store.findings(run_id):
        found.setdefault((f.ws_id, f.step_id, f.attempt), []).append(_finding(f))
    tries: dict[tuple[str, str], list[AttemptView]] = {}
    for a in store.attempts(run_id):
        tries.setdefault((a.ws_id, a.step_id), []).append(
            _attempt(a, tuple(found.get((a.ws_id, a.step_id, a.number), []))))
    compensations: dict[tuple[str, str], list[CompensationView]] = {}
    for c in store.compensations(run_id):
        compensations.setdefault((c.ws_id, c.step_id), []).append(
            CompensationView(position=c.position, action=c.kind, status=c.status,
                             detail=c.detail))
    steps: dict[str, list[StepView]] = {}
    step_rows = store.steps(run_id)
    gates = _gates(store, run_id, step_rows)
    for s in step_rows:
        steps.setdefault(s.ws_id, []).append(StepView(
            ws_id=s.ws_id, id=s.step_id, status=s.status, attempts=s.attempts, reason=s.reason,
            checkpoint=s.checkpoint_sha, next_attempt_at=s.next_attempt_at,
            failure_class=s.failure_class, outcome=s.outcome, profile=s.profile,
            attempt_list=tuple(tries.get((s.ws_id, s.step_id), [])),
            compensations=tuple(compensations.get((s.ws_id, s.step_id), [])),
            gate=gates.get((s.ws_id, s.step_id))))
    return RunView(
        run_id=row.id, status=row.status, live=False, holder=None, repo=row.repo,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        cancel_requested=bool(row.cancel_requested),
        workstreams=tuple(
            WorkstreamView(
                id=w.ws_id, status=w.status, branch=w.branch, base=w.base_sha,
                head=w.head_sha, merged=w.merged_sha, worktree=w.worktree, reason=w.reason,
                steps=tuple(steps.get(w.ws_id, [])),
                compensations=tuple(compensations.get((w.ws_id, ""), [])))
            for w in store.workstreams(run_id)))


def _gates(store: Any, run_id: str, step_rows: list[Any]) -> dict[tuple[str, str], GateView]:
    """The open human gates of a run: each waiting step's worktree and prompt, from the
    latest ``step.awaiting_approval`` event (its workstream's worktree when the event has
    none). The events are read only when a step waits."""
    waiting = {(s.ws_id, s.step_id) for s in step_rows if s.status == "awaiting_approval"}
    if not waiting:
        return {}
    worktrees = {w.ws_id: w.worktree for w in store.workstreams(run_id)}
    gates: dict[tuple[str, str], GateView] = {}
    for event in store.events(run_id):
        key = (event.ws_id, event.step_id)
        if event.kind == "step.awaiting_approval" and key in waiting:
            data = json.loads(event.data or "{}")
            gates[key] = GateView(worktree=data.get("worktree") or worktrees.get(event.ws_id),
                                  prompt=data.get("prompt") or None)
    for key in waiting - gates.keys():
        gates[key] = GateView(worktree=worktrees.get(key[0]), prompt=None)
    return gates


def list_runs(app: AppContext, limit: int = 20) -> list[RunListItemView]:
    """The newest ``limit`` runs, newest first, with how many workstreams each completed; empty
    when there is no database yet (no run was ever started)."""
    if not app.has_database():
        return []
    from aidp.state.lease import lease_is_live

    store = app.store()
    items = []
    for r in store.runs(limit):
        workstreams = store.workstreams(r.id)
        items.append(RunListItemView(
            run_id=r.id, status=r.status, created_at=r.created_at, finished_at=r.finished_at,
            workstreams=len(workstreams), live=lease_is_live(store.lease(r.id)),
            completed=sum(1 for w in workstreams
                          if w.status == WorkstreamState.COMPLETED.value)))
    return items


def run_plan(app: AppContext, run_id: str) -> Plan:
    """The plan run ``run_id`` was created from.

    Raises:
        NotFoundError: no database or no such run.
    """
    from aidp.model.plan import Plan

    return Plan.from_json(app.store().run(run_id).plan_json)


def list_attempts(app: AppContext, step: StepRef) -> list[AttemptView]:
    """The attempts of ``step``, oldest first (without their findings: see
    :func:`list_findings`)."""
    return [_attempt(a) for a in app.store().attempts(step.run_id, step.ws_id, step.step_id)]


def get_attempt(app: AppContext, step: StepRef, number: int | None = None) -> AttemptView:
    """Attempt ``number`` of ``step`` (default: the latest).

    Raises:
        NotFoundError: the step has no such attempt (or none yet).
    """
    rows = list_attempts(app, step)
    if number is not None:
        rows = [a for a in rows if a.number == number]
    if not rows:
        raise NotFoundError(f"step {step.ws_id}/{step.step_id} has no attempt"
                            + (f" {number}" if number else " yet"))
    return rows[-1]


def list_findings(app: AppContext, run_id: str, *, ws_id: str | None = None,
             step_id: str | None = None, attempt: int | None = None) -> list[FindingView]:
    """The findings of a run, optionally of one workstream, step and attempt, in the order
    they were recorded."""
    rows = [_finding(f) for f in app.store().findings(run_id, ws_id, step_id)]
    return rows if attempt is None else [f for f in rows if f.attempt == attempt]


def list_events(app: AppContext, run_id: str, *, after_id: int = 0, limit: int | None = None
           ) -> list[EventView]:
    """The journal of a run after event ``after_id`` (at most ``limit`` events), oldest first."""
    return [EventView(id=e.id, run_id=e.run_id, ts=e.ts, kind=e.kind, ws_id=e.ws_id,
                      step_id=e.step_id, data=json.loads(e.data or "{}"))
            for e in app.store().events(run_id, after_id, limit)]


def get_diagnostics(app: AppContext, step: StepRef, attempt: int | None = None) -> DiagnosticsView:
    """The diagnostics bundle of attempt ``attempt`` of ``step`` (default: the latest attempt
    that wrote one: a failed one).

    Raises:
        NotFoundError: no such attempt with diagnostics, or the bundle file is unreadable.
    """
    rows = [a for a in list_attempts(app, step) if a.diagnostics_path]
    if attempt is not None:
        rows = [a for a in rows if a.number == attempt]
    if not rows:
        raise NotFoundError(f"step {step.ws_id}/{step.step_id} has no failed attempt"
                            + (f" {attempt}" if attempt else "") + " with diagnostics")
    path = Path(rows[-1].diagnostics_path or "")
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotFoundError(f"diagnostics bundle {path} is unreadable: {exc}") from exc
    return DiagnosticsView(step=step, path=path, bundle=bundle)


def get_usage(app: AppContext, run_id: str | None) -> UsageView:
    """Tokens, cost, requests and attempts of run ``run_id`` (None: every run), in total and
    per run, workstream, step and profile (a profile never recorded counts as ``?``)."""
    return app.cached(("usage", run_id), lambda: _read_usage(app, run_id))


def _read_usage(app: AppContext, run_id: str | None) -> UsageView:
    total: dict[str, Any] = {}
    by_step: dict[str, dict[str, Any]] = defaultdict(dict)
    by_ws: dict[str, dict[str, Any]] = defaultdict(dict)
    by_profile: dict[str, dict[str, Any]] = defaultdict(dict)
    by_run: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in app.store().usage(run_id):
        for into in (total, by_step[f"{row.ws_id}/{row.step_id}"], by_ws[row.ws_id],
                     by_profile[row.profile or "?"], by_run[row.run_id]):
            for name in _USAGE_FIELDS:
                into[name] = into.get(name, 0) + (getattr(row, name) or 0)
    return UsageView(run_id=run_id, total=total, runs=dict(by_run), workstreams=dict(by_ws),
                     steps=dict(by_step), profiles=dict(by_profile))


def list_breakers(app: AppContext, now: float | None = None) -> list[BreakerView]:
    """Every circuit breaker of the database as of ``now`` (epoch seconds, default: the time
    after reading them); empty when there is no database yet (no breaker was ever used)."""
    from aidp.state.breakers import BreakerBook

    if not app.has_database():
        return []
    rows = BreakerBook(app.store()).list()
    now = time.time() if now is None else now
    views = []
    for row in rows:
        snap = row.view(now)
        reopen_in = None if snap.reopen_at is None else max(0.0, snap.reopen_at - now)
        views.append(BreakerView(
            key=row.key, state=snap.state.value, failures=len(snap.failures),
            failure_threshold=None if row.policy is None else row.policy.failure_threshold,
            opened_at=snap.opened_at, reopen_at=snap.reopen_at,
            reopen_in_s=None if reopen_in is None else round(reopen_in, 1),
            probes=len(snap.probes),
            half_open_probes=None if row.policy is None else row.policy.half_open_probes,
            in_flight=len(snap.in_flight), counters=snap.counters.to_dict(),
            updated_at=row.updated_at))
    return views


def list_worktrees(app: AppContext) -> list[WorktreeView]:
    """The pooled worktrees of the repository (``.aidp/worktrees``): branch, head, in use,
    dirty."""
    from aidp.workspace.worktrees import WorktreePool

    return [WorktreeView(path=i.path, branch=i.branch, head=i.head, in_use=i.in_use,
                         dirty=i.dirty) for i in WorktreePool(app.repo).list()]
