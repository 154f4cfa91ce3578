"""``aidp status``, ``aidp runs`` and ``aidp logs``: read-only views of the journal."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["finding_dict", "logs", "run_status", "runs", "status"]


def _ts(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value).isoformat(timespec="seconds")


def finding_dict(f: Any) -> dict[str, Any]:
    """A findings row as plain data (``status --json``, ``findings --json``)."""
    return {"source": f.source, "detector": f.detector, "file": f.file, "line": f.line,
            "column": f.col, "code": f.code, "message": f.message, "severity": f.severity,
            "class": f.failure_class, "fingerprint": f.fingerprint,
            "retry_after": f.retry_after}


def run_status(ctx: Context, run_id: str) -> dict[str, Any]:
    """The whole state of a run as plain data (the same shape ``status --json`` prints)."""
    from aidp.state.lease import lease_is_live

    store = ctx.store()
    row = store.run(run_id)
    lease = store.lease(run_id)
    live = lease_is_live(lease)
    findings: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for f in store.findings(run_id):
        findings.setdefault((f.ws_id, f.step_id, f.attempt), []).append(finding_dict(f))
    attempts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in store.attempts(run_id):
        attempts.setdefault((a.ws_id, a.step_id), []).append({
            "number": a.number, "kind": a.kind, "profile": a.profile, "adapter": a.adapter,
            "outcome": a.outcome, "failure_class": a.failure_class, "reason": a.error,
            "exit_code": a.exit_code, "signal": a.signal, "interrupted": bool(a.interrupted),
            "started_at": _ts(a.started_at), "finished_at": _ts(a.finished_at),
            "choice_reason": a.choice_reason, "tool_version": a.tool_version,
            "usage": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens,
                      "cost_usd": a.cost_usd, "requests": a.requests},
            "diagnostics": a.diagnostics_path,
            "findings": findings.get((a.ws_id, a.step_id, a.number), []),
        })
    compensations: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in store.compensations(run_id):
        compensations.setdefault((c.ws_id, c.step_id), []).append({
            "position": c.position, "action": c.kind, "status": c.status, "detail": c.detail})
    steps: dict[str, list[dict[str, Any]]] = {}
    for s in store.steps(run_id):
        steps.setdefault(s.ws_id, []).append({
            "id": s.step_id, "status": s.status, "attempts": s.attempts, "reason": s.reason,
            "checkpoint": s.checkpoint_sha, "next_attempt_at": _ts(s.next_attempt_at),
            "failure_class": s.failure_class, "outcome": s.outcome, "profile": s.profile,
            "attempt_list": attempts.get((s.ws_id, s.step_id), []),
            "compensations": compensations.get((s.ws_id, s.step_id), []),
        })
    return {
        "run_id": row.id,
        "status": row.status,
        "live": live,
        "holder": lease.holder if live and lease is not None else None,
        "repo": row.repo,
        "created_at": _ts(row.created_at),
        "started_at": _ts(row.started_at),
        "finished_at": _ts(row.finished_at),
        "cancel_requested": bool(row.cancel_requested),
        "workstreams": [
            {
                "id": w.ws_id, "status": w.status, "branch": w.branch, "base": w.base_sha,
                "head": w.head_sha, "merged": w.merged_sha, "worktree": w.worktree,
                "reason": w.reason, "steps": steps.get(w.ws_id, []),
                "compensations": compensations.get((w.ws_id, ""), []),
            }
            for w in store.workstreams(run_id)
        ],
    }


@click.command()
@click.argument("run_ref", metavar="RUN", required=False)
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(run_ref: str | None, repo: Path | None, config_path: Path | None, as_json: bool
           ) -> None:
    """Show RUN (default: the newest): its workstreams, steps and checkpoints."""
    ctx = Context(repo, config_path)
    try:
        data = run_status(ctx, ctx.store().resolve_run(run_ref))
    finally:
        ctx.close()
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    live = f" (driven by {data['holder']})" if data["live"] else ""
    console.print(f"run [bold]{data['run_id']}[/] {data['status']}{live}")
    table = Table(show_lines=False)
    for name in ("workstream / step", "status", "attempts", "checkpoint", "note"):
        table.add_column(name)
    for ws in data["workstreams"]:
        table.add_row(f"[bold]{ws['id']}[/]", ws["status"], "", (ws["head"] or "")[:10],
                      ws["reason"] or ws["branch"])
        for step in ws["steps"]:
            note = step["reason"] or ""
            if step["failure_class"] or step["outcome"] not in (None, "succeeded"):
                note = f"[{step['failure_class'] or step['outcome']}] {note}"
            if step["next_attempt_at"]:
                note = f"next attempt at {step['next_attempt_at']}; {note}"
            table.add_row(f"  {step['id']}", step["status"], str(step["attempts"] or ""),
                          (step["checkpoint"] or "")[:10], note)
    console.print(table)


@click.command()
@repo_options
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs(repo: Path | None, config_path: Path | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    ctx = Context(repo, config_path)
    try:
        store = ctx.store()
        rows = store.runs(limit)
        counts = {r.id: store.workstreams(r.id) for r in rows}
    finally:
        ctx.close()
    items = [
        {
            "run_id": r.id, "status": r.status, "created_at": _ts(r.created_at),
            "finished_at": _ts(r.finished_at), "workstreams": len(counts[r.id]),
            "completed": sum(1 for w in counts[r.id] if w.status == "completed"),
        }
        for r in rows
    ]
    if as_json:
        echo_json(items)
        return
    for item in items:
        click.echo(f"{item['run_id']}  {item['status']:<10} {item['created_at']}  "
                   f"{item['completed']}/{item['workstreams']} workstreams completed")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="STEP")
@repo_options
@click.option("--attempt", type=int, help="Attempt number (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the attempt ends.")
def logs(run_ref: str, step_ref: str, repo: Path | None, config_path: Path | None,
         attempt: int | None, follow: bool) -> None:
    """Print the log of STEP (WORKSTREAM/STEP, or a step id unique in the run) of RUN."""
    from aidp.exceptions import NotFoundError

    ctx = Context(repo, config_path)
    try:
        store = ctx.store()
        run_id, ws_id, step_id = ctx.resolve_step(run_ref, step_ref)
        rows = store.attempts(run_id, ws_id, step_id)
        if attempt is not None:
            rows = [a for a in rows if a.number == attempt]
        if not rows:
            raise NotFoundError(f"step {ws_id}/{step_id} has no attempt"
                                + (f" {attempt}" if attempt else " yet"))
        chosen = rows[-1]
        path = Path(chosen.log_path)
        offset = 0
        while True:
            if path.exists():
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                    offset += len(chunk)
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            if not follow:
                break
            current = [a for a in store.attempts(run_id, ws_id, step_id) if a.id == chosen.id]
            if current and current[0].outcome is not None:
                follow = False  # one more read picks up the rest
                continue
            time.sleep(0.2)
    finally:
        ctx.close()
