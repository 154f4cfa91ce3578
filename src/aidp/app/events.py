"""The event catalogue: every journal event as a CloudEvents 1.0 JSON document.

One vocabulary for the live stream (``GET /api/v1/events``, ``aidp events --follow``) and the
webhooks: an event's ``type`` is ``dev.aidp.<kind>`` (``dev.aidp.step.failed``), its ``id`` the
journal row's id (stable, increasing: ``Last-Event-ID`` and webhook de-duplication use it),
``subject`` the workstream or ``workstream/step``. Events that belong to no run (a breaker reset
by hand, a proposal's review) carry the run id ``""`` in the journal (:data:`NO_RUN`) and no
``aidprun`` attribute.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aidp.app.views import EventView

__all__ = [
    "CATALOGUE", "CATEGORIES", "NO_RUN", "category_of", "cloud_event", "matches", "type_of",
]

NO_RUN = ""
TYPE_PREFIX = "dev.aidp."

#: kind -> what it means. The category is the part before the first dot, except the gate's
#: step events (``gate``). A kind missing here is still delivered (tests keep this complete).
CATALOGUE: dict[str, str] = {
    "run.created": "a run was created from a plan",
    "run.resumed": "an orchestrator took the run over to finish it",
    "run.requested": "someone asked the service to drive the run (data.action: start, resume, "
                     "retry; data.by: who)",
    "run.cancel_requested": "someone asked the live orchestrator to cancel the run",
    "run.finished": "the run ended (data.status: completed, failed, cancelled)",
    "lease.acquired": "an orchestrator took the run's lease (data.token grows by one each time)",
    "workstream.started": "a workstream got its branch and began",
    "workstream.prepared": "a workstream's worktree is ready",
    "workstream.completed": "every step completed (data.merged_into, data.merged_sha)",
    "workstream.failed": "a step failed for good, or the merge failed (data.reason)",
    "workstream.skipped": "a dependency failed or a step was skipped by the user",
    "workstream.reopened": "a rollback reopened the workstream: it runs again",
    "workstream.rolled_back": "the workstream went back to a checkpoint",
    "step.started": "an attempt of the step began (data.attempt, data.profile)",
    "step.validating": "the tool finished; the step's checks run",
    "step.completed": "the step's checkpoint commit was made (data.sha)",
    "step.pending": "the step will be tried again (data.next_attempt_at, data.reason)",
    "step.failed": "the step failed for good (data.reason, data.failure_class)",
    "step.skipped": "the step will not run (data.reason)",
    "step.cancelled": "the step was cancelled with its run",
    "step.waiting": "the step waits for a breaker or a budget",
    "step.adopted": "resume adopted a checkpoint that reached git but not the journal",
    "step.retry_requested": "someone asked for a failed step to run again",
    "step.awaiting_approval": "a human gate opened (data.worktree, data.prompt)",
    "step.approved": "a human gate was approved (data.by)",
    "step.rejected": "a human gate was rejected (data.by)",
    "attempt.interrupted": "an attempt died with its orchestrator; resume redoes it",
    "compensation.succeeded": "a compensation action ran",
    "compensation.failed": "a compensation action failed",
    "breaker.opened": "a circuit breaker opened (data.key)",
    "breaker.half_open": "a breaker lets a probe through",
    "breaker.closed": "a breaker closed again",
    "breaker.reset": "someone reset a breaker by hand",
    "budget.exceeded": "a run's budget stopped a step (data.limit)",
    "proposal.transitioned": "a change proposal moved (data.from, data.to, data.action, data.by)",
    "webhook.dead": "a webhook delivery gave up after its retries (data.webhook, data.event)",
}

_GATE = {"step.awaiting_approval", "step.approved", "step.rejected"}
CATEGORIES = ("run", "workstream", "step", "attempt", "gate", "breaker", "budget", "proposal",
              "webhook", "lease", "compensation")


def type_of(kind: str) -> str:
    """The CloudEvents type of a journal kind."""
    return TYPE_PREFIX + kind


def category_of(kind: str) -> str:
    return "gate" if kind in _GATE else kind.split(".", 1)[0]


def matches(kind: str, patterns: Iterable[str]) -> bool:
    """Whether ``kind`` is selected by any of ``patterns``: a kind (``step.failed``), a glob
    (``step.*``, ``*``), a category (``gate``) or a CloudEvents type (``dev.aidp.step.*``).
    No patterns select everything."""
    wanted = [p.removeprefix(TYPE_PREFIX) for p in patterns]
    if not wanted:
        return True
    category = category_of(kind)
    return any(p == category or fnmatch.fnmatchcase(kind, p) for p in wanted)


def cloud_event(event: EventView, source: str = "/aidp") -> dict[str, Any]:
    """``event`` as a CloudEvents 1.0 structured-mode JSON document."""
    subject = event.ws_id if event.step_id is None else f"{event.ws_id}/{event.step_id}"
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.id),
        "source": source if event.run_id == NO_RUN else f"{source}/runs/{event.run_id}",
        "type": type_of(event.kind),
        "time": datetime.fromtimestamp(event.ts, tz=UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"kind": event.kind, "run_id": event.run_id or None,
                 "workstream": event.ws_id, "step": event.step_id, **event.data},
    }
    if subject:
        doc["subject"] = subject
    if event.run_id != NO_RUN:
        doc["aidprun"] = event.run_id
    return doc
