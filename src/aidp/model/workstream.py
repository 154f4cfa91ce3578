"""Pydantic models of workstream files: the single source of truth for their shape.

``schema/workstream.schema.json`` is exported from :class:`WorkstreamFile` (``python -m
aidp.model.schema``) and a test keeps the two in sync. Semantic checks that span several objects
(unknown dependencies, cycles, scope conflicts, paths, branch names) live in
:mod:`aidp.model.validate`.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

__all__ = [
    "BestOf",
    "Budget",
    "Check",
    "Compensation",
    "Duration",
    "FixPolicy",
    "MergeSpec",
    "MergeStrategy",
    "RetryPolicy",
    "Step",
    "Workstream",
    "WorkstreamFile",
    "parse_duration",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Turn ``30``, ``1.5``, ``"500ms"``, ``"30s"``, ``"10m"`` or ``"1h"`` into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '10m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(
                f"{value!r} is not a duration (use seconds or '500ms', '30s', '10m', '1h')")
        return float(match.group(1)) * _UNIT_S[match.group(2)]
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": _DURATION_RE.pattern},
            ],
            "description": "seconds, or a string such as '500ms', '30s', '10m', '1h'",
        }
    ),
]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
Command = Annotated[
    str | list[str],
    Field(
        description="a command template run by /bin/sh -c (placeholders are shell-quoted), "
        "or an argv list (placeholders substituted per element)"
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MergeStrategy(str, Enum):
    """How a finished workstream's branch reaches its merge target."""

    NONE = "none"
    MERGE = "merge"
    SQUASH = "squash"


#: The :class:`~aidp.core.states.FailureClass` values a retry policy may name.
RetryableClass = Literal["transient", "unknown"]


class RetryPolicy(_Model):
    """When and how often a failed step is tried again (delays in seconds).

    ``max_attempts`` counts attempts that ended transient, unknown or permanent; crashes (the
    tool died by a signal, or aidp itself died mid-attempt) are counted apart and capped by
    ``max_crashes``, so a poison step cannot loop; unknown failures are also capped by
    ``max_unknown``. ``budget`` bounds the time from the first attempt to the last start.
    """

    max_attempts: int = Field(1, ge=1, le=100, description="total attempts, the first included")
    initial_delay: Duration = Field(1.0, description="delay before the second attempt")
    factor: float = Field(2.0, ge=1.0, le=100.0, description="delay multiplier per attempt")
    max_delay: Duration = Field(60.0, description="upper bound of one delay")
    jitter: float = Field(
        0.0, ge=0.0, le=1.0,
        description="± fraction of randomness per delay (with jitter_mode: fraction)",
    )
    jitter_mode: Literal["fraction", "full"] = Field(
        "fraction", description="fraction: delay ± jitter; full: uniform in [0, delay]"
    )
    budget: Duration | None = Field(
        None, description="no attempt starts later than this after the first one"
    )
    retry_on: list[RetryableClass] = Field(
        default_factory=lambda: list(get_args(RetryableClass)),
        description="failure classes that are retried (a permanent failure is fixed instead)",
    )
    max_crashes: int = Field(
        3, ge=1, le=100, description="attempts that may crash (signal, aidp died) before failing"
    )
    max_unknown: int = Field(
        3, ge=1, le=100, description="attempts that may fail for an unknown reason"
    )


class FixPolicy(_Model):
    """The fix loop: on a permanent failure of the acceptance checks, re-invoke the tool with
    the findings, from the last checkpoint; then escalate along ``escalate``."""

    max: int = Field(0, ge=0, le=20, description="fix attempts per profile (0: no fix loop)")
    escalate: list[str] = Field(
        default_factory=list,
        description="tool profiles to try next, in order, when the fix loop gives up",
    )


class Budget(_Model):
    """Limits on what attempts may spend; when one is reached, no further attempt starts and
    the step ends with outcome ``budget_exceeded``. None: no limit."""

    tokens: int | None = Field(None, ge=1, description="input + output tokens")
    cost_usd: float | None = Field(None, ge=0, description="cost in US dollars")


class Compensation(_Model):
    """An undo action run when a step or workstream ends failed or cancelled (idempotent,
    recorded). Exactly one of: ``reset`` (the worktree back to the last checkpoint),
    ``delete_branch`` (the workstream's branch), ``run`` (a command, in the worktree or repo)."""

    reset: bool = False
    delete_branch: bool = False
    run: Command | None = None
    timeout: Duration = 300.0

    @model_validator(mode="after")
    def _exactly_one(self) -> Compensation:
        chosen = [self.reset, self.delete_branch, self.run is not None]
        if sum(chosen) != 1:
            raise ValueError("a compensation is exactly one of reset, delete_branch, run")
        return self

    @property
    def kind(self) -> str:
        return "reset" if self.reset else "delete_branch" if self.delete_branch else "run"


class Check(_Model):
    """An acceptance check: a command run in the worktree after the tool; it must exit 0."""

    run: Command
    name: str | None = None
    timeout: Duration = 600.0


