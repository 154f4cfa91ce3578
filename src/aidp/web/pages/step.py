"""The step page (``/runs/{run_id}/steps/{ws_id}/{step_id}``): the step's attempts (outcome,
class, reason, times, profile, exit code, usage), the log of the chosen attempt (the latest by
default) with follow, the step's findings grouped by file, the attempt's diagnostics, the
prompt it was sent, and what it changed (the checkpoint diff, or the diff a failed attempt
left), highlighted server-side with Pygments so that it reads without JavaScript.

Everything a tool wrote is hostile input: the log goes through the ``ansi`` filter (escaped,
colours as classes), the diff through Pygments' HTML formatter (which escapes every token),
the prompt and the diagnostics through the templates' autoescape.

``/runs/{run_id}/steps/{ws_id}/{step_id}/attempts/{number}/log?after=OFFSET`` answers the bytes
of the log after ``OFFSET`` (whole lines) as JSON ``{"html", "offset", "finished"}``: the
page's script polls it while the attempt runs (the same byte offsets as the API's log route and
its ``Range``). Without JavaScript the page reloads itself while the attempt runs.

The controls (retry the step, approve or reject its gate) post to the run page's routes
(:mod:`aidp.web.pages.run`), which call the application layer as the REST API does, with
``next`` set to this page: they come back here with ``?done=CODE`` (the run page's flashes).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from aidp.app import queries, resources, service_runs
from aidp.app.context import AppContext
from aidp.app.views import AttemptView, FindingView, StepRef
from aidp.exceptions import AidpError, InputError
from aidp.web.ansi import ansi_to_html
from aidp.web.render import render
from aidp.web.session import Viewer, viewer

router = APIRouter()

STEP = "/runs/{run_id}/steps/{ws_id}/{step_id}"
#: How much of a log the page shows (its last bytes); the rest is a link to the API's log.
LOG_TAIL_BYTES = 64 * 1024
#: The most one poll of the log answers (bytes).
LOG_CHUNK_BYTES = 64 * 1024
#: The largest diff highlighted (characters); a longer one is cut, and says so.
DIFF_MAX_CHARS = 400_000
#: Step states a retry reopens (as the run page).
RETRYABLE = frozenset({"failed", "timeout", "skipped"})


def highlight_diff(text: str) -> Markup:
    """``text`` (a unified diff) as HTML lines with Pygments' token classes (``gi`` inserted,
    ``gd`` deleted, ``gu`` hunk, ``gh`` header): every token escaped."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    formatter = HtmlFormatter(nowrap=True, classprefix="hl-")
    return Markup(highlight(text, DiffLexer(stripnl=False, ensurenl=False), formatter))


def _read_log(path: Path | None, start: int, length: int) -> tuple[bytes, int]:
    """``length`` bytes of the log from ``start`` and the log's size (0 without a log)."""
    if path is None:
        return b"", 0
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(min(start, size))
            return log.read(length), size
    except OSError:
        return b"", 0


def _log_tail(path: Path | None) -> tuple[str, int, bool]:
    """The last :data:`LOG_TAIL_BYTES` of the log (whole lines), the offset it ends at, and
    whether an earlier part was left out."""
    _, size = _read_log(path, 0, 0)
    start = max(0, size - LOG_TAIL_BYTES)
    data, size = _read_log(path, start, size - start)
    end = start + len(data)
    cut = start > 0
    if cut and b"\n" in data:
        data = data[data.index(b"\n") + 1:]  # the first line is cut
    return data.decode("utf-8", "replace"), end, cut


def _by_file(findings: list[FindingView]) -> OrderedDict[str, list[FindingView]]:
    """Findings grouped by file (those with none under ""), files in order of appearance."""
    groups: OrderedDict[str, list[FindingView]] = OrderedDict()
    for finding in findings:
        groups.setdefault(finding.file or "", []).append(finding)
    return groups


def _diagnostics(ctx: AppContext, step: StepRef, attempt: AttemptView) -> dict[str, Any] | None:
    if not attempt.diagnostics_path:
        return None
    try:
        return queries.get_diagnostics(ctx, step, attempt.number).bundle
    except AidpError:
        return None


