"""``aidp breakers [list|reset KEY]``: the circuit breakers shared by every run of a database,
read and reset through the application layer (:mod:`aidp.app`)."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import Context, actor, echo_json, repo_options

__all__ = ["breakers"]


def _print(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    from aidp.app import list_breakers

    ctx = Context(repo, config_path)
    try:
        views = [view.to_dict() for view in list_breakers(ctx.app)]
    finally:
        ctx.close()
    if as_json:
        echo_json(views)
        return
    if not views:
        click.echo("no breakers yet (a breaker appears when its first call is admitted)")
        return
    width = max(len("KEY"), *(len(v["key"]) for v in views))
    click.echo(f"{'KEY':<{width}}  {'STATE':<9}  {'FAILURES':<8}  {'OPENED':<19}  "
               f"{'REOPEN':<9}  PROBES")
    for v in views:
        threshold = v["failure_threshold"]
        failures = ("-" if v["state"] != "closed" else
                     f"{v['failures']}/{threshold}" if threshold else str(v["failures"]))
        if v["reopen_in_s"] is None:
            reopen = "-"
        elif v["state"] == "open":
            reopen = f"in {v['reopen_in_s']:.0f}s"
        else:
            reopen = "now"
        probes = (f"{v['probes']}/{v['half_open_probes']}" if v["state"] == "half_open"
                  and v["half_open_probes"] else "-")
        click.echo(f"{v['key']:<{width}}  {v['state']:<9}  {failures:<8}  "
                   f"{v['opened_at'] or '-':<19}  {reopen:<9}  {probes}")


@click.group(invoke_without_command=True)
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def breakers(click_ctx: click.Context, repo: Path | None, config_path: Path | None,
             as_json: bool) -> None:
    """List (the default) or reset circuit breakers. Keys are profile:NAME and endpoint:URL."""
    if click_ctx.invoked_subcommand is None:
        _print(repo, config_path, as_json)


@breakers.command("list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """List breakers: key, state, failures in the window, when opened, reopen in, probes."""
    _print(repo, config_path, as_json)


@breakers.command()
@click.argument("key")
@repo_options
def reset(key: str, repo: Path | None, config_path: Path | None) -> None:
    """Close breaker KEY by hand (for instance once a provider is known to be back)."""
    from aidp.app import reset_breaker

    ctx = Context(repo, config_path)
    try:
        before = reset_breaker(ctx.app, key, by=actor())
    finally:
        ctx.close()
    was = "" if before is None else f" (was {before})"
    click.echo(f"reset {key}: closed{was}")
