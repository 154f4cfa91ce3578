"""Validation of specs and changes with the rules, verdicts and messages of ``openspec validate``.

Mirrors the reference CLI 1.13 (``dist/core/validation/validator.js``): for a spec, the parse
errors (no Purpose / Requirements section), the schema checks (>= 1 requirement, >= 1 scenario
per requirement), structure errors (delta headers in a main spec, requirements outside
``## Requirements``, duplicates), the purpose length and placeholder warnings and the SHALL/MUST
rule; for a change, every delta-spec rule (requirement text, SHALL/MUST, >= 1 scenario, duplicates
and cross-section conflicts, unpaired RENAMED lines, stray headers, requirements outside delta
sections, MODIFIED blocks that drop scenarios of the current spec, what archive would refuse,
misplaced delta files, ``skip_specs``, no deltas at all) and the ``tasks.md`` checks (no
checkboxes, numbering). ``--strict`` makes warnings fail too.

Each :class:`Issue` keeps the reference's ``level``, ``path`` and ``message`` and adds the file
(relative to the repository) and line, so aidp can print ``file:line: [id] message``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidp.specs.apply import ApplyError, apply_delta
from aidp.specs.markdown import (
    contains_shall_or_must,
    count_empty_scenarios,
    count_scenarios,
    describe_scenario_balance,
    diff_scenario_names,
    extract_requirement_body,
    extract_requirements_section,
    fence_mask,
    find_section,
    fold_requirement_name,
    main_spec_structure_issues,
    normalize_content,
    parse_delta_spec,
    parse_requirements,
    parse_sections,
)
from aidp.specs.placeholders import placeholder_issue
from aidp.specs.project import TASK_LINE, discover_spec_files, read_metadata, read_text

__all__ = ["Issue", "Level", "Report", "validate_change", "validate_spec", "validate_spec_text"]

MIN_PURPOSE_LENGTH = 50
MAX_REQUIREMENT_TEXT_LENGTH = 500
GUIDE_NO_DELTAS = (
    "No deltas found. Ensure your change has a specs/ directory with capability folders (e.g. "
    "specs/http-server/spec.md) containing .md files that use delta headers (## ADDED/MODIFIED/"
    "REMOVED/RENAMED Requirements) and that each requirement includes at least one \"#### "
    "Scenario:\" block. If this change intentionally modifies no specs (pure refactor, tooling, "
    "docs), set \"skip_specs: true\" in the change's .openspec.yaml instead. Tip: run \"openspec "
    "change show <change-id> --json --deltas-only\" to inspect parsed deltas.")
GUIDE_MISSING_SPEC_SECTIONS = (
    'Missing required sections. Expected headers: "## Purpose" and "## Requirements". Example:\n'
    "## Purpose\n[brief purpose]\n\n## Requirements\n### Requirement: Clear requirement "
    "statement\nUsers SHALL ...\n\n#### Scenario: Descriptive name\n- **WHEN** ...\n- **THEN** ...")
GUIDE_SCENARIO_FORMAT = (
    "Scenarios must use level-4 headers. Convert bullet lists into:\n#### Scenario: Short name\n"
    "- **WHEN** ...\n- **THEN** ...\n- **AND** ...")
PURPOSE_IS_PLACEHOLDER = (
    "Purpose section is still a placeholder rather than a Purpose anyone wrote (the sentence "
    "`openspec archive` writes for a new capability, or a `TBD`/`TODO` marker left in its place). "
    "Replace it with what this capability is for, editing the main spec directly: a `## Purpose` "
    "in a delta is read only when the capability is created, so it cannot replace this one.")
SKIP_SPECS_CONFLICT = (
    "skip_specs is set in .openspec.yaml but spec files exist under specs/. Remove skip_specs or "
    "delete the delta spec files")
SKIP_SPECS_ACCEPTED = (
    "skip_specs is set in .openspec.yaml: change declares no spec-level behavior changes, zero "
    "deltas accepted")
SKIP_SPECS_INVALID = (
    "skip_specs is set but .openspec.yaml is not valid change metadata, so the marker is not "
    "honored. Fix the metadata")
NO_CHECKBOXES = (
    'This change counts as 0 tasks: no line in its tracked task files is a checkbox, so "openspec '
    'list" and "openspec status" report no work and "openspec archive" has nothing to flag as '
    'incomplete. Write each task as "- [ ] 1.1 Description".')


class Level(enum.Enum):
    """Severity of an issue, as the reference CLI names it."""

    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


@dataclass(frozen=True)
class Issue:
    """One finding: the reference's level / path / message, plus file and line for aidp."""

    level: Level
    path: str
    message: str
    line: int | None = None
    file: str = ""
    item: str = ""
    reference_line: bool = True  # the reference CLI prints this line in its JSON too

    def to_openspec(self) -> dict[str, Any]:
        """The issue in the reference CLI's JSON shape."""
        data: dict[str, Any] = {"level": self.level.value, "path": self.path}
        if self.line is not None and self.reference_line:
            data["line"] = self.line
        data["message"] = self.message
        return data

    def render(self) -> str:
        """``file:line: [item] LEVEL message`` on one line (newlines in messages folded)."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        ident = f" [{self.item}]" if self.item else ""
        first = self.message.split("\n", 1)[0]
        return f"{where}:{ident} {self.level.value.lower()}: {first}"


@dataclass(frozen=True)
class Report:
    """The verdict on one spec or change."""

    id: str
    type: str  # "spec" or "change"
    issues: tuple[Issue, ...]
    strict: bool = False

    @property
    def valid(self) -> bool:
        bad = {Level.ERROR, Level.WARNING} if self.strict else {Level.ERROR}
        return not any(i.level in bad for i in self.issues)

    def to_openspec(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "valid": self.valid,
                "issues": [i.to_openspec() for i in self.issues]}


def _shall_message(prefix: str, name: str, guidance: bool) -> str:
    base = f"{prefix} {'should' if guidance else 'must'} contain SHALL or MUST"
    suffix = " (RFC 2119 best practice for English specs)" if guidance else ""
    if contains_shall_or_must(name):
        return (f"{base} in the requirement body, not only in the header. Move the SHALL/MUST "
                "statement to the line immediately after the \"### Requirement: ...\" header."
                f"{suffix}")
    return base + suffix


def validate_spec(spec_id: str, file: Path, repo: Path, *, strict: bool = False) -> Report:
    """Validate ``openspec/specs/<id>/spec.md`` as ``openspec validate <id> --type spec``."""
    rel = file.relative_to(repo).as_posix() if file.is_relative_to(repo) else file.as_posix()
    issues: list[Issue] = []

    def add(level: Level, path: str, message: str, line: int | None = None,
            printed: bool = False) -> None:
        issues.append(Issue(level, path, message, line, rel, spec_id, printed))

    if not file.is_file():
        add(Level.ERROR, "file", f"ENOENT: no such file or directory, open '{file}'")
        return Report(spec_id, "spec", tuple(issues), strict)
    return validate_spec_text(spec_id, read_text(file), rel, strict=strict)


def validate_spec_text(spec_id: str, content: str, rel: str, *, strict: bool = False) -> Report:
    """Validate a main spec's text (``rel`` names its file in issues)."""
    issues: list[Issue] = []

    def add(level: Level, path: str, message: str, line: int | None = None,
            printed: bool = False) -> None:
        issues.append(Issue(level, path, message, line, rel, spec_id, printed))

    content = normalize_content(content)
    lines = content.split("\n")
    sections = parse_sections(lines, fence_mask(lines))
    purpose = find_section(sections, "Purpose")
    requirements = find_section(sections, "Requirements")
    if purpose is None or not purpose.content:
        add(Level.ERROR, "file",
            f"Spec must have a Purpose section. {GUIDE_MISSING_SPEC_SECTIONS}", 1)
        return Report(spec_id, "spec", tuple(issues), strict)
    if requirements is None:
        add(Level.ERROR, "file",
            f"Spec must have a Requirements section. {GUIDE_MISSING_SPEC_SECTIONS}",
            purpose.line)
        return Report(spec_id, "spec", tuple(issues), strict)
    parsed = parse_requirements(requirements)
    # Schema checks come first, in the reference's (zod's) order; their paths are dotted.
    if not parsed:
        add(Level.ERROR, "requirements", "Spec must have at least one requirement",
            requirements.line)
    for index, (child, text, scenarios) in enumerate(parsed):
        if not text:
            add(Level.ERROR, f"requirements.{index}.text", "Requirement text cannot be empty",
                child.line)
        if not scenarios:
            add(Level.ERROR, f"requirements.{index}.scenarios",
                "Requirement must have at least one scenario", child.line)
    # The reference prints these issues without a line in JSON; keep ours out of to_openspec.
    located: list[Issue] = []
    for line, message in main_spec_structure_issues(content):
        located.append(Issue(Level.ERROR, "file", message, line, rel, spec_id))
    issues.extend(located)
    overview = purpose.content.strip()
    is_placeholder, placeholder_line = placeholder_issue(overview, content)
    if is_placeholder:
        add(Level.WARNING, "overview", PURPOSE_IS_PLACEHOLDER, placeholder_line, True)
    elif len(overview) < MIN_PURPOSE_LENGTH:
        issues.append(_unlined(Level.WARNING, "overview",
                               f"Purpose section is too brief (less than {MIN_PURPOSE_LENGTH} "
                               "characters)", purpose.line, rel, spec_id))
    for index, (child, text, scenarios) in enumerate(parsed):
        if len(text) > MAX_REQUIREMENT_TEXT_LENGTH:
            issues.append(_unlined(Level.INFO, f"requirements[{index}]",
                                   f"Requirement text is very long (>{MAX_REQUIREMENT_TEXT_LENGTH}"
                                   " characters). Consider breaking it down.", child.line, rel,
                                   spec_id))
        if not scenarios:
            issues.append(_unlined(Level.WARNING, f"requirements[{index}].scenarios",
                                   "Requirement must have at least one scenario. "
                                   + GUIDE_SCENARIO_FORMAT, child.line, rel, spec_id))
    for index, block in enumerate(extract_requirements_section(content).blocks):
        body = extract_requirement_body(block.raw.split("\n")[1:])
        label = f'Requirement "{block.name}"'
        if not body:
            issues.append(_unlined(Level.ERROR, f"requirements[{index}]",
                                   _shall_message(label, block.name, False), block.line, rel,
                                   spec_id))
        elif not contains_shall_or_must(body):
            issues.append(_unlined(Level.WARNING, f"requirements[{index}]",
                                   _shall_message(label, block.name, True), block.line, rel,
                                   spec_id))
    return Report(spec_id, "spec", tuple(issues), strict)


