"""Keep the source files in step with a run: tick the ``tasks.md`` checkboxes of completed
steps, close the CCPM task files of completed workstreams and recompute the epic's progress.

Edits are minimal and line-based (one checkbox mark, one ``status:`` / ``updated:`` /
``progress:`` line), so the rest of each file -- and its diff -- is untouched. A workstream made
by ``aidp specs plan`` has the change's id and steps ``task-<number>``; one made by
``aidp specs epic`` has the task's stable key (see :mod:`aidp.specs.ccpm`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aidp.specs.project import TASK_LINE, parse_tasks, read_text

__all__ = ["EpicStatusReporter", "SyncResult", "close_epic_tasks", "epic_task_files",
           "start_epic_task", "tick_tasks"]


@dataclass(frozen=True)
class SyncResult:
    """What changed: ``(file, line)`` of every edit."""

    edits: tuple[tuple[str, int], ...]


def tick_tasks(tasks_file: Path, numbers: set[str]) -> list[int]:
    """Tick the unticked checkboxes whose task number is in ``numbers``; their lines."""
    if not tasks_file.is_file():
        return []
    text = read_text(tasks_file)
    lines = text.split("\n")
    ticked: list[int] = []
    for task in parse_tasks(text):
        if task.number in numbers and not task.done:
            index = task.position.line - 1
            match = TASK_LINE.match(lines[index])
            if match is None:
                continue
            lines[index] = re.sub(r"\[\s*\]", "[x]", lines[index], count=1)
            ticked.append(task.position.line)
    if ticked:
        tasks_file.write_text("\n".join(lines))
    return ticked


def _set_field(text: str, field: str, value: str) -> tuple[str, int | None]:
    """Set ``field: value`` in the front matter (added before its end if missing)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return text, None
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        return text, None
    for i in range(1, end):
        if re.match(rf"^{re.escape(field)}\s*:", lines[i]):
            if lines[i] == f"{field}: {value}":
                return text, None
            lines[i] = f"{field}: {value}"
            return "\n".join(lines), i + 1
    lines.insert(end, f"{field}: {value}")
    return "\n".join(lines), end + 1


def close_epic_tasks(epic_dir: Path, files: list[Path], now: datetime | None = None,
                     ) -> list[tuple[Path, int]]:
    """Set ``status: closed`` and ``updated`` in each task file, then the epic's ``progress``
    (closed tasks / all tasks); the (file, line) of every edit."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    edits: list[tuple[Path, int]] = []
    for path in files:
        text = read_text(path)
        text, line = _set_field(text, "status", "closed")
        if line is None:
            continue
        edits.append((path, line))
        text, _ = _set_field(text, "updated", stamp)
        path.write_text(text)
    tasks = [p for p in epic_dir.iterdir() if re.match(r"^\d+\.md$", p.name)]
    closed = sum(1 for p in tasks
                 if re.search(r"^status:\s*closed\s*$", read_text(p), re.MULTILINE))
    epic = epic_dir / "epic.md"
    if tasks and epic.is_file() and edits:
        text, line = _set_field(read_text(epic), "progress", f"{closed * 100 // len(tasks)}%")
        if line is not None:
            text, _ = _set_field(text, "updated", stamp)
            epic.write_text(text)
            edits.append((epic, line))
    return edits


def start_epic_task(path: Path, now: datetime | None = None) -> int | None:
    """Set ``status: in-progress`` and ``updated`` in a task file that is not closed; the
    line of the status edit (None: nothing changed)."""
    text = read_text(path)
    if re.search(r"^status:\s*closed\s*$", text, re.MULTILINE):
        return None
    text, line = _set_field(text, "status", "in-progress")
    if line is not None:
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        text, _ = _set_field(text, "updated", stamp)
        path.write_text(text)
    return line


def epic_task_files(repo: Path) -> dict[str, tuple[Path, Path]]:
    """Task key -> (epic directory, task file) for every readable epic under
    ``.claude/epics/`` (an epic that does not load is left out)."""
    from aidp.exceptions import InputError
    from aidp.specs.ccpm import load_epic

    found: dict[str, tuple[Path, Path]] = {}
    epics_dir = repo / ".claude" / "epics"
    if not epics_dir.is_dir():
        return found
    for directory in sorted(p for p in epics_dir.iterdir() if (p / "epic.md").is_file()):
        try:
            epic = load_epic(directory, repo)
        except InputError:
            continue
        for task in epic.tasks:
            found.setdefault(task.key, (directory, repo / task.file))
    return found


class EpicStatusReporter:
    """Wraps a run's reporter: while the run goes on, the CCPM task file of a workstream made
    by ``aidp specs epic`` becomes ``in-progress`` when the workstream starts and ``closed``
    when it completes (the epic's ``progress`` recomputed). A failed workstream stays
    ``in-progress`` (CCPM has no failed status). A file that cannot be written costs a
    warning line, never the run."""

    def __init__(self, inner: Any, files: dict[str, tuple[Path, Path]], warn: Any) -> None:
        self.inner = inner
        self.files = files
        self.warn = warn

    def event(self, kind: str, ws_id: str | None, step_id: str | None, data: dict[str, Any]
              ) -> None:
        self.inner.event(kind, ws_id, step_id, data)
        if ws_id not in self.files or kind not in ("workstream.started",
                                                    "workstream.completed"):
            return
        directory, path = self.files[ws_id]
        try:
            if kind == "workstream.started":
                start_epic_task(path)
            else:
                close_epic_tasks(directory, [path])
        except OSError as exc:
            self.warn(f"warning: could not update {path}: {exc.strerror or exc}")

    def output(self, ws_id: str, step_id: str, data: bytes) -> None:
        self.inner.output(ws_id, step_id, data)
