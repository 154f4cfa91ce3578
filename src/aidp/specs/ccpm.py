"""CCPM epics (``.claude/epics/<name>/``) read and compiled into workstreams.

An epic is ``epic.md`` plus one Markdown file per task (``001.md``, ... -- or, once synced to
GitHub, ``<issue number>.md``), each with YAML front matter: ``name``, ``status``
(open / in-progress / closed), ``depends_on`` and ``conflicts_with`` (task numbers),
``parallel`` and ``github`` (the issue URL). Task numbers are read as decimal digits however
they are written (``[010, 012]``, a block list, quoted, or ``010, 012``): front matter is read
with YAML 1.2 integers, so ``010`` is task 10, not YAML 1.1's octal 8, and a bare ``10`` matches
``010.md`` by value. Sync renames task files to issue numbers and
rewrites the numbers in ``depends_on``, so tasks are keyed here by a stable id of our own -- a
slug of the task's ``name`` -- and a number is resolved against both file numbers and issue
numbers. Each open task becomes one workstream (tasks are CCPM's unit of parallel work) with
one step whose prompt is the task body (Description, Acceptance Criteria, Technical Details);
``depends_on`` and ``conflicts_with`` map onto the workstream fields of the same names.
``parallel: false`` makes the task conflict with every other task of the epic, and so does a
task with neither ``parallel:`` nor a scope. ``parallel: true`` is the author's statement that
the task may run beside every task it does not list in ``conflicts_with``. CCPM task files name
no files, and aidp refuses two parallel workstreams whose scopes overlap (no ``scope`` is
``**``), so a ``parallel: true`` task without an (optional, aidp-specific) ``scope:`` /
``files:`` list of globs keeps scope ``**`` and gets ``scope_overlap: allow``: it runs beside
its siblings, and edits that do clash are reported as merge conflicts. Tasks that declare globs
are checked for overlap as any workstream is. Closed tasks are left out and dependencies on
them count as met.

Real epics also name a task with ``title:`` instead of ``name:`` or put a ``# Task 00N``
heading above the front matter; both are read, each with a warning in :attr:`Epic.warnings`.

Bad input -- no front matter, bad YAML, a dependency on an unknown task -- is reported as
:class:`~aidp.exceptions.Problem` lines naming file, line and task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aidp.exceptions import NotFoundError, Problem, ValidationError
from aidp.model.yaml_tree import Yaml12Loader
from aidp.specs.bridge import step_id
from aidp.specs.project import read_text

__all__ = ["Epic", "EpicTask", "epic_to_workstreams", "find_epic", "load_epic"]

_TASK_FILE = re.compile(r"^(\d+)\.md$")
_ISSUE = re.compile(r"/issues/(\d+)\b")
_INT = "tag:yaml.org,2002:int"


def _decimal_ints(resolvers: dict[Any, list[tuple[str, Any]]]) -> dict[Any, list[Any]]:
    """``resolvers`` with an integer being plain decimal digits without a leading zero."""
    table = {first: [(tag, rx) for tag, rx in entries if tag != _INT]
             for first, entries in resolvers.items()}
    pattern = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
    for first in "-+0123456789":
        table.setdefault(first, []).append((_INT, pattern))
    return table


class _FrontMatterLoader(Yaml12Loader):
    """aidp's YAML 1.2 loader for CCPM front matter only: a zero-padded task number (``010``)
    stays the string of its digits instead of YAML 1.1's octal 8 (``019``, no octal, was
    already a string), and ``0x10`` / ``1_0`` are not numbers either."""

    yaml_implicit_resolvers = _decimal_ints(Yaml12Loader.yaml_implicit_resolvers)


@dataclass(frozen=True)
class EpicTask:
    """One task file of an epic."""

    key: str  # stable: slug of the name
    number: str  # the file's number (001, or the issue number after sync)
    issue: str | None  # GitHub issue number from ``github``
    name: str
    status: str
    depends_on: tuple[str, ...]
    conflicts_with: tuple[str, ...]
    parallel: bool
    body: str
    file: str
    line: int  # where depends_on is written, else 1
    acceptance: tuple[tuple[str, bool], ...]  # checkbox text, ticked
    scope: tuple[str, ...] = ()  # globs from an optional ``scope:`` / ``files:`` field
    parallel_declared: bool = False  # ``parallel:`` written in the front matter

    @property
    def serial(self) -> bool:
        """Runs beside no other task: ``parallel: false``, or neither ``parallel: true`` nor a
        scope -- a task that says nothing about files or parallelism is kept conservative."""
        return not self.parallel or (not self.parallel_declared and not self.scope)


@dataclass(frozen=True)
class Epic:
    """``epic.md`` and its tasks."""

    name: str
    status: str
    file: str
    github: str | None
    body: str
    tasks: tuple[EpicTask, ...]
    warnings: tuple[Problem, ...] = ()  # read anyway: ``title:`` for ``name:``, a heading above


def _front_matter(text: str, rel: str, problems: list[Problem],
                  warnings: list[Problem]) -> tuple[dict[str, Any], str, dict[str, int]]:
    """(front matter, body, key -> line) of a CCPM Markdown file; Markdown headings (and blank
    lines) above the front matter are skipped with a warning."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines)
                  if line.strip() and not line.lstrip().startswith("#")), len(lines))
    if start == len(lines) or lines[start].strip() != "---":
        problems.append(Problem(rel, "no YAML front matter (a first line '---')", 1,
                                code="ccpm-front-matter"))
        return {}, text, {}
    heading = next((i for i in range(start) if lines[i].strip()), None)
    if heading is not None:
        warnings.append(Problem(rel, f"heading {lines[heading].strip()!r} above the front matter "
                                "ignored (CCPM files start with '---')", heading + 1,
                                code="ccpm-heading"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        problems.append(Problem(rel, "front matter is not closed by a '---' line", start + 1,
                                code="ccpm-front-matter"))
        return {}, text, {}
    try:
        data = yaml.load("\n".join(lines[start + 1:end]), Loader=_FrontMatterLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = start + 2 + mark.line if mark is not None else start + 1
        problems.append(Problem(rel, f"front matter is not valid YAML: "
                                f"{getattr(exc, 'problem', None) or exc}", line,
                                code="ccpm-front-matter"))
        return {}, "\n".join(lines[end + 1:]), {}
    if not isinstance(data, dict):
        problems.append(Problem(rel, "front matter must be a mapping", start + 2,
                                code="ccpm-front-matter"))
        return {}, "\n".join(lines[end + 1:]), {}
    where: dict[str, int] = {}
    for i in range(start + 1, end):
        match = re.match(r"^([A-Za-z_][\w-]*)\s*:", lines[i])
        if match:
            where.setdefault(match.group(1), i + 1)
    return data, "\n".join(lines[end + 1:]), where


def _numbers(value: Any, rel: str, line: int, field: str, task: str,
             problems: list[Problem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # CCPM also writes ``depends_on: 001, 002``
        value = [v for v in re.split(r"[\s,]+", value.strip().strip("[]")) if v]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        problems.append(Problem(rel, f"{field} must be a list of task numbers", line, task,
                                "ccpm-field"))
        return ()
    out = []
    for item in value:
        text = str(item).strip().lstrip("#")
        if not text.isdigit():
            problems.append(Problem(rel, f"{field}: {item!r} is not a task number", line, task,
                                    "ccpm-field"))
            continue
        out.append(str(int(text)))
    return tuple(out)


def find_epic(root: Path, name: str) -> Path:
    """``.claude/epics/<name>`` (or ``archived/<name>``) under ``root``, or ``name`` itself if it
    is a directory holding ``epic.md``."""
    direct = Path(name)
    if (direct / "epic.md").is_file():
        return direct
    for candidate in (root / ".claude" / "epics" / name,
                      root / ".claude" / "epics" / "archived" / name):
        if (candidate / "epic.md").is_file():
            return candidate
    raise NotFoundError(f"no CCPM epic {name!r} (looked for .claude/epics/{name}/epic.md)")


def load_epic(directory: Path, root: Path) -> Epic:
    """Read an epic directory; ValidationError listing every problem."""
    problems: list[Problem] = []
    warnings: list[Problem] = []

    def rel(path: Path) -> str:
        resolved = path.resolve()
        return resolved.relative_to(root.resolve()).as_posix() \
            if resolved.is_relative_to(root.resolve()) else path.as_posix()

    epic_file = directory / "epic.md"
    meta, body, _ = _front_matter(read_text(epic_file), rel(epic_file), problems, warnings)
    tasks: list[EpicTask] = []
    taken: set[str] = set()
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        match = _TASK_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        file = rel(path)
        data, text, where = _front_matter(read_text(path), file, problems, warnings)
        if not data and problems and problems[-1].file == file:
            continue
        name = str(data.get("name") or "").strip()
        title = str(data.get("title") or "").strip()
        if not name and title:
            name = title
            warnings.append(Problem(file, "title: read as the task's name (CCPM writes name:)",
                                    where.get("title", 2), code="ccpm-title"))
        if not name:
            problems.append(Problem(file, "task has no name", where.get("name", 2),
                                    code="ccpm-field"))
            continue
        key = step_id(re.sub(r"[^a-z0-9]+", "-", name.lower()), taken)
        github = data.get("github")
        issue_match = _ISSUE.search(str(github)) if github else None
        dep_line = where.get("depends_on", 1)
        acceptance = tuple((m.group(2).strip(), m.group(1).lower() == "x")
                           for m in re.finditer(r"^\s*[-*]\s*\[([ xX])\]\s*(.+)$", text,
                                                re.MULTILINE))
        tasks.append(EpicTask(
            key, str(int(match.group(1))), issue_match.group(1) if issue_match else None, name,
            str(data.get("status") or "open"),
            _numbers(data.get("depends_on"), file, dep_line, "depends_on", key, problems),
            _numbers(data.get("conflicts_with"), file, where.get("conflicts_with", 1),
                     "conflicts_with", key, problems),
            data.get("parallel") is not False, text.strip(), file, dep_line, acceptance,
            _globs(data.get("scope", data.get("files"))), "parallel" in data))
    by_number = _number_index(tasks)
    for task in tasks:
        for field, numbers in (("depends_on", task.depends_on),
                               ("conflicts_with", task.conflicts_with)):
            for number in numbers:
                if number not in by_number:
                    problems.append(Problem(task.file, f"{field}: no task {number} in this epic",
                                            task.line, task.key, "ccpm-unknown-task"))
    if problems:
        raise ValidationError(problems)
    return Epic(str(meta.get("name") or directory.name), str(meta.get("status") or "backlog"),
                rel(epic_file), str(meta["github"]) if meta.get("github") else None,
                body.strip(), tuple(tasks), tuple(warnings))


def _globs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(str(v).strip() for v in value if str(v).strip())


def _number_index(tasks: list[EpicTask] | tuple[EpicTask, ...]) -> dict[str, EpicTask]:
    index: dict[str, EpicTask] = {}
    for task in tasks:
        index.setdefault(task.number, task)
        if task.issue:
            index.setdefault(task.issue, task)
    return index


def _prompt(epic: Epic, task: EpicTask) -> str:
    parts = [f"Task: {task.name}", f"Epic: {epic.name}"]
    if task.issue:
        parts.append(f"Issue: #{task.issue}")
    parts += ["", task.body]
    return "\n".join(parts).strip() + "\n"


def epic_to_workstreams(epic: Epic, *, tool: str = "manual", checks: list[str] | None = None,
                        base: str = "HEAD") -> dict[str, Any]:
    """The workstream file (as data): one workstream per open task."""
    by_number = _number_index(epic.tasks)
    open_tasks = [t for t in epic.tasks if t.status != "closed"]
    open_keys = {t.key for t in open_tasks}
    serial = [t.key for t in open_tasks if t.serial]
    workstreams = []
    for task in open_tasks:
        depends = [by_number[n].key for n in task.depends_on if by_number[n].key in open_keys]
        conflicts = [by_number[n].key for n in task.conflicts_with
                     if by_number[n].key in open_keys]
        if task.serial:
            conflicts += [k for k in open_keys if k != task.key]
        conflicts += [k for k in serial if k != task.key]
        step: dict[str, Any] = {"id": "implement", "title": task.name, "tool": tool,
                                "prompt": _prompt(epic, task), "context": [task.file]}
        if checks:
            step["checks"] = list(checks)
        workstream: dict[str, Any] = {"id": task.key, "title": task.name, "base": base,
                                      "steps": [step]}
        if task.scope:
            workstream["scope"] = list(task.scope)
        elif not task.serial:
            # CCPM's parallel: true is the author's word that the task may run beside any task
            # it does not name in conflicts_with; it names no files, so its scope stays ``**``
            # (enforced) and the overlap is accepted -- clashing edits surface at merge time.
            workstream["scope_overlap"] = "allow"
        if depends:
            workstream["depends_on"] = sorted(set(depends))
        unique_conflicts = sorted(set(conflicts) - set(depends))
        if unique_conflicts:
            workstream["conflicts_with"] = unique_conflicts
        workstreams.append(workstream)
    return {"version": 1, "workstreams": workstreams}
