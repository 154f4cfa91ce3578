"""The run page (``/runs/{run_id}``): summary (state, times, cost against the budget), the DAG,
a table of workstreams and steps that works without JavaScript, the timeline of attempts, and
the controls -- cancel, resume, roll back to a checkpoint, retry a step, approve or reject a
gate -- each confirmed in the browser and posted to a dashboard route that calls the
application layer (the same calls as the REST API's routes; the journal names ``api:TOKEN``).

``/runs/{run_id}/state`` answers the run's states as JSON (the page's script reads it to draw
and recolour the DAG) and ``/runs/{run_id}/live`` streams the run's events (:mod:`aidp.web.live`).
Every row of a step carries ``data-step="WS/STEP"`` and ``data-state="STATE"``; the graph is a
canvas, so its nodes are mirrored (hidden) in ``#dag-nodes li`` with ``data-step``,
``data-state`` and ``data-color`` (the fill the node is drawn with).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from aidp.app import commands, queries, service_runs
from aidp.app.context import AppContext
from aidp.app.events import latest_event_id
from aidp.app.views import AttemptView, RunView
from aidp.exceptions import AidpError, InputError, StateError
from aidp.web.errors import explain, status_of
from aidp.web.live import run_events, start_after
from aidp.web.render import render
from aidp.web.session import Viewer, form, operator, safe_next, viewer

router = APIRouter()

#: Messages after an action (by code: no text from the query is shown).
FLASHES = {
    "started": "Run started: the service drives it now.",
    "cancelled": "Cancel requested.",
    "resumed": "Run resumed in the service.",
    "rolledback": "Rolled back to the checkpoint: resume the run to go on from there.",
    "retried": "Step queued for another try: the run resumes in the service.",
    "approved": "Gate approved.",
    "rejected": "Gate rejected.",
}
#: Step states a retry reopens (as aidp.app.service_runs).
RETRYABLE = frozenset({"failed", "timeout", "skipped"})
_PLAN_EDGES: dict[str, list[tuple[str, str]]] = {}


def _edges(ctx: AppContext, run: RunView) -> list[tuple[str, str]]:
    """The DAG's edges between steps (``WS/STEP`` pairs, dependency first): each step's
    ``depends_on``, and a workstream's ``depends_on`` drawn from the dependency's last steps
    to the dependent's first ones. A run's plan never changes: kept per run."""
    if run.run_id in _PLAN_EDGES:
        return _PLAN_EDGES[run.run_id]
    try:
        plan = queries.run_plan(ctx, run.run_id)
    except AidpError:
        return []
    edges: list[tuple[str, str]] = []
    firsts: dict[str, list[str]] = {}
    lasts: dict[str, list[str]] = {}
    for ws in plan.workstreams:
        needed = {d for s in ws.steps for d in s.depends_on}
        firsts[ws.id] = [f"{ws.id}/{s.id}" for s in ws.steps if not s.depends_on]
        lasts[ws.id] = [f"{ws.id}/{s.id}" for s in ws.steps if s.id not in needed]
        edges += [(f"{ws.id}/{d}", f"{ws.id}/{s.id}") for s in ws.steps for d in s.depends_on]
    for ws in plan.workstreams:
        for dep in ws.depends_on:
            edges += [(a, b) for a in lasts.get(dep, []) for b in firsts.get(ws.id, [])]
    if len(_PLAN_EDGES) > 256:
        _PLAN_EDGES.clear()
    _PLAN_EDGES[run.run_id] = edges
    return edges


def _state(ctx: AppContext, run_id: str) -> dict[str, Any]:
    """The run's states as the page's script reads them."""
    last = latest_event_id(ctx)
    return _state_of(ctx, queries.get_run(ctx, run_id), last)


def _state_of(ctx: AppContext, run: RunView, last: int) -> dict[str, Any]:
    """``run``'s states, read after journal id ``last``."""
    return {
        "run_id": run.run_id, "state": run.state, "live": run.live,
        "last_event_id": last,
        "workstreams": [{"id": ws.id, "state": ws.status} for ws in run.workstreams],
        "steps": [{"id": f"{ws.id}/{s.id}", "ws": ws.id, "step": s.id, "state": s.status,
                   "attempts": s.attempts or 0}
                  for ws in run.workstreams for s in ws.steps],
        "edges": _edges(ctx, run),
    }


