"""Line-level reading of OpenSpec Markdown, as the ``openspec`` CLI (1.13) reads it.

Every function here mirrors one reader of the reference CLI (``@fission-ai/openspec``,
``dist/core/parsers/``) so that aidp and ``openspec`` agree on what is a requirement, a scenario
or a delta section: code fences hide structure, BOM and CRLF are normalised, section titles match
case-insensitively, requirement names are trimmed of a closing ``#`` run. Unlike the reference,
every block keeps the 1-based line where it starts, so errors can name file and line.

Pure functions of strings: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "DELTA_TITLES",
    "REQUIREMENT_HEADER",
    "SCENARIO_HEADER",
    "Block",
    "DeltaPlan",
    "Located",
    "Rename",
    "RequirementsSection",
    "ScenarioDiff",
    "Section",
    "contains_shall_or_must",
    "count_empty_scenarios",
    "count_scenarios",
    "describe_scenario_balance",
    "diff_scenario_names",
    "extract_requirement_body",
    "extract_requirements_section",
    "fence_mask",
    "find_section",
    "fold_requirement_name",
    "main_spec_structure_issues",
    "normalize_content",
    "normalize_requirement_name",
    "parse_delta_spec",
    "parse_requirements",
    "parse_sections",
    "scenario_blocks",
    "scenario_name_of",
]

REQUIREMENT_HEADER = re.compile(r"^###\s*Requirement:\s*(.+)\s*$", re.IGNORECASE)
_HEADER = re.compile(r"^(#{1,6})\s+(.+)$")
_HEADER_START = re.compile(r"^(#{1,6})\s+")
_TOP_LEVEL = re.compile(r"^##\s+")
_SECTION = re.compile(r"^(##)\s+(.+)$")
_METADATA_LINE = re.compile(r"^\*\*[^*]+\*\*:")
_HEADER_LINE = re.compile(r"^#{1,6}\s")
SCENARIO_HEADER = re.compile(r"^####\s+")
_SCENARIO_BODY_END = re.compile(r"^#{1,4}\s")
_SHALL_MUST = re.compile(r"\b(SHALL|MUST)\b")
_FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})")
_FENCE_CLOSE = re.compile(r"^\s*(`{3,}|~{3,})\s*$")
_CLOSING_RUN = re.compile(r"[ \t]+#+[ \t]*$")
DELTA_TITLES = ("ADDED Requirements", "MODIFIED Requirements", "REMOVED Requirements",
                "RENAMED Requirements")


def normalize_content(text: str) -> str:
    """Strip a leading BOM and turn CRLF / CR into LF."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def fence_mask(lines: list[str]) -> list[bool]:
    """Per line: True inside a fenced code block (fence lines included)."""
    mask = [False] * len(lines)
    active: tuple[str, int] | None = None
    for i, line in enumerate(lines):
        if active is None:
            match = _FENCE_OPEN.match(line)
            if match:
                active = (match.group(1)[0], len(match.group(1)))
                mask[i] = True
            continue
        mask[i] = True
        close = _FENCE_CLOSE.match(line)
        if close and close.group(1)[0] == active[0] and len(close.group(1)) >= active[1]:
            active = None
    return mask


def normalize_requirement_name(name: str) -> str:
    """A requirement name without a closing ``#`` run, trimmed (matching is case-sensitive)."""
    return _CLOSING_RUN.sub("", name).strip()


def fold_requirement_name(name: str) -> str:
    """Case- and whitespace-insensitive fold, used only to detect near-miss names."""
    return re.sub(r"\s+", " ", normalize_requirement_name(name).lower())


def contains_shall_or_must(text: str) -> bool:
    """True when ``text`` holds SHALL or MUST as a whole word."""
    return _SHALL_MUST.search(text) is not None


def extract_requirement_body(body_lines: list[str]) -> str:
    """The requirement text: unfenced, non-blank lines up to the first header, trimmed and
    joined; ``**Key**:`` metadata lines only when nothing else is there."""
    mask = fence_mask(body_lines)
    captured: list[str] = []
    metadata: list[str] = []
    for i, line in enumerate(body_lines):
        if mask[i]:
            continue
        if _HEADER_LINE.match(line):
            break
        trimmed = line.strip()
        if not trimmed:
            continue
        if _METADATA_LINE.match(trimmed):
            metadata.append(trimmed)
            continue
        captured.append(trimmed)
    return "\n".join(captured) if captured else "\n".join(metadata)


