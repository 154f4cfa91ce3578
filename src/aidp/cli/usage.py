"""``aidp usage``: tokens and cost per step, workstream, profile and run (the cost ledger of
:func:`aidp.app.get_usage`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["usage"]

@click.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--all", "all_runs", is_flag=True, help="Every run, not only RUN / the newest.")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def usage(run_ref: str | None, all_runs: bool, repo: Path | None, config_path: Path | None,
          as_json: bool) -> None:
    """Show tokens and cost of RUN (default: the newest) per step, workstream and profile."""
    from aidp.app import get_usage, resolve_run

    ctx = Context(repo, config_path)
    try:
        run_id = None if all_runs else resolve_run(ctx.app, run_ref)
        ledger = get_usage(ctx.app, run_id)
    finally:
        ctx.close()
    if as_json:
        echo_json(ledger.to_dict())
        return
    total, by_profile, by_ws, by_step = (ledger.total, ledger.profiles, ledger.workstreams,
                                         ledger.steps)
    click.echo(f"{'run ' + run_id if run_id else 'all runs'}: "
               f"{total.get('input_tokens', 0)} tokens in, {total.get('output_tokens', 0)} out, "
               f"${total.get('cost_usd', 0.0):.4f}, {total.get('requests', 0)} requests"
               f"{_latency(total)}, {total.get('attempts', 0)} attempts")
    for title, table in (("profile", by_profile), ("workstream", by_ws), ("step", by_step)):
        for key, item in sorted(table.items()):
            click.echo(f"  {title} {key}: {item['input_tokens']} in, {item['output_tokens']} "
                       f"out, ${item['cost_usd']:.4f}, {item['requests']} requests"
                       f"{_latency(item)}, {item['attempts']} attempts")


def _latency(item: dict[str, Any]) -> str:
    """`` (2.31 s waiting, 0.77 s per request)`` when the gateway measured it."""
    waited, requests = item.get("latency_ms", 0) or 0, item.get("requests", 0) or 0
    if not waited:
        return ""
    return f" ({waited / 1000:.2f} s waiting" + (
        f", {waited / 1000 / requests:.2f} s per request)" if requests else ")")
