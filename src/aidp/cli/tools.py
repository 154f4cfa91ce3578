"""``aidp tools list|check|stats``: the tool profiles of aidp.toml, whether each tool can run,
and how each profile's attempts went.

The profiles, the probes, the stored results (``<repo>/.aidp/tool-checks.json``) and the
statistics are the application layer's (:mod:`aidp.app.tools`); this module parses and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["tools"]


@click.group()
def tools() -> None:
    """List tool profiles, check that their tools can run, or show how their attempts went."""


@tools.command("list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Show each tool profile: adapter, model, endpoint, capabilities, priority, fallback, and
    the last `aidp tools check` result."""
    from aidp.app.tools import list_tools

    ctx = Context(repo, config_path)
    rows = list_tools(ctx.app)
    if as_json:
        echo_json(rows)
        return
    header = ("PROFILE", "ADAPTER", "MODEL", "ENDPOINT", "CAPABILITIES", "PRIORITY", "FALLBACK",
              "LAST CHECK")
    table = [header] + [
        (row["name"], row["adapter"], row["model"] or "-", row["endpoint"] or "-",
         ",".join(row["capabilities"]) or "-", str(row["priority"]),
         ",".join(row["fallback"]) or "-", _check_summary(row["last_check"]))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(line, widths)), line[-1]]))


def _check_summary(check: dict[str, Any] | None) -> str:
    if check is None:
        return "never"
    from aidp.app.tools import check_state

    state = check_state(check)
    version = f" {check['version']}" if check.get("version") else ""
    return f"{state}{version} at {check.get('checked_at', '?')}"


@tools.command()
@click.argument("profile_name", metavar="PROFILE", required=False)
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--offline", is_flag=True,
              help="Send no request beyond 127.0.0.1 (those endpoints show 'not checked').")
def check(profile_name: str | None, repo: Path | None, config_path: Path | None,
          as_json: bool, offline: bool) -> int:
    """Check PROFILE (default: every profile): the tool's binary and version, and a canary
    request to the endpoint it would use, with the key it would get. A model tool without the
    key it needs fails ("not checked: no API key in VAR"). Exits 1 if any check failed; results
    go to .aidp/tool-checks.json."""
    from aidp.app.tools import check_state, check_tools

    ctx = Context(repo, config_path)
    rows = check_tools(ctx.app, profile_name, offline=offline)
    if as_json:
        echo_json(rows)
    else:
        width = max((len(row["profile"]) for row in rows), default=0)
        for row in rows:
            click.echo(f"{row['profile']:<{width}}  {check_state(row):<6}  {row['detail']}")
    return 0 if all(row["ok"] for row in rows) else 1


@tools.command()
@click.option("--capability", metavar="C", help="Only attempts of steps asking for capability C.")
@click.option("--language", metavar="L", help="Only attempts of steps asking for language L.")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(capability: str | None, language: str | None, repo: Path | None,
          config_path: Path | None, as_json: bool) -> None:
    """How each profile's finished attempts went, in every run of the database, per capability
    and language: attempts, successes and success rate, fix attempts per step (FIX LOOP), mean
    cost, cost per success, mean provider latency, mean duration, best-of-N wins and losses.
    A capability step with `select: best_success` or `select: cheapest_passing` is routed by
    these figures. CAPABILITY '-': steps that named their profile with `tool:`."""
    from aidp.app.tools import tool_stats

    ctx = Context(repo, config_path)
    rows = tool_stats(ctx.app, capability=capability, language=language)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no finished attempts yet")
        return
    header = ("PROFILE", "CAPABILITY", "LANGUAGE", "ATTEMPTS", "SUCCEEDED", "RATE", "FIX LOOP",
              "COST/ATTEMPT", "COST/SUCCESS", "LATENCY", "DURATION", "WON", "LOST")
    table = [header] + [
        (row["profile"], row["capability"] or "-", row["language"] or "-",
         str(row["finished"]), str(row["succeeded"]), _percent(row["success_rate"]),
         _number(row["fix_loop"], "{:.2f}"), _number(row["mean_cost_usd"], "${:.4f}"),
         _number(row["cost_per_success"], "${:.4f}"), _number(row["mean_latency_ms"], "{:.0f} ms"),
         _number(row["mean_duration_s"], "{:.2f} s"), str(row["wins"]), str(row["losses"]))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                   .rstrip())


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else form.format(value)
