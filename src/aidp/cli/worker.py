"""``aidp worker``: a Dask worker that runs aidp attempts (the ``distributed`` extra)."""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import git_toplevel

__all__ = ["worker"]


@click.command()
@click.option("--scheduler", required=True, help="The Dask scheduler's address "
              "(tcp://HOST:8786).")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False),
              help="This worker's clone of the repository (default: the one containing the "
              "current directory).")
@click.option("--remote", default="origin", show_default=True,
              help="The shared git remote (a remote's name in the clone, or a URL).")
@click.option("--nthreads", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Attempts at once (each also needs its profile's resources).")
@click.option("--resources", multiple=True, help="What this worker offers, NAME=AMOUNT "
              "(repeatable or comma-separated): codex=2 runs two {codex = 1} attempts at once.")
@click.option("--name", default=None, help="The worker's name (default: host and clone).")
@click.option("--host", default=None, help="The address to listen on (default: chosen by "
              "Dask).")
@click.option("--database-url", envvar="AIDP_DATABASE_URL", default=None,
              help="The run database, if this machine reaches it ($AIDP_DATABASE_URL): model "
              "steps then check budgets before each request and share rate limits. Without "
              "it, only admission checks budgets.")
def worker(scheduler: str, repo: Path | None, remote: str, nthreads: int,
           resources: tuple[str, ...], name: str | None, host: str | None,
           database_url: str | None) -> None:
    """Join a Dask cluster and run attempts of `aidp run --executor dask` in worktrees of this
    clone, fetching workstream branches from REMOTE and pushing checkpoints back to it.

    The worker's own environment provides the keys the tool profiles name (they are never
    sent to it). Stop it with SIGTERM or Ctrl-C.
    """
    from aidp.app.cluster import parse_resources, run_worker
    from aidp.exceptions import InputError

    offered = parse_resources(resources)
    top = git_toplevel(repo)
    if top is None:
        raise InputError(f"{repo or Path.cwd()} is not in a git repository",
                         hint="clone the shared remote and pass --repo CLONE")
    run_worker(scheduler, repo=top, remote=remote, nthreads=nthreads, resources=offered,
               name=name, host=host, database_url=database_url)
