"""``aidp cancel``, ``aidp rollback``, ``aidp approve`` and ``aidp reject``: changing a run from
outside its orchestrator, through the application layer's commands (:mod:`aidp.app`)."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import Context, actor, echo_json, repo_options

__all__ = ["approve", "cancel", "reject", "rollback"]


@click.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@repo_options
@click.option("--wait", "wait_s", default=30.0, show_default=True,
              help="Seconds to wait for a live run to stop.")
def cancel(run_ref: str | None, repo: Path | None, config_path: Path | None, wait_s: float
           ) -> int:
    """Cancel RUN (default: the newest). A live run stops its tools and ends cancelled."""
    from aidp.app import cancel_run

    ctx = Context(repo, config_path)
    try:
        outcome = cancel_run(ctx.app, run_ref, wait_s=wait_s, on_wait=lambda run_id: click.echo(
            f"cancel requested; waiting for run {run_id} to stop ..."), by=actor())
    finally:
        ctx.close()
    click.echo(f"run {outcome.run_id} {outcome.status}")
    return 0 if outcome.cancelled else 1


@click.command()
@click.argument("run_ref", metavar="RUN")
@repo_options
@click.option("--to", "to_step", required=True, metavar="STEP",
              help="The checkpoint to go back to: WORKSTREAM/STEP (or a unique step id).")
@click.option("--json", "as_json", is_flag=True, help="Print what was reopened as JSON.")
def rollback(run_ref: str, repo: Path | None, config_path: Path | None, to_step: str,
             as_json: bool) -> None:
    """Move a workstream of RUN back to the checkpoint of STEP.

    The steps after it become pending again (`aidp resume RUN` runs them); their commits stay
    reachable in the reflog. Everything downstream is reopened too: every workstream depending
    on it (transitively) runs all its steps again, its branch rebuilt from the new heads of its
    dependencies. A reopened workstream that was merged is merged again when it completes
    again; its target keeps the earlier merge (nothing is reverted). Refused while the run is
    live.
    """
    from aidp.app import rollback_run

    ctx = Context(repo, config_path)
    try:
        outcome = rollback_run(ctx.app, run_ref, to_step, by=actor())
    finally:
        ctx.close()
    if as_json:
        echo_json(outcome.to_dict())
        return
    step = outcome.step
    click.echo(f"{step.ws_id} is back at the checkpoint of {step.step_id}; pending again: "
               + (", ".join(outcome.reopened) or "nothing"))
    for ws in outcome.workstreams:
        if ws.rebuilt:
            click.echo(f"{ws.ws_id} (downstream of {step.ws_id}): rebuilt from scratch, "
                       "pending again: " + (", ".join(ws.steps) or "nothing"))
        if ws.merged_into:
            click.echo(f"{ws.merged_into} keeps the earlier merge of {ws.ws_id} "
                       f"({(ws.merged_sha or '')[:12]}); {ws.ws_id} is merged again when it "
                       "completes again")
    click.echo(f"run `aidp resume {step.run_id}` to run them")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="STEP")
@click.option("--comment", default=None, help="A note kept with the approval.")
@repo_options
def approve(run_ref: str, step_ref: str, comment: str | None, repo: Path | None,
            config_path: Path | None) -> None:
    """Approve STEP (WORKSTREAM/STEP) of RUN, waiting at a human gate: its worktree's changes
    are checked and committed as the step's checkpoint."""
    from aidp.app import decide_gate

    ctx = Context(repo, config_path)
    try:
        step = decide_gate(ctx.app, run_ref, step_ref, approve=True, by=actor(), reason=comment)
        click.echo(f"approved {step.ws_id}/{step.step_id} of run {step.run_id}")
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
    from aidp.app import decide_gate

    ctx = Context(repo, config_path)
    try:
        step = decide_gate(ctx.app, run_ref, step_ref, approve=False, by=actor(), reason=reason)
        click.echo(f"rejected {step.ws_id}/{step.step_id} of run {step.run_id}")
    finally:
        ctx.close()
