"""Is a valid plan ready to run here? The checks that need more than the workstream files.

:func:`check_readiness` is the one place of these rules: ``aidp validate`` and ``aidp plan``
report its problems, and a run's preflight (:func:`aidp.engine.run.preflight`) refuses them
before anything is written. It checks the plan against

* the settings (``aidp.toml``): every step's ``tool`` and every ``fix.escalate`` name is a tool
  profile, every ``capability`` is offered by a profile (for the step's ``language``);
* this machine (skipped ``offline``): every declared environment variable is set, every
  workstream's ``base`` is a commit of the repository, no ``merge.into`` target is checked out
  in a worktree of the repository (aidp never moves a checked-out branch, and would find out
  only after the work is done).

Problems are located at the step's (or workstream's) line, with the ``WS/STEP`` id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from aidp.exceptions import Problem
from aidp.model.plan import Plan

__all__ = ["check_readiness"]


class _Profile(Protocol):
    """What readiness reads of a :class:`aidp.config.ToolProfile` (config imports the model:
    the model names no config type)."""

    @property
    def capabilities(self) -> list[str]: ...
    @property
    def languages(self) -> list[str]: ...


class Settings(Protocol):
    """What readiness reads of :class:`aidp.config.Settings`."""

    @property
    def tools(self) -> Mapping[str, _Profile]: ...
    def profile(self, name: str) -> _Profile | None: ...


class _Report(Protocol):
    def __call__(self, code: str, message: str, ws_id: str, step_id: str | None = None,
                 name: str | None = None) -> None: ...


def check_readiness(
    plan: Plan, settings: Settings, repo: Path | None, *, offline: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Problem], dict[str, str]]:
    """Check ``plan`` against ``settings`` and (unless ``offline``) this machine and ``repo``.

    Returns:
        every problem found, and the resolved base commit of each workstream whose base was
        resolved (none when ``offline`` or ``repo`` is None).
    """
    env = os.environ if environ is None else environ
    problems: list[Problem] = []

    def problem(code: str, message: str, ws_id: str, step_id: str | None = None,
                name: str | None = None) -> None:
        file, line = plan.location(ws_id, step_id, name)
        ident = ws_id if step_id is None else f"{ws_id}/{step_id}"
        problems.append(Problem(file, message, line, ident, code))

    known = ", ".join(sorted({*settings.tools, "shell", "manual"}))
    for ws in plan.workstreams:
        for step in ws.steps:
            if step.capability is not None:
                if not _offered(settings, step.capability, step.language):
                    wanted = step.capability + (f" for {step.language}" if step.language else "")
                    problem("unknown-capability", f"no tool profile offers capability {wanted} "
                            f"(add it to the capabilities of a profile in aidp.toml)",
                            ws.id, step.id, "capability")
            elif settings.profile(step.tool) is None:
                problem("unknown-tool", f"unknown tool profile {step.tool!r} (known: {known})",
                        ws.id, step.id, "tool")
            for name in step.fix.escalate:
                if settings.profile(name) is None:
                    problem("unknown-tool", f"fix.escalate names unknown tool profile {name!r} "
                            f"(known: {known})", ws.id, step.id, "fix")
            if not offline:
                for var in dict.fromkeys([*ws.env, *step.env]):
                    if var not in env:
                        problem("env-unset", f"environment variable {var} is not set",
                                ws.id, step.id, "env")
    bases: dict[str, str] = {}
    if not offline and repo is not None:
        _check_repository(plan, repo, problem, bases)
    return problems, bases


def _offered(settings: Settings, capability: str, language: str | None) -> bool:
    return any(capability in profile.capabilities
               and (language is None or not profile.languages or language in profile.languages)
               for profile in settings.tools.values())


def _check_repository(plan: Plan, repo: Path, problem: _Report, bases: dict[str, str]) -> None:
    """Bases are commits of ``repo``; merge targets are not checked out in any worktree."""
    from aidp.workspace.git import rev_parse
    from aidp.workspace.merge import checked_out_branches

    resolved: dict[str, str | None] = {}
    for ws in plan.workstreams:
        if ws.base not in resolved:
            resolved[ws.base] = rev_parse(repo, f"{ws.base}^{{commit}}")
        sha = resolved[ws.base]
        if sha is None:
            problem("unknown-base", f"base {ws.base!r} is not a commit in {repo}", ws.id,
                    name="base")
        else:
            bases[ws.id] = sha
    targets = {ws.merge.into for ws in plan.workstreams if ws.merge is not None}
    holders = checked_out_branches(repo) if targets else {}
    for ws in plan.workstreams:
        if ws.merge is not None and ws.merge.into in holders:
            problem("merge-target-checked-out",
                    f"merge target {ws.merge.into!r} is checked out in "
                    f"{holders[ws.merge.into]}; aidp will not move a checked-out branch "
                    "(check out another branch there, or merge into another branch)",
                    ws.id, name="merge")
