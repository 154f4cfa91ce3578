"""``spec://`` references: parse, resolve, build the dependency graph, find conflicting changes.

A URI names a capability, optionally one of its requirements and one scenario, at a version::

    spec://<capability>[/<requirement>][#<scenario>][@<version>]

``version`` is ``current`` (the default: ``openspec/specs``), the id of an active change (the
spec as archiving that change would leave it, computed with the archive's own merge rules), or an
archive date ``YYYY-MM-DD`` (the spec as the archive history says it was at the end of that day).
Capabilities may nest (``identity/user-auth``): the longest known capability prefix wins.
Requirement names may be percent-encoded (``Two%20factor``). Renames are followed -- an old name
resolves to the new one, with a notice -- so URIs written before a RENAMED keep working.

Pure given a loaded :class:`~aidp.specs.model.Project`; no I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import unquote

from aidp.exceptions import InputError, NotFoundError, Problem
from aidp.specs.apply import ApplyError, apply_delta
from aidp.specs.index import find_references
from aidp.specs.model import Change, DeltaOp, Project, Requirement, Scenario, Spec
from aidp.specs.project import parse_spec

__all__ = [
    "Claim",
    "Conflict",
    "Resolution",
    "SpecUri",
    "find_conflicts",
    "parse_uri",
    "reference_graph",
    "resolve",
]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class SpecUri:
    """A parsed ``spec://`` URI; ``path`` is capability and requirement, still joined."""

    path: str
    scenario: str | None
    version: str

    def __str__(self) -> str:
        text = f"spec://{self.path}"
        if self.scenario is not None:
            text += f"#{self.scenario}"
        return text if self.version == "current" else f"{text}@{self.version}"


def parse_uri(uri: str) -> SpecUri:
    """Split a ``spec://`` URI; InputError when it is not one."""
    if not uri.startswith("spec://"):
        raise InputError(f"not a spec:// URI: {uri!r}",
                         hint="write spec://<capability>[/<requirement>][#<scenario>][@<version>]")
    rest = uri[len("spec://"):]
    version = "current"
    if "@" in rest:
        rest, version = rest.rsplit("@", 1)
        if not version:
            raise InputError(f"empty version in {uri!r}")
    scenario: str | None = None
    if "#" in rest:
        rest, scenario = rest.split("#", 1)
        scenario = unquote(scenario).strip()
    path = "/".join(unquote(part).strip() for part in rest.strip("/").split("/"))
    if not path:
        raise InputError(f"no capability in {uri!r}")
    return SpecUri(path, scenario, version)


@dataclass(frozen=True)
class Resolution:
    """What a URI names: the spec at that version, the requirement and scenario if asked for,
    and notices (renames followed, versions computed)."""

    uri: str
    capability: str
    version: str
    spec: Spec
    requirement: Requirement | None
    scenario: Scenario | None
    notices: tuple[str, ...]


def _split_path(path: str, capabilities: set[str]) -> tuple[str, str | None]:
    parts = path.split("/")
    for cut in range(len(parts), 0, -1):
        capability = "/".join(parts[:cut])
        if capability in capabilities:
            rest = "/".join(parts[cut:])
            return capability, rest or None
    raise NotFoundError(f"spec://{path}: no such capability",
                        hint="known: " + ", ".join(sorted(capabilities)[:10]))


def _spec_after(project: Project, capability: str, change: Change) -> tuple[Spec, list[str]]:
    """The capability as archiving ``change`` would leave it."""
    current = project.specs.get(capability)
    delta = next((d for d in change.deltas if d.capability == capability), None)
    if delta is None:
        if current is None:
            raise NotFoundError(f"capability {capability!r} exists neither now nor after "
                                f"change {change.id!r}")
        return current, [f"change {change.id} does not touch {capability}; using current"]
    try:
        applied = apply_delta(capability, delta.content, current.content if current else None,
                              change.id)
    except ApplyError as exc:
        raise InputError(f"{delta.position.file}: [{change.id}] cannot apply to {capability}: "
                         f"{exc.message}") from None
    file = current.position.file if current else delta.position.file
    spec = parse_spec(capability, applied.content, file)
    return replace(spec, requirements=_sourced(spec, current, change)), [
        f"computed by applying change {change.id} to {capability}"]


