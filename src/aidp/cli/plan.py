"""``aidp validate`` and ``aidp plan``: check workstream files, and show what a run would do.

Both read the files with :func:`aidp.model.loader.load_plan`, check the plan against
``aidp.toml`` and this machine with :func:`aidp.model.readiness.check_readiness` (the rules a
run's preflight refuses; ``--offline``: against ``aidp.toml`` only) and never write anything. On
problems they print every problem (``file:line: [id] message`` on stderr, or a JSON document on
stdout with ``--json``) and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from aidp.cli.common import git_toplevel
from aidp.exceptions import Problem, ValidationError
from aidp.model.loader import SUFFIXES, load_plan
from aidp.model.plan import Plan

__all__ = ["exit_with_problems", "load_or_exit", "plan", "validate"]


def load_or_exit(files: tuple[Path, ...], repo: Path | None, as_json: bool, *,
                 ready: bool = False, config_path: Path | None = None,
                 offline: bool = False) -> Plan:
    """Load the plan, or print every problem and exit 2. With ``ready``, also check it against
    the settings (``config_path`` or the repository's aidp.toml) and, unless ``offline``, this
    machine: what ``aidp run`` would refuse."""
    root = repo if repo is not None else git_toplevel()
    if not ready:
        try:
            return load_plan(list(files), repo=root)
        except ValidationError as exc:
            exit_with_problems(exc.problems, as_json)
    from aidp.app.plans import check_plan
    from aidp.config import load_settings

    checked = check_plan(root, load_settings(root, config_path), list(files), offline=offline)
    if checked.plan is None:
        exit_with_problems(list(checked.problems), as_json)
    return checked.plan


def exit_with_problems(problems: list[Problem], as_json: bool) -> NoReturn:
    """Print every problem (``file:line: [id] message`` on stderr, or JSON on stdout), exit 2."""
    if as_json:
        document = {"ok": False, "problems": [p.to_dict() for p in problems]}
        click.echo(json.dumps(document, indent=2))
    else:
        for problem in problems:
            click.echo(problem.render(), err=True)
        count = len(problems)
        click.secho(f"{count} problem{'s' if count != 1 else ''} found", fg="red", err=True)
    sys.exit(2)


def _file_count(files: tuple[Path, ...]) -> int:
    return sum(
        sum(1 for p in f.iterdir() if p.suffix in SUFFIXES and p.is_file()) if f.is_dir() else 1
        for f in files
    )


_files_argument = click.argument(
    "files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=False)
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
_repo_option = click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Repository root that paths must stay inside (default: git top-level of the cwd).",
)
_config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="aidp.toml whose tool profiles the steps must name (default: the repository's).",
)
_offline_option = click.option(
    "--offline", is_flag=True,
    help="Check the files and aidp.toml only, not this machine: environment variables, "
    "bases and checked-out merge targets.",
)


@click.command()
@_files_argument
@_json_option
@_repo_option
@_config_option
@_offline_option
def validate(files: tuple[Path, ...], as_json: bool, repo: Path | None,
             config_path: Path | None, offline: bool) -> None:
    """Check workstream files (and directories of them: their files form one plan) against
    aidp.toml and the repository, as `aidp run` would; exit 2 on any problem."""
    loaded = load_or_exit(files, repo, as_json, ready=True, config_path=config_path,
                          offline=offline)
    ws_count, step_count = len(loaded.workstreams), loaded.step_count
    if as_json:
        click.echo(json.dumps({"ok": True, "workstreams": ws_count, "steps": step_count}))
    else:
        click.echo(f"ok: {ws_count} workstreams, {step_count} steps in {_file_count(files)} files")


@click.command()
@click.argument("files", nargs=-1, required=False, type=click.Path(path_type=Path))
@_json_option
@_repo_option
@_config_option
@_offline_option
@click.option("--change", "change_id", metavar="ID",
              help="Plan an OpenSpec change (openspec/changes/ID) instead of FILES.")
@click.option("--split", type=click.Choice(["change", "sections"]), default=None,
              help="With --change: one workstream per change, or one per numbered tasks.md "
              "section, chained (default: [specs] split).")
def plan(files: tuple[Path, ...], as_json: bool, repo: Path | None,
         config_path: Path | None, offline: bool, change_id: str | None,
         split: str | None) -> None:
    """Show the waves, the critical path and the useful parallelism of workstream files."""
    from aidp.exceptions import InputError

    if bool(files) == bool(change_id):
        raise InputError("give workstream FILES or --change ID (one of the two)")
    if split is not None and change_id is None:
        raise InputError("--split needs --change ID")
    if change_id is not None:
        import tempfile

        from aidp.app.changes import compile_change
        from aidp.config import load_settings

        root = repo if repo is not None else git_toplevel()
        if root is None:
            raise InputError("not inside a git repository", hint="pass --repo PATH")
        with tempfile.TemporaryDirectory(prefix="aidp-change-") as tmp:  # plan writes nothing
            files = (compile_change(root, load_settings(root, config_path), change_id, None,
                                    into=Path(tmp), split=split),)
            loaded = load_or_exit(files, root, as_json, ready=True, config_path=config_path,
                                  offline=offline)
    else:
        loaded = load_or_exit(files, repo, as_json, ready=True, config_path=config_path,
                              offline=offline)
    from aidp.app.plans import plan_document

    document = plan_document(loaded)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    _print_plan(loaded, document)


def _print_plan(loaded: Plan, summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title="plan", show_lines=True)
    table.add_column("wave", justify="right")
    table.add_column("workstream")
    table.add_column("steps", justify="right")
    table.add_column("step order")
    table.add_column("depends on")
    critical = set(summary["critical_path"])
    for number, wave in enumerate(summary["waves"], start=1):
        for ws_id in wave:
            ws = loaded.workstream(ws_id)
            name = f"[bold]{ws_id}[/bold]" if ws_id in critical else ws_id
            table.add_row(
                str(number),
                name,
                str(len(ws.steps)),
                " -> ".join(summary["step_orders"][ws_id]),
                ", ".join(ws.depends_on) or "-",
            )
    console.print(table)
    console.print(
        f"critical path: {' -> '.join(summary['critical_path'])} "
        f"({summary['critical_steps']} steps)"
    )
    console.print(
        f"max useful parallelism: {summary['max_parallelism']} workstreams "
        f"({summary['workstream_count']} workstreams, {summary['step_count']} steps, "
        f"{len(summary['waves'])} waves)"
    )
