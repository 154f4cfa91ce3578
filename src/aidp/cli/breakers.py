"""``aidp breakers [list|reset KEY]``: the circuit breakers shared by every run of a database."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aidp.cli.common import Context, echo_json, repo_options
from aidp.exceptions import NotFoundError

if TYPE_CHECKING:
    from aidp.state.breakers import BreakerRow

__all__ = ["breaker_view", "breakers"]


def _ts(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value).isoformat(timespec="seconds")


def breaker_view(row: BreakerRow, now: float) -> dict[str, Any]:
    """One breaker as plain data, as of ``now`` (the shape ``breakers list --json`` prints)."""
    snap = row.view(now)
    reopen_in = None if snap.reopen_at is None else max(0.0, snap.reopen_at - now)
    return {
        "key": row.key,
        "state": snap.state.value,
        "failures": len(snap.failures),
        "failure_threshold": None if row.policy is None else row.policy.failure_threshold,
        "opened_at": _ts(snap.opened_at),
        "reopen_at": _ts(snap.reopen_at),
        "reopen_in_s": None if reopen_in is None else round(reopen_in, 1),
        "probes": len(snap.probes),
        "half_open_probes": None if row.policy is None else row.policy.half_open_probes,
        "in_flight": len(snap.in_flight),
        "counters": snap.counters.to_dict(),
        "updated_at": _ts(row.updated_at),
    }


def _rows(ctx: Context) -> list[BreakerRow]:
    from aidp.state.breakers import BreakerBook

    try:
        store = ctx.store()
    except NotFoundError:  # no database yet: no breaker has ever been used
        return []
    return BreakerBook(store).list()


def _print(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    ctx = Context(repo, config_path)
    try:
        rows = _rows(ctx)
    finally:
        ctx.close()
    now = time.time()
    views = [breaker_view(row, now) for row in rows]
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
    from aidp.state.breakers import BreakerBook

    ctx = Context(repo, config_path)
    try:
        try:
            store = ctx.store()
        except NotFoundError:
            raise NotFoundError(f"no breaker {key!r}", hint="there is no aidp database here yet"
                                ) from None
        book = BreakerBook(store)
        before = book.snapshot(key)
        book.reset(key)
    finally:
        ctx.close()
    was = "" if before is None else f" (was {before.state.value})"
    click.echo(f"reset {key}: closed{was}")
