"""Apply one delta spec to a main spec, exactly as ``openspec archive`` merges it.

Order and refusals follow the reference CLI's ``buildUpdatedSpec``: RENAMED first, then
REMOVED, MODIFIED (whole block replaces the old one, refusing to drop scenarios) and ADDED
(appended). A refusal raises :class:`ApplyError` with the reference's message, which
``validate`` reports as ``Archive would refuse this delta: ...`` and the resolver uses to say
that a change cannot be applied. Pure: strings in, string out.
"""

from __future__ import annotations

from dataclasses import dataclass

from aidp.exceptions import InputError
from aidp.specs.markdown import (
    Block,
    describe_scenario_balance,
    diff_scenario_names,
    extract_requirements_section,
    fence_mask,
    fold_requirement_name,
    main_spec_structure_issues,
    normalize_requirement_name,
    parse_delta_spec,
)

__all__ = ["Applied", "ApplyError", "apply_delta", "spec_skeleton"]

PLACEHOLDER_PREFIX = "TBD - created by archiving change "
PLACEHOLDER_SUFFIX = ". Update Purpose after archive."


class ApplyError(InputError):
    """The delta cannot be merged into the spec; the message is the reference CLI's."""


@dataclass(frozen=True)
class Applied:
    """The rebuilt spec text and how many requirements each operation changed."""

    content: str
    added: int
    modified: int
    removed: int
    renamed: int
    created: bool


def spec_skeleton(capability: str, change: str, purpose: str | None = None) -> str:
    """The spec ``openspec archive`` writes for a capability that does not exist yet."""
    body = (purpose or "").strip() or f"{PLACEHOLDER_PREFIX}{change}{PLACEHOLDER_SUFFIX}"
    return f"# {capability} Specification\n\n## Purpose\n{body}\n\n## Requirements\n"


def _req(name: str) -> str:
    return f'"### Requirement: {name}"'


def _precheck(spec: str, delta: str) -> None:
    plan = parse_delta_spec(delta)
    if plan.unpaired:
        first = plan.unpaired[0]
        missing = "TO" if first.context == "FROM" else "FROM"
        raise ApplyError(f"{spec} validation failed - RENAMED entry on line {first.line} has no "
                         f"matching {missing}: for header {_req(first.name)}. Write each rename "
                         "as a FROM: line followed immediately by its TO: line.")
    groups: dict[str, list[str]] = {"ADDED": [], "MODIFIED": [], "REMOVED": []}
    for label, names in (("ADDED", [b.name for b in plan.added]),
                         ("MODIFIED", [b.name for b in plan.modified]),
                         ("REMOVED", [r.name for r in plan.removed])):
        for name in names:
            key = normalize_requirement_name(name)
            if key in groups[label]:
                raise ApplyError(f"{spec} validation failed - duplicate requirement in {label} "
                                 f"for header {_req(name)}")
            groups[label].append(key)
    froms: set[str] = set()
    tos: set[str] = set()
    for rename in plan.renamed:
        if rename.from_name in froms:
            raise ApplyError(f"{spec} validation failed - duplicate FROM in RENAMED for header "
                             f"{_req(rename.from_name)}")
        if rename.to_name in tos:
            raise ApplyError(f"{spec} validation failed - duplicate TO in RENAMED for header "
                             f"{_req(rename.to_name)}")
        froms.add(rename.from_name)
        tos.add(rename.to_name)
    conflicts: list[tuple[str, str, str]] = []
    for name in groups["MODIFIED"]:
        if name in groups["REMOVED"]:
            conflicts.append((name, "MODIFIED", "REMOVED"))
        if name in groups["ADDED"]:
            conflicts.append((name, "MODIFIED", "ADDED"))
    for name in groups["ADDED"]:
        if name in groups["REMOVED"]:
            conflicts.append((name, "ADDED", "REMOVED"))
    for rename in plan.renamed:
        folded = next((r for r in groups["REMOVED"]
                     if fold_requirement_name(r) == fold_requirement_name(rename.from_name)), None)
        if folded is not None:
            extra = "" if folded == rename.from_name else f' (REMOVED spells it "{folded}")'
            raise ApplyError(f"{spec} validation failed - requirement present in multiple sections"
                             f" (RENAMED and REMOVED) for header {_req(rename.from_name)}{extra}")
        if rename.from_name in groups["MODIFIED"]:
            raise ApplyError(f"{spec} validation failed - when a rename exists, MODIFIED must "
                             f"reference the NEW header {_req(rename.to_name)}")
        if rename.to_name in groups["ADDED"]:
            raise ApplyError(f"{spec} validation failed - RENAMED TO header collides with ADDED "
                             f'for "### Requirement: {rename.to_name}"')
    if conflicts:
        name, one, other = conflicts[0]
        raise ApplyError(f"{spec} validation failed - requirement present in multiple sections "
                         f"({one} and {other}) for header {_req(name)}")
    if plan.entry_count == 0:
        raise ApplyError(f"Delta parsing found no operations for {spec}. Provide ADDED/MODIFIED/"
                         "REMOVED/RENAMED sections in change spec.")


