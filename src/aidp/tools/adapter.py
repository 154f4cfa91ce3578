"""The adapter interface: one small protocol every tool driver implements.

An adapter drives one kind of tool (shell, manual, aider, codex, openai, or a third-party one from
the entry-point group ``aidp.adapters``) through one attempt. Adapters never import the engine:
they get everything in an :class:`Invocation` and answer with an :class:`AdapterResult`. The
engine, not the adapter, stages, scope-checks and commits the changes afterwards.

Rules for every adapter: run processes through :func:`aidp.process.runner.run_process` (own
session, stdin ``/dev/null``, wall-clock timeout killing the group, ``cancel`` honoured, output
masked into ``log``), keep per-attempt HOME / config under ``attempt_dir`` (never the user's), pass
secrets by environment only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aidp.errors.finding import Finding

if TYPE_CHECKING:
    from aidp.config import ToolProfile
    from aidp.process.capped_log import CappedLog

__all__ = ["OFFLINE_ENV", "Adapter", "AdapterResult", "Invocation", "ProbeResult", "ToolEvent",
           "Usage"]

#: Set in the environment a probe gets when ``aidp tools check --offline`` forbids requests
#: beyond 127.0.0.1.
OFFLINE_ENV = "AIDP_PROBE_OFFLINE"


@dataclass(frozen=True)
class Usage:
    """Tokens and cost of one attempt (zeros when the tool reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens, self.requests + other.requests,
            self.cost_usd + other.cost_usd,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_tokens": self.cached_tokens, "requests": self.requests,
                "cost_usd": self.cost_usd}


@dataclass(frozen=True)
class ToolEvent:
    """One thing the tool reported: ``kind`` is e.g. ``command``, ``file_change``, ``message``,
    ``usage``, ``error``; ``data`` is small JSON-able detail."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    """Everything an adapter needs for one attempt.

    ``prompt`` is the full text for this attempt (a fix attempt's prompt already carries the
    findings); ``prompt_file`` holds the same text on disk. ``scope_files`` are the tracked files
    of the worktree that lie inside the workstream's scope (aider gets them as editable files);
    ``context_files`` are read-only. ``env`` is the child's whole environment (minimal, with
    the declared secret names); ``secrets`` their values, to be masked. ``attempt_dir`` is a
    fresh per-attempt directory outside the worktree for HOME, config and history files
    (created for every adapter but ``shell`` and ``manual``, which get no ``scope_files``
    either: listing the index costs time on large repositories).
    """

    run_id: str
    ws_id: str
    step_id: str
    attempt: int
    profile_name: str
    profile: ToolProfile
    worktree: Path
    prompt: str | None
    prompt_file: Path | None
    scope: Sequence[str]
    scope_files: Sequence[str]
    context_files: Sequence[Path]
    command: str | list[str] | None  # the step's `run`, else the profile's `command`
    values: Mapping[str, str | list[str]]  # the shell placeholders
    env: Mapping[str, str]
    secrets: Sequence[str]
    timeout_s: float
    grace_s: float
    attempt_dir: Path
    token: str
    log: CappedLog
    cancel: threading.Event
    on_output: Callable[[bytes], None] | None = None
    in_scope: Callable[[str], bool] | None = None  # the workstream's scope matcher


@dataclass(frozen=True)
class AdapterResult:
    """How the attempt's tool ended, plus the evidence the adapter collected.

    ``error`` means the tool could not be started at all (missing binary, bad template):
    permanent. ``findings`` are the adapter's own (e.g. Codex ``turn.failed``, a malformed or
    out-of-scope edit of the OpenAI adapter); detectors add theirs from the log afterwards.
    """

    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None
    duration_s: float = 0.0
    pid: int | None = None
    events: tuple[ToolEvent, ...] = ()
    findings: tuple[Finding, ...] = ()
    usage: Usage = field(default_factory=Usage)
    version: str | None = None
    command_line: tuple[str, ...] = ()  # as run, secrets masked (for diagnostics)
    awaiting_approval: bool = False  # the manual adapter: a human must decide
    #: Lines of the model's own text that the tool's output repeats (Aider echoes each reply):
    #: the model quoting an error is not the tool reporting one, so detectors never read them.
    echoed: frozenset[str] = frozenset()
    #: The tool's model requests went through aidp's gateway: its findings (detector
    #: ``gateway``) are the provider's errors, exactly; the output's guesses are not needed.
    via_gateway: bool = False
    #: Why the gateway refused a request: a budget is spent (the attempt ends
    #: ``budget_exceeded``).
    budget_exceeded: str | None = None
    #: Seconds the tool's model requests waited for the provider (summed; the gateway's).
    latency_s: float = 0.0


@dataclass(frozen=True)
class ProbeResult:
    """``aidp tools check``: is the tool there, which version, does its endpoint answer."""

    profile: str
    ok: bool
    version: str | None = None
    detail: str = ""
    canary_ok: bool | None = None  # None: no endpoint asked (see ``not_checked``)
    latency_s: float | None = None
    # why the endpoint was not asked, when the profile has one (no key, --offline): never
    # shown as a plain "ok"; with ``ok`` False the tool cannot work as configured
    not_checked: str | None = None


class Adapter(Protocol):
    """Drives one kind of tool. Implementations are stateless and shared between threads."""

    name: str

    def run(self, invocation: Invocation) -> AdapterResult:
        """Run one attempt; honour ``invocation.cancel`` and ``timeout_s``; never raise for a
        tool's failure (report it in the result)."""
        ...

    def probe(self, profile_name: str, profile: ToolProfile, env: Mapping[str, str]) -> ProbeResult:
        """Check that the tool can run (binary, version, a canary request where cheap).

        ``env[OFFLINE_ENV]`` set (``aidp tools check --offline``): no request may leave
        127.0.0.1; say why in ``not_checked`` instead."""
        ...
