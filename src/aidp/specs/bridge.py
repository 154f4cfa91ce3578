"""Compile an OpenSpec change into a workstream file: tasks become steps whose prompts carry the
requirement text and scenarios they implement.

One change becomes one workstream (id: the change id) whose steps follow ``tasks.md`` in order:
each unchecked task is one step depending on the previous one (OpenSpec has no dependency
syntax, and tasks are written to be done in order). A task that names requirements of the
change gets only those requirements, in full: it names one by its exact name (case-insensitive,
as a whole phrase -- so also as ``<capability>/<name>``, or by the new name of a RENAMED one) or
by a ``spec://<capability>/<requirement>`` reference (``spec://<capability>`` names all of that
capability's). A task naming none gets every requirement in full when the change has at most
:data:`FULL_LIMIT`; otherwise only a list of their keys, with the change's delta specs (where
the text and scenarios are) as context files -- repeating every requirement in every step made
one real change's plan 9,391 lines of YAML. A change without tasks gets one step per requirement
delta. Each step's prompt holds the task, the proposal's Why, and for every requirement its key,
what the change does to it, its text and its scenarios -- the acceptance criteria the tool must
meet. The result is plain data in the workstream file format (:mod:`aidp.model.workstream`).

Scenario-tagged tests (:mod:`aidp.specs.coverage`) become acceptance checks: a step whose
requirements have scenarios with proving tests gets one more check, ``<test_command> <node
ids>``, running exactly those tests, after the configured ``checks``; its prompt says which test
proves which scenario.

``split="sections"`` makes one workstream per numbered ``tasks.md`` section (``## 2. Docs``):
id ``<change>-<section number>`` (tasks outside a numbered section form section ``0``), each
depending on the previous section's workstream, since sections are written to be done in order.
:func:`change_of_workstream` maps such an id back to its change (for ``aidp specs sync``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from aidp.exceptions import InputError, NotFoundError
from aidp.specs.coverage import ScenarioKey
from aidp.specs.index import find_references
from aidp.specs.model import Change, DeltaOp, Project, RequirementDelta
from aidp.specs.resolver import parse_uri

__all__ = ["FULL_LIMIT", "SPLITS", "change_of_workstream", "change_to_workstreams",
           "named_requirements", "requirement_context", "step_id"]

SPLITS = ("change", "sections")
Split = Literal["change", "sections"]
FULL_LIMIT = 3  # a task naming no requirement gets them all in full up to this many


def _names_phrase(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as a whole (case-insensitive): "Login" is named by "add
    Login", not by "Logins"."""
    return re.search(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)", text.lower()) is not None


def named_requirements(text: str, deltas: Sequence[RequirementDelta]) -> list[RequirementDelta]:
    """The deltas a task's ``text`` names (see the module doc), in the change's order."""
    paths = set()
    for uri, _ in find_references(text):
        try:
            paths.add(parse_uri(uri).path.lower())
        except InputError:
            continue

    def named(delta: RequirementDelta) -> bool:
        names = [delta.name] + ([delta.renamed_to] if delta.renamed_to else [])
        keys = {f"{delta.capability}/{name}".lower() for name in names}
        return (bool(keys & paths) or delta.capability.lower() in paths
                or any(_names_phrase(text, name) for name in names))

    return [d for d in deltas if named(d)]


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


def _proofs(deltas: list[RequirementDelta], tests: Mapping[ScenarioKey, Sequence[str]],
            ) -> list[tuple[ScenarioKey, list[str]]]:
    """(scenario, node ids) of every scenario of ``deltas`` that tagged tests prove."""
    found: list[tuple[ScenarioKey, list[str]]] = []
    for delta in deltas:
        if delta.requirement is None:
            continue
        for scenario in delta.requirement.scenarios:
            key = ScenarioKey(delta.capability, delta.requirement.name, scenario.name)
            if tests.get(key):
                found.append((key, list(tests[key])))
    return found


def _requirement_index(deltas: list[RequirementDelta]) -> list[str]:
    """Prompt lines listing ``deltas`` by key only (their text is in the context files)."""
    lines = ["", "This task names none of the change's requirements. They are (text and "
                 "scenarios in the delta specs given as context files):"]
    for delta in deltas:
        renamed = f" to {delta.renamed_to!r}" if delta.renamed_to else ""
        lines.append(f"- {delta.key} ({delta.op.value}{renamed})")
    return lines


