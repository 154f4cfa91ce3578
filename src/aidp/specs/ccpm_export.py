"""A workstream plan written out as a CCPM epic (``.claude/epics/<name>/``).

The inverse of :mod:`aidp.specs.ccpm`: :func:`plan_to_epic` renders ``epic.md`` and one task
file per workstream, in plan order (``001.md``, ``002.md``, ...), so that
:func:`~aidp.specs.ccpm.load_epic` plus :func:`~aidp.specs.ccpm.epic_to_workstreams` give back
the same dependency DAG. A task's ``depends_on`` and ``conflicts_with`` are task numbers;
``parallel`` is false when the workstream conflicts with another one (either side naming the
other); the workstream's ``scope`` is kept in the aidp-specific ``scope:`` field, which the
importer reads, so scoped tasks are not serialised against each other on the way back.
Rendering is pure; :func:`write_epic` is the only function that touches the disk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import yaml

from aidp.exceptions import InputError
from aidp.model.plan import Plan
from aidp.model.workstream import Workstream

__all__ = ["epic_dir", "plan_to_epic", "write_epic"]

_EPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TASK_FILE = re.compile(r"^\d+\.md$")


def _check_name(name: str) -> None:
    if not _EPIC_NAME.match(name):
        raise InputError(f"epic name {name!r} is not a single path segment of letters, digits, "
                         "'.', '_' or '-'")


def epic_dir(root: Path, name: str) -> Path:
    """``root/.claude/epics/<name>``; InputError when ``name`` is not a plain directory name."""
    _check_name(name)
    return root / ".claude" / "epics" / name


def _text(value: str) -> str:
    """A YAML scalar for ``value``: plain when it reads back unchanged, else double-quoted."""
    try:
        plain = value != "" and "\n" not in value and yaml.safe_load(value) == value \
            and value == value.strip()
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value, ensure_ascii=False)


def _numbers(numbers: list[int]) -> str:
    return "[" + ", ".join(str(n) for n in numbers) + "]"


def _stamp(now: datetime | None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _title(ws: Workstream) -> str:
    return (ws.title or ws.id).strip() or ws.id


def _description(ws: Workstream) -> str:
    parts = []
    for step in ws.steps:
        what = (step.prompt or "").strip()
        if not what and step.run is not None:
            command = step.run if isinstance(step.run, str) else " ".join(step.run)
            what = f"Run `{command}`."
        if not what:
            what = step.title or step.id
        if len(ws.steps) == 1:
            parts.append(what)
        else:
            parts.append(f"### Step {step.id}" + (f": {step.title}" if step.title else "")
                         + f"\n\n{what}")
    return "\n\n".join(parts)


def _acceptance(ws: Workstream) -> list[str]:
    items = []
    for step in ws.steps:
        items.append(f"Step `{step.id}` done" + (f": {step.title}" if step.title else ""))
        for check in step.check_list():
            command = check.run if isinstance(check.run, str) else " ".join(check.run)
            label = f"{check.name}: " if check.name else ""
            items.append(f"{label}`{command}` passes")
    return [" ".join(item.split()) for item in items]


def _task_file(ws: Workstream, number: dict[str, int], conflicts: set[str],
               stamp: str) -> str:
    depends = sorted(number[d] for d in ws.depends_on)
    conflict_numbers = sorted(number[c] for c in conflicts)
    front = [
        "---",
        f"name: {_text(_title(ws))}",
        "status: open",
        f"created: {stamp}",
        f"updated: {stamp}",
        'github: ""',
        f"depends_on: {_numbers(depends)}",
        f"parallel: {'false' if conflicts else 'true'}",
        f"conflicts_with: {_numbers(conflict_numbers)}",
        f"scope: {json.dumps(list(ws.scope), ensure_ascii=False)}",
        "---",
    ]
    steps = "\n".join(f"  - `{s.id}` ({s.tool})" + (f": {s.title}" if s.title else "")
                      for s in ws.steps)
    dependencies = "\n".join(f"- Task {n:03d}" for n in depends) or "- none"
    body = [
        f"# Task: {_title(ws)}",
        "",
        "## Description",
        "",
        _description(ws),
        "",
        "## Acceptance Criteria",
        "",
        *(f"- [ ] {item}" for item in _acceptance(ws)),
        "",
        "## Technical Details",
        "",
        f"- aidp workstream: `{ws.id}` (base `{ws.base}`)",
        "- scope: " + ", ".join(f"`{g}`" for g in ws.scope),
        "- steps:",
        steps,
        "",
        "## Dependencies",
        "",
        dependencies,
        "",
    ]
    return "\n".join(front) + "\n" + "\n".join(body)


def plan_to_epic(plan: Plan, name: str, *, now: datetime | None = None) -> dict[str, str]:
    """Render ``plan`` as a CCPM epic.

    Args:
        plan: a validated plan (every dependency and conflict names a workstream of it).
        name: the epic's name (its directory under ``.claude/epics/``).
        now: the creation time (default: the current time); written as ISO-8601 UTC.

    Returns:
        File name (``epic.md``, ``001.md``, ...) -> text, tasks in plan order.

    Raises:
        InputError: ``name`` is not a plain directory name.
    """
    _check_name(name)
    stamp = _stamp(now)
    number = {ws.id: i for i, ws in enumerate(plan.workstreams, start=1)}
    conflicts: dict[str, set[str]] = {ws.id: set(ws.conflicts_with) for ws in plan.workstreams}
    for ws in plan.workstreams:
        for other in ws.conflicts_with:
            conflicts[other].add(ws.id)
    files: dict[str, str] = {}
    tasks = []
    for ws in plan.workstreams:
        file = f"{number[ws.id]:03d}.md"
        files[file] = _task_file(ws, number, conflicts[ws.id], stamp)
        parallel = "false" if conflicts[ws.id] else "true"
        tasks.append(f"- [ ] {file} - {_title(ws)} (parallel: {parallel})")
    count = len(plan.workstreams)
    epic = [
        "---",
        f"name: {_text(name)}",
        "status: backlog",
        f"created: {stamp}",
        "progress: 0%",
        'prd: ""',
        'github: ""',
        "---",
        f"# Epic: {name}",
        "",
        "## Overview",
        "",
        f"Exported from an aidp plan of {count} workstream{'s' if count != 1 else ''} "
        f"({plan.step_count} step{'s' if plan.step_count != 1 else ''}). Each task is one "
        "workstream; depends_on and conflicts_with give the plan's DAG.",
        "",
        "## Tasks Created",
        "",
        *tasks,
        "",
        f"Total tasks: {count}",
        "",
    ]
    return {"epic.md": "\n".join(epic), **files}


def write_epic(root: Path, name: str, files: Mapping[str, str], force: bool = False) -> Path:
    """Write ``files`` (from :func:`plan_to_epic`) into ``root/.claude/epics/<name>/``.

    With ``force`` an existing epic is replaced: its ``epic.md`` and numbered task files are
    removed first (other files, such as ``updates/``, are kept), so no stale task survives.

    Returns:
        The epic directory.

    Raises:
        InputError: the directory exists and ``force`` is false, or ``name`` or a file name is
            not plain; nothing has been written.
    """
    directory = epic_dir(root, name)
    for file in files:
        if file != "epic.md" and not _TASK_FILE.match(file):
            raise InputError(f"{file!r} is not an epic file (epic.md or NNN.md)")
    if directory.exists() and not force:
        raise InputError(f"epic directory {directory} already exists; pass --force to replace it")
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if old.is_file() and (old.name == "epic.md" or _TASK_FILE.match(old.name)):
            old.unlink()
    for file, text in files.items():
        (directory / file).write_text(text, encoding="utf-8")
    return directory