def _scenario_bodies(body_lines: list[str]) -> list[str]:
    mask = fence_mask(body_lines)
    bodies: list[str] = []
    for i, line in enumerate(body_lines):
        if mask[i] or not SCENARIO_HEADER.match(line):
            continue
        end = i + 1
        while end < len(body_lines) and (mask[end]
                                         or not _SCENARIO_BODY_END.match(body_lines[end])):
            end += 1
        bodies.append("\n".join(body_lines[i + 1:end]))
    return bodies


def count_scenarios(body_lines: list[str]) -> int:
    """Level-4 headers outside fences that have a non-blank body."""
    return sum(1 for body in _scenario_bodies(body_lines) if body.strip())


def count_empty_scenarios(body_lines: list[str]) -> int:
    """Level-4 headers outside fences with nothing under them."""
    return sum(1 for body in _scenario_bodies(body_lines) if not body.strip())


@dataclass(frozen=True)
class Section:
    """A Markdown header and everything under it until a header of the same or higher level."""

    level: int
    title: str
    content: str
    line: int
    children: list[Section] = field(default_factory=list, compare=False)


def parse_sections(lines: list[str], mask: list[bool], first_line: int = 1) -> list[Section]:
    """The header tree of ``lines`` (``first_line`` is the file line of ``lines[0]``)."""
    roots: list[Section] = []
    stack: list[Section] = []
    for i, line in enumerate(lines):
        if mask[i]:
            continue
        match = _HEADER.match(line)
        if not match:
            continue
        level = len(match.group(1))
        body: list[str] = []
        for j in range(i + 1, len(lines)):
            head = None if mask[j] else _HEADER_START.match(lines[j])
            if head and len(head.group(1)) <= level:
                break
            body.append(lines[j])
        section = Section(level, match.group(2).strip(), "\n".join(body).strip(), first_line + i)
        while stack and stack[-1].level >= level:
            stack.pop()
        (stack[-1].children if stack else roots).append(section)
        stack.append(section)
    return roots


def find_section(sections: list[Section], title: str) -> Section | None:
    """Depth-first search for a section whose title equals ``title`` ignoring case."""
    wanted = title.lower()
    for section in sections:
        if section.title.lower() == wanted:
            return section
        child = find_section(section.children, title)
        if child is not None:
            return child
    return None


def parse_requirements(section: Section) -> list[tuple[Section, str, list[str]]]:
    """Each child of a Requirements section: (section, text, scenario raw texts)."""
    result: list[tuple[Section, str, list[str]]] = []
    for child in section.children:
        text = extract_requirement_body(child.content.split("\n")) or child.title.strip()
        scenarios = [s.content for s in child.children if s.content.strip()]
        result.append((child, text, scenarios))
    return result


@dataclass(frozen=True)
class Block:
    """A ``### Requirement:`` block: its name, header line, raw text and 1-based file line."""

    name: str
    header_line: str
    raw: str
    line: int


@dataclass(frozen=True)
class RequirementsSection:
    """A main spec split around its ``## Requirements`` section (for rebuilding on archive)."""

    before: str
    header_line: str
    preamble: str
    blocks: tuple[Block, ...]
    after: str
    found: bool


