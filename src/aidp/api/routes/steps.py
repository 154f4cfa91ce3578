"""Steps and attempts of a run: get, findings, diagnostics, diff, the log (byte ranges and
follow), and the decisions of a human gate (approve, reject)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from aidp.api.auth import actor, read
from aidp.api.deps import AttemptNumber, Idem, Operator, Responses, read_on_loop
from aidp.api.idempotency import Idempotency
from aidp.api.problems import Problem
from aidp.app import commands, queries, resources
from aidp.app.context import AppContext
from aidp.app.tokens import TokenView
from aidp.app.views import StepRef

router = APIRouter(tags=["steps"], dependencies=[Depends(read)])

STEP = "/runs/{run_id}/steps/{ws_id}/{step_id}"
ATTEMPT = STEP + "/attempts/{number}"
NOT_FOUND: Responses = {404: {"description": "no such run, step or attempt"}}
#: How long one ``?follow=true`` request streams at most; the client reconnects with a Range.
FOLLOW_MAX_S = 600.0
#: How often a follow looks at the log file and the attempt's state.
FOLLOW_POLL_S = 0.2
#: Every how many polls a follow checks that the run is still driven.
FOLLOW_LIVENESS_EVERY = 25
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def _ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


@router.get(STEP, summary="One step with its attempts, findings and open gate",
            responses=NOT_FOUND)
@read_on_loop
def get_step(request: Request, run_id: str, ws_id: str, step_id: str) -> dict[str, Any]:
    ctx = _ctx(request)
    return resources.get_step(ctx, resources.step_ref(ctx, run_id, ws_id, step_id)).to_dict()


@router.get(STEP + "/attempts", summary="The attempts of a step, oldest first",
            responses=NOT_FOUND)
@read_on_loop
def list_attempts(request: Request, run_id: str, ws_id: str, step_id: str
                  ) -> list[dict[str, Any]]:
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    return [a.to_dict() for a in resources.get_step(ctx, step).attempt_list]


@router.get(ATTEMPT, summary="One attempt with its findings", responses=NOT_FOUND)
@read_on_loop
def get_attempt(request: Request, run_id: str, ws_id: str, step_id: str,
                number: AttemptNumber) -> dict[str, Any]:
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    for attempt in resources.get_step(ctx, step).attempt_list:
        if attempt.number == number:
            return attempt.to_dict()
    queries.get_attempt(ctx, step, number)  # raises NotFoundError naming the attempt
    raise AssertionError("unreachable")


@router.get(STEP + "/findings", summary="The findings of a step", responses=NOT_FOUND)
@read_on_loop
def step_findings(request: Request, run_id: str, ws_id: str, step_id: str) -> dict[str, Any]:
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    rows = queries.list_findings(ctx, step.run_id, ws_id=step.ws_id, step_id=step.step_id)
    return {"run_id": step.run_id, "findings": [f.to_dict() for f in rows]}


@router.get(ATTEMPT + "/findings", summary="The findings of an attempt", responses=NOT_FOUND)
@read_on_loop
def attempt_findings(request: Request, run_id: str, ws_id: str, step_id: str,
                     number: AttemptNumber) -> dict[str, Any]:
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    queries.get_attempt(ctx, step, number)
    rows = queries.list_findings(ctx, step.run_id, ws_id=step.ws_id, step_id=step.step_id,
                                 attempt=number)
    return {"run_id": step.run_id, "findings": [f.to_dict() for f in rows]}


@router.get(ATTEMPT + "/diagnostics", summary="The diagnostics bundle of a failed attempt "
            "(as `aidp diagnose --json`)", responses=NOT_FOUND)
def diagnostics(request: Request, run_id: str, ws_id: str, step_id: str,
                number: AttemptNumber) -> dict[str, Any]:
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    queries.get_attempt(ctx, step, number)
    return queries.get_diagnostics(ctx, step, number).to_dict()


@router.get(ATTEMPT + "/exchanges", summary="The model requests the attempt's tool made through "
            "the gateway: method, path, model, status, latency, finding, the start of the "
            "request and the answer (masked)", responses=NOT_FOUND)
def exchanges(request: Request, run_id: str, ws_id: str, step_id: str,
              number: AttemptNumber) -> dict[str, Any]:
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    return {"run_id": step.run_id,
            "exchanges": resources.attempt_exchanges(ctx, step, number)}


@router.get(ATTEMPT + "/diff", summary="What an attempt changed: the checkpoint diff of the "
            "attempt that completed the step, the kept diff of a failed one",
            responses={**NOT_FOUND, 409: {"description": "the attempt has no diff (yet)"}})
def diff(request: Request, run_id: str, ws_id: str, step_id: str,
         number: AttemptNumber) -> dict[str, Any]:
    ctx = _ctx(request)
    return resources.attempt_diff(ctx, resources.step_ref(ctx, run_id, ws_id, step_id), number)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` bytes a ``Range`` header asks of a ``size``-byte log
    (None: the whole log -- no header, or one this does not serve, e.g. several ranges).

    Raises:
        Problem: 416 when the range starts past the end.
    """
    match = _RANGE.match(header or "")
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # bytes=-N: the last N bytes
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if match[2] and last < first:
        return None  # an invalid range is ignored (RFC 9110 14.2)
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> Problem:
    return Problem(416, "range_not_satisfiable", f"the log has {size} bytes",
                   headers={"Content-Range": f"bytes */{size}"})


