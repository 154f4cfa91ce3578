"""Runs: list (filters, cursor pagination), get, workstreams, findings and rollback."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from aidp.api.auth import actor, read
from aidp.api.deps import Idem, Operator, Responses, read_on_loop
from aidp.api.problems import Problem
from aidp.app import commands, queries, resources

router = APIRouter(tags=["runs"], dependencies=[Depends(read)])

RunStatus = Literal["pending", "running", "interrupted", "completed", "failed", "cancelled"]
NOT_FOUND: Responses = {404: {"description": "no such run (or workstream)"}}
BAD_INPUT: Responses = {400: {"description": "a cursor that is no position"}}
#: Epoch seconds, as ``since`` takes them.
EPOCH = r"^-?[0-9]{1,12}(\.[0-9]{1,9})?$"
_DATETIME = TypeAdapter(datetime)


class RunPage(BaseModel):
    """One page of runs, newest first; pass ``next_cursor`` back as ``cursor`` for the next
    (null: this was the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@router.get("/runs", summary="Runs, newest first, a page at a time", response_model=RunPage,
            responses=BAD_INPUT)
@read_on_loop
def list_runs(request: Request, limit: int = Query(20, ge=1, le=500),
              cursor: str | None = Query(None, pattern=resources.CURSOR_PATTERN,
                                         description="next_cursor of the previous page"),
              status: Annotated[RunStatus | None, Query(description="the state shown")] = None,
              since: Annotated[str | None, Query(
                  max_length=64, description="created at or after (ISO 8601, or epoch seconds)",
                  json_schema_extra={"anyOf": [{"type": "string", "format": "date-time"},
                                               {"type": "string", "pattern": EPOCH}]})] = None,
              change: str | None = Query(None, max_length=200,
                                         description="runs of this OpenSpec change")
              ) -> dict[str, Any]:
    ctx = request.app.state.ctx
    moment = None if since is None else _moment(since)
    return resources.page_runs(ctx, limit=limit, cursor=cursor, status=status, since=moment,
                               change=change).to_dict()


def _moment(since: str) -> float:
    """``since`` as epoch seconds: a decimal number of seconds, or an ISO 8601 time (UTC
    unless it says otherwise)."""
    if re.fullmatch(EPOCH, since):
        return float(since)
    try:
        moment = _DATETIME.validate_python(since)
    except PydanticValidationError:
        raise Problem(422, "invalid_request", f"query.since: {since!r} is no time (ISO 8601, "
                      "or epoch seconds)", exit_code=2) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@router.get("/runs/{run_id}", summary="One run with its workstreams and steps",
            responses=NOT_FOUND)
@read_on_loop
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    ctx = request.app.state.ctx
    return queries.get_run(ctx, queries.resolve_run(ctx, run_id)).to_dict()


@router.get("/runs/{run_id}/workstreams", summary="The workstreams of a run with their steps",
            responses=NOT_FOUND)
@read_on_loop
def list_workstreams(request: Request, run_id: str) -> list[dict[str, Any]]:
    ctx = request.app.state.ctx
    run = queries.get_run(ctx, queries.resolve_run(ctx, run_id))
    return [ws.to_dict() for ws in run.workstreams]


@router.get("/runs/{run_id}/workstreams/{ws_id}", summary="One workstream with its steps",
            responses=NOT_FOUND)
@read_on_loop
def get_workstream(request: Request, run_id: str, ws_id: str) -> dict[str, Any]:
    return resources.get_workstream(request.app.state.ctx, run_id, ws_id).to_dict()


@router.get("/runs/{run_id}/findings", summary="Every finding of a run (as `aidp findings`)",
            responses=NOT_FOUND)
@read_on_loop
def run_findings(request: Request, run_id: str) -> dict[str, Any]:
    ctx = request.app.state.ctx
    resolved = queries.resolve_run(ctx, run_id)
    return {"run_id": resolved,
            "findings": [f.to_dict() for f in queries.list_findings(ctx, resolved)]}


class RollbackBody(BaseModel):
    to: str = Field(..., min_length=1, max_length=300,
                    description="the checkpoint to go back to: WORKSTREAM/STEP")


@router.post("/runs/{run_id}/rollback", summary="Move a workstream back to a step's checkpoint",
             responses={**NOT_FOUND, 409: {"description": "the run is live"},
                        400: {"description": "a body that is not JSON"},
                        422: {"description": "invalid body, or Idempotency-Key reused"}})
def rollback(request: Request, run_id: str, body: RollbackBody,
             token: Operator,
             idem: Idem) -> Response:
    ctx = request.app.state.ctx
    return idem.run(token, lambda: (
        200, commands.rollback_run(ctx, run_id, body.to, by=actor(token)).to_dict()))
