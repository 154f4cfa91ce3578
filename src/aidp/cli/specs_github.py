"""``aidp specs gh-sync EPIC``: push a CCPM epic and its tasks to GitHub issues through ``gh``.

Optional and off by default: it runs only with ``[ccpm] github_sync = true`` in ``aidp.toml``
(or ``AIDP_CCPM__GITHUB_SYNC=true``). See :mod:`aidp.specs.github` for what one sync does.
"""

from __future__ import annotations

from pathlib import Path

import click

from aidp.cli.common import echo_json

__all__ = ["gh_sync"]


@click.command(name="gh-sync")
@click.argument("name", metavar="EPIC")
@click.option("--dry-run", is_flag=True,
              help="Print the gh calls that would write; change nothing (reads still run).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--github-repo", metavar="OWNER/NAME", default=None,
              help="Target GitHub repository (default: [ccpm] github_repo, else origin's).")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Git repository holding .claude/epics/ (default: the current one).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="aidp.toml to use (default: the repository's).")
def gh_sync(name: str, dry_run: bool, as_json: bool, github_repo: str | None,
            repo: Path | None, config_path: Path | None) -> None:
    """Push the CCPM epic EPIC (.claude/epics/EPIC) to GitHub issues with gh: an epic issue,
    one issue per task, github: fields and CCPM's renames; again later, it only edits what
    changed and closes closed tasks. Refuses the CCPM template repository."""
    from aidp.cli.common import resolve_repo
    from aidp.config import load_settings
    from aidp.exceptions import ValidationError
    from aidp.specs.ccpm import find_epic
    from aidp.specs.github import GhRunner, GithubSyncRefused, sync_epic

    root = resolve_repo(repo)
    settings = load_settings(root, config_path)
    if not settings.ccpm.github_sync:
        raise GithubSyncRefused(
            "GitHub sync is off (it is optional and disabled by default)",
            hint="set github_sync = true under [ccpm] in aidp.toml "
                 "(or AIDP_CCPM__GITHUB_SYNC=true)")
    directory = find_epic(root, name)
    runner = GhRunner(timeout_s=settings.ccpm.gh_timeout, dry_run=dry_run, cwd=root)
    try:
        report = sync_epic(root, directory, run=runner,
                           repo=github_repo or settings.ccpm.github_repo, dry_run=dry_run)
    except ValidationError as exc:
        for problem in exc.problems[1:]:
            click.echo(problem.render(), err=True)
        exc.hint = None  # the generic hint names `aidp validate`, which reads no epic
        raise
    if as_json:
        echo_json(report.to_dict())
        return
    if dry_run:
        writes = [c for c in report.calls if c.write]
        for call in writes:
            click.echo(f"would run: {call.render()}")
        click.echo(f"dry run: {len(writes)} write call{'s' if len(writes) != 1 else ''} "
                   f"to {report.repo}; nothing changed")
        return
    for label in report.labels:
        click.echo(f"label {label}: created")
    for item in report.created:
        click.echo(f"#{item['number']} created: {item['title']} ({item['file']})")
    for item in report.edited:
        click.echo(f"#{item['number']} edited: {item['what']} ({item['file']})")
    for number in report.closed:
        click.echo(f"#{number} closed")
    for old, new in report.renamed:
        click.echo(f"renamed {old} -> {new}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if not (report.labels or report.created or report.edited or report.closed):
        click.echo(f"{name}: up to date with {report.repo}")
