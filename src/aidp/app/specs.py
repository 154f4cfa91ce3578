"""OpenSpec specs and changes read and validated: what ``aidp specs list|show|validate`` print
in aidp's JSON shape, and the API's ``/specs``. Every issue names its file and line. Nothing
here writes; no database is needed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.exceptions import InputError, NotFoundError

if TYPE_CHECKING:
    from aidp.specs.validate import Report

__all__ = ["conflicts", "coverage", "kind_of", "list_items", "show_item", "spec_root",
           "validate_items", "validation_dict", "validation_targets"]


def spec_root(start: Path) -> Path:
    """The directory holding ``openspec/`` at or above ``start``. Raises NotFoundError."""
    from aidp.specs.project import find_root

    return find_root(start)


def kind_of(root: Path, item: str, wanted: str | None) -> str:
    """``change`` or ``spec`` for ``item``; NotFoundError / InputError when unknown / ambiguous."""
    from aidp.specs.project import discover_spec_files

    changes_dir = root / "openspec" / "changes"
    plain = bool(item) and "/" not in item and "\\" not in item and not item.startswith(".")
    is_change = plain and item != "archive" and (changes_dir / item).is_dir()
    spec_ids = [cap for cap, _ in discover_spec_files(root / "openspec" / "specs")]
    is_spec = item in spec_ids
    if wanted == "change" or (wanted is None and is_change and not is_spec):
        if not is_change:
            raise NotFoundError(f"no change {item!r} in {changes_dir}")
        return "change"
    if wanted == "spec" or (wanted is None and is_spec and not is_change):
        if not is_spec:
            raise NotFoundError(f"no spec {item!r} in {root / 'openspec' / 'specs'}")
        return "spec"
    if is_change and is_spec:
        raise InputError(f"{item!r} is both a change and a spec",
                         hint="pass --type change or --type spec")
    known = sorted([p.name for p in changes_dir.iterdir() if p.is_dir() and p.name != "archive"]
                   if changes_dir.is_dir() else []) + spec_ids
    raise NotFoundError(f"no change or spec {item!r}",
                        hint=("known: " + ", ".join(known[:10])) if known else None)


def validation_targets(root: Path, kind: str | None) -> list[tuple[str, str]]:
    """Every active change and spec of ``root`` (only one ``kind`` when given), as
    ``(kind, id)``."""
    from aidp.specs.project import discover_spec_files

    targets: list[tuple[str, str]] = []
    changes_dir = root / "openspec" / "changes"
    if kind in (None, "change") and changes_dir.is_dir():
        targets += [("change", p.name) for p in sorted(changes_dir.iterdir())
                    if p.is_dir() and p.name != "archive" and not p.name.startswith(".")]
    if kind in (None, "spec"):
        targets += [("spec", cap) for cap, _ in discover_spec_files(root / "openspec" / "specs")]
    return targets


def validate_items(root: Path, targets: list[tuple[str, str]], *, strict: bool = False
                   ) -> list[tuple[Report, int]]:
    """Validate each target with the rules of ``openspec validate``: each report with the
    milliseconds it took."""
    from aidp.specs.validate import validate_change, validate_spec

    reports: list[tuple[Report, int]] = []
    for target_kind, target in targets:
        started = time.perf_counter()
        if target_kind == "change":
            report = validate_change(target, root / "openspec" / "changes" / target, root,
                                     strict=strict)
        else:
            report = validate_spec(target, root / "openspec" / "specs" / target / "spec.md",
                                   root, strict=strict)
        reports.append((report, round((time.perf_counter() - started) * 1000)))
    return reports


def validation_dict(reports: list[tuple[Report, int]]) -> dict[str, Any]:
    """The reports as ``specs validate --json`` prints them."""
    return {"ok": all(r.valid for r, _ in reports), "items": [
        {"id": r.id, "type": r.type, "valid": r.valid,
         "issues": [{"level": i.level.value, "file": i.file, "line": i.line, "path": i.path,
                     "message": i.message} for i in r.issues]}
        for r, _ in reports]}


def show_item(root: Path, item: str, kind: str) -> dict[str, Any]:
    """A change or a spec (``kind``, see :func:`kind_of`) as ``specs show --json`` prints it."""
    from aidp.specs.project import load_change, parse_spec, read_text

    if kind == "spec":
        path = root / "openspec" / "specs" / item / "spec.md"
        spec = parse_spec(item, read_text(path), path.relative_to(root).as_posix())
        return {
            "type": "spec", "id": item, "title": spec.title, "purpose": spec.purpose,
            "file": spec.position.file,
            "requirements": [{"key": r.key, "name": r.name, "text": r.text,
                              "line": r.position.line,
                              "scenarios": [{"name": s.name, "text": s.text,
                                             "line": s.position.line} for s in r.scenarios]}
                             for r in spec.requirements]}
    change = load_change(root / "openspec" / "changes" / item, root)
    done, total = change.progress
    return {
        "type": "change", "id": item,
        "title": change.proposal.title if change.proposal else item,
        "why": change.proposal.why if change.proposal else "",
        "tasks": {"done": done, "total": total,
                  "items": [{"number": t.number, "text": t.text, "done": t.done,
                             "line": t.position.line} for t in change.tasks]},
        "deltas": [{"op": d.op.value, "key": d.key, "file": d.position.file,
                    "line": d.position.line, "renamed_to": d.renamed_to}
                   for d in change.requirement_deltas]}


def list_items(root: Path, *, specs: bool = False) -> dict[str, Any]:
    """The active changes (or the specs) as ``specs list --json`` prints them."""
    from aidp.specs.compat import list_changes, list_specs

    return list_specs(root) if specs else list_changes(root)


def conflicts(root: Path) -> list[dict[str, Any]]:
    """Requirements claimed by two or more active changes (as ``specs conflicts --json``)."""
    from aidp.specs.project import load_project
    from aidp.specs.resolver import find_conflicts

    return [{"key": c.key, "claims": [{"change": cl.change, "op": cl.op.value, "file": cl.file,
                                       "line": cl.line} for cl in c.claims]}
            for c in find_conflicts(load_project(root))]


def coverage(root: Path, test_paths: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Every scenario of the current specs with the tagged tests that prove it (as ``specs
    coverage --json`` without test results: each scenario ``tagged`` or ``untested``).

    Raises:
        ValidationError: a tag naming no known scenario (each problem with file and line).
    """
    from aidp.specs.coverage import collect_tests, coverage_of, map_tests, scenario_uri
    from aidp.specs.project import load_project

    project = load_project(root)
    report = coverage_of(project, map_tests(project, collect_tests(root, test_paths)), None)
    return {"ok": report.complete, "version": report.version, "counts": report.counts(),
            "scenarios": [{"uri": scenario_uri(s.key), "capability": s.key.capability,
                           "requirement": s.key.requirement, "scenario": s.key.scenario,
                           "file": s.file, "line": s.line, "status": s.status.value,
                           "tests": [{"nodeid": t.nodeid, "file": t.file, "line": t.line}
                                     for t in s.tests]}
                          for s in report.scenarios]}
