"""``aidp specs export-epic``: write workstream files out as a CCPM epic.

The inverse of ``aidp specs epic``: the plan's workstreams become ``.claude/epics/NAME/`` task
files (``001.md``, ... in plan order) whose ``depends_on`` / ``conflicts_with`` give back the same
DAG when imported. An existing epic directory is left alone (exit 2) unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["export_epic"]


@click.command(name="export-epic")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing .claude/epics/NAME/.")
@click.option("--repo", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Repository to write .claude/epics/ into, which FILES must stay inside "
              "(default: the current directory).")
def export_epic(name: str, files: tuple[Path, ...], force: bool, repo: Path | None) -> None:
    """Export workstream FILES as the CCPM epic NAME (.claude/epics/NAME): one task per
    workstream, with depends_on, conflicts_with and parallel flags."""
    from aidp.cli.plan import load_or_exit
    from aidp.exceptions import InputError
    from aidp.specs.ccpm_export import epic_dir, plan_to_epic, write_epic

    root = (repo or Path.cwd()).resolve()
    directory = epic_dir(root, name)
    if directory.exists() and not force:  # before loading: a refusal costs nothing
        raise InputError(f"epic directory {directory} already exists; pass --force to replace it")
    plan = load_or_exit(files, root, False)
    if not plan.workstreams:
        raise InputError("the plan has no workstream: nothing to export")
    written = write_epic(root, name, plan_to_epic(plan, name), force)
    count = len(plan.workstreams)
    shown = written.relative_to(root) if written.is_relative_to(root) else written
    click.echo(f"wrote {shown}/: epic.md and {count} task{'s' if count != 1 else ''}")
