"""``aidp tokens create|list|revoke``: the bearer tokens of ``aidp serve``."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import Context, actor, echo_json, repo_options

__all__ = ["tokens"]


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (scopes: read < operate < admin)."""


@tokens.command("create")
@repo_options
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "operate", "admin"]), default="read",
              show_default=True, help="read: look; operate: act on runs, gates, breakers, "
              "proposals; admin: also tokens and webhooks.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(repo: Path | None, config_path: Path | None, name: str, scope: str,
           as_json: bool) -> None:
    """Create token NAME and print it (once: only its hash is kept)."""
    from aidp.app.tokens import create_token

    ctx = Context(repo, config_path)
    try:
        ctx.ensure_aidp_dir()
        new = create_token(ctx.app, name, scope, by=actor())
    finally:
        ctx.close()
    if as_json:
        echo_json({**new.view.to_dict(), "token": new.token})
        return
    click.echo(new.token)
    click.echo(f"token {name!r} ({scope}) created; it is shown only now: keep it secret",
               err=True)


@tokens.command("list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    from aidp.app.tokens import list_tokens

    ctx = Context(repo, config_path)
    try:
        views = [v.to_dict() for v in list_tokens(ctx.app)]
    finally:
        ctx.close()
    if as_json:
        echo_json(views)
        return
    if not views:
        click.echo("no tokens (aidp tokens create NAME --scope read|operate|admin)")
        return
    width = max(len("NAME"), *(len(v["name"]) for v in views))
    click.echo(f"{'NAME':<{width}}  {'ID':<12}  {'SCOPE':<7}  {'CREATED':<19}  "
               f"{'LAST USED':<19}  STATE")
    for v in views:
        state = "active" if v["active"] else f"revoked {v['revoked_at']}"
        click.echo(f"{v['name']:<{width}}  {v['id']:<12}  {v['scope']:<7}  "
                   f"{v['created_at']:<19}  {v['last_used_at'] or '-':<19}  {state}")


@tokens.command("revoke")
@repo_options
@click.argument("name")
def revoke(repo: Path | None, config_path: Path | None, name: str) -> None:
    """Revoke token NAME (or ID): it stops working at once."""
    from aidp.app.tokens import revoke_token

    ctx = Context(repo, config_path)
    try:
        view = revoke_token(ctx.app, name, by=actor())
    finally:
        ctx.close()
    click.echo(f"token {view.name!r} revoked")
