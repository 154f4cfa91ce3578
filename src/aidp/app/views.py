"""Read models: what the interfaces show of runs, workstreams, steps, attempts, findings, usage,
breakers, worktrees, proposals and diagnostics.

Each view is a frozen dataclass built by :mod:`aidp.app.queries` (or returned by a command of
:mod:`aidp.app.commands`); ``to_dict()`` is the JSON the CLI prints with ``--json`` (and the body
a REST API returns), so its keys and their order are a public format. Times are kept as epoch
seconds (``float``) and written as local ISO-8601 strings by ``to_dict()``. Views read nothing
and import nothing of the store, the engine or git: pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aidp.core.states import RunState

__all__ = [
    "AttemptView", "BreakerView", "CancelOutcome", "CompensationView", "DiagnosticsView",
    "EventView", "FindingView", "ProposalActOutcome", "ProposalDetailView", "ProposalView",
    "PruneOutcome", "ReopenedView", "RollbackOutcome", "RunListItemView", "RunView",
    "SpecSyncOutcome", "StepRef", "StepView", "TransitionView", "UsageView", "WorkstreamView",
    "WorktreeView", "iso_ts",
]


def iso_ts(value: float | None) -> str | None:
    """Epoch seconds as a local ISO-8601 string to the second (None stays None)."""
    return None if value is None else datetime.fromtimestamp(value).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StepRef:
    """A step of a run, resolved: ``run_id``, ``ws_id`` and ``step_id`` all exist."""

    run_id: str
    ws_id: str
    step_id: str


@dataclass(frozen=True)
class FindingView:
    """One normalized error of an attempt (see :class:`aidp.errors.finding.Finding`)."""

    ws_id: str
    step_id: str
    attempt: int
    source: str | None
    detector: str | None
    file: str | None
    line: int | None
    column: int | None
    code: str | None
    message: str
    severity: str | None
    failure_class: str | None
    fingerprint: str | None
    retry_after: float | None

    def detail_dict(self) -> dict[str, Any]:
        """The finding without its location in the run (an attempt of ``status --json``)."""
        return {"source": self.source, "detector": self.detector, "file": self.file,
                "line": self.line, "column": self.column, "code": self.code,
                "message": self.message, "severity": self.severity,
                "class": self.failure_class, "fingerprint": self.fingerprint,
                "retry_after": self.retry_after}

    def to_dict(self) -> dict[str, Any]:
        """The finding with its workstream, step and attempt (``findings --json``)."""
        return {"workstream": self.ws_id, "step": self.step_id, "attempt": self.attempt,
                **self.detail_dict()}


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a step: who ran it, how it ended, what it cost, where its log is."""

    id: int
    ws_id: str
    step_id: str
    number: int
    kind: str | None
    profile: str | None
    adapter: str | None
    outcome: str | None
    failure_class: str | None
    reason: str | None
    exit_code: int | None
    signal: int | None
    interrupted: bool
    started_at: float | None
    finished_at: float | None
    choice_reason: str | None
    tool_version: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    requests: int | None
    diagnostics_path: str | None
    log_path: str | None
    findings: tuple[FindingView, ...] = ()
    # as one of a best-of-N round's candidates (round None: an ordinary attempt)
    round: int | None = None
    candidate: int | None = None
    verdict: str | None = None
    verdict_reason: str | None = None
    candidate_sha: str | None = None
    diff_files: int | None = None
    diff_lines: int | None = None

    @property
    def finished(self) -> bool:
        """True once the attempt has an outcome."""
        return self.outcome is not None

    def to_dict(self) -> dict[str, Any]:
        """The attempt as ``status --json`` prints it (in a step's ``attempt_list``)."""
        return {
            "number": self.number, "kind": self.kind, "profile": self.profile,
            "adapter": self.adapter, "outcome": self.outcome,
            "failure_class": self.failure_class, "reason": self.reason,
            "exit_code": self.exit_code, "signal": self.signal,
            "interrupted": self.interrupted, "started_at": iso_ts(self.started_at),
            "finished_at": iso_ts(self.finished_at), "choice_reason": self.choice_reason,
            "tool_version": self.tool_version,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                      "cost_usd": self.cost_usd, "requests": self.requests},
            "diagnostics": self.diagnostics_path,
            "findings": [f.detail_dict() for f in self.findings],
            "candidate": None if self.round is None else {
                "round": self.round, "place": self.candidate, "verdict": self.verdict,
                "reason": self.verdict_reason, "commit": self.candidate_sha,
                "diff_files": self.diff_files, "diff_lines": self.diff_lines},
        }


