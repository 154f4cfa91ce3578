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
@click.option("--force", is_flag=True, help="Also remove idle worktrees with uncommitted files "
              "and branches of finished runs whose work is not merged.")
@click.option("--keep-branches", type=click.IntRange(0), metavar="N",
              help="Keep the branches of the N newest runs (default: [run] keep_branches, 1).")
def prune(repo: Path | None, config_path: Path | None, force: bool,
          keep_branches: int | None) -> None:
    """Remove idle pooled worktrees and the merged aidp/RUN/... branches of finished runs.

    Worktrees in use are never touched; worktrees holding uncommitted files are kept unless
    --force. Branches are deleted only for completed or cancelled runs older than the N newest
    runs, never for a running, interrupted or failed (resumable) run, and only when their work
    is merged (in a branch outside aidp/, or in their merge target) unless --force.
    """
    from aidp.app import prune_worktrees

    ctx = Context(repo, config_path)
    try:
        outcome = prune_worktrees(ctx.app, force=force, keep_branches=keep_branches)
    finally:
        ctx.close()
    for path in outcome.removed:
        click.echo(f"removed {path}")
    for info in outcome.kept:
        click.echo(f"kept {info.path}: uncommitted files (use --force to remove)")
    for branch in outcome.branches_deleted:
        click.echo(f"deleted branch {branch}")
    for branch in outcome.branches_unmerged:
        click.echo(f"kept branch {branch}: its work is not merged (use --force to delete)")
    if not (outcome.removed or outcome.kept or outcome.branches_deleted
            or outcome.branches_unmerged):
        click.echo("nothing to prune")