def _collapse_blank_runs(content: str) -> str:
    lines = content.split("\n")
    mask = fence_mask(lines)
    kept: list[str] = []
    blank = 0
    for i, line in enumerate(lines):
        if mask[i]:
            blank = 0
            kept.append(line)
            continue
        if line == "":
            blank += 1
            if blank > 1:
                continue
        else:
            blank = 0
        kept.append(line)
    return "\n".join(kept)


def apply_delta(capability: str, delta: str, current: str | None, change: str) -> Applied:
    """Merge ``delta`` (a change's spec.md) into ``current`` (None: the capability is new).

    Raises :class:`ApplyError` where ``openspec archive`` would refuse."""
    _precheck(capability, delta)
    plan = parse_delta_spec(delta)
    created = current is None
    if current is None:
        if plan.modified or plan.renamed:
            raise ApplyError(f"{capability}: target spec does not exist; only ADDED requirements "
                             "are allowed for new specs. MODIFIED and RENAMED operations require "
                             "an existing spec.")
        current = spec_skeleton(capability, change, plan.purpose)
    structure = main_spec_structure_issues(current)
    if structure:
        details = "\n".join(f"line {line}: {message}" for line, message in structure)
        raise ApplyError(f"{capability}: target spec is structurally invalid and cannot be "
                         f"updated until fixed:\n{details}")
    parts = extract_requirements_section(current)
    blocks: dict[str, Block] = {b.name: b for b in parts.blocks}
    order = [b.name for b in parts.blocks]
    renamed = 0
    for rename in plan.renamed:
        source, target = rename.from_name, rename.to_name
        if source not in blocks:
            if target in blocks:
                near = next((k for k in blocks if k != target
                             and fold_requirement_name(k) == fold_requirement_name(source)), None)
                if near is not None:
                    raise ApplyError(f"{capability} RENAMED failed for header {_req(source)} - "
                                     f"source not found, but {_req(blocks[near].name)} exists; "
                                     "fix the header to match it exactly")
                continue
            raise ApplyError(f"{capability} RENAMED failed for header {_req(source)} - source "
                             "not found")
        if target in blocks:
            raise ApplyError(f"{capability} RENAMED failed for header {_req(target)} - target "
                             "already exists")
        near = next((k for k in blocks if k != source
                     and fold_requirement_name(k) == fold_requirement_name(target)), None)
        if near is not None:
            raise ApplyError(f"{capability} RENAMED failed for header {_req(target)} - "
                             f"{_req(blocks[near].name)} already exists and differs only in case "
                             "or spacing; choose a distinct name")
        old = blocks.pop(source)
        raw_lines = old.raw.split("\n")
        raw_lines[0] = f"### Requirement: {target}"
        blocks[target] = Block(target, raw_lines[0], "\n".join(raw_lines), old.line)
        order = [target if k == source else k for k in order]
        renamed += 1
    removed = 0
    for item in plan.removed:
        if item.name not in blocks:
            if not created:
                near = next((k for k in blocks
                             if fold_requirement_name(k) == fold_requirement_name(item.name)), None)
                if near is not None:
                    raise ApplyError(f"{capability} REMOVED failed for header {_req(item.name)} - "
                                     f"not found, but {_req(blocks[near].name)} exists; fix the "
                                     "header to match it exactly")
            continue
        del blocks[item.name]
        removed += 1
    modified = 0
    for block in plan.modified:
        existing = blocks.get(block.name)
        if existing is None:
            raise ApplyError(f"{capability} MODIFIED failed for header {_req(block.name)} - not "
                             "found")
        diff = diff_scenario_names(existing.raw, block.raw)
        if diff.missing:
            names = ", ".join(f'"{n}"' for n in diff.missing)
            raise ApplyError(f"{capability} MODIFIED failed for header {_req(block.name)} - current"
                             f" spec contains scenario(s) not present in the modified block: "
                             f"{names}. {describe_scenario_balance(diff)} Refresh the change spec "
                             "before archiving to avoid dropping scenarios.")
        if existing.raw.strip() != block.raw.strip():
            modified += 1
        blocks[block.name] = block
    added = 0
    for block in plan.added:
        existing = blocks.get(block.name)
        if existing is not None:
            if existing.raw.strip() == block.raw.strip():
                continue
            raise ApplyError(f"{capability} ADDED failed for header {_req(block.name)} - already "
                             "exists")
        near = next((k for k in blocks
                     if fold_requirement_name(k) == fold_requirement_name(block.name)), None)
        if near is not None:
            raise ApplyError(f"{capability} ADDED failed for header {_req(block.name)} - "
                             f"{_req(blocks[near].name)} already exists and differs only in case or"
                             " spacing; use MODIFIED with that exact header to change it, or "
                             "choose a distinct name")
        blocks[block.name] = block
        order.append(block.name)
        added += 1
    seen: set[str] = set()
    kept: list[Block] = []
    for name in order:
        if name in blocks and name not in seen:
            kept.append(blocks[name])
            seen.add(name)
    body = "\n\n".join(([parts.preamble.rstrip()] if parts.preamble.strip() else [])
                       + [b.raw for b in kept]).rstrip()
    pieces = [parts.before.rstrip(), parts.header_line, body, parts.after.strip()]
    rebuilt = _collapse_blank_runs("\n\n".join(p for p in pieces if p)).rstrip() + "\n"
    return Applied(rebuilt, added, modified, removed, renamed, created)