def _timeline(run: RunView) -> list[AttemptView]:
    attempts = [a for ws in run.workstreams for s in ws.steps for a in s.attempt_list]
    return sorted(attempts, key=lambda a: (a.started_at or 0.0, a.id))


#: How much of a failed step's last log the run page shows (bytes, then lines).
TAIL_BYTES = 4096
TAIL_LINES = 8


def _tail(path: str | None) -> str | None:
    """The last lines of a log file (raw: the template escapes it and renders its colours)."""
    if not path:
        return None
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - TAIL_BYTES))
            data = log.read()
    except OSError:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is cut
    return "\n".join(lines[-TAIL_LINES:])


def _failure_tails(run: RunView) -> dict[str, str]:
    """``WS/STEP`` -> the end of the last attempt's log, for each step that failed."""
    found = {}
    for ws in run.workstreams:
        for step in ws.steps:
            if step.status in RETRYABLE and step.attempt_list:
                text = _tail(step.attempt_list[-1].log_path)
                if text:
                    found[f"{ws.id}/{step.id}"] = text
    return found


def _budget(ctx: AppContext) -> dict[str, float | int | None]:
    budget = ctx.settings.run.budget
    return {"cost_usd": budget.cost_usd if budget else None,
            "tokens": budget.tokens if budget else None}


def _page(request: Request, run_ref: str, *, flash: str | None = None,
          error: str | None = None, code: int = 200, bulk: bool = True) -> Response:
    """The run page; without ``bulk`` the table of steps and the timeline are left out (the
    page's script reads that much when it refreshes a large run's summary)."""
    ctx: AppContext = request.app.state.ctx
    run_id = queries.resolve_run(ctx, run_ref)
    last = latest_event_id(ctx)
    run = queries.get_run(ctx, run_id)
    usage = queries.get_usage(ctx, run_id).total
    steps = [(ws, s) for ws in run.workstreams for s in ws.steps]
    return render(
        request, "run.html", status_code=code, run=run, usage=usage, budget=_budget(ctx),
        timeline=_timeline(run), last_event_id=last, tails=_failure_tails(run), flash=flash,
        error=error,
        checkpoints=[f"{ws.id}/{s.id}" for ws, s in steps if s.checkpoint],
        retryable=RETRYABLE, ended=run.state in service_runs.ENDED, now=time.time(),
        drives_runs=getattr(request.app.state, "supervisor", None) is not None,
        has_graph=_has_graph(), state=_state_of(ctx, run, last), bulk=bulk)


def _has_graph() -> bool:
    from aidp.web.static_files import vendor_path

    return all(vendor_path(name) is not None
               for name in ("cytoscape.min.js", "dagre.min.js", "cytoscape-dagre.js"))


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, who: Annotated[Viewer, Depends(viewer)],
             done: Annotated[str | None, Query(max_length=20)] = None,
             part: Annotated[Literal["all", "head"], Query()] = "all") -> Response:
    return _page(request, run_id, flash=FLASHES.get(done or ""), bulk=part == "all")


@router.get("/runs/{run_id}/state")
def run_state(request: Request, run_id: str,
              who: Annotated[Viewer, Depends(viewer)]) -> JSONResponse:
    ctx: AppContext = request.app.state.ctx
    return JSONResponse(_state(ctx, queries.resolve_run(ctx, run_id)),
                        headers={"Cache-Control": "no-store"})


def _live_start(request: Request, run_id: str, who: Annotated[Viewer, Depends(viewer)],
                after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
                last_event_id: Annotated[str, Header(alias="Last-Event-ID")] = "",
                ) -> tuple[str, int]:
    """Checked before the stream starts, so that a bad request is an error page, not a stream
    that ends at once."""
    ctx: AppContext = request.app.state.ctx
    return queries.resolve_run(ctx, run_id), start_after(ctx, last_event_id, after)


