"""``aidp usage``: tokens and cost per step, workstream, profile and run (the cost ledger)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["usage"]

_FIELDS = ("attempts", "input_tokens", "output_tokens", "cost_usd", "requests")


def _add(into: dict[str, Any], row: Any) -> None:
    for name in _FIELDS:
        into[name] = into.get(name, 0) + (getattr(row, name) or 0)


@click.command()
@click.argument("run_ref", metavar="RUN", required=False)
@click.option("--all", "all_runs", is_flag=True, help="Every run, not only RUN / the newest.")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def usage(run_ref: str | None, all_runs: bool, repo: Path | None, config_path: Path | None,
          as_json: bool) -> None:
    """Show tokens and cost of RUN (default: the newest) per step, workstream and profile."""
    ctx = Context(repo, config_path)
    try:
        store = ctx.store()
        run_id = None if all_runs else store.resolve_run(run_ref)
        rows = store.usage(run_id)
    finally:
        ctx.close()
    total: dict[str, Any] = {}
    by_step: dict[str, dict[str, Any]] = defaultdict(dict)
    by_ws: dict[str, dict[str, Any]] = defaultdict(dict)
    by_profile: dict[str, dict[str, Any]] = defaultdict(dict)
    by_run: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        _add(total, row)
        _add(by_step[f"{row.ws_id}/{row.step_id}"], row)
        _add(by_ws[row.ws_id], row)
        _add(by_profile[row.profile or "?"], row)
        _add(by_run[row.run_id], row)
    data = {"run_id": run_id, "total": total, "runs": dict(by_run),
            "workstreams": dict(by_ws), "steps": dict(by_step), "profiles": dict(by_profile)}
    if as_json:
        echo_json(data)
        return
    click.echo(f"{'run ' + run_id if run_id else 'all runs'}: "
               f"{total.get('input_tokens', 0)} tokens in, {total.get('output_tokens', 0)} out, "
               f"${total.get('cost_usd', 0.0):.4f}, {total.get('requests', 0)} requests, "
               f"{total.get('attempts', 0)} attempts")
    for title, table in (("profile", by_profile), ("workstream", by_ws), ("step", by_step)):
        for key, item in sorted(table.items()):
            click.echo(f"  {title} {key}: {item['input_tokens']} in, {item['output_tokens']} "
                       f"out, ${item['cost_usd']:.4f}, {item['attempts']} attempts")
