"""Usage, circuit breakers and OpenSpec proposals."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StrictBool

from aidp.api.auth import actor, read
from aidp.api.deps import Idem, Operator, read_on_loop
from aidp.app import commands, proposals, queries, specs, tools

router = APIRouter(tags=["catalog"], dependencies=[Depends(read)])

#: The moves of ``aidp proposals`` (:class:`aidp.specs.lifecycle.ProposalAction`).
ProposalMove = Literal["submit", "approve", "reject", "request-changes", "reopen", "start",
                       "apply", "abort", "archive"]


@router.get("/usage", summary="Tokens, cost, requests and attempts per run, workstream, step "
            "and profile (as `aidp usage --json`)",
            responses={404: {"description": "no such run"}})
@read_on_loop
def usage(request: Request, run: str | None = Query(None, max_length=64,
                                                    description="one run (default: every run)")
          ) -> dict[str, Any]:
    ctx = request.app.state.ctx
    if run is None and not ctx.has_database():
        return {"run_id": None, "total": {}, "runs": {}, "workstreams": {}, "steps": {},
                "profiles": {}}
    run_id = None if run is None else queries.resolve_run(ctx, run)
    return queries.get_usage(ctx, run_id).to_dict()


@router.get("/breakers", summary="Every circuit breaker (as `aidp breakers --json`)")
def list_breakers(request: Request) -> list[dict[str, Any]]:
    return [view.to_dict() for view in queries.list_breakers(request.app.state.ctx)]


@router.post("/breakers/{key:path}/reset", summary="Close a circuit breaker by hand "
             "(keys are profile:NAME and endpoint:URL)",
             responses={404: {"description": "no such breaker (or no database yet)"},
                        422: {"description": "Idempotency-Key reused"}})
def reset_breaker(request: Request, key: str, token: Operator,
                  idem: Idem) -> Response:
    ctx = request.app.state.ctx

    def act() -> tuple[int, dict[str, Any]]:
        before = commands.reset_breaker(ctx, key)
        return 200, {"key": key, "state": "closed", "was": before}

    return idem.run(token, act)


@router.get("/proposals", summary="Active changes with their proposal state",
            responses={404: {"description": "no openspec/ directory"}})
def list_proposals(request: Request) -> list[dict[str, Any]]:
    return [view.to_dict() for view in proposals.list_proposals(request.app.state.ctx)]


@router.get("/proposals/{change_id}", summary="A proposal's state and history",
            responses={404: {"description": "no such change"}})
def get_proposal(request: Request, change_id: str) -> dict[str, Any]:
    return proposals.get_proposal(request.app.state.ctx, change_id).to_dict()


class ProposalComment(BaseModel):
    comment: str | None = Field(None, max_length=10_000, description="why; recorded")


@router.post("/proposals/{change_id}/{action}", summary="Move a proposal: submit, approve, "
             "reject, request-changes, reopen, start, apply, abort, archive",
             responses={400: {"description": "the change does not validate (submit), or a "
                              "body that is not JSON"},
                        404: {"description": "no such change"},
                        409: {"description": "the move is not legal from this state"},
                        422: {"description": "unknown action, invalid body, or "
                              "Idempotency-Key reused"}})
def act_on_proposal(request: Request, change_id: str, action: ProposalMove,
                    token: Operator, idem: Idem,
                    body: ProposalComment | None = None) -> Response:
    ctx = request.app.state.ctx
    comment = body.comment if body is not None else None

    def act() -> tuple[int, dict[str, Any]]:
        problems: list[str] = []
        try:
            outcome = proposals.act_on_proposal(ctx, change_id, action, by=actor(token),
                                                comment=comment, on_problem=problems.append)
        except Exception as exc:
            if problems and hasattr(exc, "message"):
                exc.message = f"{exc.message}: " + "; ".join(problems[:20])
            raise
        return 200, outcome.to_dict()

    return idem.run(token, act)


@router.get("/tools", summary="The tool profiles of aidp.toml with their last check "
            "(as `aidp tools list --json`)")
def list_tools(request: Request) -> list[dict[str, Any]]:
    return tools.list_tools(request.app.state.ctx)


@router.get("/tools/stats", summary="How each tool profile's finished attempts went, over every "
            "run, per capability and language (as `aidp tools stats --json`)")
@read_on_loop
def tool_stats(request: Request,
               capability: str | None = Query(None, max_length=64,
                                              description="only steps asking for it"),
               language: str | None = Query(None, max_length=64,
                                            description="only steps asking for it")
               ) -> list[dict[str, Any]]:
    return tools.tool_stats(request.app.state.ctx, capability=capability, language=language)


@router.post("/tools/check", summary="Probe tool profiles: binary, version, a canary request "
             "(results stored as by `aidp tools check`)",
             responses={404: {"description": "no such profile"},
                        422: {"description": "Idempotency-Key reused"}})
def check_tools(request: Request, token: Operator, idem: Idem,
                profile: str | None = Query(None, max_length=200,
                                            description="one profile (default: every one)"),
                offline: bool = Query(False, description="send no request beyond 127.0.0.1")
                ) -> Response:
    """200 even when a check failed: each result says ``ok`` and why."""
    ctx = request.app.state.ctx
    return idem.run(token, lambda: (200, tools.check_tools(ctx, profile, offline=offline)))


SpecKind = Literal["spec", "change"]


@router.get("/specs", summary="The specs (or, with type=change, the active changes) of "
            "openspec/ (as `aidp specs list --json`)",
            responses={404: {"description": "no openspec/ directory"}})
def list_specs(request: Request, type: SpecKind = "spec") -> dict[str, Any]:
    root = specs.spec_root(request.app.state.ctx.repo)
    return specs.list_items(root, specs=type == "spec")


@router.get("/specs/{item}", summary="A spec (or, with type=change, a change): requirements "
            "and scenarios, or tasks and deltas, each with its line",
            responses={404: {"description": "no such spec or change, or no openspec/"}})
def show_spec(request: Request, item: str, type: SpecKind = "spec"
              ) -> dict[str, Any]:
    root = specs.spec_root(request.app.state.ctx.repo)
    return specs.show_item(root, item, specs.kind_of(root, item, type))


class SpecValidation(BaseModel):
    id: str | None = Field(None, max_length=200, description="one spec or change (default: all)")
    type: SpecKind | None = None
    strict: StrictBool = Field(False, description="warnings fail too")


@router.post("/specs/validate", summary="Validate specs and changes with the rules of "
             "`openspec validate` (200 with ok=false and every issue, file:line, when invalid)",
             responses={400: {"description": "an id that is both a spec and a change, or a "
                              "body that is not JSON"},
                        404: {"description": "no such spec or change, or no openspec/"}})
def validate_specs(request: Request, body: SpecValidation | None = None) -> dict[str, Any]:
    body = body or SpecValidation()
    root = specs.spec_root(request.app.state.ctx.repo)
    targets = ([(specs.kind_of(root, body.id, body.type), body.id)] if body.id is not None
               else specs.validation_targets(root, body.type))
    return specs.validation_dict(specs.validate_items(root, targets, strict=body.strict))