@dataclass(frozen=True)
class CompensationView:
    """One compensating action of a step (or of a workstream's merge)."""

    position: int
    action: str
    status: str
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        """The action as ``status --json`` prints it."""
        return {"position": self.position, "action": self.action, "status": self.status,
                "detail": self.detail}


@dataclass(frozen=True)
class GateView:
    """An open human gate (``tool: manual``): where the person works and what to do."""

    worktree: str | None
    prompt: str | None

    def to_dict(self) -> dict[str, Any]:
        """The gate as ``status --json`` prints it (the step's ``gate``)."""
        return {"worktree": self.worktree, "prompt": self.prompt}


@dataclass(frozen=True)
class StepView:
    """One step of a run with its attempts and compensations."""

    ws_id: str
    id: str
    status: str
    attempts: int | None
    reason: str | None
    checkpoint: str | None
    next_attempt_at: float | None
    failure_class: str | None
    profile: str | None
    outcome: str | None = None  # what ended a failed step: crashed, circuit_open, ...
    attempt_list: tuple[AttemptView, ...] = ()
    compensations: tuple[CompensationView, ...] = ()
    gate: GateView | None = None  # awaiting approval: its worktree and prompt

    @property
    def attempts_total(self) -> int:
        """How many attempts the step has had in all (``attempts`` counts only those against
        the retry policy since the last reset: a resume or a retry resets it)."""
        return len(self.attempt_list)

    def to_dict(self) -> dict[str, Any]:
        """The step as ``status --json`` prints it."""
        return {
            "id": self.id, "status": self.status, "attempts": self.attempts,
            "attempts_total": self.attempts_total,
            "reason": self.reason, "checkpoint": self.checkpoint,
            "next_attempt_at": iso_ts(self.next_attempt_at),
            "failure_class": self.failure_class, "outcome": self.outcome,
            "profile": self.profile,
            "attempt_list": [a.to_dict() for a in self.attempt_list],
            "compensations": [c.to_dict() for c in self.compensations],
            "gate": self.gate.to_dict() if self.gate is not None else None,
        }


