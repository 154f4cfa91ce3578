"""Archive a change as ``openspec archive <id> --yes`` does: merge its deltas into the specs and
move it to ``changes/archive/YYYY-MM-DD-<id>/``.

Refuses, before writing anything, when the change does not validate, when a delta cannot be
merged (the archive's own refusals, see :mod:`aidp.specs.apply`) or when a rebuilt spec would
not validate. Retiring a capability (``retire_capabilities``) is not supported: such a change is
refused with a message saying so.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from aidp.exceptions import InputError, NotFoundError
from aidp.specs.apply import ApplyError, apply_delta
from aidp.specs.project import discover_spec_files, read_text
from aidp.specs.validate import Level, validate_change, validate_spec_text

__all__ = ["ArchiveResult", "archive_change"]


@dataclass(frozen=True)
class ArchiveResult:
    """What was archived where, and the merge totals (the reference's ``archive`` JSON)."""

    change: str
    archived_as: str
    path: Path
    specs_updated: bool
    added: int
    modified: int
    removed: int
    renamed: int

    def to_openspec(self) -> dict[str, object]:
        return {"change": self.change, "archivedAs": self.archived_as, "path": str(self.path),
                "specsUpdated": self.specs_updated,
                "totals": {"added": self.added, "modified": self.modified,
                           "removed": self.removed, "renamed": self.renamed}}


def archive_change(root: Path, change_id: str, *, today: date | None = None) -> ArchiveResult:
    """Merge ``change_id``'s deltas into ``root/openspec/specs`` and move it to the archive.

    Raises InputError (nothing written) when the change is invalid or cannot be merged,
    NotFoundError when it does not exist."""
    changes = root / "openspec" / "changes"
    change_dir = changes / change_id
    if "/" in change_id or change_id == "archive" or not change_dir.is_dir():
        raise NotFoundError(f"no change {change_id!r} in {changes}")
    report = validate_change(change_id, change_dir, root)
    errors = [i for i in report.issues if i.level is Level.ERROR]
    if errors:
        raise InputError(errors[0].render() + (f" (and {len(errors) - 1} more)"
                                               if len(errors) > 1 else ""),
                         hint=f"run `aidp specs validate {change_id}` to see every problem")
    specs_dir = root / "openspec" / "specs"
    planned: list[tuple[Path, str]] = []
    totals = [0, 0, 0, 0]
    for capability, source in discover_spec_files(change_dir / "specs"):
        target = specs_dir.joinpath(*capability.split("/"), "spec.md")
        rel = source.relative_to(root).as_posix()
        try:
            applied = apply_delta(capability, read_text(source),
                                  read_text(target) if target.is_file() else None, change_id)
        except ApplyError as exc:
            raise InputError(f"{rel}: [{change_id}] {exc.message}") from None
        rebuilt = validate_spec_text(capability, applied.content,
                                     target.relative_to(root).as_posix())
        bad = [i for i in rebuilt.issues if i.level is Level.ERROR]
        if bad:
            raise InputError(f"{rel}: [{change_id}] archiving would leave {capability} invalid: "
                             f"{bad[0].message.splitlines()[0]}")
        planned.append((target, applied.content))
        for n, count in enumerate((applied.added, applied.modified, applied.removed,
                                   applied.renamed)):
            totals[n] += count
    name = f"{(today or date.today()).isoformat()}-{change_id}"
    destination = changes / "archive" / name
    if destination.exists():
        raise InputError(f"archive {destination.relative_to(root).as_posix()} already exists")
    for target, content in planned:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(change_dir), destination)
    return ArchiveResult(change_id, name, destination, bool(planned), *totals)
