"""The dashboard's live feed: a run's journal as server-sent events, on the session cookie.

The same feed as the API's ``GET /api/v1/events`` (:mod:`aidp.api.routes.events`), built on
the same application-layer reads (:func:`aidp.app.events.events_after`): each event carries the
journal id as its SSE ``id`` and the CloudEvents document as its ``data`` (its ``type`` says the
kind). Unlike the API's stream the events are unnamed, so that a browser's
``EventSource.onmessage`` sees every kind without listing them. A browser's ``EventSource``
reconnects with ``Last-Event-ID`` and gets every later event once, in order. A comment every
``HEARTBEAT_S`` keeps proxies from closing an idle stream; the stream ends when the client
goes.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from functools import partial

import anyio
from fastapi import Request
from fastapi.sse import ServerSentEvent

from aidp.app.context import AppContext
from aidp.app.events import cloud_event, events_after, latest_event_id
from aidp.exceptions import InputError

__all__ = ["HEARTBEAT_S", "POLL_S", "run_events", "start_after"]

#: How often the stream looks for new events, at most (seconds).
POLL_S = 0.25
#: Seconds between heartbeat comments on an idle stream.
HEARTBEAT_S = 15.0
_PAGE = 500


def start_after(ctx: AppContext, last_event_id: str, after: int | None) -> int:
    """The journal id a stream starts after: ``Last-Event-ID`` (a reconnecting browser), else
    ``after`` (the id the page was rendered at), else the latest event.

    Raises:
        InputError: a ``Last-Event-ID`` that is no event id.
    """
    text = last_event_id.strip()
    if text:
        if not re.fullmatch(r"[0-9]{1,18}", text):
            raise InputError(f"Last-Event-ID {text[:30]!r} is not an event id")
        return int(text)
    if after is not None:
        return after
    return latest_event_id(ctx)


async def run_events(request: Request, run_id: str, after: int, *,
                     heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[ServerSentEvent]:
    """The events of run ``run_id`` after journal id ``after``, then live, as SSE."""
    ctx: AppContext = request.app.state.ctx
    cursor = after
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        page = await anyio.to_thread.run_sync(partial(
            events_after, ctx, cursor, run_id=run_id, limit=_PAGE))
        for event in page.events:
            yield ServerSentEvent(id=str(event.id), data=cloud_event(event))
        if page.events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= heartbeat_s:
            yield ServerSentEvent(comment="heartbeat")
            quiet_since = time.monotonic()
        if page.cursor - cursor < _PAGE:
            await anyio.sleep(POLL_S)
        cursor = page.cursor