class MergeSpec(_Model):
    """Where a finished workstream's branch goes: ``into`` a branch, with ``strategy``.

    With ``checks``, the workstream lands through the target's merge queue: it is merged with
    the other finished workstreams of the queue (up to ``batch`` at a time) onto the target in
    a scratch worktree, the checks run on that merged tree, and the target moves only when they
    pass; a failing batch is bisected to the first workstream that breaks them, which is taken
    out of the queue (README, "Merge queue"; :mod:`aidp.engine.mergequeue`). Every workstream
    merging into one branch declares the same ``checks`` and ``batch``.
    """

    into: str = Field(min_length=1)
    strategy: MergeStrategy = MergeStrategy.MERGE
    checks: list[Check | str] = Field(
        default_factory=list,
        description="integration checks run on the merged tree before the target moves "
        "(commands, as a step's checks; none: the workstream lands at once, unchecked)",
    )
    batch: int = Field(
        4, ge=1, le=64,
        description="with checks: most queued merges tested together by one run of the checks "
        "(a failing batch is bisected)",
    )

    def check_list(self) -> list[Check]:
        """The integration checks, with plain strings turned into :class:`Check`."""
        return [Check(run=c) if isinstance(c, str) else c for c in self.checks]


class BestOf(_Model):
    """Best-of-N: each attempt of the step is a round of ``n`` candidate attempts run in
    parallel, each in its own worktree from the same checkpoint; the judge keeps one."""

    n: int = Field(ge=2, le=8, description="candidate attempts per round, run in parallel")
    profiles: list[str] = Field(
        default_factory=list,
        description="tool profiles of the candidates, in turn (candidate i gets profile "
        "i mod len); empty: every candidate gets the step's own profile (they tell themselves "
        "apart by {candidate} and $AIDP_CANDIDATE, e.g. to vary a seed or temperature)",
    )
    judge: str = Field(
        "checks", min_length=1,
        description="checks: every acceptance check must pass; then the fewest findings, the "
        "smallest diff, the lowest cost, the first candidate win, in that order. Or the name "
        "of a tool profile: when two or more candidates pass, it is shown their diffs and "
        "writes its choice to VERDICT.md ('WINNER: N' and 'REASON: ...')",
    )

    @model_validator(mode="after")
    def _no_gate(self) -> BestOf:
        if "manual" in self.profiles or self.judge == "manual":
            raise ValueError("a human gate (manual) cannot be a best-of candidate or judge")
        return self


class Step(_Model):
    """One tool invocation (or human gate) plus its acceptance checks."""

    id: Id
    title: str | None = None
    depends_on: list[Id] = Field(default_factory=list)
    tool: str = Field("shell", description="a tool profile name (built in: shell, manual)")
    capability: str | None = Field(
        None, description="instead of naming a profile: the capability wanted (e.g. code_edit); "
        "the registry picks the best healthy profile that has it"
    )
    language: str | None = Field(None, description="with capability: the language of the work")
    select: Literal["score", "best_success", "cheapest_passing"] = Field(
        "score", description="with capability: how the profile is picked -- score (priority, "
        "language, environment, recent success), best_success (the best success rate of the "
        "finished attempts of every run) or cheapest_passing (the lowest cost per success among "
        "the profiles that succeed often enough); see `aidp tools stats`"
    )
    run: Command | None = Field(None, description="the command for the shell adapter")
    prompt: str | None = None
    prompt_file: str | None = Field(None, description="path relative to the workstream file")
    context: list[str] = Field(default_factory=list, description="read-only context files")
    checks: list[Check | str] = Field(default_factory=list)
    timeout: Duration = 600.0
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    env: list[EnvName] = Field(default_factory=list, description="environment variable names")
    requires_change: bool = Field(
        False, description="fail with outcome no_change when the step changes no file"
    )
    fix: FixPolicy = Field(default_factory=FixPolicy)
    compensate: list[Compensation] = Field(
        default_factory=list, description="run when the step ends failed or cancelled"
    )
    budget: Budget | None = Field(None, description="what this step's attempts may spend")
    best_of: BestOf | None = Field(
        None, description="run N candidate attempts in parallel and keep the best (their "
        "budgets count together)"
    )

    @model_validator(mode="after")
    def _one_prompt(self) -> Step:
        if self.prompt is not None and self.prompt_file is not None:
            raise ValueError("give either prompt or prompt_file, not both")
        if self.best_of is not None and self.tool == "manual" and not self.best_of.profiles:
            raise ValueError("a human gate (tool: manual) cannot have best_of candidates")
        return self

    def check_list(self) -> list[Check]:
        """The acceptance checks, with plain strings turned into :class:`Check`."""
        return [Check(run=c) if isinstance(c, str) else c for c in self.checks]


class Workstream(_Model):
    """A unit of isolation: one branch, one worktree, a DAG of steps."""

    id: Id
    title: str | None = None
    base: str = Field("HEAD", description="branch or ref the workstream starts from")
    depends_on: list[Id] = Field(default_factory=list)
    scope: list[str] = Field(
        default_factory=lambda: ["**"],
        description="globs of the files the steps may change (gitignore-style: * stays in one "
        "directory, ** crosses directories)",
    )
    conflicts_with: list[Id] = Field(default_factory=list)
    scope_overlap: Literal["refuse", "allow"] = Field(
        "refuse",
        description="allow: may run beside workstreams whose scopes overlap (validate does not "
        "refuse the pair; conflicts_with still serializes); overlapping edits then show as "
        "merge conflicts",
    )
    merge: MergeSpec | None = None
    env: list[EnvName] = Field(default_factory=list, description="names passed to every step")
    compensate: list[Compensation] = Field(
        default_factory=list, description="run when the workstream ends failed or cancelled"
    )
    budget: Budget | None = Field(None, description="what this workstream's attempts may spend")
    steps: list[Step] = Field(min_length=1)


class WorkstreamFile(_Model):
    """A versioned workstream file holding one or more workstreams."""

    version: Literal[1]
    workstreams: list[Workstream] = Field(
        description="the workstreams; an empty list is a valid plan that does nothing"
    )
