"""Load an ``openspec/`` directory into :mod:`aidp.specs.model` objects.

Both generations are read: v0 (``openspec/project.md``) and v1 (``openspec/config.yaml`` plus a
``.openspec.yaml`` per change), capability paths of any depth (``specs/identity/user-auth/``),
active changes and the archive (``changes/archive/YYYY-MM-DD-<id>/``). Reading is lenient, as the
reference CLI's is: a spec without ``## Purpose`` still loads (validation reports it), unreadable
or undecodable files load as empty text. Nothing here raises for bad Markdown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from aidp.exceptions import NotFoundError
from aidp.model.yaml_tree import load_yaml
from aidp.specs.markdown import (
    SCENARIO_HEADER,
    extract_requirement_body,
    fence_mask,
    find_section,
    normalize_content,
    parse_delta_spec,
    parse_sections,
    scenario_name_of,
)
from aidp.specs.model import (
    Change,
    ChangeMetadata,
    DeltaOp,
    DeltaSpec,
    Position,
    Project,
    Proposal,
    Requirement,
    RequirementDelta,
    Scenario,
    Spec,
    Task,
)

__all__ = [
    "MAX_FILE_BYTES",
    "discover_spec_files",
    "find_qualifying_root",
    "find_root",
    "load_change",
    "load_project",
    "parse_delta_file",
    "parse_proposal",
    "parse_spec",
    "parse_tasks",
    "read_metadata",
    "read_text",
]

MAX_FILE_BYTES = 4 * 1024 * 1024
_ARCHIVED = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)$")
TASK_LINE = re.compile(
    r"^\s*(?:[-*+]|\d{1,9}[.)])\s*\[(?:\s*([^\]\s]?)\s*\](?![(\[])|\s+\])\s*(.*)")
_TASK_ID = re.compile(r"^(\d+(?:\.\d+)+(?:[A-Za-z]+)?)(?=\s|$)")
_GROUP = re.compile(r"^ {0,3}##[ \t]+(\d+)\.(?:[ \t]|$)")
_LEVEL_TWO = re.compile(r"^ {0,3}##(?!#)(?:[ \t]+|[ \t]*$)")


def read_text(path: Path) -> str:
    """A file's text (BOM and CRLF normalised); empty when missing, unreadable or too large."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return ""
        return normalize_content(path.read_bytes().decode("utf-8", errors="replace"))
    except OSError:
        return ""


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``openspec/``; NotFoundError if none."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / "openspec").is_dir():
            return candidate
    raise NotFoundError(f"no openspec/ directory at or above {here}",
                        hint="run `openspec init` or pass --repo PATH")


