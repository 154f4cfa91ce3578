"""OpenSpec proposals and runs: the review states of changes, and a run's results written back
into the specs.

Queries (:func:`list_proposals`, :func:`get_proposal`) and commands (:func:`act_on_proposal`,
:func:`start_change`, :func:`finish_change`, :func:`sync_specs`) over the proposal book kept in
the run database and the ``openspec/`` and ``.claude/epics/`` files of the repository. The rules
(which move is legal, how a change is validated, merged or archived, how a task box is ticked)
belong to :mod:`aidp.specs`; this module sequences them and records who acted. It prints
nothing; heavy imports happen inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.app import queries
from aidp.app.views import (
    ProposalActOutcome,
    ProposalDetailView,
    ProposalView,
    SpecSyncOutcome,
    TransitionView,
)
from aidp.core.states import RunState, StepState, WorkstreamState
from aidp.exceptions import InputError, NotFoundError, StateError

if TYPE_CHECKING:
    from aidp.app.context import AppContext
    from aidp.specs.proposals import ProposalBook

__all__ = [
    "act_on_proposal", "finish_change", "get_proposal", "list_proposals", "start_change",
    "sync_specs",
]


def _book(app: AppContext, *, create: bool = True) -> ProposalBook:
    from aidp.specs.proposals import ProposalBook

    return ProposalBook(app.store(create=create))


def _change_dir(app: AppContext, change_id: str) -> tuple[Path, Path]:
    from aidp.specs.project import find_root

    root = find_root(app.repo)
    change_dir = root / "openspec" / "changes" / change_id
    if "/" in change_id or change_id == "archive" or not change_dir.is_dir():
        raise NotFoundError(f"no change {change_id!r} in {root / 'openspec' / 'changes'}")
    return root, change_dir


def _title(change_dir: Path) -> str | None:
    from aidp.specs.project import parse_proposal, read_text

    proposal = change_dir / "proposal.md"
    return parse_proposal(read_text(proposal)).title or None if proposal.is_file() else None


def list_proposals(app: AppContext) -> list[ProposalView]:
    """Every active change and every recorded proposal, by change id; a change never
    recorded is a draft (the database is created if missing).

    Raises:
        NotFoundError: there is no ``openspec/`` directory.
    """
    from aidp.specs.project import find_root

    changes_dir = find_root(app.repo) / "openspec" / "changes"
    active = sorted(p.name for p in changes_dir.iterdir()
                    if p.is_dir() and p.name != "archive" and not p.name.startswith(".")) \
        if changes_dir.is_dir() else []
    recorded = {r.change_id: r for r in _book(app).all()}
    views = []
    for change_id in sorted(set(active) | set(recorded)):
        record = recorded.get(change_id)
        views.append(ProposalView(
            change=change_id, state=record.state.value if record else "draft",
            recorded=record is not None, present=change_id in active,
            title=record.title if record else _title(changes_dir / change_id),
            updated_at=record.updated_at if record else None))
    return views


def get_proposal(app: AppContext, change_id: str) -> ProposalDetailView:
    """The proposal of ``change_id`` with its history (a draft when never recorded).

    Raises:
        NotFoundError: the change is neither recorded nor in ``openspec/changes``.
    """
    book = _book(app)
    record = book.get(change_id)
    if record is None:
        _change_dir(app, change_id)  # NotFoundError for a change that does not exist
    return ProposalDetailView(
        change=change_id, state=record.state.value if record else "draft",
        recorded=record is not None, title=record.title if record else None,
        history=tuple(TransitionView(
            from_state=h.from_state.value if h.from_state else None, to_state=h.to_state.value,
            action=h.action, by=h.actor, comment=h.comment, at=h.ts)
            for h in book.history(change_id)))


def act_on_proposal(app: AppContext, change_id: str, action: str, *, by: str,
                    comment: str | None = None,
                    on_problem: Callable[[str], None] | None = None) -> ProposalActOutcome:
    """Move the proposal of ``change_id`` by ``action`` (a :class:`~aidp.specs.lifecycle.
    ProposalAction` value: submit, approve, reject, request-changes, reopen, start, apply,
    abort, archive), recording ``by`` and ``comment``.

    ``submit`` refuses a change that does not validate, passing each error line to
    ``on_problem`` first; ``approve`` returns warnings for other active changes claiming the
    same requirements; ``archive`` merges the change into the specs (after checking the move is
    legal, so nothing is merged when it is not).

    Raises:
        NotFoundError: no such change. InputError: it does not validate.
        StateError: the move is not legal from the proposal's state.
    """
    from aidp.specs.lifecycle import ProposalAction

    move = ProposalAction(action)
    root, change_dir = (_change_dir(app, change_id) if move is not ProposalAction.ARCHIVE
                        else (None, None))
    book = _book(app)
    warnings: list[str] = []
    if move is ProposalAction.SUBMIT:
        assert root is not None and change_dir is not None
        from aidp.specs.validate import Level, validate_change

        report = validate_change(change_id, change_dir, root)
        errors = [i for i in report.issues if i.level is Level.ERROR]
        if errors:
            for issue in errors:
                if on_problem is not None:
                    on_problem(issue.render())
            raise InputError(f"change {change_id!r} does not validate ({len(errors)} errors); "
                             "not submitted", hint=f"aidp specs validate {change_id}")
        book.ensure(change_id, _title(change_dir), by)
    if move is ProposalAction.APPROVE:
        from aidp.specs.project import load_project
        from aidp.specs.resolver import find_conflicts

        assert root is not None
        for conflict in find_conflicts(load_project(root)):
            if any(c.change == change_id for c in conflict.claims):
                warnings.append(f"conflict: {conflict.render()}")
    if move is ProposalAction.ARCHIVE:
        record = book.get(change_id)
        if record is not None:
            from aidp.specs.archive import archive_change
            from aidp.specs.lifecycle import transition
            from aidp.specs.project import find_root

            transition(record.state, move)  # refuse before merging anything
            archive_change(find_root(app.repo), change_id)
    record = book.act(change_id, move, by, comment)
    return ProposalActOutcome(change=change_id, state=record.state.value, by=by,
                              warnings=tuple(warnings))


def start_change(app: AppContext, change_id: str, *, by: str) -> None:
    """Before a run of OpenSpec change ``change_id``: refuse it unless its proposal is approved
    (or in progress: a run of it failed before), unless ``[specs] require_approval = false``;
    mark an approved one in progress.

    Raises:
        StateError: the change is not approved and approval is required.
    """
    from aidp.specs.lifecycle import ProposalAction, ProposalState

    book = _book(app)
    record = book.get(change_id)
    state = record.state if record is not None else None
    if state is ProposalState.IN_PROGRESS:
        return  # a run of it failed before: run it again
    if state is not ProposalState.APPROVED:
        if app.settings.specs.require_approval:
            raise StateError(
                f"change {change_id!r} is {state.value if state else 'not proposed'}, "
                "not approved", hint=f"aidp proposals approve {change_id} (after submit), or "
                "set [specs] require_approval = false")
        return
    book.act(change_id, ProposalAction.START, by, comment="aidp run --change")


def finish_change(app: AppContext, change_id: str, *, by: str) -> None:
    """After a completed run of change ``change_id``: its proposal is applied (if it was in
    progress)."""
    from aidp.specs.lifecycle import ProposalAction, ProposalState

    book = _book(app, create=False)
    record = book.get(change_id)
    if record is not None and record.state is ProposalState.IN_PROGRESS:
        book.act(change_id, ProposalAction.APPLY, by, comment="run completed")


def sync_specs(app: AppContext, run_ref: str | None, *, archive: bool = False
               ) -> SpecSyncOutcome:
    """Write the results of run ``run_ref`` (default: the newest) back: tick the tasks.md boxes
    of its completed steps, close the CCPM tasks of its completed workstreams, and with
    ``archive`` archive each change whose run completed and whose tasks are all ticked
    (moving its tracked proposal along).

    Raises:
        NotFoundError: no database or no such run.
        InputError: a change to archive has a proposal that is not approved.
    """
    from aidp.specs.bridge import change_of_workstream
    from aidp.specs.sync import close_epic_tasks, epic_task_files, tick_tasks

    run = queries.get_run(app, queries.resolve_run(app, run_ref))
    done_steps: dict[str, set[str]] = {}
    for ws in run.workstreams:
        for step in ws.steps:
            if step.status == StepState.COMPLETED.value:
                done_steps.setdefault(ws.id, set()).add(step.id)
    finished = {ws.id for ws in run.workstreams
                if ws.status == WorkstreamState.COMPLETED.value}
    edits: list[dict[str, Any]] = []
    archived: list[str] = []
    changes_dir = app.repo / "openspec" / "changes"
    epic_files = epic_task_files(app.repo)
    change_ids = ({p.name for p in changes_dir.iterdir() if p.is_dir() and p.name != "archive"}
                  if changes_dir.is_dir() else set())
    closing: dict[Path, list[Path]] = {}
    to_archive: list[str] = []
    for ws_id in sorted(set(done_steps) | finished):
        change_id = change_of_workstream(ws_id, change_ids)  # a change, or one of its sections
        if change_id is not None:
            numbers = {s[len("task-"):] for s in done_steps.get(ws_id, set())
                       if s.startswith("task-")}
            tasks_file = changes_dir / change_id / "tasks.md"
            for line in tick_tasks(tasks_file, numbers):
                edits.append({"file": tasks_file.relative_to(app.repo).as_posix(), "line": line,
                              "edit": "ticked"})
            if (archive and run.status == RunState.COMPLETED.value and ws_id in finished
                    and change_id not in to_archive):
                to_archive.append(change_id)
        elif ws_id in finished and ws_id in epic_files:
            directory, path = epic_files[ws_id]
            closing.setdefault(directory, []).append(path)
    for change_id in to_archive:
        archived += _archive_finished(app, change_id, changes_dir / change_id / "tasks.md")
    for directory, paths in closing.items():
        for path, line in close_epic_tasks(directory, paths):
            edits.append({"file": path.relative_to(app.repo).as_posix(), "line": line,
                          "edit": "closed" if path.name != "epic.md" else "progress"})
    return SpecSyncOutcome(run_id=run.run_id, edits=tuple(edits), archived=tuple(archived))


def _archive_finished(app: AppContext, change_id: str, tasks_file: Path) -> list[str]:
    """Archive a change whose tasks are all ticked, moving its tracked proposal along."""
    from aidp.specs.archive import archive_change
    from aidp.specs.lifecycle import ProposalAction, ProposalState
    from aidp.specs.project import parse_tasks, read_text

    if tasks_file.is_file() and not all(t.done for t in parse_tasks(read_text(tasks_file))):
        return []
    book = _book(app, create=False)
    record = book.get(change_id)
    if record is not None and record.state not in (ProposalState.APPROVED,
                                                   ProposalState.IN_PROGRESS,
                                                   ProposalState.APPLIED):
        raise InputError(f"proposal {change_id!r} is {record.state.value}, not approved: "
                         "not archived", hint=f"aidp proposals show {change_id}")
    result = archive_change(app.repo, change_id)
    if record is not None:
        steps = {ProposalState.APPROVED: [ProposalAction.START, ProposalAction.APPLY],
                 ProposalState.IN_PROGRESS: [ProposalAction.APPLY]}.get(record.state, [])
        for action in [*steps, ProposalAction.ARCHIVE]:
            book.act(change_id, action, "aidp", f"run finished; archived as {result.archived_as}")
    return [result.archived_as]
