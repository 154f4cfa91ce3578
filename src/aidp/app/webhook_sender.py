"""The webhook sender of ``aidp serve``: turns journal events into deliveries and delivers them.

The journal is the outbox. :func:`enqueue` reads each subscription's events after its
``cursor`` and, in one transaction, inserts a delivery per selected event and moves the cursor:
an event is either queued for every subscription it concerns or the cursor still points before
it. On PostgreSQL, journal ids come from a sequence and can become visible out of order (a
transaction that took id 9 may commit after the one that took id 10). The cursor therefore
never jumps a gap in the ids while the event after the gap is younger than
``[webhooks] gap_horizon_s`` (10 s): a journal transaction is short, so a gap still open after
that is an id whose transaction rolled back. Events beyond an open gap are queued at once all
the same (the unique (webhook, event) pair makes re-reading them harmless), so nothing waits
for the horizon but the cursor. SQLite commits one writer at a time, so its ids are visible in
order: no horizon there.

:func:`attempt` sends one due delivery: signed per Standard Webhooks with the secret(s) read
from the service's environment at that moment, through :mod:`aidp.notify`'s guard; 2xx is
delivered, anything else is retried with exponential backoff and jitter (``Retry-After`` on
429/503 honoured) until ``max_attempts``, then the delivery is ``dead`` and the journal gets a
``webhook.dead`` event (except for a ``webhook.dead`` delivery that died: two failing
subscriptions would otherwise report each other's dead letters forever).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from aidp.app.events import cloud_event, matches
from aidp.app.views import EventView

if TYPE_CHECKING:
    from aidp.app.context import AppContext
    from aidp.config import WebhookSettings
    from aidp.notify.http import Result

__all__ = ["Sender", "advance", "attempt", "backoff", "enqueue", "lifespan", "signed_request"]

_BATCH = 500
_WORKERS = 4
log = logging.getLogger("aidp.serve.webhooks")


def _selected(row: Any, event: Any, patterns: list[str]) -> bool:
    if row.run_id and event.run_id != row.run_id:
        return False
    if not matches(str(event.kind), patterns):
        return False
    if event.kind == "webhook.dead":  # never report a subscription's dead letters to itself
        return bool(json.loads(event.data or "{}").get("webhook") != row.id)
    return True


def advance(cursor: int, events: list[tuple[int, float]], now: float,
            horizon: float) -> tuple[int, bool]:
    """Where the cursor may move over ``events`` ((id, ts), by id): past every event up to the
    first gap in the ids whose next event is younger than ``horizon`` (the missing id may
    still commit). Returns the new cursor and whether such a gap stopped it."""
    for event_id, ts in events:
        if event_id != cursor + 1 and now - ts < horizon:
            return cursor, True
        cursor = event_id
    return cursor, False


def enqueue(app: AppContext, settings: WebhookSettings) -> int:
    """Turn new journal events into deliveries for every enabled subscription; return how
    many deliveries were queued."""
    from aidp.state import webhooks as state

    store = app.store()
    queued = 0
    for sub in state.webhooks(store):
        if not sub.enabled:
            continue
        while True:
            with store.write() as tx:
                row = state.lock_webhook(tx, sub.id)
                if row is None:
                    break
                events = state.events_after(tx, int(row.cursor), _BATCH)
                horizon = 0.0 if tx.dialect == "sqlite" else settings.gap_horizon_s
                patterns = json.loads(row.event_types)
                cursor, blocked = advance(int(row.cursor),
                                          [(int(e.id), float(e.ts)) for e in events],
                                          tx.now, horizon)
                wanted = [int(e.id) for e in events if _selected(row, e, patterns)]
                state.insert_deliveries(tx, row.id, wanted)
                state.move_cursor(tx, row.id, cursor)
            queued += len(wanted)
            if len(events) < _BATCH or blocked:
                break
    return queued


def backoff(attempts: int, settings: WebhookSettings, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``backoff_initial_s``, capped at
    ``backoff_max_s``, with "equal jitter" (half fixed, half random) so that receivers coming
    back are not hit by every sender at once."""
    base = min(settings.backoff_max_s, settings.backoff_initial_s * 2 ** max(0, attempts - 1))
    return float(base / 2 + (rng or random).uniform(0, base / 2))


def _keys(row: Any, now: float) -> list[bytes]:
    """The signing keys: the current secret, and the previous one during a rotation's overlap.

    Raises:
        LookupError: a variable is not set or holds a bad secret (the message names the
            variable, never its value).
    """
    from aidp.notify.signing import secret_key

    names = [str(row.secret_env)]
    if row.previous_secret_env and row.previous_until and now < float(row.previous_until):
        names.append(str(row.previous_secret_env))
    keys = []
    for name in names:
        value = os.environ.get(name)
        if not value:
            raise LookupError(f"environment variable {name} (the webhook's secret) is not set "
                              "in the service")
        try:
            keys.append(secret_key(value))
        except ValueError as exc:
            raise LookupError(f"environment variable {name}: {exc}") from None
    return keys