def _blocks_in(lines: list[str], mask: list[bool], first_line: int,
               skipped: list[Located] | None = None, section: str = "") -> list[Block]:
    def is_req(i: int) -> bool:
        return not mask[i] and REQUIREMENT_HEADER.match(lines[i]) is not None

    def is_top(i: int) -> bool:
        return not mask[i] and _TOP_LEVEL.match(lines[i]) is not None

    def record(i: int) -> None:
        if skipped is None or mask[i]:
            return
        h3 = re.match(r"^###\s+(.+?)\s*$", lines[i])
        if h3 and not REQUIREMENT_HEADER.match(lines[i]):
            skipped.append(Located(h3.group(1).strip(), first_line + i, section))

    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        while i < len(lines) and not is_req(i):
            record(i)
            i += 1
        if i >= len(lines):
            break
        header = lines[i]
        match = REQUIREMENT_HEADER.match(header)
        assert match is not None
        start = i
        buf = [header]
        i += 1
        while i < len(lines) and not is_req(i) and not is_top(i):
            record(i)
            buf.append(lines[i])
            i += 1
        blocks.append(Block(normalize_requirement_name(match.group(1)), header,
                            "\n".join(buf).rstrip(), first_line + start))
    return blocks


def extract_requirements_section(content: str) -> RequirementsSection:
    """Split a main spec at ``## Requirements`` into text before, blocks, and text after."""
    lines = normalize_content(content).split("\n")
    mask = fence_mask(lines)
    header = next((i for i, line in enumerate(lines)
                   if not mask[i] and re.match(r"^##\s+Requirements\s*$", line, re.I)), -1)
    if header == -1:
        before = content.rstrip()
        return RequirementsSection(before + "\n\n" if before else "", "## Requirements", "", (),
                                   "\n", False)
    end = len(lines)
    for i in range(header + 1, len(lines)):
        if not mask[i] and _TOP_LEVEL.match(lines[i]):
            end = i
            break
    body, body_mask = lines[header + 1:end], mask[header + 1:end]
    cursor = 0
    preamble: list[str] = []
    while cursor < len(body) and not (not body_mask[cursor]
                                      and REQUIREMENT_HEADER.match(body[cursor])):
        preamble.append(body[cursor])
        cursor += 1
    blocks = _blocks_in(body, body_mask, header + 2)
    before = "\n".join(lines[:header])
    after = "\n".join(lines[end:])
    return RequirementsSection(
        before + "\n" if before.rstrip() else before, lines[header], "\n".join(preamble).rstrip(),
        tuple(blocks), after if after.startswith("\n") else "\n" + after, True)


@dataclass(frozen=True)
class Located:
    """A name found at a 1-based line (``context`` is a section title or a side)."""

    name: str
    line: int
    context: str = ""


@dataclass(frozen=True)
class Rename:
    """One RENAMED pair, with the line of its FROM."""

    from_name: str
    to_name: str
    line: int


@dataclass(frozen=True)
class DeltaPlan:
    """What a delta spec asks for, section by section, as ``parseDeltaSpec`` reads it."""

    added: tuple[Block, ...]
    modified: tuple[Block, ...]
    removed: tuple[Located, ...]
    removed_blocks: tuple[Block, ...]
    renamed: tuple[Rename, ...]
    unpaired: tuple[Located, ...]  # context "FROM" or "TO"
    orphaned: tuple[Located, ...]  # context: the section title, "" above the first section
    skipped: tuple[Located, ...]  # context: the section title
    presence: dict[str, bool] = field(compare=False)
    purpose: str | None = None

    @property
    def entry_count(self) -> int:
        return len(self.added) + len(self.modified) + len(self.removed) + len(self.renamed)

    @property
    def has_sections(self) -> bool:
        return any(self.presence.values())


_REMOVED_BULLET = re.compile(r"^\s*[-*+]\s*`?###\s*Requirement:\s*(.+?)`?\s*$")
_FROM = re.compile(r"^\s*[-*+]?\s*FROM:\s*`?###\s*Requirement:\s*(.+?)`?\s*$")
_TO = re.compile(r"^\s*[-*+]?\s*TO:\s*`?###\s*Requirement:\s*(.+?)`?\s*$")