@dataclass(frozen=True)
class WorkstreamView:
    """One workstream of a run: its branch, heads and steps."""

    id: str
    status: str
    branch: str
    base: str | None
    head: str | None
    merged: str | None
    worktree: str | None
    reason: str | None
    steps: tuple[StepView, ...] = ()
    compensations: tuple[CompensationView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The workstream as ``status --json`` prints it."""
        return {
            "id": self.id, "status": self.status, "branch": self.branch, "base": self.base,
            "head": self.head, "merged": self.merged, "worktree": self.worktree,
            "reason": self.reason, "steps": [s.to_dict() for s in self.steps],
            "compensations": [c.to_dict() for c in self.compensations],
        }


def shown_state(status: str, live: bool) -> str:
    """The state a run is shown in: its recorded ``status``, except that a ``running`` run no
    orchestrator drives (its lease released, expired, or its holder process gone) is shown
    ``interrupted`` -- a display state, never stored; ``aidp resume`` continues it."""
    return "interrupted" if status == RunState.RUNNING.value and not live else status


def is_resumable(status: str, live: bool) -> bool:
    """True when ``aidp resume`` would take the run up: nobody drives it and it is not
    completed or cancelled (a failed run's failed steps are tried again)."""
    return not live and status not in (RunState.COMPLETED.value, RunState.CANCELLED.value)


class _ShownRun:
    """What the views of a run show of its state, from its recorded ``status`` and ``live``."""

    status: str
    live: bool

    @property
    def state(self) -> str:
        """The state shown (see :func:`shown_state`): ``interrupted`` for a dead running run."""
        return shown_state(self.status, self.live)

    @property
    def resumable(self) -> bool:
        """True when ``aidp resume`` would continue it (see :func:`is_resumable`)."""
        return is_resumable(self.status, self.live)


@dataclass(frozen=True)
class RunView(_ShownRun):
    """The whole state of a run (``aidp status``)."""

    run_id: str
    status: str
    live: bool
    holder: str | None
    repo: str
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    workstreams: tuple[WorkstreamView, ...] = ()

    def step(self, ws_id: str, step_id: str) -> StepView | None:
        """The step ``ws_id/step_id``, or None."""
        for ws in self.workstreams:
            for step in ws.steps:
                if ws.id == ws_id and step.id == step_id:
                    return step
        return None

    def to_dict(self) -> dict[str, Any]:
        """The run as ``status --json`` prints it (``status``: the state shown,
        ``recorded_status``: the one stored)."""
        return {
            "run_id": self.run_id, "status": self.state, "recorded_status": self.status,
            "live": self.live, "resumable": self.resumable, "holder": self.holder,
            "repo": self.repo,
            "created_at": iso_ts(self.created_at), "started_at": iso_ts(self.started_at),
            "finished_at": iso_ts(self.finished_at), "cancel_requested": self.cancel_requested,
            "workstreams": [w.to_dict() for w in self.workstreams],
        }


@dataclass(frozen=True)
class RunListItemView(_ShownRun):
    """One line of the list of runs (``aidp runs``)."""

    run_id: str
    status: str
    created_at: float | None
    finished_at: float | None
    workstreams: int
    completed: int
    live: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The run as ``runs --json`` prints it (``status``: the state shown,
        ``recorded_status``: the one stored)."""
        return {"run_id": self.run_id, "status": self.state, "recorded_status": self.status,
                "live": self.live, "resumable": self.resumable,
                "created_at": iso_ts(self.created_at), "finished_at": iso_ts(self.finished_at),
                "workstreams": self.workstreams, "completed": self.completed}


@dataclass(frozen=True)
class EventView:
    """One journal event of a run (``data`` is the event's decoded JSON)."""

    id: int
    run_id: str
    ts: float
    kind: str
    ws_id: str | None
    step_id: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as plain data."""
        return {"id": self.id, "run_id": self.run_id, "ts": iso_ts(self.ts), "kind": self.kind,
                "workstream": self.ws_id, "step": self.step_id, "data": self.data}


@dataclass(frozen=True)
class UsageView:
    """Tokens, cost, requests and attempts summed over a run (or every run) and broken down
    per run, workstream, step (``WS/STEP``) and tool profile."""

    run_id: str | None
    total: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    workstreams: dict[str, dict[str, Any]]
    steps: dict[str, dict[str, Any]]
    profiles: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The ledger as ``usage --json`` prints it."""
        return {"run_id": self.run_id, "total": self.total, "runs": self.runs,
                "workstreams": self.workstreams, "steps": self.steps,
                "profiles": self.profiles}


@dataclass(frozen=True)
class BreakerView:
    """One circuit breaker as of the moment it was read (``reopen_in_s`` counts from then)."""

    key: str
    state: str
    failures: int
    failure_threshold: int | None
    opened_at: float | None
    reopen_at: float | None
    reopen_in_s: float | None
    probes: int
    half_open_probes: int | None
    in_flight: int
    counters: dict[str, Any]
    updated_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """The breaker as ``breakers list --json`` prints it."""
        return {
            "key": self.key, "state": self.state, "failures": self.failures,
            "failure_threshold": self.failure_threshold, "opened_at": iso_ts(self.opened_at),
            "reopen_at": iso_ts(self.reopen_at), "reopen_in_s": self.reopen_in_s,
            "probes": self.probes, "half_open_probes": self.half_open_probes,
            "in_flight": self.in_flight, "counters": self.counters,
            "updated_at": iso_ts(self.updated_at),
        }


@dataclass(frozen=True)
class WorktreeView:
    """One pooled worktree under ``.aidp/worktrees``."""

    path: Path
    branch: str | None
    head: str | None
    in_use: bool
    dirty: bool

    def to_dict(self) -> dict[str, Any]:
        """The worktree as ``worktrees list --json`` prints it."""
        return {"path": str(self.path), "branch": self.branch, "head": self.head,
                "in_use": self.in_use, "dirty": self.dirty}


@dataclass(frozen=True)
class DiagnosticsView:
    """The diagnostics bundle of a failed attempt (``bundle`` is the file's JSON as written
    by the executor)."""

    step: StepRef
    path: Path
    bundle: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The bundle as ``diagnose --json`` prints it."""
        return self.bundle


@dataclass(frozen=True)
class ProposalView:
    """An active (or recorded) OpenSpec change with its proposal state."""

    change: str
    state: str
    recorded: bool
    present: bool
    title: str | None
    updated_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """The proposal as ``proposals list --json`` prints it."""
        return {"change": self.change, "state": self.state, "recorded": self.recorded,
                "present": self.present, "title": self.title,
                "updated_at": iso_ts(self.updated_at)}


@dataclass(frozen=True)
class TransitionView:
    """One recorded move of a proposal."""

    from_state: str | None
    to_state: str
    action: str
    by: str
    comment: str | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        """The move as ``proposals show --json`` prints it."""
        return {"from": self.from_state, "to": self.to_state, "action": self.action,
                "by": self.by, "comment": self.comment, "at": iso_ts(self.at)}


@dataclass(frozen=True)
class ProposalDetailView:
    """A proposal's state and history."""

    change: str
    state: str
    recorded: bool
    title: str | None
    history: tuple[TransitionView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The proposal as ``proposals show --json`` prints it."""
        return {"change": self.change, "state": self.state, "recorded": self.recorded,
                "title": self.title, "history": [h.to_dict() for h in self.history]}


@dataclass(frozen=True)
class ProposalActOutcome:
    """What a proposal transition did: the new state, who acted, warnings (conflicts)."""

    change: str
    state: str
    by: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The outcome as ``proposals ACTION --json`` prints it."""
        return {"change": self.change, "state": self.state, "by": self.by,
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class CancelOutcome:
    """The end of ``cancel``: whether a live orchestrator was asked to stop, and the run's
    status after waiting for it."""

    run_id: str
    live: bool
    status: str

    @property
    def cancelled(self) -> bool:
        """True when the run ended cancelled."""
        return self.status == RunState.CANCELLED.value


@dataclass(frozen=True)
class ReopenedView:
    """A workstream ``rollback`` reopened: its steps pending again; ``rebuilt``: a dependant,
    whose branch ``aidp resume`` rebuilds from its dependencies' new heads; ``merged_into``:
    the branch that keeps its earlier merge (``merged_sha``) -- merged again when it completes
    again, nothing reverted."""

    ws_id: str
    steps: tuple[str, ...]
    rebuilt: bool
    merged_into: str | None = None
    merged_sha: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.ws_id, "steps": list(self.steps), "rebuilt": self.rebuilt,
                "merged_into": self.merged_into, "merged_sha": self.merged_sha}


@dataclass(frozen=True)
class RollbackOutcome:
    """The end of ``rollback``: the checkpoint gone back to (``to``, its commit), the steps of
    its workstream pending again (``reopened``) and every reopened workstream (``workstreams``:
    that one first, then its dependants)."""

    step: StepRef
    reopened: tuple[str, ...]
    to: str = ""
    workstreams: tuple[ReopenedView, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.step.run_id, "workstream": self.step.ws_id,
                "step": self.step.step_id, "to": self.to, "reopened": list(self.reopened),
                "workstreams": [w.to_dict() for w in self.workstreams]}


@dataclass(frozen=True)
class PruneOutcome:
    """The end of ``prune``: removed worktrees, and idle ones kept for uncommitted files;
    deleted branches of finished runs, and those kept because their work is not merged."""

    removed: tuple[Path, ...]
    kept: tuple[WorktreeView, ...]
    branches_deleted: tuple[str, ...] = ()
    branches_unmerged: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpecSyncOutcome:
    """The end of a spec sync: the edits made (file, line, what) and the changes archived."""

    run_id: str
    edits: tuple[dict[str, Any], ...]
    archived: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The outcome as ``specs sync --json`` prints it."""
        return {"run_id": self.run_id, "edits": list(self.edits), "archived": list(self.archived)}
