"""Events: the journal live as server-sent events (``GET /events``), and a run's events as a
JSON page for programs that poll (``GET /runs/{run_id}/events``).

Each SSE event carries the journal id as its ``id``, the CloudEvents type as its ``event`` and
the CloudEvents document as its ``data``. A client that reconnects with ``Last-Event-ID`` (or
``?after=``) gets every event after that one, in order, none twice (see
:func:`aidp.app.events.events_after`). An SSE comment every ``heartbeat`` seconds keeps proxies
from closing an idle stream. The stream ends when the client goes; each read takes a database
connection for its query only.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from aidp.api.auth import read
from aidp.api.deps import DB_INT_MAX, read_on_loop
from aidp.api.schema import event_items
from aidp.app import queries
from aidp.app.context import AppContext
from aidp.app.events import (
    check_patterns,
    cloud_event,
    events_after,
    latest_event_id,
    type_of,
)
from aidp.exceptions import InputError

router = APIRouter(tags=["events"], dependencies=[Depends(read)])

#: How often the stream looks for new events, at most (seconds).
POLL_S = 0.25
PAGE = 500
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a bad Last-Event-ID or a type that selects no event"},
    401: {"description": "no or unknown token"},
    403: {"description": "the token's scope is too small"},
    404: {"description": "no such run"},
    422: {"description": "invalid parameters"},
}


class CloudEvent(BaseModel):
    """One journal event as a CloudEvents 1.0 structured-mode JSON document."""

    specversion: Literal["1.0"]
    id: str = Field(description="the journal id (increasing; resume after it)")
    source: str = Field(description="/aidp, or /aidp/runs/RUN for an event of a run")
    type: str = Field(description="dev.aidp.KIND, e.g. dev.aidp.step.failed")
    time: str
    datacontenttype: Literal["application/json"]
    subject: str | None = Field(None, description="WORKSTREAM or WORKSTREAM/STEP")
    aidprun: str | None = Field(None, description="the run id (absent: an event of no run)")
    data: dict[str, Any]


@dataclass(frozen=True)
class Selection:
    """What a stream follows: after which id, of which run, which kinds."""

    after: int
    run_id: str | None
    types: tuple[str, ...]
    heartbeat: float
    until_idle: bool = False


def _selection(
    request: Request,
    run: Annotated[str | None, Query(
        description="only this run's events (an id or a unique prefix)")] = None,
    type_: Annotated[list[str] | None, Query(
        alias="type", description="kinds, globs or categories (step.failed, step.*, gate); "
        "repeat for several", json_schema_extra={"items": event_items()})] = None,
    after: Annotated[int | None, Query(
        ge=0, le=DB_INT_MAX, description="start after this journal id (as Last-Event-ID; "
        "default: from now on)")] = None,
    heartbeat: Annotated[float, Query(
        gt=0, le=300, description="seconds between heartbeat comments")] = 15.0,
    until_idle: Annotated[bool, Query(
        description="end the stream once every event so far was sent (a catch-up read; "
        "default: follow until the client leaves)")] = False,
    last_event_id: Annotated[str, Header(
        alias="Last-Event-ID", description="resume after this journal id (as `after`)",
        json_schema_extra={"pattern": r"^[0-9]{0,18}$"})] = "",
) -> Selection:
    """Checked before the stream starts, so that a bad request is a 4xx problem, not a
    stream that ends at once."""
    ctx: AppContext = request.app.state.ctx
    start = after
    if last_event_id.strip():
        if not re.fullmatch(r"[0-9]{1,18}", last_event_id.strip()):
            raise InputError(f"Last-Event-ID {last_event_id!r} is not an event id")
        start = int(last_event_id.strip())
    if start is None:
        start = latest_event_id(ctx)
    run_id = queries.resolve_run(ctx, run) if run else None
    return Selection(start, run_id, tuple(check_patterns(type_ or ())), heartbeat, until_idle)


@router.get("/events", response_class=EventSourceResponse, responses=_ERRORS,
            summary="The journal live, as server-sent events (CloudEvents in `data`)")
async def stream(request: Request, selection: Annotated[Selection, Depends(_selection)]
                 ) -> AsyncIterator[ServerSentEvent]:
    ctx: AppContext = request.app.state.ctx
    cursor = selection.after
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        page = await anyio.to_thread.run_sync(partial(
            events_after, ctx, cursor, run_id=selection.run_id, types=selection.types,
            limit=PAGE))
        for event in page.events:
            yield ServerSentEvent(id=str(event.id), event=type_of(event.kind),
                                  data=cloud_event(event))
        if page.events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= selection.heartbeat:
            yield ServerSentEvent(comment="heartbeat")
            quiet_since = time.monotonic()
        if page.cursor - cursor < PAGE:  # caught up: wait for more
            if selection.until_idle:
                return
            await anyio.sleep(min(POLL_S, selection.heartbeat))
        cursor = page.cursor


@router.get("/runs/{run_id}/events", response_model=list[CloudEvent], responses=_ERRORS,
            summary="A run's events after a journal id, oldest first (for polling)")
@read_on_loop
def run_events(request: Request, run_id: str,
               after: int = Query(0, ge=0, le=DB_INT_MAX,
                                 description="only events after this journal id"),
               limit: int = Query(100, ge=1, le=1000)) -> Response:
    ctx: AppContext = request.app.state.ctx
    resolved = queries.resolve_run(ctx, run_id)

    def load() -> bytes:
        page = events_after(ctx, after, run_id=resolved, limit=limit)
        return bytes(JSONResponse([cloud_event(e) for e in page.events]).body)

    body = ctx.cached(("run_events", resolved, after, limit), load)  # pollers ask again and again
    return Response(body, media_type="application/json")
