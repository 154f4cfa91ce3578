"""Compile an OpenSpec change into a workstream file: tasks become steps whose prompts carry the
requirement text and scenarios they implement.

One change becomes one workstream (id: the change id) whose steps follow ``tasks.md`` in order:
each unchecked task is one step depending on the previous one (OpenSpec has no dependency
syntax, and tasks are written to be done in order). A task that names requirements of the
change (their name appears in its text) gets those requirements as prompt context; any other
task gets every requirement of the change. A change without tasks gets one step per requirement
delta. Each step's prompt holds the task, the proposal's Why, and for every requirement its key,
what the change does to it, its text and its scenarios -- the acceptance criteria the tool must
meet. The result is plain data in the workstream file format (:mod:`aidp.model.workstream`).
"""

from __future__ import annotations

import re
from typing import Any

from aidp.exceptions import NotFoundError
from aidp.specs.model import Change, DeltaOp, Project, RequirementDelta

__all__ = ["change_to_workstreams", "requirement_context", "step_id"]


def step_id(raw: str, taken: set[str]) -> str:
    """A workstream-file id (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``) from ``raw``, unique in
    ``taken`` (which it joins)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:56] or "step"
    if not base[0].isalnum():
        base = "s" + base
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def requirement_context(delta: RequirementDelta) -> str:
    """The prompt text for one requirement delta: key, operation, text, scenarios."""
    if delta.op is DeltaOp.REMOVED:
        return f"### {delta.key} (REMOVED)\nRemove this requirement and the behaviour it asked for."
    if delta.op is DeltaOp.RENAMED:
        return f"### {delta.key} (RENAMED to {delta.renamed_to!r})\nRename only; same behaviour."
    requirement = delta.requirement
    assert requirement is not None
    lines = [f"### {delta.key} ({delta.op.value})", requirement.text]
    for scenario in requirement.scenarios:
        lines += ["", f"#### Scenario: {scenario.name}", scenario.text]
    return "\n".join(lines)


def _prompt(change: Change, task: str, deltas: list[RequirementDelta]) -> str:
    parts = [f"Task: {task}", "", f"Change: {change.id}"
             + (f" -- {change.proposal.title}" if change.proposal and change.proposal.title
                else "")]
    if change.proposal and change.proposal.why:
        parts += ["", "Why:", change.proposal.why]
    if deltas:
        parts += ["", "Requirements this task must satisfy (each scenario is an acceptance "
                      "criterion):", ""]
        parts += ["\n\n".join(requirement_context(d) for d in deltas)]
    return "\n".join(parts).strip() + "\n"


def change_to_workstreams(project: Project, change_id: str, *, tool: str = "manual",
                          checks: list[str] | None = None, include_done: bool = False,
                          base: str = "HEAD") -> dict[str, Any]:
    """The workstream file (as data) for active change ``change_id``."""
    change = project.changes.get(change_id)
    if change is None:
        raise NotFoundError(f"no active change {change_id!r}",
                            hint="`aidp specs list` shows the active changes")
    deltas = list(change.requirement_deltas)
    taken: set[str] = set()
    steps: list[dict[str, Any]] = []
    tasks = [t for t in change.tasks if include_done or not t.done]
    if tasks:
        for task in tasks:
            named = [d for d in deltas if d.name.lower() in task.text.lower()
                     or (d.renamed_to and d.renamed_to.lower() in task.text.lower())]
            label = f"{task.number} {task.text}" if task.number else task.text
            steps.append({
                "id": step_id(f"task-{task.number}" if task.number else task.text, taken),
                "title": label,
                "prompt": _prompt(change, label, named or deltas),
                "context": [task.position.file],
            })
    else:
        for delta in deltas:
            steps.append({
                "id": step_id(f"{delta.op.value.lower()}-{delta.name}", taken),
                "title": f"{delta.op.value.lower()} {delta.key}",
                "prompt": _prompt(change, f"Implement {delta.op.value} {delta.key}", [delta]),
                "context": [delta.position.file],
            })
    for n, step in enumerate(steps):
        step["tool"] = tool
        if n:
            step["depends_on"] = [steps[n - 1]["id"]]
        if checks:
            step["checks"] = list(checks)
    title = change.proposal.title if change.proposal and change.proposal.title else change.id
    workstreams = []
    if steps:
        workstreams.append({"id": step_id(change.id, set()), "title": title, "base": base,
                            "steps": steps})
    return {"version": 1, "workstreams": workstreams}
