"""Runs driven by the service: start (from workstream files, an OpenSpec change or a CCPM
epic), cancel, resume, retry a failed step.

A started, resumed or retried run is driven by a worker process of the service (see
:mod:`aidp.api.supervisor`); the answer comes at once (the run's view), the run goes on in the
background -- watch it with ``GET /runs/{run_id}`` or ``aidp status``. Every POST takes an
``Idempotency-Key``; the journal names the token that acted (``run.requested``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from aidp.api.auth import actor, operate
from aidp.api.idempotency import Idempotency, idempotency
from aidp.api.problems import Problem
from aidp.app import commands, queries, service_runs
from aidp.app.tokens import TokenView

router = APIRouter(tags=["runs"])

Operator = Annotated[TokenView, Depends(operate)]
Idem = Annotated[Idempotency, Depends(idempotency)]

_RUN = {"description": "the run's view (as GET /runs/{run_id})"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad input: the workstream files (file:line: [id] message), a path "
                         "outside the repository, uncommitted changes refused"},
    404: {"description": "no such run, step, change or epic"},
    409: {"description": "the run or step is in the wrong state (live elsewhere, completed)"},
    422: {"description": "malformed body, or an Idempotency-Key reused for another request"},
    503: {"description": "the service has no run supervisor"},
}


#: A change id or epic name: a plain name, never a path (as aidp's loaders accept).
NAME_PATTERN = r"^[^./\\\x00][^/\\\x00]{0,199}$"
#: A path relative to the repository (no NUL; not blank).
FILE_PATTERN = r"^[^\x00]*\S[^\x00]*$"
_PARALLEL = Field(None, ge=1, le=256, description="steps running at once "
                  "(default: [run] parallel)")


class RunFromFiles(BaseModel):
    """Run workstream files of the repository (one plan)."""

    model_config = ConfigDict(extra="forbid", title="RunFromFiles")
    files: list[Annotated[str, Field(min_length=1, max_length=1000, pattern=FILE_PATTERN)]] = \
        Field(..., min_length=1, max_length=1000,
              description="workstream files or directories, relative to the repository")
    parallel: int | None = _PARALLEL


class RunFromChange(BaseModel):
    """Run an approved OpenSpec change."""

    model_config = ConfigDict(extra="forbid", title="RunFromChange")
    change: str = Field(..., max_length=200, pattern=NAME_PATTERN,
                        description="an approved OpenSpec change")
    parallel: int | None = _PARALLEL


class RunFromEpic(BaseModel):
    """Run a CCPM epic (.claude/epics/NAME)."""

    model_config = ConfigDict(extra="forbid", title="RunFromEpic")
    epic: str = Field(..., max_length=200, pattern=NAME_PATTERN, description="a CCPM epic")
    parallel: int | None = _PARALLEL


#: What to run: exactly one of ``files``, ``change`` and ``epic``.
RunRequest = RunFromFiles | RunFromChange | RunFromEpic


def _supervisor(request: Request) -> Any:
    supervisor = getattr(request.app.state, "supervisor", None)
    if supervisor is None:
        raise Problem(503, "no_supervisor", "this service does not drive runs")
    return supervisor


def _located(response: Response) -> Response:
    """Point ``Location`` at the run of a successful answer (a replayed one too)."""
    if response.status_code < 300:
        run_id = json.loads(bytes(response.body)).get("run_id")
        if run_id:
            response.headers["Location"] = f"/api/v1/runs/{run_id}"
    return response


@router.post("/runs", summary="Start a run (driven by the service)", status_code=201,
             responses={201: _RUN, **_ERRORS})
def start_run(request: Request, body: RunRequest, token: Operator,
              idem: Idem) -> Response:
    ctx, supervisor, by = request.app.state.ctx, _supervisor(request), actor(token)

    def action() -> tuple[int, Any]:
        run_id = service_runs.submit_run(
            ctx, files=getattr(body, "files", None), change=getattr(body, "change", None),
            epic=getattr(body, "epic", None), parallel=body.parallel, by=by)
        supervisor.start(run_id, by)
        return 201, queries.get_run(ctx, run_id).to_dict()

    return _located(idem.run(token, action))


@router.post("/runs/{run_id}/cancel", summary="Cancel a run (waits up to 10 s for a live one "
             "to stop)", responses={200: {"description": "the run's status afterwards"},
                                    **_ERRORS})
def cancel_run(request: Request, run_id: str, token: Operator,
               idem: Idem) -> Response:
    ctx = request.app.state.ctx

    def action() -> tuple[int, Any]:
        done = commands.cancel_run(ctx, queries.resolve_run(ctx, run_id), wait_s=10.0,
                                   by=actor(token))
        return 200, {"run_id": done.run_id, "live": done.live, "status": done.status,
                     "cancelled": done.cancelled}

    return idem.run(token, action)


@router.post("/runs/{run_id}/resume", summary="Resume a run in the service (never redoes a "
             "completed step)", status_code=202, responses={202: _RUN, **_ERRORS})
def resume_run(request: Request, run_id: str, token: Operator,
               idem: Idem) -> Response:
    ctx, supervisor, by = request.app.state.ctx, _supervisor(request), actor(token)

    def action() -> tuple[int, Any]:
        resolved = service_runs.prepare_resume(ctx, run_id, by=by)
        supervisor.start(resolved, by)
        return 202, queries.get_run(ctx, resolved).to_dict()

    return _located(idem.run(token, action))


@router.post("/runs/{run_id}/steps/{ws}/{step}/retry",
             summary="Run a failed step again (the run resumes in the service: every failed "
             "step of it is tried again)", status_code=202, responses={202: _RUN, **_ERRORS})
def retry_step(request: Request, run_id: str, ws: str, step: str,
               token: Operator,
               idem: Idem) -> Response:
    ctx, supervisor, by = request.app.state.ctx, _supervisor(request), actor(token)

    def action() -> tuple[int, Any]:
        ref = service_runs.prepare_retry(ctx, run_id, f"{ws}/{step}", by=by)
        supervisor.start(ref.run_id, by)
        return 202, queries.get_run(ctx, ref.run_id).to_dict()

    return _located(idem.run(token, action))
