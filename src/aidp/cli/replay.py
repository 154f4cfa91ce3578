"""``aidp replay``: run a recorded attempt of a step again and compare its tree."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["replay"]


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_ref", metavar="WS/STEP")
@repo_options
@click.option("--attempt", type=click.IntRange(min=1), default=None,
              help="The attempt to replay (default: the last one that made a checkpoint).")
@click.option("--profile", default=None, metavar="PROFILE",
              help="Run live on this tool profile instead of the recording (a comparison).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def replay(run_ref: str, step_ref: str, repo: Path | None, config_path: Path | None,
           attempt: int | None, profile: str | None, as_json: bool) -> int:
    """Run STEP of RUN again from its starting commit, in a scratch worktree.

    Offline by default: the model gateway answers the tool's requests with the attempt's
    recorded exchanges (.aidp/runs/RUN/exchanges/), nothing leaves the machine, and a request
    the recording does not hold is refused and named. With --profile the tool runs live on that
    profile. Exit 0 when the resulting tree equals the checkpoint's, 1 when it differs.
    """
    from aidp.app import replay_step

    ctx = Context(repo, config_path)
    try:
        report = replay_step(ctx.app, run_ref, step_ref, attempt=attempt, profile=profile)
    finally:
        ctx.close()
    if as_json:
        echo_json(report.to_dict())
        return 0 if report.same else 1
    how = "offline, from the recording" if report.offline else f"live on {report.profile}"
    click.echo(f"replayed {report.ws_id}/{report.step_id} attempt {report.attempt} ({how}): "
               f"{report.requests} model requests"
               + (f" of {report.recorded_requests} recorded" if report.offline else ""))
    for finding in report.findings:
        click.echo(f"  {finding['code']}: {finding['message']}")
    if report.error:
        click.echo(f"  the tool could not run: {report.error}")
    if report.same:
        click.echo(f"same tree as checkpoint {report.checkpoint[:12]} ({report.tree})")
        return 0
    click.echo(f"differs from checkpoint {report.checkpoint[:12]}: "
               + (", ".join(report.differing) or "no tree") + f"\nlog: {report.log_path}")
    return 1
