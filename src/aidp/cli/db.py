"""``aidp db status|upgrade``: the run database's schema revision, and upgrading it on purpose
(a shared PostgreSQL database is never upgraded implicitly)."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["db"]


@click.group()
def db() -> None:
    """Show or upgrade the run database's schema (PostgreSQL: only with --yes)."""


@db.command("status")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Print the schema revision and the migrations still to run; exit 1 when some are."""
    from aidp.app.database import database_status

    ctx = Context(repo, config_path)
    try:
        found = database_status(ctx.app)
    finally:
        ctx.close()
    if as_json:
        echo_json(found.to_dict())
    else:
        click.echo(f"database: {found.url} ({found.dialect})")
        click.echo(f"revision: {found.revision or '(empty)'}; this aidp needs {found.head}")
        for revision, title in found.pending:
            click.echo(f"  pending {revision}: {title}")
    if not found.current and found.revision is not None:
        raise SystemExit(1)


@db.command("upgrade")
@repo_options
@click.option("--yes", is_flag=True, help="Apply the migrations (back the database up first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def upgrade(repo: Path | None, config_path: Path | None, yes: bool, as_json: bool) -> None:
    """Run the pending migrations (or create the schema); without --yes, show them and exit 2."""
    from aidp.app.database import database_status, upgrade_database

    ctx = Context(repo, config_path)
    try:
        if not yes and ctx.app.has_database():
            for revision, title in database_status(ctx.app).pending:
                click.echo(f"would apply {revision}: {title}", err=True)
        before, after = upgrade_database(ctx.app, yes=yes)
    finally:
        ctx.close()
    if as_json:
        echo_json({"before": None if before is None else before.to_dict(),
                   "after": after.to_dict()})
        return
    if before is not None and before.current:
        click.echo(f"database already at {after.head}: nothing to do")
    else:
        was = "(none)" if before is None else (before.revision or "(empty)")
        click.echo(f"database upgraded: {was} -> {after.revision}")
