"""``aidp webhooks``: subscriptions of ``aidp serve``'s signed webhooks, their deliveries, and a
signature checker for receivers."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from aidp.cli.common import Context, actor, echo_json, repo_options
from aidp.exceptions import InputError

__all__ = ["webhooks"]


@click.group()
def webhooks() -> None:
    """Signed webhooks: subscribe URLs to events, watch and redeliver deliveries."""


@webhooks.command("add")
@repo_options
@click.argument("url")
@click.option("--events", "events", multiple=True, required=True,
              help="Event pattern: a kind (step.failed), a glob (step.*, *), a category (gate) "
              "or a type (dev.aidp.run.*). Repeatable.")
@click.option("--secret-env", required=True, metavar="NAME",
              help="Environment variable of the service holding the signing secret "
              "(whsec_<base64> as in Standard Webhooks, or any string). The secret itself "
              "is never stored.")
@click.option("--run", "run", default=None, help="Only this run's events.")
@click.option("--allow-private", is_flag=True,
              help="Allow loopback, private and link-local addresses (refused by default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add(repo: Path | None, config_path: Path | None, url: str, events: tuple[str, ...],
        secret_env: str, run: str | None, allow_private: bool, as_json: bool) -> None:
    """Subscribe URL to events from now on (`aidp serve` sends them)."""
    from aidp.app.webhooks import add_webhook

    ctx = Context(repo, config_path)
    try:
        ctx.ensure_aidp_dir()
        patterns = [p for item in events for p in item.replace(",", " ").split()]
        view = add_webhook(ctx.app, url, patterns, secret_env, run=run,
                           allow_private=allow_private, by=actor())
    finally:
        ctx.close()
    if as_json:
        echo_json(view.to_dict())
        return
    click.echo(view.id)
    click.echo(f"webhook {view.id} -> {view.url} ({', '.join(view.events)}), signed with "
               f"${view.secret_env}", err=True)


@webhooks.command("list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """List subscriptions (the secret's variable name, never the secret)."""
    from aidp.app.webhooks import list_webhooks

    ctx = Context(repo, config_path)
    try:
        views = [v.to_dict() for v in list_webhooks(ctx.app)]
    finally:
        ctx.close()
    if as_json:
        echo_json(views)
        return
    if not views:
        click.echo("no webhooks (aidp webhooks add URL --events PATTERN --secret-env NAME)")
        return
    for v in views:
        extra = f" run {v['run_id']}" if v["run_id"] else ""
        extra += " allow-private" if v["allow_private"] else ""
        if v["previous_secret_env"]:
            extra += f" (also ${v['previous_secret_env']} until {v['previous_until']})"
        click.echo(f"{v['id']}  {v['url']}  {','.join(v['events'])}  ${v['secret_env']}{extra}")


@webhooks.command("remove")
@repo_options
@click.argument("webhook_id")
def remove(repo: Path | None, config_path: Path | None, webhook_id: str) -> None:
    """Delete subscription WEBHOOK_ID and its deliveries."""
    from aidp.app.webhooks import remove_webhook

    ctx = Context(repo, config_path)
    try:
        view = remove_webhook(ctx.app, webhook_id)
    finally:
        ctx.close()
    click.echo(f"webhook {view.id} removed")


@webhooks.command("rotate")
@repo_options
@click.argument("webhook_id")
@click.option("--secret-env", required=True, metavar="NAME",
              help="Variable holding the new secret.")
@click.option("--overlap", default="24h", show_default=True,
              help="How long the old secret signs too (two signatures); 0: not at all.")
def rotate(repo: Path | None, config_path: Path | None, webhook_id: str, secret_env: str,
           overlap: str) -> None:
    """Sign WEBHOOK_ID's deliveries with a new secret (and the old one during the overlap)."""
    from aidp.app.webhooks import parse_duration, rotate_secret

    ctx = Context(repo, config_path)
    try:
        view = rotate_secret(ctx.app, webhook_id, secret_env, parse_duration(overlap))
    finally:
        ctx.close()
    also = (f"; also ${view.previous_secret_env} until {view.previous_until}"
            if view.previous_secret_env else "")
    click.echo(f"webhook {view.id} signs with ${view.secret_env}{also}")


@webhooks.command("deliveries")
@repo_options
@click.argument("webhook_id", required=False)
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries(repo: Path | None, config_path: Path | None, webhook_id: str | None,
               status: str | None, limit: int, as_json: bool) -> None:
    """List deliveries, newest first."""
    from aidp.app.webhooks import list_deliveries

    ctx = Context(repo, config_path)
    try:
        views = [v.to_dict() for v in list_deliveries(ctx.app, webhook_id, status, limit)]
    finally:
        ctx.close()
    if as_json:
        echo_json(views)
        return
    if not views:
        click.echo("no deliveries")
        return
    for v in views:
        error = f"  {v['last_error']}" if v["last_error"] else ""
        click.echo(f"{v['id']:>6}  {v['webhook_id']}  event {v['event_id']} {v['kind']}  "
                   f"{v['status']}  attempts {v['attempts']}{error}")


@webhooks.command("redeliver")
@repo_options
@click.argument("delivery_id", type=int)
def redeliver(repo: Path | None, config_path: Path | None, delivery_id: int) -> None:
    """Send delivery DELIVERY_ID again (a dead one, or any), same webhook-id."""
    from aidp.app.webhooks import redeliver as redeliver_

    ctx = Context(repo, config_path)
    try:
        view = redeliver_(ctx.app, delivery_id)
    finally:
        ctx.close()
    click.echo(f"delivery {view.id} (event {view.event_id}) queued again")


@webhooks.command("verify")
@click.option("--secret-env", required=True, metavar="NAME",
              help="Variable holding the receiver's copy of the secret.")
@click.option("--header", "-H", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="A received header (webhook-id, webhook-timestamp, webhook-signature).")
@click.option("--body-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The received body (default: standard input).")
@click.option("--tolerance", type=click.IntRange(0), default=300, show_default=True,
              help="Seconds a timestamp may be off.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(secret_env: str, headers: tuple[str, ...], body_file: Path | None, tolerance: int,
           as_json: bool) -> None:
    """Check a received webhook's signature and timestamp; exit 1 if either fails."""
    from aidp.app.webhooks import verify_signature

    parsed: dict[str, str] = {}
    for item in headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise InputError(f"--header {item!r}: expected 'NAME: VALUE'")
        parsed[name.strip().lower()] = value.strip()
    body = body_file.read_bytes() if body_file else sys.stdin.buffer.read()
    result = verify_signature(secret_env, parsed, body, tolerance_s=tolerance)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(("valid: " if result.ok else "INVALID: ") + result.reason)
    if not result.ok:
        sys.exit(1)
