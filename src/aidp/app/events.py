"""The event catalogue: every journal event as a CloudEvents 1.0 JSON document.

One vocabulary for the live stream (``GET /api/v1/events``, ``aidp events --follow``) and the
webhooks: an event's ``type`` is ``dev.aidp.<kind>`` (``dev.aidp.step.failed``), its ``id`` the
journal row's id (stable, increasing: ``Last-Event-ID`` and webhook de-duplication use it),
``subject`` the workstream or ``workstream/step``. Events that belong to no run (a breaker reset
by hand, a proposal's review) carry the run id ``""`` in the journal (:data:`NO_RUN`) and no
``aidprun`` attribute.

:func:`events_after` reads the journal across runs after an id, in order, never past an id that
may still commit (PostgreSQL): the one query the stream, ``aidp events`` and the polling route
share.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aidp.app.views import EventView
from aidp.exceptions import InputError
from aidp.state.tx import NO_RUN  # the journal's run id of events of no run

if TYPE_CHECKING:
    from aidp.app.context import AppContext

__all__ = [
    "CATALOGUE", "CATEGORIES", "GAP_SETTLE_S", "NO_RUN", "EventPage", "category_of",
    "check_patterns", "cloud_event", "events_after", "latest_event_id", "matches",
    "summary_line", "type_of",
]

TYPE_PREFIX = "dev.aidp."

#: kind -> what it means. The category is the part before the first dot, except the gate's
#: step events (``gate``). A kind missing here is still delivered (tests keep this complete).
CATALOGUE: dict[str, str] = {
    "run.created": "a run was created from a plan",
    "run.started": "an orchestrator began to drive the run",
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
    "step.started": "an attempt of the step began (data.attempt, data.profile; "
    "data.choice_reason when the profile was chosen, not named)",
    "step.running": "the step's recorded state became running",
    "step.validating": "the tool finished; the step's checks run",
    "step.judged": "a best-of round's candidates were judged (data.kept, data.winner, "
                   "data.candidates: each one's attempt, profile, verdict and reason)",
    "step.completed": "the step's checkpoint commit was made (data.sha)",
    "step.pending": "the step will be tried again (data.next_attempt_at, data.reason)",
    "step.retrying": "the step waits for its next attempt (data.next_attempt_at, data.delay_s)",
    "step.circuit_open": "the step waits for its tool's breaker to close (data.next_attempt_at)",
    "step.timeout": "the step's last attempt ran out of time; no attempt is left",
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
    "merge.queued": "a finished workstream joined its target's merge queue (data.into)",
    "merge.checking": "the integration checks start on a batch merged onto its target "
                      "(data.into, data.members, data.sha, data.token: what resume kills "
                      "if aidp dies meanwhile)",
    "merge.checked": "the integration checks ran on a batch merged onto its target "
                     "(data.into, data.members, data.passed, data.check_runs: the running count)",
    "merge.rejected": "the integration checks failed with the workstream's merge: it leaves "
                      "the queue (data.into, data.findings)",
    "compensation.succeeded": "a compensation action ran",
    "compensation.failed": "a compensation action failed",
    "breaker.opened": "a circuit breaker opened (data.key, data.from, data.to)",
    "breaker.half_open": "a breaker lets a probe through (data.key)",
    "breaker.closed": "a breaker closed again (data.key)",
    "breaker.reset": "someone closed a breaker by hand (data.key, data.by; no run)",
    "budget.exceeded": "a spent budget stopped a step (data.limit names which; step.failed "
                       "follows)",
    "proposal.transitioned": "a change proposal moved (data.change, data.from, data.to, "
                             "data.action, data.by; no run)",
    "webhook.dead": "a webhook delivery gave up after its retries (data.webhook, data.event)",
    "token.created": "an API token was created (data.token, data.scope, data.by; no run; "
                     "never its secret)",
    "token.revoked": "an API token was revoked (data.token, data.by; no run)",
}

_GATE = {"step.awaiting_approval", "step.approved", "step.rejected"}
CATEGORIES = ("run", "workstream", "step", "attempt", "gate", "breaker", "budget", "proposal",
              "webhook", "lease", "compensation", "token", "merge")


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


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """``patterns`` if each selects some kind of the catalogue (see :func:`matches`); an
    InputError naming the first that selects none (a typo would silently select nothing)."""
    chosen = list(patterns)
    for pattern in chosen:
        bare = pattern.removeprefix(TYPE_PREFIX)
        if bare not in CATEGORIES and not any(fnmatch.fnmatchcase(k, bare) for k in CATALOGUE):
            raise InputError(f"event type {pattern!r} matches no event",
                             hint="a kind (step.failed), a glob (step.*) or a category: "
                             + ", ".join(CATEGORIES))
    return chosen


def summary_line(doc: dict[str, Any]) -> str:
    """One line for a person: time, kind, subject (run/workstream/step), a short data digest."""
    data = dict(doc.get("data") or {})
    kind = data.pop("kind", str(doc.get("type", "")).removeprefix(TYPE_PREFIX))
    for key in ("run_id", "workstream", "step"):
        data.pop(key, None)
    where = "/".join(str(p) for p in (doc.get("aidprun"), doc.get("subject")) if p) or "-"
    digest = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(data.items())
                      if v is not None and v != "")
    if len(digest) > 120:
        digest = digest[:119] + "…"
    return f"{doc.get('time', '')}  {kind:<24} {where}  {digest}".rstrip()


#: How long a gap in the journal's ids may stay open before a reader skips it (PostgreSQL: a
#: transaction that took the missing id has not committed yet, or rolled back).
GAP_SETTLE_S = 2.0


@dataclass(frozen=True)
class EventPage:
    """Events read after an id, and where to read on: ``cursor`` is past every event this read
    looked at (filtered out or not), never past one that may still appear."""

    events: tuple[EventView, ...]
    cursor: int


def events_after(app: AppContext, after_id: int = 0, *, run_id: str | None = None,
                 types: Sequence[str] = (), limit: int = 500,
                 settle_s: float = GAP_SETTLE_S, now: float | None = None) -> EventPage:
    """The journal after event ``after_id`` (of one run, of the kinds ``types`` selects), oldest
    first, at most ``limit`` looked at.

    Nothing is lost and nothing is read twice by a reader that passes each page's ``cursor``
    back: on PostgreSQL (ids from a sequence, committed out of order) the page stops before a
    gap in the ids unless the event after the gap is older than ``settle_s`` seconds (then the
    missing id was rolled back, or its transaction is hung); SQLite has one writer, no gaps.
    """
    if not app.has_database():
        return EventPage((), after_id)
    from aidp.state import journal

    store = app.store()
    rows = journal.events_after(store, after_id, run_id, limit)
    if not rows:
        return EventPage((), after_id)
    upto = int(rows[-1].id)
    if store.dialect != "sqlite":
        upto = _settled_upto(journal.event_ids(store, after_id, upto), after_id, upto,
                             (time.time() if now is None else now) - settle_s)
    views = tuple(_view(r) for r in rows if r.id <= upto)
    return EventPage(tuple(v for v in views if matches(v.kind, types)), upto)


def latest_event_id(app: AppContext) -> int:
    """The newest journal id (0 when there is none): where to follow "from now on"."""
    if not app.has_database():
        return 0
    from aidp.state import journal

    return journal.latest_event_id(app.store())


def _settled_upto(ids: Sequence[Any], after_id: int, upto: int, settled_before: float) -> int:
    """The highest id up to which no id can still appear: the first gap followed by an event
    written after ``settled_before`` stops the page just before the gap."""
    expected = after_id + 1
    for row in ids:
        if row.id > expected and row.ts > settled_before:
            return expected - 1
        expected = int(row.id) + 1
    return upto


def _view(row: Any) -> EventView:
    return EventView(id=int(row.id), run_id=row.run_id, ts=row.ts, kind=row.kind,
                     ws_id=row.ws_id, step_id=row.step_id, data=json.loads(row.data or "{}"))