def _prompt(change: Change, task: str, deltas: list[RequirementDelta],
            proofs: list[tuple[ScenarioKey, list[str]]] | None = None, *,
            full: bool = True) -> str:
    parts = [f"Task: {task}", "", f"Change: {change.id}"
             + (f" -- {change.proposal.title}" if change.proposal and change.proposal.title
                else "")]
    if change.proposal and change.proposal.why:
        parts += ["", "Why:", change.proposal.why]
    if deltas and not full:
        parts += _requirement_index(deltas)
    elif deltas:
        parts += ["", "Requirements this task must satisfy (each scenario is an acceptance "
                      "criterion):", ""]
        parts += ["\n\n".join(requirement_context(d) for d in deltas)]
    if proofs:
        parts += ["", "Tests that prove these scenarios (this step's last check runs them; "
                      "they must pass):"]
        parts += [f"- {key}: {', '.join(nodeids)}" for key, nodeids in proofs]
    return "\n".join(parts).strip() + "\n"


def change_of_workstream(ws_id: str, change_ids: Iterable[str]) -> str | None:
    """The change a compiled workstream comes from: ``ws_id`` itself, or for a section
    workstream (``<change>-<number>``) that change; None when neither is in ``change_ids``."""
    known = set(change_ids)
    if ws_id in known:
        return ws_id
    base, _, number = ws_id.rpartition("-")
    return base if number.isdigit() and base in known else None


def change_to_workstreams(project: Project, change_id: str, *, tool: str = "manual",
                          checks: list[str] | None = None, include_done: bool = False,
                          base: str = "HEAD", split: Split = "change",
                          tests: Mapping[ScenarioKey, Sequence[str]] | None = None,
                          test_command: str = "python -m pytest -q") -> dict[str, Any]:
    """The workstream file (as data) for active change ``change_id``.

    ``tests`` maps scenarios to the node ids of the tests proving them (from
    :func:`aidp.specs.coverage.map_tests`); ``test_command`` runs node ids. ``split`` is
    ``change`` (one workstream) or ``sections`` (one per numbered tasks.md section).
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}", hint="use change or sections")
    change = project.changes.get(change_id)
    if change is None:
        raise NotFoundError(f"no active change {change_id!r}",
                            hint="`aidp specs list` shows the active changes")
    deltas = list(change.requirement_deltas)
    taken: set[str] = set()
    steps: list[dict[str, Any]] = []
    sections: list[str] = []  # the tasks.md section of each step
    tasks = [t for t in change.tasks if include_done or not t.done]
    if tasks:
        for task in tasks:
            named = named_requirements(task.text, deltas)
            label = f"{task.number} {task.text}" if task.number else task.text
            step = _step(change, label, named or deltas, tests, test_command,
                         step_id(f"task-{task.number}" if task.number else task.text, taken),
                         task.position.file, full=bool(named) or len(deltas) <= FULL_LIMIT)
            steps.append(step)
            sections.append(task.group or "0")
    else:
        for delta in deltas:
            ident = step_id(f"{delta.op.value.lower()}-{delta.name}", taken)
            steps.append(_step(change, f"Implement {delta.op.value} {delta.key}", [delta],
                               tests, test_command, ident, delta.position.file,
                               f"{delta.op.value.lower()} {delta.key}"))
            sections.append("0")
    title = change.proposal.title if change.proposal and change.proposal.title else change.id
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for section, step in zip(sections, steps, strict=True):
        name = section if split == "sections" and tasks else ""
        if not groups or groups[-1][0] != name:
            groups.append((name, []))
        groups[-1][1].append(step)
    workstreams: list[dict[str, Any]] = []
    ws_taken: set[str] = set()
    for name, members in groups:
        for n, step in enumerate(members):
            step["tool"] = tool
            if n:
                step["depends_on"] = [members[n - 1]["id"]]
            step_checks = [*(checks or []), *step.pop("_test_checks")]
            if step_checks:
                step["checks"] = step_checks
        ws_id = step_id(f"{change.id}-{name}" if name else change.id, ws_taken)
        workstream: dict[str, Any] = {
            "id": ws_id, "title": f"{title} -- section {name}" if name else title,
            "base": base, "steps": members}
        if workstreams:
            workstream["depends_on"] = [workstreams[-1]["id"]]
        workstreams.append(workstream)
    return {"version": 1, "workstreams": workstreams}


def _step(change: Change, label: str, deltas: list[RequirementDelta],
          tests: Mapping[ScenarioKey, Sequence[str]] | None, test_command: str, ident: str,
          context: str, title: str | None = None, *, full: bool = True) -> dict[str, Any]:
    """One step; ``full`` False lists ``deltas`` by key and gives their files as context."""
    proofs = _proofs(deltas, tests or {})
    nodeids = sorted({n for _, ids in proofs for n in ids})
    files = [context] if full else [context, *dict.fromkeys(d.position.file for d in deltas)]
    return {"id": ident, "title": title or label,
            "prompt": _prompt(change, label, deltas, proofs, full=full),
            "context": files, "_test_checks": [] if not nodeids else [
                f"{test_command} {' '.join(shlex.quote(n) for n in nodeids)}"]}
