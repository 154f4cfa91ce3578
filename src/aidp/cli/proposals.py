"""``aidp proposals``: walk an OpenSpec change through review and approval.

States live in the run database (``.aidp/aidp.db`` by default); each move records who, when and
why. ``submit`` refuses a change that does not validate (the rules of ``openspec validate``);
``approve`` warns about other active changes claiming the same requirements; ``archive`` merges
an applied change into the specs exactly as ``openspec archive`` does. The moves and their
rules are the application layer's (:mod:`aidp.app.proposals`); this module parses and prints.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from aidp.cli.common import Context, echo_json, repo_options
from aidp.exceptions import GitError

__all__ = ["proposals"]


def _actor(by: str | None, repo: Path) -> str:
    if by:
        return by
    from aidp.workspace.git import run_git

    try:
        name = run_git(["config", "user.name"], repo, check=False, timeout_s=30).stdout.strip()
    except GitError:  # git missing or timed out
        name = ""
    return name or getpass.getuser()


@click.group()
def proposals() -> None:
    """Review and approve OpenSpec change proposals (draft -> review -> approved -> ...)."""


@proposals.command(name="list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Active changes with their proposal state (unrecorded ones are drafts)."""
    from aidp.app import list_proposals

    ctx = Context(repo, config_path)
    rows = [view.to_dict() for view in list_proposals(ctx.app)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        mark = "" if row["recorded"] else " (unrecorded)"
        click.echo(f"{row['change']}  {row['state']}{mark}  {row['title'] or ''}".rstrip())


@proposals.command()
@click.argument("change_id", metavar="CHANGE")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(change_id: str, repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """A proposal's state and its history (who, when, comment)."""
    from aidp.app import get_proposal

    ctx = Context(repo, config_path)
    data = get_proposal(ctx.app, change_id).to_dict()
    if as_json:
        echo_json(data)
        return
    click.echo(f"{change_id}: {data['state']}")
    for h in data["history"]:
        comment = f"  {h['comment']}" if h["comment"] else ""
        click.echo(f"  {h['at']}  {h['action']:<16} {h['from'] or '-'} -> {h['to']}  "
                   f"by {h['by']}{comment}")


def _act(change_id: str, action_name: str, repo: Path | None, config_path: Path | None,
         by: str | None, comment: str | None, as_json: bool) -> None:
    from aidp.app import act_on_proposal

    ctx = Context(repo, config_path)
    outcome = act_on_proposal(ctx.app, change_id, action_name, by=_actor(by, ctx.repo),
                              comment=comment, on_problem=lambda line: click.echo(line, err=True))
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        echo_json(outcome.to_dict())
    else:
        click.echo(f"{change_id}: {outcome.state} (by {outcome.by})")
    ctx.close()
    sys.exit(0)


def _action_command(name: str, help_text: str) -> None:
    @proposals.command(name=name, help=help_text)
    @click.argument("change_id", metavar="CHANGE")
    @repo_options
    @click.option("--by", help="Who acts (default: git user.name, else the login name).")
    @click.option("-m", "--comment", help="Why; recorded with the transition.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def command(change_id: str, repo: Path | None, config_path: Path | None, by: str | None,
                comment: str | None, as_json: bool) -> None:
        _act(change_id, name, repo, config_path, by, comment, as_json)


for _name, _help in (
    ("submit", "Send a valid change to review (records it as a draft first if needed)."),
    ("approve", "Approve a change under review (warns about conflicting changes)."),
    ("reject", "Reject a change (draft, under review, changes requested or approved)."),
    ("request-changes", "Send a change under review back to its author."),
    ("reopen", "Back to draft from rejected or changes requested."),
    ("start", "Mark an approved change as being implemented."),
    ("apply", "Mark a change in progress as implemented."),
    ("abort", "Back to approved from in progress (the implementation was abandoned)."),
    ("archive", "Merge an applied change into the specs and archive it (as openspec archive)."),
):
    _action_command(_name, _help)
