"""JSON documents in the shapes the ``openspec`` CLI prints (``--format openspec``).

``show_spec`` mirrors ``openspec show <spec> --type spec --json``, ``show_change`` mirrors
``openspec show <change> --json``, ``list_changes`` / ``list_specs`` mirror ``openspec list
[--specs] --json`` and ``validation_document`` the envelope of ``openspec validate --json``.
What must differ is documented where it happens: ``durationMs`` is aidp's own timing, and
``root.path`` is the resolved repository path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aidp.exceptions import InputError, NotFoundError
from aidp.specs.markdown import (
    fence_mask,
    find_section,
    normalize_content,
    parse_delta_spec,
    parse_requirements,
    parse_sections,
)
from aidp.specs.project import TASK_LINE, discover_spec_files, read_text
from aidp.specs.validate import Report

__all__ = [
    "ShowError",
    "change_title",
    "list_changes",
    "list_specs",
    "no_root_document",
    "root_document",
    "show_change",
    "show_spec",
    "validation_document",
]


class ShowError(InputError):
    """A spec or change the reference CLI also refuses to show; ``reference`` is its message
    (without aidp's file prefix) and ``code`` its status code."""

    def __init__(self, message: str, reference: str, code: str = "show_error") -> None:
        super().__init__(message)
        self.reference = reference
        self.code = code


def root_document(root: Path) -> dict[str, str]:
    """The ``root`` member every reference JSON output carries."""
    return {"path": str(root), "source": "nearest"}


def no_root_document() -> dict[str, Any]:
    """The status document ``openspec validate --all --json`` prints (exit 1) without a root."""
    return {"status": [{"severity": "error", "code": "no_openspec_root",
                        "message": "No OpenSpec root found from the current directory.",
                        "target": "openspec.root",
                        "fix": "Run openspec init to create a root here."}]}


def _requirements_json(section: Any) -> list[dict[str, Any]]:
    return [{"text": text, "scenarios": [{"rawText": raw} for raw in scenarios]}
            for _, text, scenarios in parse_requirements(section)]


def _parse_spec_document(content: str) -> tuple[str, list[dict[str, Any]]]:
    """(overview, requirements) or InputError with the reference's parse message."""
    lines = normalize_content(content).split("\n")
    sections = parse_sections(lines, fence_mask(lines))
    purpose = find_section(sections, "Purpose")
    if purpose is None or not purpose.content:
        raise InputError("Spec must have a Purpose section")
    requirements = find_section(sections, "Requirements")
    if requirements is None:
        raise InputError("Spec must have a Requirements section")
    return purpose.content.strip(), _requirements_json(requirements)


def show_spec(root: Path, spec_id: str) -> dict[str, Any]:
    """``openspec show <spec> --type spec --json``."""
    path = root / "openspec" / "specs" / spec_id / "spec.md"
    if ".." in Path(spec_id).parts or not path.is_file():
        raise NotFoundError(f"Spec '{spec_id}' not found at {path}")
    try:
        overview, requirements = _parse_spec_document(read_text(path))
    except InputError as exc:
        raise ShowError(f"{path.relative_to(root).as_posix()}: {exc.message}",
                        exc.message) from None
    return {"id": spec_id, "title": spec_id, "overview": overview,
            "requirementCount": len(requirements), "requirements": requirements,
            "metadata": {"version": "1.0.0", "format": "openspec"},
            "root": root_document(root)}


def change_title(content: str, change_id: str) -> str:
    """The proposal's ``# Change: title`` (``# Proposal`` names the document, not the change)."""
    match = re.search(r"^#\s+(?:Change:\s+)?(.+)$", content, re.MULTILINE | re.IGNORECASE)
    title = match.group(1).strip() if match else ""
    return title if title and title.lower() != "proposal" else change_id


def _block_requirements(raw: str) -> list[dict[str, Any]]:
    header, _, body = raw.partition("\n")
    title = re.sub(r"^###\s*", "", header).strip()
    text = f"### {title}\n{body}" if body else f"### {title}"
    lines = normalize_content(text).split("\n")
    sections = parse_sections(lines, fence_mask(lines))
    if not sections or not re.match(r"^Requirement:\s*\S", sections[0].title.strip(), re.I):
        return []
    holder = type(sections[0])(2, "", "", 0, [sections[0]])
    return _requirements_json(holder)


def _what_changes_deltas(what: str) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = []
    for line in what.split("\n"):
        match = re.match(r"^\s*-\s*\*\*([^*:]+)(?::\*\*|\*\*:)\s*(.+)$", line)
        if not match:
            continue
        description = match.group(2).strip()
        lowered = description.lower()
        operation = "MODIFIED"
        if re.search(r"\brename(s|d|ing)?\b", lowered) or re.search(r"\brenamed\s+(to|from)\b",
                                                                    lowered):
            operation = "RENAMED"
        elif (re.search(r"\badd(s|ed|ing)?\b", lowered) or re.search(r"\bcreate(s|d|ing)?\b",
                                                                      lowered)
              or re.search(r"\bnew\b", lowered)):
            operation = "ADDED"
        elif re.search(r"\bremove(s|d|ing)?\b", lowered) or re.search(r"\bdelete(s|d|ing)?\b",
                                                                      lowered):
            operation = "REMOVED"
        deltas.append({"spec": match.group(1).strip(), "operation": operation,
                       "description": description})
    return deltas


def show_change(root: Path, change_id: str) -> dict[str, Any]:
    """``openspec show <change> --json``: the proposal's title and every delta."""
    change_dir = root / "openspec" / "changes" / change_id
    proposal = change_dir / "proposal.md"
    if "/" in change_id or ".." in change_id or not proposal.is_file():
        if change_dir.is_dir():
            raise ShowError(f'{change_dir.relative_to(root).as_posix()}: change "{change_id}" has'
                            " no proposal.md yet",
                            f'Change "{change_id}" has no proposal.md yet. Run "openspec status '
                            f'--change {change_id}" to see which artifact comes next.')
        raise NotFoundError(f'Change "{change_id}" not found at {proposal}')
    content = read_text(proposal)
    lines = content.split("\n")
    sections = parse_sections(lines, fence_mask(lines))
    why = find_section(sections, "Why")
    what = find_section(sections, "What Changes")
    rel = proposal.relative_to(root).as_posix()
    if why is None or not why.content:
        raise ShowError(f"{rel}: Change must have a Why section", "Change must have a Why section")
    if what is None or not what.content:
        raise ShowError(f"{rel}: Change must have a What Changes section",
                        "Change must have a What Changes section")
    deltas: list[dict[str, Any]] = []
    has_sections = False
    for capability, spec_file in discover_spec_files(change_dir / "specs"):
        plan = parse_delta_spec(read_text(spec_file))
        has_sections = has_sections or plan.has_sections
        for label, verb, blocks in (("ADDED", "Add", plan.added),
                                    ("MODIFIED", "Modify", plan.modified)):
            for block in blocks:
                for req in _block_requirements(block.raw):
                    deltas.append({"spec": capability, "operation": label,
                                   "description": f"{verb} requirement: {req['text']}",
                                   "requirement": req, "requirements": [req]})
        pool = list(plan.removed_blocks)
        for removed in plan.removed:
            index = next((i for i, b in enumerate(pool) if b.name == removed.name), None)
            raw = pool.pop(index).raw if index is not None else \
                f"### Requirement: {removed.name}"
            for req in _block_requirements(raw):
                deltas.append({"spec": capability, "operation": "REMOVED",
                               "description": f"Remove requirement: {req['text']}",
                               "requirement": req, "requirements": [req]})
        for rename in plan.renamed:
            deltas.append({"spec": capability, "operation": "RENAMED",
                           "description": f'Rename requirement from "{rename.from_name}" to '
                                          f'"{rename.to_name}"',
                           "rename": {"from": rename.from_name, "to": rename.to_name}})
    if not has_sections:
        deltas = _what_changes_deltas(what.content.strip())
    return {"id": change_id, "title": change_title(content, change_id),
            "deltaCount": len(deltas), "deltas": deltas, "root": root_document(root)}


def _last_modified_ms(directory: Path) -> int:
    """The newest file mtime below ``directory`` in whole milliseconds (a JavaScript Date)."""
    latest: int | None = None
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                mtime = path.stat().st_mtime_ns // 1_000_000
                latest = mtime if latest is None or mtime > latest else latest
        except OSError:
            continue
    return latest if latest is not None else directory.stat().st_mtime_ns // 1_000_000


def list_changes(root: Path) -> dict[str, Any]:
    """``openspec list --json``: active changes, most recently modified first."""
    changes_dir = root / "openspec" / "changes"
    rows: list[tuple[int, dict[str, Any]]] = []
    if changes_dir.is_dir():
        # Node's readdir returns names in byte order (libuv sorts its scandir) and the
        # reference's sort by time is stable, so equal times stay in name order.
        for entry in sorted(changes_dir.iterdir(), key=lambda e: e.name.encode()):
            if not entry.is_dir() or entry.name == "archive":
                continue
            tasks = entry / "tasks.md"
            marks = [m.group(1) or "" for line in read_text(tasks).split("\n")
                     if (m := TASK_LINE.match(line))] if tasks.is_file() else []
            done = sum(1 for mark in marks if mark.lower() == "x")
            total = len(marks)
            modified_ms = _last_modified_ms(entry)
            status = "no-tasks" if total == 0 else "complete" if done == total else "in-progress"
            when = datetime.fromtimestamp(modified_ms // 1000, tz=UTC)
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{modified_ms % 1000:03d}Z"
            rows.append((modified_ms, {"name": entry.name, "completedTasks": done,
                                    "totalTasks": total, "lastModified": stamp,
                                    "status": status}))
    rows.sort(key=lambda row: row[0], reverse=True)
    return {"changes": [row for _, row in rows], "root": root_document(root)}


def list_specs(root: Path) -> dict[str, Any]:
    """``openspec list --specs --json``: every capability and its requirement count."""
    specs: list[dict[str, Any]] = []
    for capability, path in discover_spec_files(root / "openspec" / "specs"):
        try:
            _, requirements = _parse_spec_document(read_text(path))
            count = len(requirements)
        except InputError:
            count = 0
        specs.append({"id": capability, "requirementCount": count})
    return {"specs": specs, "root": root_document(root)}


def validation_document(root: Path, reports: list[tuple[Report, int]],
                        types: tuple[str, ...]) -> dict[str, Any]:
    """The envelope of ``openspec validate --json`` around (report, durationMs) pairs."""
    items = []
    for report, duration_ms in reports:
        item = report.to_openspec()
        item["durationMs"] = duration_ms
        items.append(item)
    if len(items) > 1:
        items.sort(key=lambda item: (item["id"].lower(), item["id"]))

    def totals(kind: str | None) -> dict[str, int]:
        chosen = [i for i in items if kind is None or i["type"] == kind]
        passed = sum(1 for i in chosen if i["valid"])
        return {"items": len(chosen), "passed": passed, "failed": len(chosen) - passed}

    return {"items": items,
            "summary": {"totals": totals(None), "byType": {kind: totals(kind) for kind in types}},
            "version": "1.0", "root": root_document(root)}
