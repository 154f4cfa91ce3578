"""Runs: list and get (more operations in the resources routes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from aidp.api.auth import read
from aidp.app import queries

router = APIRouter(tags=["runs"], dependencies=[Depends(read)])


@router.get("/runs", summary="Runs, newest first")
def list_runs(request: Request, limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
    ctx = request.app.state.ctx
    if not ctx.has_database():
        return []
    return [item.to_dict() for item in queries.list_runs(ctx, limit)]


@router.get("/runs/{run_id}", summary="One run with its workstreams and steps",
            responses={404: {"description": "no such run"}})
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    ctx = request.app.state.ctx
    return queries.get_run(ctx, queries.resolve_run(ctx, run_id)).to_dict()