def _sourced(spec: Spec, current: Spec | None, change: Change) -> tuple[Requirement, ...]:
    """``spec``'s requirements placed where their text comes from, not in the rebuilt document:
    the change's delta spec for what it adds or modifies, the current spec for the rest (under
    its old name when only renamed)."""
    sources: dict[str, Requirement] = {r.name: r for r in current.requirements} if current else {}
    ops = [d for d in change.requirement_deltas if d.capability == spec.capability]
    for d in ops:
        if d.op is DeltaOp.RENAMED and d.renamed_to and d.name in sources:
            sources[d.renamed_to] = sources[d.name]
    for d in ops:
        if d.op in (DeltaOp.ADDED, DeltaOp.MODIFIED) and d.requirement is not None:
            sources[d.requirement.name] = d.requirement
    placed = []
    for req in spec.requirements:
        source = sources.get(req.name)
        if source is None:
            placed.append(req)
            continue
        where = {s.name: s.position for s in source.scenarios}
        placed.append(replace(req, position=source.position, scenarios=tuple(
            replace(s, position=where.get(s.name, s.position)) for s in req.scenarios)))
    return tuple(placed)


def _archived_in_order(project: Project) -> list[Change]:
    return sorted(project.archive.values(), key=lambda c: (c.archived_on or "", c.id))


def _rename_forward(project: Project, capability: str, name: str,
                    changes: list[Change]) -> tuple[str, list[str]]:
    """Follow RENAMED pairs of ``changes`` (in order) from ``name``."""
    notices: list[str] = []
    seen = {name}
    for change in changes:
        for delta in change.requirement_deltas:
            if (delta.op is DeltaOp.RENAMED and delta.capability == capability
                    and delta.name == name and delta.renamed_to):
                notices.append(f"{capability}/{name} was renamed to {delta.renamed_to!r} by "
                               f"change {change.id}")
                name = delta.renamed_to
                if name in seen:
                    return name, notices
                seen.add(name)
    return name, notices


def _spec_on(project: Project, capability: str, day: str) -> tuple[Spec, list[str]]:
    """The capability at the end of ``day``, from the current spec and the archive: changes
    archived later are undone (ADDED dropped, MODIFIED / REMOVED restored from the newest
    earlier archived block, RENAMED reversed)."""
    current = project.specs.get(capability)
    later = [c for c in _archived_in_order(project) if (c.archived_on or "") > day]
    earlier = [c for c in _archived_in_order(project) if (c.archived_on or "") <= day]
    blocks: dict[str, Requirement] = {r.name: r for r in current.requirements} if current else {}
    order = [r.name for r in current.requirements] if current else []
    for change in reversed(later):
        for delta in reversed(change.requirement_deltas):
            if delta.capability != capability:
                continue
            if delta.op is DeltaOp.ADDED:
                blocks.pop(delta.name, None)
            elif delta.op is DeltaOp.RENAMED and delta.renamed_to in blocks:
                old = blocks.pop(delta.renamed_to)
                blocks[delta.name] = Requirement(capability, delta.name, old.text, old.scenarios,
                                                 old.position, old.raw)
                order = [delta.name if n == delta.renamed_to else n for n in order]
            elif delta.op in (DeltaOp.MODIFIED, DeltaOp.REMOVED):
                previous = None
                for older in earlier:
                    for d in older.requirement_deltas:
                        if (d.capability == capability and d.name == delta.name
                                and d.requirement is not None):
                            previous = d.requirement
                if previous is not None:
                    blocks[delta.name] = previous
                    if delta.name not in order:
                        order.append(delta.name)
                elif delta.op is DeltaOp.REMOVED:
                    blocks.pop(delta.name, None)
    if not blocks and current is None:
        raise NotFoundError(f"capability {capability!r} did not exist on {day}")
    requirements = tuple(blocks[n] for n in order if n in blocks) + tuple(
        blocks[n] for n in blocks if n not in order)
    base = current or Spec(capability, capability, "", (), requirements[0].position, "")
    notices = [f"reconstructed from the archive as of {day}"] if later else []
    return Spec(capability, base.title, base.purpose, requirements, base.position, base.content,
                base.design), notices


