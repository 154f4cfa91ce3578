"""``aidp findings`` and ``aidp diagnose``: why steps failed, rendered from the application
layer's read models (:mod:`aidp.app`)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["DIFF_LINES", "diagnose", "findings"]

# lines of the worktree's diff that `aidp diagnose` prints (--json has all the bundle keeps)
DIFF_LINES = 200


@click.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--step", "step_ref", metavar="WS/STEP", help="Only this step's findings.")
@click.option("--attempt", type=int, help="Only this attempt's findings.")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def findings(run_ref: str | None, step_ref: str | None, attempt: int | None,
             repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """List the findings of RUN (default: the newest): one normalized error per line."""
    from aidp.app import list_findings, resolve_run, resolve_step

    ctx = Context(repo, config_path)
    try:
        if step_ref is not None:
            step = resolve_step(ctx.app, run_ref, step_ref)
            run_id = step.run_id
            rows = list_findings(ctx.app, run_id, ws_id=step.ws_id, step_id=step.step_id,
                                 attempt=attempt)
        else:
            run_id = resolve_run(ctx.app, run_ref)
            rows = list_findings(ctx.app, run_id, attempt=attempt)
    finally:
        ctx.close()
    items = [r.to_dict() for r in rows]
    if as_json:
        echo_json({"run_id": run_id, "findings": items})
        return
    if not items:
        click.echo(f"run {run_id}: no findings")
        return
    from aidp.app.reports import finding_line

    for row in rows:
        click.echo(finding_line(row))


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="STEP")
@click.option("--attempt", type=int, help="Attempt number (default: the latest failed one).")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print the bundle as JSON.")
def diagnose(run_ref: str, step_ref: str, attempt: int | None, repo: Path | None,
             config_path: Path | None, as_json: bool) -> None:
    """Print the diagnostics bundle of a failed attempt of STEP (WORKSTREAM/STEP) of RUN."""
    from aidp.app import get_diagnostics, resolve_step

    ctx = Context(repo, config_path)
    try:
        step = resolve_step(ctx.app, run_ref, step_ref)
        bundle = get_diagnostics(ctx.app, step, attempt).to_dict()
    finally:
        ctx.close()
    ws_id, step_id = step.ws_id, step.step_id
    if as_json:
        echo_json(bundle)
        return
    click.echo(f"{ws_id}/{step_id} attempt {bundle['attempt']} ({bundle['kind']}) "
               f"with {bundle['profile']} [{bundle['adapter']}] "
               f"{bundle.get('tool_version') or ''}".rstrip())
    click.echo(f"outcome: {bundle['outcome']}  class: {bundle.get('failure_class')}  "
               f"exit: {bundle.get('exit_code')}  signal: {bundle.get('signal')}  "
               f"{bundle.get('duration_s')}s")
    click.echo(f"reason: {bundle.get('reason')}")
    if bundle.get("command_line"):
        click.echo("command: " + shlex.join(bundle["command_line"]))
    click.echo("environment names: " + (", ".join(bundle.get("env_names") or []) or "-"))
    if bundle.get("breaker"):
        click.echo(f"breaker: {bundle['breaker']}")
    click.echo(f"findings ({len(bundle.get('findings') or [])}):")
    for f in bundle.get("findings") or []:
        where = f.get("file") or "-"
        if f.get("line"):
            where += f":{f['line']}"
        click.echo(f"  {f['class']:<9} {f['detector']} {where}: "
                   f"{(f['message'].splitlines() or [''])[0]}")
    for failure in bundle.get("detector_failures") or []:
        click.echo(f"  detector failed: {failure}")
    exchanges = bundle.get("exchanges") or []
    if exchanges:
        click.echo(f"model exchanges ({len(exchanges)}; {bundle.get('exchanges_path')}):")
    for ex in exchanges:
        line = (f"  {ex.get('method')} {ex.get('path')} {ex.get('model') or ''} -> "
                f"{ex.get('status')} ({ex.get('latency_ms')} ms)")
        click.echo(line + (f" {ex['finding']}" if ex.get("finding") else ""))
    git = bundle.get("git") or {}
    if git:
        click.echo(f"git: HEAD {git.get('head', '')[:12]}")
        for line in (git.get("status") or "").splitlines()[:30]:
            click.echo(f"  {line}")
        _echo_diff(git)
    click.echo(f"last log lines ({bundle.get('log_path')}):")
    for line in bundle.get("log_tail") or []:
        click.echo(f"  {line}")


def _echo_diff(git: dict[str, object]) -> None:
    """The failed attempt's uncommitted diff (stat, then patch), cut at ``DIFF_LINES`` lines
    with a note saying so."""
    lines = str(git.get("diff") or "").splitlines()
    if not lines:
        click.echo("diff: none (nothing uncommitted)")
        return
    click.echo(f"diff ({len(lines)} lines):")
    for line in lines[:DIFF_LINES]:
        click.echo(f"  {line}")
    if len(lines) > DIFF_LINES:
        click.echo(f"  ... {len(lines) - DIFF_LINES} more lines cut; `aidp diagnose --json` "
                   "has the whole diff the bundle kept")
    if git.get("diff_cut"):
        click.echo("  (and the bundle itself kept only the start of a larger diff)")
