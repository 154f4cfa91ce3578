"""``aidp status``, ``aidp runs`` and ``aidp logs``: read-only views of the journal, rendered
from the application layer's read models (:mod:`aidp.app`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, console, echo_json, repo_options

__all__ = ["logs", "runs", "status"]


@click.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(run_ref: str | None, repo: Path | None, config_path: Path | None, as_json: bool
           ) -> None:
    """Show RUN (default: the newest): its workstreams, steps and checkpoints."""
    from aidp.app import get_run, list_runs, resolve_run

    ctx = Context(repo, config_path)
    try:
        if run_ref is None and not list_runs(ctx.app, 1):
            data = dict(_NO_RUN)  # no run yet: an empty table, not an error
        else:
            data = get_run(ctx.app, resolve_run(ctx.app, run_ref)).to_dict()
    finally:
        ctx.close()
    if as_json:
        echo_json(data)
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    if data["run_id"] is None:
        click.echo("no runs yet; start one with `aidp run FILE`", err=True)
    else:
        live = f" (driven by {data['holder']})" if data["live"] else ""
        out.print(f"run [bold]{data['run_id']}[/] {_state(data['status'])}{live}")
        if data["status"] == "interrupted":
            out.print(f"nothing drives it any more; resume it with: aidp resume {data['run_id']}")
    table = Table(show_lines=False)
    for name in ("workstream / step", "status", "attempts", "checkpoint", "note"):
        table.add_column(name)
    for ws in data["workstreams"]:
        table.add_row(f"[bold]{ws['id']}[/]", _state(ws["status"]), "",
                      (ws["head"] or "")[:10], escape(ws["reason"] or ws["branch"]))
        for step in ws["steps"]:
            note = step["reason"] or ""
            if step["failure_class"] or step["outcome"] not in (None, "succeeded"):
                note = f"[{step['failure_class'] or step['outcome']}] {note}"
            if step["next_attempt_at"]:
                note = f"next attempt at {step['next_attempt_at']}; {note}"
            if step.get("gate"):
                note = _gate_note(step["gate"], note)
            table.add_row(f"  {step['id']}", _state(step["status"]),
                          str(step["attempts_total"] or ""),
                          (step["checkpoint"] or "")[:10], escape(note))
            for row in _candidate_rows(step["attempt_list"]):
                table.add_row(*row)
    out.print(table)


def _candidate_rows(attempts: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The last best-of round's candidates, side by side under their step."""
    from rich.markup import escape

    rounds = [a for a in attempts if a.get("candidate")]
    if not rounds:
        return []
    last = rounds[-1]["candidate"]["round"]
    rows: list[tuple[str, ...]] = []
    for a in rounds:
        c = a["candidate"]
        if c["round"] != last:
            continue
        usage = a["usage"]
        figures = (f"{c['diff_lines']} line(s) in {c['diff_files']} file(s), "
                   if c["diff_lines"] is not None else "")
        figures += (f"{len(a['findings'])} finding(s), {usage['input_tokens']}/"
                    f"{usage['output_tokens']} tokens, ${usage['cost_usd'] or 0:.4f}")
        who = f"#{c['place']}" if c["place"] is not None else "judge"  # the round's judge
        rows.append((f"    {who} {a['profile'] or ''}", c["verdict"] or a["outcome"]
                     or "running", str(a["number"]), (c["commit"] or "")[:10],
                     escape(f"{c['reason'] or ''} [{figures}]")))
    return rows


def _gate_note(gate: dict[str, Any], note: str) -> str:
    """The note of a step at a human gate: where to work, what to do, then how to decide."""
    parts = [f"work in {gate['worktree']}"] if gate.get("worktree") else []
    if gate.get("prompt"):
        prompt = " ".join(str(gate["prompt"]).split())
        parts.append(f"to do: {prompt[:300]}{'…' if len(prompt) > 300 else ''}")
    return "; ".join([*parts, note] if note else parts)


#: ``status --json`` when there is no run yet: the keys of a run, nothing in them.
_NO_RUN: dict[str, Any] = {
    "run_id": None, "status": None, "recorded_status": None, "live": False,
    "resumable": False, "holder": None, "repo": None,
    "created_at": None, "started_at": None, "finished_at": None, "cancel_requested": False,
    "workstreams": [],
}

#: The colour of a state in ``status`` (shown only on a terminal without ``NO_COLOR``).
_STATE_STYLE = {"failed": "red", "timeout": "red", "completed": "green",
                "interrupted": "yellow"}


def _state(state: str) -> str:
    """``state`` as rich markup, coloured when it is a failure (red) or a success (green)."""
    from rich.markup import escape

    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else escape(state)


@click.command()
@repo_options
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs(repo: Path | None, config_path: Path | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from aidp.app import list_runs

    ctx = Context(repo, config_path)
    try:
        items = [item.to_dict() for item in list_runs(ctx.app, limit)]
    finally:
        ctx.close()
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no runs yet; start one with `aidp run FILE`", err=True)
    for item in items:
        hint = (f"  (resume: aidp resume {item['run_id']})"
                if item["status"] == "interrupted" else "")
        click.echo(f"{item['run_id']}  {item['status']:<11} {item['created_at']}  "
                   f"{item['completed']}/{item['workstreams']} workstreams completed{hint}")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="STEP")
@repo_options
@click.option("--attempt", type=int, help="Attempt number (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the attempt ends.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: run, step, attempt, log path and the log's text.")
def logs(run_ref: str, step_ref: str, repo: Path | None, config_path: Path | None,
         attempt: int | None, follow: bool, as_json: bool) -> None:
    """Print the log of STEP (WORKSTREAM/STEP, or a step id unique in the run) of RUN."""
    from aidp.app import get_attempt, resolve_step

    if as_json and follow:
        raise click.UsageError("--json and --follow cannot be combined")
    ctx = Context(repo, config_path)
    try:
        step = resolve_step(ctx.app, run_ref, step_ref)
        chosen = get_attempt(ctx.app, step, attempt)
        path = Path(chosen.log_path or "")
        if as_json:
            text = path.read_bytes().decode("utf-8", "replace") if path.is_file() else None
            echo_json({"run_id": step.run_id, "workstream": step.ws_id, "step": step.step_id,
                       "attempt": chosen.number, "finished": chosen.finished,
                       "path": str(path) if chosen.log_path else None, "text": text})
            return
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
            if get_attempt(ctx.app, step, chosen.number).finished:
                follow = False  # one more read picks up the rest
                continue
            time.sleep(0.2)
    finally:
        ctx.close()
