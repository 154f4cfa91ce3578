"""``aidp tools list|check``: the tool profiles of aidp.toml, and whether each tool can run.

The profiles, the probes and the stored results (``<repo>/.aidp/tool-checks.json``) are the
application layer's (:mod:`aidp.app.tools`); this module parses and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["tools"]


@click.group()
def tools() -> None:
    """List tool profiles, or check that their tools can run."""


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