def _diff(ctx: AppContext, step: StepRef, attempt: AttemptView) -> dict[str, Any] | None:
    try:
        found = resources.attempt_diff(ctx, step, attempt.number)
    except AidpError:
        return None
    text = str(found.get("diff") or "")
    cut = bool(found.get("cut")) or len(text) > DIFF_MAX_CHARS
    return {**found, "html": highlight_diff(text[:DIFF_MAX_CHARS]) if text else None,
            "cut": cut}


def _step_page(request: Request, run_ref: str, ws_id: str, step_id: str,
               number: int | None, flash: str | None = None) -> Response:
    ctx: AppContext = request.app.state.ctx
    step = resources.step_ref(ctx, run_ref, ws_id, step_id)
    run = queries.get_run(ctx, step.run_id)
    view = resources.get_step(ctx, step)
    attempts = list(view.attempt_list)
    chosen = attempts[-1] if attempts else None
    if number is not None:
        chosen = next((a for a in attempts if a.number == number), None)
        if chosen is None:
            queries.get_attempt(ctx, step, number)  # NotFoundError naming the attempt
    context: dict[str, Any] = {"log": None, "log_offset": 0, "log_cut": False,
                               "diagnostics": None, "diff": None, "prompt": None,
                               "exchanges": []}
    if chosen is not None:
        path = Path(chosen.log_path) if chosen.log_path else None
        text, offset, cut = _log_tail(path)
        context.update(log=text if path is not None else None, log_offset=offset, log_cut=cut,
                       diagnostics=_diagnostics(ctx, step, chosen),
                       diff=_diff(ctx, step, chosen),
                       prompt=resources.attempt_prompt(ctx, step, chosen.number),
                       exchanges=resources.attempt_exchanges(ctx, step, chosen.number))
    findings = queries.list_findings(ctx, step.run_id, ws_id=step.ws_id, step_id=step.step_id)
    usage = queries.get_usage(ctx, step.run_id).steps.get(f"{step.ws_id}/{step.step_id}", {})
    return render(
        request, "step.html", run=run, step=view, ref=step, attempts=attempts, chosen=chosen,
        findings=_by_file(findings), findings_count=len(findings), usage=usage,
        ended=run.state in service_runs.ENDED, retryable=RETRYABLE, flash=flash,
        drives_runs=getattr(request.app.state, "supervisor", None) is not None, **context)


@router.get(STEP)
def step_page(request: Request, run_id: str, ws_id: str, step_id: str,
              who: Annotated[Viewer, Depends(viewer)],
              attempt: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
              done: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    from aidp.web.pages.run import FLASHES

    return _step_page(request, run_id, ws_id, step_id, attempt, FLASHES.get(done or ""))


@router.get(STEP + "/attempts/{number}/log")
def step_log(request: Request, run_id: str, ws_id: str, step_id: str, number: int,
             who: Annotated[Viewer, Depends(viewer)],
             after: Annotated[int, Query(ge=0, le=2**62)] = 0) -> JSONResponse:
    """The log after byte ``after``, whole lines (all of it once the attempt ended), as
    inert HTML; ``offset`` is where the next poll starts."""
    ctx: AppContext = request.app.state.ctx
    if not 1 <= number <= 1_000_000:
        raise InputError(f"attempt {number} is not a number from 1 to 1000000")
    step = resources.step_ref(ctx, run_id, ws_id, step_id)
    found = resources.attempt_log(ctx, step, number)
    finished = found.finished
    data, size = _read_log(found.path, after, LOG_CHUNK_BYTES)
    if not finished or after + len(data) < size:
        data = data[:data.rindex(b"\n") + 1] if b"\n" in data else b""
    return JSONResponse({"html": str(ansi_to_html(data.decode("utf-8", "replace"))),
                         "offset": after + len(data), "size": size,
                         "finished": finished and after + len(data) >= size},
                        headers={"Cache-Control": "no-store"})
