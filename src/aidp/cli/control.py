"""``aidp cancel`` and ``aidp rollback``: changing a run from outside its orchestrator."""

from __future__ import annotations

import time
from pathlib import Path

import click

from aidp.cli.common import Context, actor, repo_options

__all__ = ["approve", "cancel", "reject", "rollback"]


@click.command()
@click.argument("run_ref", metavar="RUN", required=False)
@repo_options
@click.option("--wait", "wait_s", default=30.0, show_default=True,
              help="Seconds to wait for a live run to stop.")
def cancel(run_ref: str | None, repo: Path | None, config_path: Path | None, wait_s: float
           ) -> int:
    """Cancel RUN (default: the newest). A live run stops its tools and ends cancelled."""
    from aidp.engine.control import cancel_run

    ctx = Context(repo, config_path)
    try:
        store = ctx.store()
        run_id = store.resolve_run(run_ref)
        live = cancel_run(store, run_id)
        if live:
            click.echo(f"cancel requested; waiting for run {run_id} to stop ...")
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if store.run(run_id).status in ("cancelled", "completed", "failed"):
                    break
                time.sleep(0.2)
        status = store.run(run_id).status
        click.echo(f"run {run_id} {status}")
        return 0 if status == "cancelled" else 1
    finally:
        ctx.close()


@click.command()
@click.argument("run_ref", metavar="RUN")
@repo_options
@click.option("--to", "to_step", required=True, metavar="STEP",
              help="The checkpoint to go back to: WORKSTREAM/STEP (or a unique step id).")
def rollback(run_ref: str, repo: Path | None, config_path: Path | None, to_step: str) -> None:
    """Move a workstream of RUN back to the checkpoint of STEP.

    The steps after it become pending again (`aidp resume RUN` runs them); their commits stay
    reachable in the reflog. Refused while the run is live.
    """
    from aidp.engine.control import rollback_run

    ctx = Context(repo, config_path)
    try:
        run_id, ws_id, step_id = ctx.resolve_step(run_ref, to_step)
        reopened = rollback_run(ctx.store(), ctx.repo, run_id, ws_id, step_id)
    finally:
        ctx.close()
    click.echo(f"{ws_id} is back at the checkpoint of {step_id}; pending again: "
               + (", ".join(reopened) or "nothing"))
    click.echo(f"run `aidp resume {run_id}` to run them")



@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="STEP")
@click.option("--comment", default=None, help="A note kept with the approval.")
@repo_options
def approve(run_ref: str, step_ref: str, comment: str | None, repo: Path | None,
            config_path: Path | None) -> None:
    """Approve STEP (WORKSTREAM/STEP) of RUN, waiting at a human gate: its worktree's changes
    are checked and committed as the step's checkpoint."""
    from aidp.engine.control import decide_gate

    ctx = Context(repo, config_path)
    try:
        run_id, ws_id, step_id = ctx.resolve_step(run_ref, step_ref)
        decide_gate(ctx.store(), run_id, ws_id, step_id, approve=True, by=actor(),
                    reason=comment)
        click.echo(f"approved {ws_id}/{step_id} of run {run_id}")
    finally:
        ctx.close()


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="STEP")
@click.option("--reason", required=True, help="Why (kept with the step).")
@repo_options
def reject(run_ref: str, step_ref: str, reason: str, repo: Path | None,
           config_path: Path | None) -> None:
    """Reject STEP (WORKSTREAM/STEP) of RUN, waiting at a human gate: the step fails."""
    from aidp.engine.control import decide_gate

    ctx = Context(repo, config_path)
    try:
        run_id, ws_id, step_id = ctx.resolve_step(run_ref, step_ref)
        decide_gate(ctx.store(), run_id, ws_id, step_id, approve=False, by=actor(),
                    reason=reason)
        click.echo(f"rejected {ws_id}/{step_id} of run {run_id}")
    finally:
        ctx.close()
