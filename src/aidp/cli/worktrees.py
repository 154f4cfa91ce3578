"""``aidp worktrees list|prune``: the pool of reusable worktrees under ``.aidp/worktrees``."""

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
    from aidp.workspace.worktrees import WorktreePool

    ctx = Context(repo, config_path)
    infos = WorktreePool(ctx.repo).list()
    if as_json:
        echo_json([{"path": str(i.path), "branch": i.branch, "head": i.head,
                    "in_use": i.in_use, "dirty": i.dirty} for i in infos])
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
    from aidp.workspace.worktrees import WorktreePool

    ctx = Context(repo, config_path)
    pool = WorktreePool(ctx.repo)
    kept = [i for i in pool.list() if i.dirty and not i.in_use and not force]
    removed = pool.prune(force=force)
    for path in removed:
        click.echo(f"removed {path}")
    for info in kept:
        click.echo(f"kept {info.path}: uncommitted files (use --force to remove)")
    if not removed and not kept:
        click.echo("nothing to prune")
