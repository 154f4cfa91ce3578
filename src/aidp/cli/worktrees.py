"""``aidp worktrees list|prune``: the pool of reusable worktrees under ``.aidp/worktrees``, seen
and pruned through the application layer (:mod:`aidp.app`)."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import Context, echo_json, repo_options

__all__ = ["worktrees"]


@click.group()
def worktrees() -> None:
    """List or prune pooled worktrees."""


@worktrees.command("list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """List pooled worktrees: branch, head, in use, dirty."""
    from aidp.app import list_worktrees

    ctx = Context(repo, config_path)
    infos = list_worktrees(ctx.app)
    if as_json:
        echo_json([i.to_dict() for i in infos])
        return
    if not infos:
        click.echo("no pooled worktrees")
    for i in infos:
        flags = ", ".join(f for f, on in (("in use", i.in_use), ("dirty", i.dirty)) if on)
        click.echo(f"{i.path}  {i.branch or '(detached)'}  {(i.head or '')[:10]}"
                   + (f"  [{flags}]" if flags else ""))


@worktrees.command()
@repo_options
@click.option("--force", is_flag=True, help="Also remove idle worktrees with uncommitted files.")
def prune(repo: Path | None, config_path: Path | None, force: bool) -> None:
    """Remove idle pooled worktrees. Worktrees in use are never touched; worktrees holding
    uncommitted files are kept unless --force. Branches (and so checkpoints) are never deleted."""
    from aidp.app import prune_worktrees

    ctx = Context(repo, config_path)
    outcome = prune_worktrees(ctx.app, force=force)
    for path in outcome.removed:
        click.echo(f"removed {path}")
    for info in outcome.kept:
        click.echo(f"kept {info.path}: uncommitted files (use --force to remove)")
    if not outcome.removed and not outcome.kept:
        click.echo("nothing to prune")