@router.get(ATTEMPT + "/log", summary="An attempt's log, whole, by byte range, or followed",
            response_class=PlainTextResponse,
            responses={**NOT_FOUND,
                       206: {"description": "the bytes asked for (Content-Range)",
                             "content": {"text/plain": {}}},
                       416: {"description": "the range starts past the log's end"}})
def log(request: Request, run_id: str, ws_id: str, step_id: str, number: AttemptNumber,
        follow: bool = Query(False, description="keep streaming new bytes until the attempt "
                             f"ends (at most {FOLLOW_MAX_S:.0f} s per request)")) -> Response:
    """``Range: bytes=a-b`` (or ``a-``, ``-n``) answers 206 with ``Content-Range``. With
    ``follow=true`` the answer streams from the range's start (default 0) and ends when the
    attempt has ended and every byte was sent."""
    ctx = _ctx(request)
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    found = resources.attempt_log(ctx, step, number)
    path = found.path
    size = path.stat().st_size if path is not None and path.is_file() else 0
    wanted = _byte_range(request.headers.get("range"), size)
    headers = {"Accept-Ranges": "bytes"}
    if follow:
        start = 0 if wanted is None else wanted[0]
        return StreamingResponse(_follow(ctx, step, number, path, start),
                                 media_type="text/plain; charset=utf-8", headers=headers)
    first, last = wanted if wanted is not None else (0, size - 1)
    data = _read(path, first, last - first + 1) if size else b""
    if wanted is None:
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(data, status_code=206, media_type="text/plain; charset=utf-8",
                    headers=headers)


def _read(path: Path | None, offset: int, length: int) -> bytes:
    if path is None or length <= 0:
        return b""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)
    except OSError:
        return b""


def _follow(ctx: AppContext, step: StepRef, number: AttemptNumber, path: Path | None, offset: int
            ) -> Iterator[bytes]:
    """New bytes of the log as they are written, until the attempt has ended (then one last
    read), nobody drives the run any more, or :data:`FOLLOW_MAX_S` passed. As ``aidp logs
    --follow`` does."""
    deadline = time.monotonic() + FOLLOW_MAX_S
    polls = 0
    while True:
        ended = resources.attempt_log(ctx, step, number).finished
        polls += 1
        if not ended and polls % FOLLOW_LIVENESS_EVERY == 0:
            ended = not resources.run_is_live(ctx, step.run_id)  # nobody drives it: stop
        while True:
            chunk = _read(path, offset, 1 << 16)
            if not chunk:
                break
            offset += len(chunk)
            yield chunk
        if ended or time.monotonic() > deadline:
            return
        time.sleep(FOLLOW_POLL_S)


class Decision(BaseModel):
    comment: str | None = Field(None, max_length=10_000,
                                description="a note kept in the journal with the approval")


class Rejection(BaseModel):
    comment: str = Field(..., max_length=10_000, pattern=r"\S",
                         description="why (required); kept in the journal and the step")


_GATE_ERRORS: Responses = {**NOT_FOUND, 400: {"description": "a body that is not JSON"},
                409: {"description": "the step is not awaiting approval"},
                422: {"description": "invalid body, or Idempotency-Key reused"}}


def _decide(request: Request, run_id: str, ws_id: str, step_id: str,
            body: Decision | Rejection | None,
            token: TokenView, idem: Idempotency, approve: bool) -> Response:
    ctx = _ctx(request)
    comment = body.comment if body is not None else None

    def act() -> tuple[int, dict[str, Any]]:
        step = commands.decide_gate(ctx, run_id, f"{ws_id}/{step_id}", approve=approve,
                                    by=actor(token), reason=comment)
        return 200, {"run_id": step.run_id, "workstream": step.ws_id, "step": step.step_id,
                     "decision": "approved" if approve else "rejected", "by": actor(token),
                     "comment": comment}

    return idem.run(token, act)


@router.post(STEP + "/approve", summary="Approve a step waiting at a human gate",
             responses=_GATE_ERRORS)
def approve(request: Request, run_id: str, ws_id: str, step_id: str,
            token: Operator, idem: Idem,
            body: Decision | None = None) -> Response:
    return _decide(request, run_id, ws_id, step_id, body, token, idem, approve=True)


@router.post(STEP + "/reject", summary="Reject a step waiting at a human gate (the step fails)",
             responses=_GATE_ERRORS)
def reject(request: Request, run_id: str, ws_id: str, step_id: str, body: Rejection,
           token: Operator, idem: Idem) -> Response:
    return _decide(request, run_id, ws_id, step_id, body, token, idem, approve=False)