@router.get("/runs/{run_id}/live", response_class=EventSourceResponse)
async def run_live(request: Request,
                   start: Annotated[tuple[str, int], Depends(_live_start)]
                   ) -> AsyncIterator[ServerSentEvent]:
    async for event in run_events(request, start[0], start[1]):
        yield event


# -- controls ----------------------------------------------------------------------------------

def _supervisor(request: Request) -> Any:
    supervisor = getattr(request.app.state, "supervisor", None)
    if supervisor is None:
        raise StateError("this service does not drive runs (no run supervisor)")
    return supervisor


async def _act(request: Request, run_ref: str, action: Callable[[str], str]) -> Response:
    """Run ``action`` on the resolved run id (in a thread); 303 back to the run (or to the form
    field ``next``, a page of this run such as its step's) with the flash code it returns, or
    the run page again with the error (nothing changed). An unknown run is the 404 page."""
    ctx: AppContext = request.app.state.ctx
    run_id = await to_thread.run_sync(queries.resolve_run, ctx, run_ref)
    back = safe_next((await form(request)).get("next"))
    if not back.startswith(f"/runs/{run_id}/"):
        back = f"/runs/{run_id}"
    try:
        code = await to_thread.run_sync(action, run_id)
    except AidpError as exc:
        message, status = explain(exc), status_of(exc)
        return await to_thread.run_sync(
            lambda: _page(request, run_id, error=message, code=status))
    return RedirectResponse(f"{back}{'&' if '?' in back else '?'}done={code}", 303)


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str,
                 who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx

    def action(resolved: str) -> str:
        commands.cancel_run(ctx, resolved, wait_s=5.0, by=who.actor)
        return "cancelled"

    return await _act(request, run_id, action)


@router.post("/runs/{run_id}/resume")
async def resume(request: Request, run_id: str,
                 who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    supervisor = _supervisor(request)

    def action(resolved: str) -> str:
        service_runs.prepare_resume(ctx, resolved, by=who.actor)
        supervisor.start(resolved, who.actor)
        return "resumed"

    return await _act(request, run_id, action)


@router.post("/runs/{run_id}/rollback")
async def rollback(request: Request, run_id: str,
                   who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    to = (await form(request)).get("to", "").strip()

    def action(resolved: str) -> str:
        if not to:
            raise InputError("choose the checkpoint to roll back to (WORKSTREAM/STEP)")
        commands.rollback_run(ctx, resolved, to, by=who.actor)
        return "rolledback"

    return await _act(request, run_id, action)


@router.post("/runs/{run_id}/steps/{ws}/{step}/retry")
async def retry(request: Request, run_id: str, ws: str, step: str,
                who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    supervisor = _supervisor(request)

    def action(resolved: str) -> str:
        service_runs.prepare_retry(ctx, resolved, f"{ws}/{step}", by=who.actor)
        supervisor.start(resolved, who.actor)
        return "retried"

    return await _act(request, run_id, action)


@router.post("/runs/{run_id}/steps/{ws}/{step}/approve")
async def approve(request: Request, run_id: str, ws: str, step: str,
                  who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    reason = (await form(request)).get("reason", "").strip() or None

    def action(resolved: str) -> str:
        commands.decide_gate(ctx, resolved, f"{ws}/{step}", approve=True, by=who.actor,
                             reason=reason)
        return "approved"

    return await _act(request, run_id, action)


@router.post("/runs/{run_id}/steps/{ws}/{step}/reject")
async def reject(request: Request, run_id: str, ws: str, step: str,
                 who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    reason = (await form(request)).get("reason", "").strip()

    def action(resolved: str) -> str:
        if not reason:
            raise InputError("a rejection needs a reason")
        commands.decide_gate(ctx, resolved, f"{ws}/{step}", approve=False, by=who.actor,
                             reason=reason)
        return "rejected"

    return await _act(request, run_id, action)
