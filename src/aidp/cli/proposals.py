"""``aidp proposals``: walk an OpenSpec change through review and approval.

States live in the run database (``.aidp/aidp.db`` by default); each move records who, when and
why. ``submit`` refuses a change that does not validate (the rules of ``openspec validate``);
``approve`` warns about other active changes claiming the same requirements; ``archive`` merges
an applied change into the specs exactly as ``openspec archive`` does.
"""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from aidp.cli.common import Context, echo_json, repo_options
from aidp.exceptions import GitError, InputError, NotFoundError

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


def _change_dir(ctx: Context, change_id: str) -> tuple[Path, Path]:
    from aidp.specs.project import find_root

    root = find_root(ctx.repo)
    change_dir = root / "openspec" / "changes" / change_id
    if "/" in change_id or change_id == "archive" or not change_dir.is_dir():
        raise NotFoundError(f"no change {change_id!r} in {root / 'openspec' / 'changes'}")
    return root, change_dir


def _title(change_dir: Path) -> str | None:
    from aidp.specs.project import parse_proposal, read_text

    proposal = change_dir / "proposal.md"
    return parse_proposal(read_text(proposal)).title or None if proposal.is_file() else None


def _ts(value: float) -> str:
    return datetime.fromtimestamp(value).isoformat(timespec="seconds")


@click.group()
def proposals() -> None:
    """Review and approve OpenSpec change proposals (draft -> review -> approved -> ...)."""


@proposals.command(name="list")
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(repo: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Active changes with their proposal state (unrecorded ones are drafts)."""
    from aidp.specs.proposals import ProposalBook

    ctx = Context(repo, config_path)
    from aidp.specs.project import find_root

    root = find_root(ctx.repo)
    changes_dir = root / "openspec" / "changes"
    active = sorted(p.name for p in changes_dir.iterdir()
                    if p.is_dir() and p.name != "archive" and not p.name.startswith(".")) \
        if changes_dir.is_dir() else []
    recorded = {r.change_id: r for r in ProposalBook(ctx.store(create=True)).all()}
    rows = []
    for change_id in sorted(set(active) | set(recorded)):
        record = recorded.get(change_id)
        rows.append({"change": change_id, "state": record.state.value if record else "draft",
                     "recorded": record is not None, "present": change_id in active,
                     "title": record.title if record else _title(changes_dir / change_id),
                     "updated_at": _ts(record.updated_at) if record else None})
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
    from aidp.specs.proposals import ProposalBook

    ctx = Context(repo, config_path)
    book = ProposalBook(ctx.store(create=True))
    record = book.get(change_id)
    if record is None:
        _change_dir(ctx, change_id)  # NotFoundError for a change that does not exist
    history = book.history(change_id)
    data: dict[str, Any] = {
        "change": change_id, "state": record.state.value if record else "draft",
        "recorded": record is not None, "title": record.title if record else None,
        "history": [{"from": h.from_state.value if h.from_state else None,
                     "to": h.to_state.value, "action": h.action, "by": h.actor,
                     "comment": h.comment, "at": _ts(h.ts)} for h in history]}
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
    from aidp.specs.lifecycle import ProposalAction
    from aidp.specs.proposals import ProposalBook

    ctx = Context(repo, config_path)
    root, change_dir = _change_dir(ctx, change_id) if action_name != "archive" else (None, None)
    actor = _actor(by, ctx.repo)
    action = ProposalAction(action_name)
    book = ProposalBook(ctx.store(create=True))
    warnings: list[str] = []
    if action is ProposalAction.SUBMIT:
        assert root is not None and change_dir is not None
        from aidp.specs.validate import Level, validate_change

        report = validate_change(change_id, change_dir, root)
        errors = [i for i in report.issues if i.level is Level.ERROR]
        if errors:
            for issue in errors:
                click.echo(issue.render(), err=True)
            raise InputError(f"change {change_id!r} does not validate ({len(errors)} errors); "
                             "not submitted", hint=f"aidp specs validate {change_id}")
        book.ensure(change_id, _title(change_dir), actor)
    if action is ProposalAction.APPROVE:
        from aidp.specs.project import load_project
        from aidp.specs.resolver import find_conflicts

        assert root is not None
        for conflict in find_conflicts(load_project(root)):
            if any(c.change == change_id for c in conflict.claims):
                warnings.append(f"conflict: {conflict.render()}")
    if action is ProposalAction.ARCHIVE:
        record = book.get(change_id)
        if record is not None:
            from aidp.specs.lifecycle import transition

            transition(record.state, action)  # refuse before merging anything
            from aidp.specs.archive import archive_change
            from aidp.specs.project import find_root

            archive_change(find_root(ctx.repo), change_id)
    record = book.act(change_id, action, actor, comment)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        echo_json({"change": change_id, "state": record.state.value, "by": actor,
                   "warnings": warnings})
    else:
        click.echo(f"{change_id}: {record.state.value} (by {actor})")
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