def parse_delta_spec(content: str) -> DeltaPlan:
    """Read a change's ``specs/<capability>/spec.md`` into its ADDED / MODIFIED / REMOVED /
    RENAMED entries, plus what the reference CLI reports about it (stray headers, unpaired
    renames, requirements outside any delta section)."""
    lines = normalize_content(content).split("\n")
    mask = fence_mask(lines)
    sections: list[tuple[str, int, int]] = []  # title, header index, end index
    indices = [(m.group(2).strip(), i) for i, line in enumerate(lines)
               if not mask[i] and (m := _SECTION.match(line))]
    for n, (title, index) in enumerate(indices):
        end = indices[n + 1][1] if n + 1 < len(indices) else len(lines)
        sections.append((title, index, end))

    def lookup(desired: str) -> tuple[str, list[tuple[int, int]]]:
        matches = [(t, i, e) for t, i, e in sections if t.lower() == desired.lower()]
        return (matches[0][0] if matches else desired), [(i + 1, e) for _, i, e in matches]

    skipped: list[Located] = []
    result: dict[str, list[Block]] = {}
    presence: dict[str, bool] = {}
    for key, title in (("added", DELTA_TITLES[0]), ("modified", DELTA_TITLES[1])):
        shown, bodies = lookup(title)
        presence[key] = bool(bodies)
        result[key] = [b for start, end in bodies
                       for b in _blocks_in(lines[start:end], mask[start:end], start + 1, skipped,
                                           shown)]
    _, removed_bodies = lookup(DELTA_TITLES[2])
    presence["removed"] = bool(removed_bodies)
    removed: list[Located] = []
    removed_blocks: list[Block] = []
    for start, end in removed_bodies:
        for i in range(start, end):
            if mask[i]:
                continue
            match = REQUIREMENT_HEADER.match(lines[i]) or _REMOVED_BULLET.match(lines[i])
            if match:
                removed.append(Located(normalize_requirement_name(match.group(1)), i + 1))
        removed_blocks.extend(_blocks_in(lines[start:end], mask[start:end], start + 1))
    _, renamed_bodies = lookup(DELTA_TITLES[3])
    presence["renamed"] = bool(renamed_bodies)
    renamed: list[Rename] = []
    unpaired: list[Located] = []
    for start, end in renamed_bodies:
        pending: Located | None = None
        for i in range(start, end):
            if mask[i]:
                continue
            from_match, to_match = _FROM.match(lines[i]), _TO.match(lines[i])
            if from_match:
                if pending:
                    unpaired.append(Located(pending.name, pending.line, "FROM"))
                pending = Located(normalize_requirement_name(from_match.group(1)), i + 1)
            elif to_match:
                to = normalize_requirement_name(to_match.group(1))
                if pending is None:
                    unpaired.append(Located(to, i + 1, "TO"))
                    continue
                renamed.append(Rename(pending.name, to, pending.line))
                pending = None
        if pending:
            unpaired.append(Located(pending.name, pending.line, "FROM"))
    orphaned: list[Located] = []
    current: str | None = None
    lowered = {t.lower() for t in DELTA_TITLES}
    for i, line in enumerate(lines):
        if mask[i]:
            continue
        section_match = _SECTION.match(line)
        if section_match:
            current = section_match.group(2).strip()
            continue
        if current is not None and current.lower() in lowered:
            continue
        header = REQUIREMENT_HEADER.match(line)
        if header:
            orphaned.append(Located(normalize_requirement_name(header.group(1)), i + 1,
                                    current or ""))
    purpose = None
    for title, index, end in sections:
        if title.lower() == "purpose":
            purpose = "\n".join(lines[index + 1:end]).strip() or None
            break
    unpaired.sort(key=lambda item: item.line)
    skipped.sort(key=lambda item: item.line)
    return DeltaPlan(tuple(result["added"]), tuple(result["modified"]), tuple(removed),
                     tuple(removed_blocks), tuple(renamed), tuple(unpaired), tuple(orphaned),
                     tuple(skipped), presence, purpose)


def scenario_name_of(header: str) -> str:
    """The name of a ``#### `` header: without ``####``, a closing run and ``Scenario:``."""
    name = _CLOSING_RUN.sub("", SCENARIO_HEADER.sub("", header, count=1))
    return re.sub(r"^Scenario:\s*", "", name, flags=re.IGNORECASE).strip()


