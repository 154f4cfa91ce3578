"""Workstream files checked and planned: what ``aidp validate`` and ``aidp plan`` (and the API's
``/plans/validate`` and ``/plans/plan``) answer.

The files are loaded with :func:`aidp.model.loader.load_plan` and checked against the settings
and (unless ``offline``) this machine with :func:`aidp.model.readiness.check_readiness`: the
rules a run's preflight refuses. Nothing is written; problems are returned, every one located
(``file:line: [id] message``), never raised, so each interface renders them its own way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.exceptions import InputError, NotFoundError, Problem, ValidationError

if TYPE_CHECKING:
    from aidp.config import Settings
    from aidp.model.plan import Plan

__all__ = [
    "PlanCheck", "check_plan", "check_plan_text", "check_repo_files", "compile_change_plan",
    "plan_document",
]


@dataclass(frozen=True)
class PlanCheck:
    """The outcome of checking workstream files: the plan, or every problem."""

    plan: Plan | None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.problems

    def validate_dict(self) -> dict[str, Any]:
        """What ``aidp validate --json`` prints."""
        if not self.ok or self.plan is None:
            return {"ok": False, "problems": [p.to_dict() for p in self.problems]}
        return {"ok": True, "workstreams": len(self.plan.workstreams),
                "steps": self.plan.step_count}


def check_plan(repo: Path | None, settings: Settings, files: list[Path], *, offline: bool = False
               ) -> PlanCheck:
    """Load ``files`` (paths inside ``repo``) as one plan and check it as ``aidp run`` would."""
    from aidp.model.loader import load_plan
    from aidp.model.readiness import check_readiness

    try:
        loaded = load_plan(files, repo=repo)
    except ValidationError as exc:
        return PlanCheck(None, tuple(exc.problems))
    except OSError as exc:  # a path the system refuses (too long, ...) before any read
        name = exc.filename if isinstance(exc.filename, str) else str(files[0])
        return PlanCheck(None, (Problem(file=name, message=f"cannot read: {exc.strerror}",
                                        code="unreadable"),))
    problems, _ = check_readiness(loaded, settings, repo, offline=offline)
    return PlanCheck(None if problems else loaded, tuple(problems))


def check_plan_text(repo: Path, settings: Settings, text: str, name: str, *,
                    offline: bool = False) -> PlanCheck:
    """Check a plan given as text (YAML or JSON), its problems naming ``name``.

    Raises:
        InputError: ``name`` is not a plain file name ending in .yaml, .yml or .json.
    """
    from aidp.model.loader import SUFFIXES

    if (Path(name).name != name or Path(name).suffix not in SUFFIXES or name.startswith(".")
            or not name.isprintable()):
        raise InputError(f"invalid plan name {name!r}: a file name ending in "
                         + ", ".join(sorted(SUFFIXES)))
    with tempfile.TemporaryDirectory(prefix="aidp-plan-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        from aidp.model.loader import load_plan
        from aidp.model.readiness import check_readiness

        try:
            loaded = load_plan([path])
        except ValidationError as exc:
            return PlanCheck(None, tuple(_renamed(p, str(path), name) for p in exc.problems))
        problems, _ = check_readiness(loaded, settings, repo, offline=offline)
        return PlanCheck(None if problems else loaded,
                         tuple(_renamed(p, str(path), name) for p in problems))


def _renamed(problem: Problem, temp: str, name: str) -> Problem:
    return replace(problem, file=problem.file.replace(temp, name),
                   message=problem.message.replace(temp, name))


def plan_document(plan: Plan) -> dict[str, Any]:
    """What ``aidp plan --json`` prints: waves, critical path, useful parallelism."""
    from aidp.core.dag import analyze

    return {"ok": True, **analyze(plan).to_dict()}


def check_repo_files(repo: Path, settings: Settings, names: list[str], *,
                     offline: bool = False) -> PlanCheck:
    """:func:`check_plan` on ``names``, paths relative to ``repo`` (a path leading outside it
    is a problem, as for ``aidp validate``); problems name the files as given.

    Raises:
        InputError: no file named.
    """
    if not names:
        raise InputError("name at least one workstream file (or directory) of the repository")
    bad = [Problem(file=repr(name), message="not a file name", code="unreadable")
           for name in names if not name or not name.isprintable()]
    if bad:
        return PlanCheck(None, tuple(bad))
    prefix = str(repo) + "/"
    checked = check_plan(repo, settings, [repo / name for name in names], offline=offline)
    return PlanCheck(checked.plan, tuple(_renamed(p, prefix, "") for p in checked.problems))


def compile_change_plan(repo: Path, settings: Settings, change_id: str, *,
                        split: str | None = None, offline: bool = False
                        ) -> tuple[str, PlanCheck]:
    """The workstream file OpenSpec change ``change_id`` compiles to (as text; nothing is
    written to the repository) and its check, as ``aidp plan --change`` shows it.

    Raises:
        NotFoundError: no such change. StateError: it has nothing to run.
    """
    from aidp.app.changes import compile_change

    if not change_id or "/" in change_id or "\\" in change_id or change_id.startswith(".") \
            or not change_id.isprintable():
        raise NotFoundError(f"no change {change_id!r}")
    with tempfile.TemporaryDirectory(prefix="aidp-change-") as tmp:
        path = compile_change(repo, settings, change_id, None, into=Path(tmp), split=split)
        text = path.read_text(encoding="utf-8")
        checked = check_plan_text(repo, settings, text, f"{change_id}.yaml", offline=offline)
    return text, checked