def signed_request(row: Any, sub: Any, now: float) -> tuple[bytes, dict[str, str]]:
    """The body (the CloudEvent) and the Standard Webhooks headers of a delivery row."""
    from aidp.notify.signing import signature_header

    view = EventView(id=int(row.event_id), run_id=str(row.run_id), ts=float(row.ts),
                     kind=str(row.kind), ws_id=row.ws_id, step_id=row.step_id,
                     data=json.loads(row.data or "{}"))
    body = json.dumps(cloud_event(view), separators=(",", ":"), sort_keys=True).encode()
    msg_id, timestamp = str(row.event_id), int(now)
    return body, {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                  "webhook-signature": signature_header(_keys(sub, now), msg_id, timestamp,
                                                        body)}


def attempt(app: AppContext, settings: WebhookSettings, row: Any,
            post: Callable[..., Result] | None = None) -> str:
    """Send one claimed delivery and record what happened; return its new status."""
    from aidp.notify.http import Result
    from aidp.notify.http import post as http_post
    from aidp.state import webhooks as state

    store = app.store()
    sub = state.webhook_by_id(store, str(row.webhook_id))
    if sub is None:
        return "removed"
    now = time.time()
    try:
        body, headers = signed_request(row, sub, now)
    except LookupError as exc:
        result = Result(None, str(exc))
    else:
        result = (post or http_post)(str(sub.url), body, headers,
                                     allow_private=bool(sub.allow_private),
                                     timeout_s=settings.timeout_s)
    return record(app, settings, row, result)


def record(app: AppContext, settings: WebhookSettings, row: Any, result: Result) -> str:
    """Store one attempt's result: delivered, retried later, or dead (+ ``webhook.dead``)."""
    from aidp.state import webhooks as state

    attempts = int(row.attempts) + 1
    about = {"run": str(row.run_id), "webhook": str(row.webhook_id), "delivery": int(row.id),
             "event_id": int(row.event_id), "attempts": attempts,
             "last_status": result.status}
    with app.store().write() as tx:
        if result.delivered:
            assert result.status is not None
            state.mark_delivered(tx, int(row.id), result.status)
            return "delivered"
        if attempts >= settings.max_attempts:
            state.mark_dead(tx, int(row.id), result.status, result.error)
            log.error("webhook %s: delivery %s of event %s is dead after %d attempts: %s",
                      row.webhook_id, row.id, row.event_id, attempts,
                      result.error or result.status, extra=about)
            if row.kind == "webhook.dead":  # no dead letter about a dead letter: no cascade
                return "dead"
            tx.event(str(row.run_id), "webhook.dead", webhook=str(row.webhook_id),
                     event=int(row.event_id), delivery=int(row.id), attempts=attempts,
                     last_status=result.status, last_error=result.error)
            return "dead"
        wait = backoff(attempts, settings)
        if result.retry_after is not None:
            wait = min(max(result.retry_after, 0.0), settings.backoff_max_s)
        state.mark_retry(tx, int(row.id), result.status, result.error, tx.now + wait)
        log.info("webhook %s: delivery %s of event %s failed (%s); retry in %.1fs",
                 row.webhook_id, row.id, row.event_id, result.error or result.status, wait,
                 extra=about)
        return "pending"


class Sender:
    """The background thread: every ``poll_interval_s``, queue new events and start the due
    deliveries on a few worker threads (a slow receiver does not hold up the others)."""

    def __init__(self, app: AppContext, settings: WebhookSettings) -> None:
        self.app, self.settings = app, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aidp-webhooks", daemon=True)
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="aidp-webhook")
        self._busy: dict[int, Future[str]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.timeout_s + 5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 -- keep sending: the next tick retries
                log.warning("webhook sender: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.settings.poll_interval_s)

    def tick(self) -> None:
        from aidp.state import webhooks as state

        enqueue(self.app, self.settings)
        self._busy = {k: f for k, f in self._busy.items() if not f.done()}
        store = self.app.store()
        for row in state.due(store, time.time(), 50):
            if int(row.id) in self._busy or self._stop.is_set():
                continue
            lease = time.time() + 3 * self.settings.timeout_s + 30
            with store.write() as tx:
                if not state.claim(tx, int(row.id), float(row.next_attempt_at), lease):
                    continue
            self._busy[int(row.id)] = self._pool.submit(attempt, self.app, self.settings, row)


def lifespan(app: AppContext) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A ``create_app`` lifespan hook: the sender runs while the service does."""

    @asynccontextmanager
    async def hook(_: Any) -> AsyncIterator[None]:
        sender = Sender(app, app.settings.webhooks)
        sender.start()
        try:
            yield
        finally:
            sender.stop()

    return hook
