"""A run's creation: the run id, the preflight checks and the rows of a new run.

Owns :func:`new_run_id`, :func:`preflight`, :func:`create_run` and what a driven run reports
back (:class:`Reporter`, :class:`RunSummary`, :data:`Decision`). It writes a run only once, when
creating it (status pending); it never drives one (that is :mod:`aidp.engine.orchestrator`) and
never touches worktrees, tools or breakers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from aidp.config import Settings
from aidp.core.states import RunState, StepState, WorkstreamState
from aidp.engine.runtime import branch_name
from aidp.model.plan import Plan
from aidp.state.store import Store

__all__ = [
    "Decision",
    "Reporter",
    "RunSummary",
    "SilentReporter",
    "create_run",
    "new_run_id",
    "preflight",
]

Decision = Literal["retry", "skip", "abort"]
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_run_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (sortable)."""
    import os

    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class Reporter(Protocol):
    """Receives progress as it happens (the CLI's live view).

    ``event`` is called on the orchestrator's thread with what the journal records;
    ``output`` is called on worker threads with each chunk of a tool's output (already masked
    and capped by nothing: keep only what you show, and return fast).
    """

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None: ...

    def output(self, ws_id: str, step_id: str, data: bytes) -> None: ...


class SilentReporter:
    """A :class:`Reporter` that ignores everything (what a run reports to when given none)."""

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None:
        return None

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        return None


@dataclass(frozen=True)
class RunSummary:
    """The outcome of driving a run, for the CLI's summary and ``--json``."""

    run_id: str
    state: RunState
    workstreams: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    # per target with integration checks: into, queued, landed, rejected, not_merged, check_runs
    merge_queues: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state is RunState.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.state.value,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 3),
            "workstreams": self.workstreams,
            **({"merge_queues": self.merge_queues} if self.merge_queues else {}),
        }


def preflight(repo: Path, plan: Plan, settings: Settings | None = None) -> dict[str, str]:
    """Check what validation of the files alone cannot, with the rules ``aidp validate``
    reports (:func:`aidp.model.readiness.check_readiness`): tool profiles, capabilities and
    escalation profiles exist, declared environment variables are set, bases are commits of
    ``repo``, merge targets are not checked out. Returns the resolved base commit of each
    workstream; raises ValidationError listing every problem (nothing is written)."""
    from aidp.config import Settings
    from aidp.exceptions import ValidationError
    from aidp.model.readiness import check_readiness

    problems, bases = check_readiness(plan, settings or Settings(), repo)
    if problems:
        raise ValidationError(problems)
    return bases


def create_run(
    store: Store,
    repo: Path,
    plan: Plan,
    *,
    parallel: int,
    settings: Settings | None = None,
    run_id: str | None = None,
    bases: Mapping[str, str] | None = None,
) -> str:
    """Record a new run of ``plan`` (status pending) and return its id, after
    :func:`preflight` (unless its result is given as ``bases``)."""
    if bases is None:
        bases = preflight(repo, plan, settings)
    run_id = run_id or new_run_id()
    with store.write() as tx:
        tx.insert_run(id=run_id, status=RunState.PENDING.value, repo=str(repo),
                      plan_json=plan.to_json(), options_json=json.dumps({"parallel": parallel}),
                      sources=json.dumps(plan.sources))
        tx.insert_workstreams([
            dict(run_id=run_id, ws_id=ws.id, position=i, status=WorkstreamState.PENDING.value,
                 branch=branch_name(run_id, ws.id), base_ref=bases[ws.id])
            for i, ws in enumerate(plan.workstreams)
        ])
        tx.insert_steps([
            dict(run_id=run_id, ws_id=ws.id, step_id=step.id, position=j,
                 status=StepState.PENDING.value)
            for ws in plan.workstreams for j, step in enumerate(ws.steps)
        ])
        tx.event(run_id, "run.created", workstreams=len(plan.workstreams),
                 steps=plan.step_count, parallel=parallel)
    return run_id