def _unlined(level: Level, path: str, message: str, line: int | None, file: str,
             item: str) -> Issue:
    """An issue whose line aidp knows but the reference CLI does not print."""
    return Issue(level, path, message, line, file, item, reference_line=False)


def _rel(path: Path, repo: Path) -> str:
    return path.relative_to(repo).as_posix() if path.is_relative_to(repo) else path.as_posix()


def _unread_delta_files(specs_dir: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(directory: Path, segments: list[str]) -> None:
        try:
            entries = sorted(directory.iterdir(), key=lambda p: p.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                walk(entry, [*segments, entry.name])
                continue
            if not entry.is_file() or entry.name == "spec.md" \
                    or not entry.name.lower().endswith(".md"):
                continue
            if not parse_delta_spec(read_text(entry)).has_sections:
                continue
            capability = "/".join(segments) if segments else entry.name[:-3]
            found.append(("/".join([*segments, entry.name]), f"{capability}/spec.md"))

    walk(specs_dir, [])
    return sorted(found)


def _has_any_file(directory: Path) -> bool:
    try:
        entries = list(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file() or entry.is_symlink() or (entry.is_dir() and _has_any_file(entry)):
            return True
    return False


def _section_list(sections: list[str]) -> str:
    if len(sections) <= 1:
        return "".join(sections)
    return ", ".join(sections[:-1]) + " and " + sections[-1]


def validate_change(change_id: str, change_dir: Path, repo: Path, *,
                    strict: bool = False) -> Report:
    """Validate ``openspec/changes/<id>/`` as ``openspec validate <id> --type change``."""
    issues: list[Issue] = []
    openspec_dir = change_dir.parent.parent
    main_specs = openspec_dir / "specs"
    specs_dir = change_dir / "specs"

    def add(level: Level, path: str, message: str, line: int | None = None,
            file: str | None = None, *, print_line: bool = False) -> None:
        target = file if file is not None else _rel(change_dir, repo)
        issues.append(Issue(level, path, message, line, target, change_id, print_line))

    root_spec = specs_dir / "spec.md"
    has_root_spec = root_spec.is_file()
    if has_root_spec:
        add(Level.ERROR, "spec.md", "Delta spec found at specs/spec.md. Delta specs must live "
            "under a capability path (e.g. specs/<capability-path>/spec.md) — a file at the specs/"
            " root is ignored when the change is applied or archived.", None, _rel(root_spec, repo))
    total = 0
    missing_header: list[str] = []
    empty_sections: list[tuple[str, list[str]]] = []
    for capability, spec_file in discover_spec_files(specs_dir):
        entry = spec_file.relative_to(specs_dir).as_posix()
        file = _rel(spec_file, repo)
        content = read_text(spec_file)
        plan = parse_delta_spec(content)

        def here(level: Level, message: str, line: int | None = None, printed: bool = False,
                 entry: str = entry, file: str = file) -> None:
            add(level, entry, message, line, file, print_line=printed)

        for stray in plan.skipped:
            if re.match(r"^requirement:?$", stray.name, re.I):
                message = (f'Header "### {stray.name}" in {stray.context} is missing a requirement'
                           ' name and is ignored by validation. Add a name, e.g. "### Requirement:'
                           ' <name>".')
            else:
                message = (f'Header "### {stray.name}" in {stray.context} is not a "### '
                           'Requirement:" header and is ignored by validation. Use "### '
                           f'Requirement: {stray.name}" if it should be validated as a '
                           "requirement.")
            here(Level.INFO, message, stray.line, True)
        for unpaired in plan.unpaired:
            missing = "TO" if unpaired.context == "FROM" else "FROM"
            here(Level.ERROR, f'RENAMED {unpaired.context}: "{unpaired.name}" has no matching '
                 f"{missing}: line. Write each rename as a FROM: line followed immediately by its "
                 "TO: line.", unpaired.line, True)
        for orphan in plan.orphaned:
            where = (f'under "## {orphan.context}"' if orphan.context
                     else 'above the first "## " section')
            here(Level.WARNING, f'Requirement "{orphan.name}" is {where}, which is not a delta '
                 'section, so it is ignored. Move it under "## ADDED Requirements", "## MODIFIED '
                 'Requirements", "## REMOVED Requirements", or "## RENAMED Requirements".',
                 orphan.line, True)
        names = [f"## {t} Requirements" for t, k in (("ADDED", "added"),
                                                    ("MODIFIED", "modified"),
                                                    ("REMOVED", "removed"),
                                                    ("RENAMED", "renamed")) if plan.presence[k]]
        if plan.entry_count == 0:
            if names:
                empty_sections.append((entry, names))
            else:
                missing_header.append(entry)
        seen: dict[str, list[str]] = {"ADDED": [], "MODIFIED": [], "REMOVED": []}
        for label, blocks in (("ADDED", plan.added), ("MODIFIED", plan.modified)):
            for block in blocks:
                total += 1
                if block.name in seen[label]:
                    here(Level.ERROR, f'Duplicate requirement in {label}: "{block.name}"',
                         block.line)
                else:
                    seen[label].append(block.name)
                body_lines = block.raw.split("\n")[1:]
                body = extract_requirement_body(body_lines)
                prefix = f'{label} "{block.name}"'
                if not body:
                    here(Level.ERROR, _shall_message(prefix, block.name, False)
                         if contains_shall_or_must(block.name)
                         else f"{prefix} is missing requirement text", block.line)
                elif not contains_shall_or_must(body):
                    here(Level.WARNING, _shall_message(prefix, block.name, True), block.line)
                if count_scenarios(body_lines) < 1:
                    hint = (' (a scenario header with no body under it does not count; add its '
                            'steps, e.g. "- **WHEN** ..." and "- **THEN** ...")'
                            if count_empty_scenarios(body_lines) else "")
                    here(Level.ERROR, f"{prefix} must include at least one scenario{hint}",
                         block.line)
            if label == "MODIFIED" and plan.modified:
                main_file = main_specs.joinpath(*capability.split("/"), "spec.md")
                if main_file.is_file():
                    current = {b.name: b for b in
                               extract_requirements_section(read_text(main_file)).blocks}
                    renamed_from = {r.to_name: r.from_name for r in plan.renamed}
                    renamed_away = {r.from_name for r in plan.renamed}
                    for block in plan.modified:
                        if block.name in renamed_away:
                            continue
                        key: str | None = block.name
                        visited: set[str] = set()
                        found = None
                        while key is not None and key not in visited:
                            if key in current:
                                found = current[key]
                                break
                            visited.add(key)
                            key = renamed_from.get(key)
                        if found is None:
                            continue
                        diff = diff_scenario_names(found.raw, block.raw)
                        if not diff.missing:
                            continue
                        missing_names = ", ".join(f'"{n}"' for n in diff.missing)
                        here(Level.ERROR, f'MODIFIED "{block.name}" omits scenario(s) the current '
                             f"spec still has: {missing_names}. {describe_scenario_balance(diff)} "
                             "Copy the omitted scenarios into the MODIFIED block (a MODIFIED "
                             "requirement replaces the whole block, so archive refuses to drop "
                             "them).", block.line)
        for removed in plan.removed:
            total += 1
            if removed.name in seen["REMOVED"]:
                here(Level.ERROR, f'Duplicate requirement in REMOVED: "{removed.name}"',
                     removed.line)
            else:
                seen["REMOVED"].append(removed.name)
        froms: list[str] = []
        tos: list[str] = []
        for rename in plan.renamed:
            total += 1
            if rename.from_name in froms:
                here(Level.ERROR, f'Duplicate FROM in RENAMED: "{rename.from_name}"', rename.line)
            else:
                froms.append(rename.from_name)
            if rename.to_name in tos:
                here(Level.ERROR, f'Duplicate TO in RENAMED: "{rename.to_name}"', rename.line)
            else:
                tos.append(rename.to_name)
        for name in seen["MODIFIED"]:
            if name in seen["REMOVED"]:
                here(Level.ERROR, f'Requirement present in both MODIFIED and REMOVED: "{name}"')
            if name in seen["ADDED"]:
                here(Level.ERROR, f'Requirement present in both MODIFIED and ADDED: "{name}"')
        for name in seen["ADDED"]:
            if name in seen["REMOVED"]:
                here(Level.ERROR, f'Requirement present in both ADDED and REMOVED: "{name}"')
        for rename in plan.renamed:
            if rename.from_name in seen["MODIFIED"]:
                here(Level.ERROR, "MODIFIED references old name from RENAMED. Use new header for "
                     f'"{rename.to_name}"', rename.line)
            if rename.to_name in seen["ADDED"]:
                here(Level.ERROR, f'RENAMED TO collides with ADDED for "{rename.to_name}"',
                     rename.line)
            fold = next((r for r in seen["REMOVED"]
                         if fold_requirement_name(r) == fold_requirement_name(rename.from_name)),
                        None)
            if fold is not None:
                extra = "" if fold == rename.from_name else f' (REMOVED spells it "{fold}")'
                here(Level.ERROR, "Requirement present in both RENAMED and REMOVED: "
                     f'"{rename.from_name}"{extra}', rename.line)
    # What archive would refuse, for deltas no error has been reported on yet.
    reported = {i.path for i in issues if i.level is Level.ERROR}
    reported.update(missing_header)
    reported.update(entry for entry, _ in empty_sections)
    for capability, spec_file in discover_spec_files(specs_dir):
        entry = f"{capability}/spec.md"
        if entry in reported:
            continue
        target = main_specs.joinpath(*capability.split("/"), "spec.md")
        try:
            apply_delta(capability, read_text(spec_file),
                        read_text(target) if target.is_file() else None, change_dir.name)
        except ApplyError as exc:
            add(Level.INFO, entry, f"Archive would refuse this delta: {exc.message}", None,
                _rel(spec_file, repo))
    unread = _unread_delta_files(specs_dir)
    for path, expected in unread:
        add(Level.ERROR, path, f"Delta spec found at specs/{path}. Delta specs must be a spec.md "
            "inside a capability folder — this file is ignored when the change is applied or "
            f"archived. Move its requirements into specs/{expected}.", None,
            _rel(specs_dir / path, repo))
    for entry, names in empty_sections:
        add(Level.ERROR, entry, f"Delta sections {_section_list(names)} were found, but no "
            'requirement entries parsed. Ensure each section includes at least one "### '
            'Requirement:" block (REMOVED may use bullet list syntax).', None,
            _rel(specs_dir / entry, repo))
    for entry in missing_header:
        add(Level.ERROR, entry, 'No delta sections found. Add headers such as "## ADDED '
            'Requirements" or move non-delta notes outside specs/.', None,
            _rel(specs_dir / entry, repo))
    metadata = read_metadata(change_dir, openspec_dir)
    meta_file = _rel(change_dir / ".openspec.yaml", repo)
    if metadata.invalid:
        add(Level.ERROR, ".openspec.yaml", f"{SKIP_SPECS_INVALID} ({metadata.invalid})", None,
            meta_file)
    has_files = metadata.skip_specs and _has_any_file(specs_dir)
    if metadata.skip_specs and has_files:
        add(Level.ERROR, "file", SKIP_SPECS_CONFLICT, None, meta_file)
    if total == 0 and not has_root_spec and not unread:
        if metadata.skip_specs and not has_files:
            add(Level.INFO, "file", SKIP_SPECS_ACCEPTED, None, meta_file)
        elif not metadata.skip_specs:
            add(Level.ERROR, "file", f"Change must have at least one delta. {GUIDE_NO_DELTAS}")
    issues.extend(_task_issues(change_id, change_dir, repo, metadata.schema))
    return Report(change_id, "change", tuple(issues), strict)


def _task_issues(change_id: str, change_dir: Path, repo: Path,
                 schema: str | None) -> list[Issue]:
    tasks_file = change_dir / "tasks.md"
    if (schema or "spec-driven") != "spec-driven" or not tasks_file.is_file():
        return []
    content = read_text(tasks_file)
    rel = _rel(tasks_file, repo)
    issues: list[Issue] = []
    lines = content.split("\n")
    if not any(TASK_LINE.match(line) for line in lines):
        first = _first_list_item(lines)
        if first is not None:
            issues.append(Issue(Level.WARNING, "tasks.md", NO_CHECKBOXES, first, rel, change_id))
    if not any(re.match(r"^ {0,3}##[ \t]+(\d+)\.(?:[ \t]|$)", line) for line in lines):
        return issues
    group: str | None = None
    first_seen: dict[str, int] = {}
    for index, line in enumerate(lines):
        if re.match(r"^ {0,3}##(?!#)(?:[ \t]+|[ \t]*$)", line):
            heading = re.match(r"^ {0,3}##[ \t]+(\d+)\.(?:[ \t]|$)", line)
            group = heading.group(1) if heading else None
        if group is None:
            continue
        match = TASK_LINE.match(line)
        if not match:
            continue
        number = re.match(r"^(\d+(?:\.\d+)+(?:[A-Za-z]+)?)(?=\s|$)", match.group(2).strip())
        if not number:
            continue
        task_id = number.group(1)
        task_group = task_id.split(".")[0]
        if re.sub(r"^0+(?=\d)", "", task_group) != re.sub(r"^0+(?=\d)", "", group):
            issues.append(Issue(Level.WARNING, "tasks.md", f'Task "{task_id}" is under group '
                                f"{group}, but its leading number points to group {task_group}. "
                                f"Move it to group {task_group} or renumber it.", index + 1, rel,
                                change_id))
        if task_id in first_seen:
            issues.append(Issue(Level.WARNING, "tasks.md", f'Task ID "{task_id}" is duplicated; it'
                                f" was first declared on line {first_seen[task_id]}.", index + 1,
                                rel, change_id))
        else:
            first_seen[task_id] = index + 1
    return issues


def _first_list_item(lines: list[str]) -> int | None:
    index = 0
    if lines and re.match(r"^-{3}\s*$", lines[0].lstrip("\ufeff").rstrip()):
        for i in range(1, len(lines)):
            if re.match(r"^-{3}\s*$", lines[i].rstrip()):
                index = i + 1
                break
    fence: tuple[str, int] | None = None
    in_comment = False
    for i in range(index, len(lines)):
        line = lines[i]
        if in_comment:
            if "-->" in line:
                in_comment = False
            continue
        match = re.match(r"^ {0,3}(`{3,}|~{3,})(.*)", line)
        if match:
            marker, length = match.group(1)[0], len(match.group(1))
            if fence is None:
                fence = (marker, length)
            elif marker == fence[0] and length >= fence[1] and not match.group(2).strip():
                fence = None
            continue
        if fence is not None:
            continue
        if line.lstrip().startswith("<!--"):
            if "-->" not in line[line.index("<!--") + 4:]:
                in_comment = True
            continue
        if re.match(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+\S", line) and _indent(line) < 4:
            return i + 1
    return None


def _indent(line: str) -> int:
    column = 0
    for char in line:
        if char == " ":
            column += 1
        elif char == "\t":
            column += 4 - column % 4
        else:
            break
    return column
