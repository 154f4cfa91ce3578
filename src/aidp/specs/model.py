"""The OpenSpec vocabulary as frozen dataclasses: specs, requirements, scenarios, changes, deltas.

Every element carries a :class:`Position` (file relative to the repository, 1-based line) so a
problem can always be reported as ``file:line``. Requirements have no stable id in OpenSpec; aidp
keys them ``<capability>/<requirement name>`` (:attr:`Requirement.key`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Change",
    "ChangeMetadata",
    "DeltaOp",
    "DeltaSpec",
    "Position",
    "Project",
    "Proposal",
    "Requirement",
    "RequirementDelta",
    "Scenario",
    "Spec",
    "Task",
]


@dataclass(frozen=True, order=True)
class Position:
    """Where an element starts: ``file`` relative to the repository root (POSIX), 1-based line."""

    file: str
    line: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Scenario:
    """A ``#### Scenario:`` block; ``text`` is its body (the reference CLI's ``rawText``)."""

    name: str
    text: str
    position: Position


@dataclass(frozen=True)
class Requirement:
    """A ``### Requirement:`` block of one capability."""

    capability: str
    name: str
    text: str
    scenarios: tuple[Scenario, ...]
    position: Position
    raw: str = ""

    @property
    def key(self) -> str:
        """``<capability>/<requirement name>``."""
        return f"{self.capability}/{self.name}"


@dataclass(frozen=True)
class Spec:
    """One capability's current truth: ``openspec/specs/<capability>/spec.md``."""

    capability: str
    title: str
    purpose: str
    requirements: tuple[Requirement, ...]
    position: Position
    content: str
    design: str | None = None

    def requirement(self, name: str) -> Requirement | None:
        """The requirement called ``name`` (exact, after trimming), or None."""
        return next((r for r in self.requirements if r.name == name.strip()), None)


class DeltaOp(enum.Enum):
    """What a delta does to a requirement."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    REMOVED = "REMOVED"
    RENAMED = "RENAMED"


@dataclass(frozen=True)
class RequirementDelta:
    """One entry of a delta spec. ``requirement`` is the new block (ADDED / MODIFIED);
    ``renamed_to`` the new name (RENAMED)."""

    op: DeltaOp
    capability: str
    name: str
    position: Position
    requirement: Requirement | None = None
    renamed_to: str | None = None

    @property
    def key(self) -> str:
        return f"{self.capability}/{self.name}"


@dataclass(frozen=True)
class DeltaSpec:
    """A change's ``specs/<capability>/spec.md``: the deltas it applies to one capability."""

    capability: str
    position: Position
    content: str
    deltas: tuple[RequirementDelta, ...]
    purpose: str | None = None


@dataclass(frozen=True)
class Task:
    """A checkbox of ``tasks.md``: its number (``1.2``, or None), text, done flag, group."""

    number: str | None
    text: str
    done: bool
    position: Position
    group: str | None = None


@dataclass(frozen=True)
class Proposal:
    """``proposal.md``: title, Why, What Changes (bullets, BREAKING ones marked), Impact."""

    title: str
    why: str
    what_changes: str
    impact: str
    changes: tuple[str, ...]
    breaking: tuple[str, ...]
    sections: dict[str, str] = field(compare=False)
    position: Position = Position("", 1)


@dataclass(frozen=True)
class ChangeMetadata:
    """``.openspec.yaml`` (v1). ``invalid`` says why a declared marker cannot be honoured."""

    schema: str | None = None
    skip_specs: bool = False
    retire_capabilities: bool = False
    invalid: str | None = None
    raw: dict[str, object] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Change:
    """A change directory: proposal, tasks, optional design, one delta spec per capability."""

    id: str
    path: Path
    position: Position
    proposal: Proposal | None
    tasks: tuple[Task, ...]
    design: str | None
    deltas: tuple[DeltaSpec, ...]
    metadata: ChangeMetadata
    archived_on: str | None = None  # YYYY-MM-DD for archived changes

    @property
    def requirement_deltas(self) -> tuple[RequirementDelta, ...]:
        return tuple(d for spec in self.deltas for d in spec.deltas)

    @property
    def progress(self) -> tuple[int, int]:
        """(checked, total) task checkboxes."""
        return sum(1 for t in self.tasks if t.done), len(self.tasks)


@dataclass(frozen=True)
class Project:
    """An ``openspec/`` directory: its layout (``v0`` with project.md, ``v1`` with
    config.yaml), current specs, active changes and archived changes."""

    root: Path
    openspec_dir: Path
    layout: str
    specs: dict[str, Spec] = field(compare=False)
    changes: dict[str, Change] = field(compare=False)
    archive: dict[str, Change] = field(compare=False)
    config: dict[str, object] = field(default_factory=dict, compare=False)
    conventions: str | None = None