def scenario_blocks(raw: str) -> list[tuple[str, str]]:
    """(name, raw) of every unfenced level-4 header of a requirement block."""
    lines = normalize_content(raw).split("\n")
    mask = fence_mask(lines)
    result: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        if mask[i] or not SCENARIO_HEADER.match(lines[i]):
            i += 1
            continue
        start = i
        name = scenario_name_of(lines[i])
        i += 1
        while i < len(lines) and (mask[i] or not SCENARIO_HEADER.match(lines[i])):
            i += 1
        result.append((name, "\n".join(lines[start:i]).rstrip()))
    return result


@dataclass(frozen=True)
class ScenarioDiff:
    """Scenario names one block has and the other lacks (multiplicity counts)."""

    missing: tuple[str, ...]
    added: tuple[str, ...]
    current_count: int
    incoming_count: int


def diff_scenario_names(current_raw: str, incoming_raw: str) -> ScenarioDiff:
    """Compare the scenario names of a current block and its MODIFIED replacement."""
    current = [name for name, _ in scenario_blocks(current_raw)]
    incoming = [name for name, _ in scenario_blocks(incoming_raw)]

    def unmatched(names: list[str], against: list[str]) -> tuple[str, ...]:
        remaining: dict[str, int] = {}
        for name in against:
            remaining[name] = remaining.get(name, 0) + 1
        out: list[str] = []
        for name in names:
            if remaining.get(name, 0) > 0:
                remaining[name] -= 1
            else:
                out.append(name)
        return tuple(out)

    return ScenarioDiff(unmatched(current, incoming), unmatched(incoming, current), len(current),
                        len(incoming))


def describe_scenario_balance(diff: ScenarioDiff) -> str:
    """The sentence the reference CLI appends when a MODIFIED block drops scenarios."""
    def count(value: int) -> str:
        return f"{value} {'scenario' if value == 1 else 'scenarios'}"

    scale = (f"The modified block has {count(diff.incoming_count)}; the current spec has "
             f"{count(diff.current_count)}.")
    if not diff.added:
        return f"{scale} It adds none."
    listed = ", ".join(f'"{name}"' for name in diff.added[:3])
    rest = len(diff.added) - 3
    names = f"{listed} and {rest} more" if rest > 0 else listed
    return f"{scale} It adds {count(len(diff.added))} not in the current spec: {names}."


def main_spec_structure_issues(content: str) -> list[tuple[int, str]]:
    """(line, message) for delta headers in a main spec, requirement headers outside
    ``## Requirements`` and duplicate requirement names."""
    lines = normalize_content(content).split("\n")
    mask = fence_mask(lines)
    lines = ["" if mask[i] else line for i, line in enumerate(lines)]
    req_header = re.compile(r"^###\s+Requirement:\s*(.+)\s*$", re.IGNORECASE)
    delta = re.compile(r"^##\s+(ADDED|MODIFIED|REMOVED|RENAMED)\s+Requirements\s*$", re.I)
    start = next((i for i, line in enumerate(lines)
                  if re.match(r"^##\s+Requirements\s*$", line, re.I)), -1)
    end = len(lines)
    if start != -1:
        end = next((i for i in range(start + 1, len(lines)) if _TOP_LEVEL.match(lines[i])),
                   len(lines))
    issues: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        trimmed = line.strip()
        if not trimmed:
            continue
        if delta.match(line):
            issues.append((i + 1, f'Main spec contains delta header "{trimmed}". Delta headers are '
                           "only valid inside openspec/changes/<name>/specs/<capability-path>/"
                           "spec.md and truncate the parsed ## Requirements section."))
            continue
        match = req_header.match(line)
        if not match:
            continue
        if not (start != -1 and start < i < end):
            issues.append((i + 1, f'Requirement header "{trimmed}" appears outside the main ## '
                           "Requirements section. Main specs only parse requirements inside that "
                           "section, so this requirement is currently invisible to validate, "
                           "list, and archive."))
            continue
        name = normalize_requirement_name(match.group(1))
        if name in seen:
            issues.append((i + 1, f'Requirement header "{trimmed}" duplicates the requirement '
                           f"declared on line {seen[name]}. Requirement names must be unique so "
                           "spec updates cannot discard one block while updating another."))
        else:
            seen[name] = i + 1
    return issues
