"""Workstream files: validate and plan (as ``aidp validate --json`` / ``aidp plan --json``),
and an OpenSpec change compiled to a plan (the run itself: ``POST /runs {"change": ...}``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from aidp.api.auth import read
from aidp.api.deps import Responses
from aidp.app import plans
from aidp.app.context import AppContext

router = APIRouter(tags=["plans"], dependencies=[Depends(read)])

_ERRORS: Responses = {400: {"description": "a body that is not JSON"},
           422: {"description": "invalid body: give files or yaml"}}


class PlanFiles(BaseModel):
    """Workstream files of the repository (paths relative to its root; directories too)."""

    model_config = ConfigDict(extra="forbid")
    files: list[str] = Field(..., min_length=1, max_length=200)
    offline: StrictBool = Field(False, description="check against aidp.toml only, not this "
                                "machine")


class PlanText(BaseModel):
    """A plan given as text (YAML or JSON), its problems naming ``name``."""

    model_config = ConfigDict(extra="forbid")
    yaml: str = Field(..., max_length=200_000)  # under the body limit in any UTF-8
    name: str = Field("inline.yaml",
                      pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,150}\.(yaml|yml|json)$")
    offline: StrictBool = Field(False, description="check against aidp.toml only, not this "
                                "machine")


PlanInput = PlanFiles | PlanText


def _check(ctx: AppContext, body: PlanInput) -> plans.PlanCheck:
    if isinstance(body, PlanText):
        return plans.check_plan_text(ctx.repo, ctx.settings, body.yaml, body.name,
                                     offline=body.offline)
    return plans.check_repo_files(ctx.repo, ctx.settings, body.files, offline=body.offline)


@router.post("/plans/validate", summary="Check workstream files as `aidp run` would "
             "(200 with ok=false and every problem, file:line:id, when invalid)",
             responses=_ERRORS)
def validate(request: Request, body: PlanInput) -> dict[str, Any]:
    return _check(request.app.state.ctx, body).validate_dict()


@router.post("/plans/plan", summary="Waves, critical path and useful parallelism of "
             "workstream files (ok=false and the problems when invalid)", responses=_ERRORS)
def plan(request: Request, body: PlanInput) -> dict[str, Any]:
    checked = _check(request.app.state.ctx, body)
    if checked.plan is None:
        return checked.validate_dict()
    return plans.plan_document(checked.plan)


@router.post("/changes/{change_id}/plan", summary="Compile an OpenSpec change to a plan "
             "(its workstream file as YAML, and its waves) without running it",
             responses={404: {"description": "no such change, or no openspec/"},
                        409: {"description": "the change has nothing to run"},
                        400: {"description": "a scenario tag names no scenario"}})
def compile_change(request: Request, change_id: str,
                   split: Literal["change", "sections"] | None = Query(None),
                   offline: bool = Query(False)) -> dict[str, Any]:
    """Read-only (nothing is written), so a read token suffices."""
    ctx = request.app.state.ctx
    text, checked = plans.compile_change_plan(ctx.repo, ctx.settings, change_id, split=split,
                                              offline=offline)
    document = (plans.plan_document(checked.plan) if checked.plan is not None
                else checked.validate_dict())
    return {"change": change_id, "yaml": text, **document}
