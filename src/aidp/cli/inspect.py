"""``aidp status``, ``aidp runs`` and ``aidp logs``: read-only views of the journal, rendered
from the application layer's read models (:mod:`aidp.app`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["logs", "runs", "status"]


@click.command()
@click.argument("run_ref", metavar="RUN", required=False)
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(run_ref: str | None, repo: Path | None, config_path: Path | None, as_json: bool
           ) -> None:
    """Show RUN (default: the newest): its workstreams, steps and checkpoints."""
    from aidp.app import get_run, resolve_run

    ctx = Context(repo, config_path)
    try:
        data = get_run(ctx.app, resolve_run(ctx.app, run_ref)).to_dict()
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
    from aidp.app import list_runs

    ctx = Context(repo, config_path)
    try:
        items = [item.to_dict() for item in list_runs(ctx.app, limit)]
    finally:
        ctx.close()
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
    from aidp.app import get_attempt, resolve_step

    ctx = Context(repo, config_path)
    try:
        step = resolve_step(ctx.app, run_ref, step_ref)
        chosen = get_attempt(ctx.app, step, attempt)
        path = Path(chosen.log_path or "")
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