def resolve(project: Project, uri: str) -> Resolution:
    """Resolve ``uri`` against ``project``; NotFoundError names what is missing."""
    parsed = parse_uri(uri)
    capabilities = set(project.specs)
    for change in (*project.changes.values(), *project.archive.values()):
        capabilities.update(d.capability for d in change.deltas)
    capability, name = _split_path(parsed.path, capabilities)
    notices: list[str] = []
    version = parsed.version
    later_changes: list[Change] = []
    if version == "current":
        spec = project.specs.get(capability)
        if spec is None:
            raise NotFoundError(f"{uri}: capability {capability!r} exists only in changes",
                                hint="name the change: @<change-id>")
        later_changes = _archived_in_order(project)
    elif version in project.changes:
        spec, notices = _spec_after(project, capability, project.changes[version])
        later_changes = [*_archived_in_order(project), project.changes[version]]
    elif _DATE.match(version):
        try:
            date.fromisoformat(version)
        except ValueError:
            raise InputError(f"{uri}: {version} is not a valid date",
                             hint="an archive date is a calendar day YYYY-MM-DD") from None
        spec, notices = _spec_on(project, capability, version)
    else:
        raise NotFoundError(f"{uri}: unknown version {version!r}",
                            hint="use current, an active change id or an archive date YYYY-MM-DD")
    requirement = None
    scenario = None
    if name is not None:
        requirement = spec.requirement(name)
        if requirement is None:
            renamed, rename_notices = _rename_forward(project, capability, name, later_changes)
            if renamed != name:
                requirement = spec.requirement(renamed)
                notices.extend(rename_notices)
        if requirement is None:
            raise NotFoundError(f"{uri}: no requirement {name!r} in {capability}"
                                + ("" if version == "current" else f" at {version}"),
                                hint="known: " + ", ".join(r.name for r in spec.requirements[:8]))
        if parsed.scenario is not None:
            scenario = next((s for s in requirement.scenarios if s.name == parsed.scenario), None)
            if scenario is None:
                raise NotFoundError(f"{uri}: no scenario {parsed.scenario!r} in "
                                    f"{requirement.key}")
    elif parsed.scenario is not None:
        raise InputError(f"{uri}: a scenario needs a requirement (spec://cap/req#scenario)")
    return Resolution(uri, capability, version, spec, requirement, scenario, tuple(notices))


@dataclass(frozen=True)
class Claim:
    """One change's claim on a requirement: what it does, and where it says so."""

    change: str
    op: DeltaOp
    file: str
    line: int


@dataclass(frozen=True)
class Conflict:
    """Two or more active changes touching the same requirement key."""

    key: str
    claims: tuple[Claim, ...]

    def render(self) -> str:
        who = ", ".join(f"{c.change} ({c.op.value} at {c.file}:{c.line})" for c in self.claims)
        return f"{self.key}: claimed by {len(self.claims)} changes: {who}"


def find_conflicts(project: Project) -> list[Conflict]:
    """Requirements that two active changes modify, remove, rename -- or add, or rename onto --
    so that archiving one invalidates the other."""
    claims: dict[str, list[Claim]] = defaultdict(list)
    for change in project.changes.values():
        for delta in change.requirement_deltas:
            claim = Claim(change.id, delta.op, delta.position.file, delta.position.line)
            claims[delta.key].append(claim)
            if delta.op is DeltaOp.RENAMED and delta.renamed_to:
                claims[f"{delta.capability}/{delta.renamed_to}"].append(claim)
    conflicts = []
    for key, found in sorted(claims.items()):
        if len({c.change for c in found}) > 1:
            conflicts.append(Conflict(key, tuple(sorted(found, key=lambda c: c.change))))
    return conflicts


@dataclass(frozen=True)
class ReferenceGraph:
    """Requirement keys and the requirements their text refers to, plus the problems found."""

    edges: dict[str, tuple[str, ...]]
    problems: tuple[Problem, ...]


def reference_graph(project: Project) -> ReferenceGraph:
    """Resolve every ``spec://`` in the current specs into edges between requirement keys
    (capability-level targets become the capability id); missing targets and cycles are
    problems naming file, line and the chain."""
    edges: dict[str, list[str]] = defaultdict(list)
    where: dict[tuple[str, str], tuple[str, int]] = {}
    problems: list[Problem] = []
    for spec in project.specs.values():
        for req in spec.requirements:
            edges.setdefault(req.key, [])
            for uri, offset in find_references(req.raw):
                line = req.position.line + offset
                try:
                    target = resolve(project, uri)
                except (NotFoundError, InputError) as exc:
                    problems.append(Problem(req.position.file, f"unresolved reference: "
                                            f"{exc.message}", line, req.key, "missing-reference"))
                    continue
                for notice in target.notices:
                    problems.append(Problem(req.position.file, f"{uri}: {notice}", line, req.key,
                                            "notice"))
                key = target.requirement.key if target.requirement else target.capability
                if key not in edges[req.key]:
                    edges[req.key].append(key)
                    where[(req.key, key)] = (req.position.file, line)
    # Cycles: depth-first search, reporting each cycle once by its smallest rotation.
    state: dict[str, int] = {}
    stack: list[str] = []
    reported: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):]
                pivot = cycle.index(min(cycle))
                canonical = tuple(cycle[pivot:] + cycle[:pivot])
                if canonical not in reported:
                    reported.add(canonical)
                    file, line = where[(node, nxt)]
                    chain = " -> ".join([*canonical, canonical[0]])
                    problems.append(Problem(file, f"reference cycle: {chain}", line, node,
                                            "reference-cycle"))
            elif state.get(nxt) is None and nxt in edges:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if state.get(node) is None:
            visit(node)
    return ReferenceGraph({k: tuple(v) for k, v in edges.items()}, tuple(problems))
