"""The runs page: every run, newest first, with counts by state, a filter by state, a search
by id or text (a workstream's id), pagination, and the form that starts a run.

``POST /runs`` starts a run exactly as ``POST /api/v1/runs`` does: validated and recorded by
:func:`aidp.app.service_runs.submit_run` (from workstream files of the repository, an OpenSpec
change or a CCPM epic), then driven by the service's run supervisor in a worker process. The
journal names the token that asked (``api:NAME``). Bad input shows the form again with every
problem (file, line, id), and nothing is written.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from aidp.app import queries, service_runs
from aidp.app.context import AppContext
from aidp.app.views import RunListItemView
from aidp.exceptions import AidpError, InputError, ValidationError
from aidp.web.errors import explain, status_of
from aidp.web.render import render
from aidp.web.session import Viewer, form_pairs, operator, viewer

router = APIRouter()

#: States a run is shown in (the filter's choices), in the order of their counts.
STATES = ("running", "interrupted", "pending", "failed", "completed", "cancelled")
PAGE_SIZE = 25
#: The most runs the page reads (its counts, filter and search cover the newest this many).
SCAN_LIMIT = 1000
#: Search by text reads the workstreams of at most this many runs.
TEXT_SEARCH_LIMIT = 500
#: Messages after an action (by code: no text from the query is shown).
FLASHES = {"started": "Run started: the service drives it now."}


def _matches_text(ctx: AppContext, run: RunListItemView, needle: str) -> bool:
    view = queries.get_run(ctx, run.run_id)
    return any(needle in ws.id.lower() or any(needle in s.id.lower() for s in ws.steps)
               for ws in view.workstreams)


def _listing(ctx: AppContext, status: str | None, q: str, page: int) -> dict[str, Any]:
    runs = queries.list_runs(ctx, limit=SCAN_LIMIT)
    counts = {state: 0 for state in STATES}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    shown = [r for r in runs if status is None or r.state == status]
    needle = q.strip().lower()
    if needle:
        by_id = [r for r in shown if needle in r.run_id.lower()]
        by_text = [r for r in shown[:TEXT_SEARCH_LIMIT]
                   if r not in by_id and _matches_text(ctx, r, needle)]
        chosen = {r.run_id for r in [*by_id, *by_text]}
        shown = [r for r in shown if r.run_id in chosen]
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page = min(page, pages)
    return {"runs": shown[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], "counts": counts,
            "total": len(runs), "matched": len(shown), "page": page, "pages": pages}


def _page(request: Request, *, status: str | None = None, q: str = "", page: int = 1,
          flash: str | None = None, error: str | None = None,
          problems: list[str] | None = None, chosen: dict[str, str] | None = None,
          code: int = 200) -> Response:
    ctx: AppContext = request.app.state.ctx
    listing = _listing(ctx, status, q, page)
    sources = service_runs.run_sources(ctx)
    return render(request, "runs.html", status_code=code, status=status, q=q,
                  states=STATES, flash=flash, error=error, problems=problems or [],
                  sources=sources, chosen=chosen or {},
                  drives_runs=getattr(request.app.state, "supervisor", None) is not None,
                  scan_limit=SCAN_LIMIT, **listing)


@router.get("/runs")
def runs_page(request: Request, who: Annotated[Viewer, Depends(viewer)],
              status: Annotated[str | None, Query(max_length=20)] = None,
              q: Annotated[str, Query(max_length=200)] = "",
              page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
              done: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    if status == "":
        status = None
    if status is not None and status not in STATES:
        raise InputError(f"unknown run state {status!r}", hint="one of " + ", ".join(STATES))
    return _page(request, status=status, q=q, page=page, flash=FLASHES.get(done or ""))


def _start(request: Request, fields: dict[str, str], files: list[str], by: str) -> str:
    ctx: AppContext = request.app.state.ctx
    supervisor = getattr(request.app.state, "supervisor", None)
    if supervisor is None:
        raise InputError("this service does not drive runs (no run supervisor)")
    source = fields.get("source", "files")
    parallel_text = fields.get("parallel", "").strip()
    parallel = None
    if parallel_text:
        if not parallel_text.isdigit() or not 1 <= int(parallel_text) <= 256:
            raise InputError(f"parallel {parallel_text[:20]!r} is not a number from 1 to 256")
        parallel = int(parallel_text)
    if source == "files":
        if not files:
            raise InputError("name at least one workstream file of the repository")
        run_id = service_runs.submit_run(ctx, files=files, parallel=parallel, by=by)
    elif source == "change":
        change = fields.get("change", "").strip()
        if not change:
            raise InputError("name an OpenSpec change")
        run_id = service_runs.submit_run(ctx, change=change, parallel=parallel, by=by)
    elif source == "epic":
        epic = fields.get("epic", "").strip()
        if not epic:
            raise InputError("name a CCPM epic")
        run_id = service_runs.submit_run(ctx, epic=epic, parallel=parallel, by=by)
    else:
        raise InputError(f"unknown source {source[:20]!r} (files, change or epic)")
    supervisor.start(run_id, by)
    return run_id


@router.post("/runs")
async def start_run(request: Request, who: Annotated[Viewer, Depends(operator)]) -> Response:
    pairs = await form_pairs(request)
    fields = dict(pairs)
    files = [line.strip() for name, value in pairs if name == "files"
             for line in value.splitlines() if line.strip()]
    try:
        run_id = await to_thread.run_sync(_start, request, fields, files, who.actor)
    except ValidationError as exc:
        problems = [p.render() for p in exc.problems]
        return await to_thread.run_sync(lambda: _page(
            request, error="the workstream files have problems; nothing was started",
            problems=problems, chosen=fields, code=400))
    except AidpError as exc:
        message, code = explain(exc), status_of(exc)
        return await to_thread.run_sync(lambda: _page(
            request, error=message, chosen=fields, code=code))
    return RedirectResponse(f"/runs/{run_id}?done=started", 303)