def find_qualifying_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` whose ``openspec/`` is a root to the reference
    CLI's bulk commands: it holds ``specs/`` or ``changes/`` (directories) or ``config.yaml`` /
    ``config.yml``; an ``openspec/`` with only instructions (``AGENTS.md``, ``project.md``) is
    passed over. None when there is none."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        openspec = candidate / "openspec"
        if openspec.is_dir() and ((openspec / "specs").is_dir() or (openspec / "changes").is_dir()
                                  or (openspec / "config.yaml").exists()
                                  or (openspec / "config.yml").exists()):
            return candidate
    return None


def discover_spec_files(specs_root: Path) -> list[tuple[str, Path]]:
    """(capability id, spec.md) for every ``spec.md`` below ``specs_root`` at depth >= 1,
    skipping dot-entries, sorted by id (the reference CLI's ``discoverSpecFiles``)."""
    found: list[tuple[str, Path]] = []

    def walk(directory: str, segments: list[str]) -> None:
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                walk(entry.path, [*segments, entry.name])
            elif entry.name == "spec.md" and segments and entry.is_file():
                found.append(("/".join(segments), Path(entry.path)))

    walk(str(specs_root), [])
    return sorted(found, key=lambda item: item[0])


def _requirement(capability: str, name: str, raw: str, line: int, file: str) -> Requirement:
    """A requirement from its raw block (header line first); scenario lines are file lines.
    A scenario is any unfenced level-4 header with a non-blank body, as the reference reads it."""
    lines = raw.split("\n")
    mask = fence_mask(lines)
    text = extract_requirement_body(lines[1:]) or name
    scenarios: list[Scenario] = []
    for index, header in enumerate(lines):
        if mask[index] or not SCENARIO_HEADER.match(header):
            continue
        end = index + 1
        while end < len(lines) and (mask[end] or not re.match(r"^#{1,4}\s", lines[end])):
            end += 1
        content = "\n".join(lines[index + 1:end]).strip()
        if content:
            scenario_name = scenario_name_of(header)
            scenarios.append(Scenario(scenario_name, content, Position(file, line + index)))
    return Requirement(capability, name, text, tuple(scenarios), Position(file, line), raw)


def parse_spec(capability: str, content: str, file: str = "spec.md") -> Spec:
    """Parse a main spec. Requirements are the ``### Requirement:`` blocks of its
    ``## Requirements`` section; a missing section gives an empty tuple."""
    from aidp.specs.markdown import extract_requirements_section

    text = normalize_content(content)
    lines = text.split("\n")
    sections = parse_sections(lines, fence_mask(lines))
    purpose = find_section(sections, "Purpose")
    title = next((s.title for s in sections if s.level == 1), capability)
    parts = extract_requirements_section(text)
    requirements = tuple(_requirement(capability, b.name, b.raw, b.line, file)
                         for b in parts.blocks)
    return Spec(capability, title, purpose.content if purpose else "", requirements,
                Position(file, 1), text)


def parse_delta_file(capability: str, content: str, file: str = "spec.md") -> DeltaSpec:
    """Parse a change's delta spec for one capability."""
    plan = parse_delta_spec(content)
    deltas: list[RequirementDelta] = []
    for op, blocks in ((DeltaOp.ADDED, plan.added), (DeltaOp.MODIFIED, plan.modified)):
        for block in blocks:
            req = _requirement(capability, block.name, block.raw, block.line, file)
            deltas.append(RequirementDelta(op, capability, block.name, Position(file, block.line),
                                           requirement=req))
    for removed in plan.removed:
        deltas.append(RequirementDelta(DeltaOp.REMOVED, capability, removed.name,
                                       Position(file, removed.line)))
    for rename in plan.renamed:
        deltas.append(RequirementDelta(DeltaOp.RENAMED, capability, rename.from_name,
                                       Position(file, rename.line), renamed_to=rename.to_name))
    return DeltaSpec(capability, Position(file, 1), normalize_content(content), tuple(deltas),
                     plan.purpose)


def parse_proposal(content: str, file: str = "proposal.md") -> Proposal:
    """Parse ``proposal.md``: ``# Change: title``, Why, What Changes, Impact."""
    text = normalize_content(content)
    lines = text.split("\n")
    sections = parse_sections(lines, fence_mask(lines))
    match = re.search(r"^#\s+(?:Change:\s+)?(.+)$", text, re.MULTILINE | re.IGNORECASE)
    title = match.group(1).strip() if match else ""
    named: dict[str, str] = {}

    def collect(items: list[Any]) -> None:
        for section in items:
            named.setdefault(section.title.lower(), section.content)
            collect(section.children)

    collect(sections)
    what = named.get("what changes", "")
    bullets = [m.group(1).strip() for m in re.finditer(r"^\s*[-*+]\s+(.+)$", what, re.MULTILINE)]
    breaking = [b for b in bullets if "**BREAKING**" in b]
    return Proposal(title, named.get("why", ""), what, named.get("impact", ""), tuple(bullets),
                    tuple(breaking), named, Position(file, 1))


def parse_tasks(content: str, file: str = "tasks.md") -> tuple[Task, ...]:
    """Every checkbox line of ``tasks.md`` with its number (``1.2``) and ``## N.`` group."""
    tasks: list[Task] = []
    group: str | None = None
    for index, line in enumerate(normalize_content(content).split("\n")):
        if _LEVEL_TWO.match(line):
            heading = _GROUP.match(line)
            group = heading.group(1) if heading else None
        match = TASK_LINE.match(line)
        if not match:
            continue
        description = match.group(2).strip()
        number = _TASK_ID.match(description)
        text = description[number.end():].strip() if number else description
        tasks.append(Task(number.group(1) if number else None, text,
                          (match.group(1) or "").lower() == "x", Position(file, index + 1),
                          group))
    return tuple(tasks)


def _js_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _builtin_schemas(openspec_dir: Path) -> set[str]:
    names = {"spec-driven"}
    local = openspec_dir / "schemas"
    if local.is_dir():
        names.update(p.name for p in local.iterdir() if p.is_dir())
    return names


def read_metadata(change_dir: Path, openspec_dir: Path) -> ChangeMetadata:
    """Read ``.openspec.yaml``; a ``skip_specs`` marker that cannot be honoured gets
    ``invalid`` set with the reference CLI's reason."""
    meta = change_dir / ".openspec.yaml"
    if not meta.exists():
        return ChangeMetadata()
    raw = read_text(meta)
    try:
        parsed = load_yaml(raw)
    except yaml.YAMLError:
        mentioned = re.search(r"^\s*(['\"]?)skip_specs\1\s*:", raw, re.MULTILINE)
        return ChangeMetadata(invalid="the file is not valid YAML" if mentioned else None)
    if not isinstance(parsed, dict):
        return ChangeMetadata()
    schema = parsed.get("schema")
    skip = parsed.get("skip_specs")
    retire = parsed.get("retire_capabilities")
    problem: str | None = None
    if not isinstance(schema, str) or not schema:
        problem = "schema: " + ("schema is required" if isinstance(schema, str)
                                else "Invalid input: expected string, received "
                                + ("undefined" if "schema" not in parsed else _js_type(schema)))
    elif "skip_specs" in parsed and not isinstance(skip, bool):
        problem = "skip_specs: Invalid input: expected boolean, received " + _js_type(skip)
    if problem is not None:
        declared = "skip_specs" in parsed and skip is not False
        return ChangeMetadata(schema if isinstance(schema, str) else None,
                              invalid=problem if declared else None, raw=parsed)
    if skip is True and schema not in _builtin_schemas(openspec_dir):
        return ChangeMetadata(schema, invalid=f"schema: unknown schema '{schema}'", raw=parsed)
    return ChangeMetadata(str(schema), skip is True, retire is True, None, parsed)


def load_change(change_dir: Path, root: Path, archived_on: str | None = None,
                change_id: str | None = None) -> Change:
    """Load one change directory (active or archived)."""
    openspec_dir = root / "openspec"
    proposal_file = change_dir / "proposal.md"
    proposal = (parse_proposal(read_text(proposal_file), _rel(proposal_file, root))
                if proposal_file.is_file() else None)
    tasks_file = change_dir / "tasks.md"
    tasks = parse_tasks(read_text(tasks_file), _rel(tasks_file, root)) if tasks_file.is_file() \
        else ()
    design_file = change_dir / "design.md"
    design = read_text(design_file) if design_file.is_file() else None
    deltas = tuple(parse_delta_file(cap, read_text(path), _rel(path, root))
                   for cap, path in discover_spec_files(change_dir / "specs"))
    return Change(change_id or change_dir.name, change_dir, Position(_rel(change_dir, root), 1),
                  proposal, tasks, design, deltas, read_metadata(change_dir, openspec_dir),
                  archived_on)


def load_project(root: Path) -> Project:
    """Load ``root/openspec``: specs, active changes, archive. NotFoundError without it."""
    openspec_dir = root / "openspec"
    if not openspec_dir.is_dir():
        raise NotFoundError(f"no openspec/ directory in {root}",
                            hint="run `openspec init` or pass --repo PATH")
    config: dict[str, object] = {}
    conventions: str | None = None
    layout = "v0"
    if (openspec_dir / "config.yaml").is_file():
        layout = "v1"
        try:
            loaded = load_yaml(read_text(openspec_dir / "config.yaml"))
        except yaml.YAMLError:
            loaded = None
        config = loaded if isinstance(loaded, dict) else {}
        context = config.get("context")
        conventions = context if isinstance(context, str) else None
    elif (openspec_dir / "project.md").is_file():
        conventions = read_text(openspec_dir / "project.md")
    specs: dict[str, Spec] = {}
    for capability, path in discover_spec_files(openspec_dir / "specs"):
        spec = parse_spec(capability, read_text(path), _rel(path, root))
        design = path.parent / "design.md"
        if design.is_file():
            spec = Spec(spec.capability, spec.title, spec.purpose, spec.requirements,
                        spec.position, spec.content, read_text(design))
        specs[capability] = spec
    changes: dict[str, Change] = {}
    archive: dict[str, Change] = {}
    changes_dir = openspec_dir / "changes"
    if changes_dir.is_dir():
        for entry in sorted(changes_dir.iterdir(), key=lambda p: p.name):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if entry.name == "archive":
                for old in sorted(entry.iterdir(), key=lambda p: p.name):
                    match = _ARCHIVED.match(old.name)
                    if old.is_dir() and match:
                        archive[old.name] = load_change(old, root, match.group(1),
                                                        match.group(2))
                continue
            changes[entry.name] = load_change(entry, root)
    return Project(root, openspec_dir, layout, specs, changes, archive, config, conventions)
