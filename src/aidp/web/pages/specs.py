"""The specs pages: OpenSpec specs, changes and the proposals waiting for review.

* ``/specs`` -- the specs, the active changes with their proposal state, the proposals in
  review, and the requirements two active changes claim (conflicts);
* ``/specs/spec/{id}`` -- a spec's requirements and scenarios, each with its line;
* ``/specs/change/{id}`` -- a change's tasks and deltas, its proposal's history, the review
  actions (submit, approve, reject, request changes, each with a comment) and "run this
  change" (the runs page's start form, ``POST /runs`` with ``source=change``);
* ``/specs/coverage`` -- each scenario and the tagged tests that prove it;
* ``/specs/validate`` -- the rules of ``openspec validate`` over every spec and change (or one).

Reads and moves go through :mod:`aidp.app.specs` and :mod:`aidp.app.proposals`, as the REST
API's ``/specs`` and ``/proposals`` routes do; a move needs scope ``operate`` and is recorded
under ``api:TOKEN``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from aidp.app import proposals, specs
from aidp.app.context import AppContext
from aidp.exceptions import AidpError, InputError, NotFoundError, ValidationError
from aidp.web.errors import explain, status_of
from aidp.web.render import render
from aidp.web.session import Viewer, form, operator, viewer

router = APIRouter()

#: The review moves the change page offers (as ``aidp proposals``).
MOVES = ("submit", "approve", "reject", "request-changes", "reopen")
#: Proposal states that wait for a reviewer.
IN_REVIEW = frozenset({"review"})
FLASHES = {move: f"Proposal moved: {move}." for move in MOVES}


def _root(ctx: AppContext) -> Path | None:
    try:
        return specs.spec_root(ctx.repo)
    except NotFoundError:
        return None




@router.get("/specs")
def specs_page(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    root = _root(ctx)
    if root is None:
        return render(request, "specs.html", root=None, spec_list=[], changes={},
                      proposals={}, conflicts=[], in_review=[])
    listed = {p.change: p for p in proposals.list_proposals(ctx)}
    return render(request, "specs.html", root=root,
                  spec_list=specs.list_items(root, specs=True)["specs"],
                  changes={c["name"]: c for c in specs.list_items(root)["changes"]},
                  proposals=listed,
                  conflicts=specs.conflicts(root),
                  in_review=[p for p in listed.values() if p.state in IN_REVIEW])


def _need_root(ctx: AppContext) -> Path:
    root = _root(ctx)
    if root is None:
        raise NotFoundError("there is no openspec/ directory in this repository")
    return root


@router.get("/specs/spec/{item}")
def spec_page(request: Request, item: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    root = _need_root(ctx)
    shown = specs.show_item(root, item, specs.kind_of(root, item, "spec"))
    return render(request, "spec.html", item=shown)


def _change_page(request: Request, item: str, *, flash: str | None = None,
                 error: str | None = None, problems: list[str] | None = None,
                 warnings: list[str] | None = None, code: int = 200) -> Response:
    ctx: AppContext = request.app.state.ctx
    root = _need_root(ctx)
    shown = specs.show_item(root, item, specs.kind_of(root, item, "change"))
    proposal = proposals.get_proposal(ctx, item)
    claimed = [c for c in specs.conflicts(root)
               if any(cl["change"] == item for cl in c["claims"])]
    return render(request, "change.html", status_code=code, item=shown, proposal=proposal,
                  conflicts=claimed, moves=MOVES, flash=flash, error=error,
                  problems=problems or [], warnings=warnings or [],
                  drives_runs=getattr(request.app.state, "supervisor", None) is not None)


@router.get("/specs/change/{item}")
def change_page(request: Request, item: str, who: Annotated[Viewer, Depends(viewer)],
                done: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    return _change_page(request, item, flash=FLASHES.get(done or ""))


@router.get("/specs/coverage")
def coverage_page(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    root = _need_root(ctx)
    problems: list[str] = []
    report: dict[str, Any] | None = None
    try:
        report = specs.coverage(root, ctx.settings.specs.test_paths)
    except ValidationError as exc:
        problems = [p.render() for p in exc.problems]
    return render(request, "spec_coverage.html", report=report, problems=problems)


@router.get("/specs/validate")
def validate_page(request: Request, who: Annotated[Viewer, Depends(viewer)],
                  id: Annotated[str | None, Query(max_length=200)] = None,
                  type: Literal["spec", "change"] | None = None,
                  strict: bool = False) -> Response:
    ctx: AppContext = request.app.state.ctx
    root = _need_root(ctx)
    targets = ([(specs.kind_of(root, id, type), id)] if id
               else specs.validation_targets(root, type))
    result = specs.validation_dict(specs.validate_items(root, targets, strict=strict))
    return render(request, "spec_validate.html", result=result, id=id or "", strict=strict)


@router.post("/specs/proposals/{change_id}/{action}")
async def move_proposal(request: Request, change_id: str, action: str,
                        who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    comment = (await form(request)).get("comment", "").strip() or None
    problems: list[str] = []

    def act() -> list[str]:
        if action not in MOVES:
            raise InputError(f"unknown review action {action[:40]!r}",
                             hint="one of " + ", ".join(MOVES))
        if action in ("reject", "request-changes") and not comment:
            raise InputError(f"{action} needs a comment saying why")
        if comment is not None and len(comment) > 10_000:
            raise InputError("a comment is at most 10000 characters")
        outcome = proposals.act_on_proposal(ctx, change_id, action, by=who.actor,
                                            comment=comment, on_problem=problems.append)
        return list(outcome.warnings)

    try:
        warnings = await to_thread.run_sync(act)
    except AidpError as exc:
        message = explain(exc)
        status = status_of(exc)
        return await to_thread.run_sync(lambda: _change_page(
            request, change_id, error=message, problems=problems, code=status))
    if warnings:
        return await to_thread.run_sync(lambda: _change_page(
            request, change_id, flash=FLASHES[action], warnings=warnings))
    return RedirectResponse(f"/specs/change/{quote(change_id, safe='')}?done={action}", 303)
