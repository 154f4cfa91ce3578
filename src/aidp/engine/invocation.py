"""Invocation: running a step's tool and its acceptance checks for one attempt.

Owns what an attempt hands the tool (the prompt file, the placeholders, the
:class:`~aidp.tools.adapter.Invocation` for the profile's adapter), the acceptance checks run
after it (until one fails, with their output kept for the detectors) and the diagnostics bundle
of a failed attempt. It writes files under the run's directory only -- never the store, and it
never decides an outcome (:mod:`aidp.engine.outcome` does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from aidp.config import Settings
from aidp.core.states import AttemptKind, AttemptOutcome
from aidp.engine.diagnosis import write_bundle
from aidp.engine.outcome import CheckResult
from aidp.engine.runtime import StepRuntime, WorkstreamRuntime
from aidp.errors.finding import CheckEvidence, Finding
from aidp.exceptions import ToolError
from aidp.model.workstream import Check, Step
from aidp.process.runner import CappedLog, run_process
from aidp.tools.adapter import AdapterResult, Invocation, Usage
from aidp.tools.exchanges import recording_path
from aidp.tools.registry import get_adapter
from aidp.tools.shell import build_argv

if TYPE_CHECKING:
    from aidp.config import ToolProfile
    from aidp.state.store import Store
    from aidp.tools.gateway import Grant, Ticket, Traffic
    from aidp.tools.gateway.grant import Live

__all__ = ["CHECK_OUTPUT_BYTES", "Invoker", "prompt_text", "run_checks"]

#: Exchanges of a failed attempt summed up in its diagnostics (the last ones).
DIAGNOSTIC_EXCHANGES = 20

CHECK_OUTPUT_BYTES = 256 * 1024


def prompt_text(step: Step) -> str | None:
    """The step's own prompt (the loader resolved ``prompt_file`` relative to its file)."""
    if step.prompt is not None:
        return step.prompt
    if step.prompt_file:
        try:
            return Path(step.prompt_file).read_text(encoding="utf-8")
        except OSError:
            return None
    return None


class Invoker:
    """The executor's tool and check runs (a mixin of :class:`~aidp.engine.executor.Executor`)."""

    run_id: str
    repo: Path
    run_dir: Path
    settings: Settings
    store: Store  # None on a Dask worker: no shared rate buckets or holds there
    base_env: dict[str, str]
    cancel: threading.Event
    on_output: Callable[[str, str, bytes], None] | None
    _made_dirs: set[Path]

    def _mkdir(self, path: Path) -> None:
        if path not in self._made_dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path)


    def _placeholders(
        self, wsr: WorkstreamRuntime, step: Step, number: int, worktree: Path,
        prompt: str | None,
    ) -> dict[str, str | list[str]]:
        prompt_file = ""
        if prompt is not None:
            # one file per attempt where attempts run at once (best-of-N candidates) or the
            # prompt differs (a fix attempt's)
            shared = prompt is step.prompt and step.best_of is None
            name = f"{step.id}.md" if shared else f"{step.id}.{number}.md"
            path = self.run_dir / "prompts" / wsr.ws.id / name
            self._mkdir(path.parent)
            path.write_text(prompt, encoding="utf-8")
            prompt_file = str(path)
        return {
            "worktree": str(worktree),
            "prompt_file": prompt_file,
            "run_id": self.run_id,
            "workstream": wsr.ws.id,
            "step": step.id,
            "attempt": str(number),
            "repo": str(self.repo),
            "context_files": [str(worktree / c) for c in step.context],
        }

    def _run_tool(
        self,
        step: Step,
        wsr: WorkstreamRuntime,
        sr: StepRuntime,
        profile_name: str,
        values: dict[str, str | list[str]],
        env: dict[str, str],
        secrets: list[str],
        log: CappedLog,
        token: str,
        prompt: str | None,
        number: int,
        budget: Callable[[Usage, Sequence[Live]], str | None] | None = None,
    ) -> AdapterResult:
        """Run the step's tool through its profile's adapter (never raises for the tool).

        A model tool's requests go through the process's model gateway
        (:mod:`aidp.tools.gateway`): the result's usage and provider findings are then the
        gateway's. Before each request the gateway asks ``budget`` (this attempt's usage so
        far, the other open attempts' -> why no more may be spent, or None); a refusal stops
        the tool."""
        profile = self.settings.profile(profile_name)
        if profile is None:
            return AdapterResult(None, error=f"unknown tool profile {profile_name!r}")
        try:
            adapter = get_adapter(profile.adapter)
        except ToolError as exc:
            log.note(f"[aidp] {exc.message}")
            return AdapterResult(None, error=exc.message)
        timeout_s = step.timeout
        if "timeout" not in step.model_fields_set and profile.timeout is not None:
            timeout_s = profile.timeout
        assert wsr.worktree is not None
        worktree = wsr.worktree.path
        attempt_dir = self.run_dir / "attempts" / wsr.ws.id / f"{step.id}.{number}"
        local = profile.adapter in ("shell", "manual")  # no HOME, config or file list needed
        if not local:
            attempt_dir.mkdir(parents=True, exist_ok=True)
        sink = self.on_output
        cancel: threading.Event = self.cancel
        ticket: Ticket | None = None
        if profile.uses_gateway():
            from aidp.tools.gateway import attach, shared_gateway

            gateway = shared_gateway()
            key_env = profile.key_env()
            key = self.base_env.get(key_env) if key_env else None
            cancel = _Stop(self.cancel)
            ticket = gateway.open(self._grant(wsr, step, number, profile_name, profile, key,
                                              secrets, log, cancel, budget))
            # The tool gets the gateway's address and the attempt's token, never the key.
            profile, env = attach(ticket, profile, env, key)
            secrets = [*secrets, ticket.token]
        invocation = Invocation(
            run_id=self.run_id, ws_id=wsr.ws.id, step_id=step.id, attempt=number,
            profile_name=profile_name, profile=profile, worktree=worktree, prompt=prompt,
            prompt_file=Path(str(values["prompt_file"])) if values["prompt_file"] else None,
            scope=tuple(wsr.ws.scope), scope_files=() if local else tuple(_scope_files(wsr)),
            context_files=tuple(worktree / c for c in step.context),
            command=step.run if step.run is not None else profile.command,
            values=values, env=env, secrets=tuple(secrets), timeout_s=timeout_s,
            grace_s=self.settings.run.kill_grace, attempt_dir=attempt_dir, token=token,
            log=log, cancel=cancel,
            on_output=None if sink is None else (lambda data: sink(wsr.ws.id, step.id, data)),
            in_scope=wsr.scope.matches,
        )
        try:
            result = adapter.run(invocation)
        except Exception as exc:  # noqa: BLE001 -- an adapter bug or a plugin's: a failed attempt, not a crash
            log.note(f"[aidp] adapter {profile.adapter!r} raised {type(exc).__name__}: {exc}")
            result = AdapterResult(None, error=f"adapter {profile.adapter!r} raised "
                                   f"{type(exc).__name__}: {exc}")
        if ticket is None:
            return result
        return with_traffic(result, gateway.close(ticket), log)

    def _grant(self, wsr: WorkstreamRuntime, step: Step, number: int, profile_name: str,
               profile: ToolProfile, key: str | None, secrets: list[str], log: CappedLog,
               stop: threading.Event,
               budget: Callable[[Usage, Sequence[Live]], str | None] | None) -> Grant:
        """What the attempt may do through the gateway: the real endpoint and key, the
        profile's prices, the shared rate-limit buckets and Retry-After holds of the store, the
        budget check (a refusal sets ``stop``), the recording."""
        # imported here: the HTTP stack is not start-up's to pay for a run of commands
        from aidp.state.rate_buckets import RateBook, StoreHolds, StoreLimiter
        from aidp.tools.adapters._common import DEFAULT_ENDPOINT
        from aidp.tools.gateway import Grant, Price

        def refused(reason: str) -> None:
            log.note(f"[aidp] gateway: {reason}; stopping the tool")
            stop.set()

        limits = profile.rate_limit
        return Grant(
            upstream=profile.base_url or DEFAULT_ENDPOINT, key=key, profile=profile_name,
            rate_limit=limits,
            price=Price(profile.prices.input, profile.prices.output,
                        profile.prices.cached_input) if profile.prices else None,
            budget=budget, on_refused=refused,
            tags=(self.run_id, wsr.ws.id, step.id, profile_name),
            limiter=StoreLimiter(RateBook(self.store), profile_name,
                                 limits.requests_per_minute, limits.tokens_per_minute)
            if self.store is not None and (limits.requests_per_minute
                                           or limits.tokens_per_minute) else None,
            holds=StoreHolds(self.store) if self.store is not None else None,
            record=recording_path(self.repo, self.run_id, wsr.ws.id, step.id, number),
            mask=tuple(secrets))

    def _run_checks(
        self,
        step: Step,
        values: dict[str, str | list[str]],
        env: dict[str, str],
        secrets: list[str],
        log: CappedLog,
        worktree: Path,
        token: str,
    ) -> tuple[list[CheckResult], list[CheckEvidence]]:
        """Run the acceptance checks in order until one fails; their results and output."""
        return run_checks(step.check_list(), values, env, secrets, log, worktree, token,
                          grace_s=self.settings.run.kill_grace, cancel=self.cancel)

    def _write_diagnostics(
        self, wsr: WorkstreamRuntime, step: Step, number: int, kind: AttemptKind, profile_name: str,
        result: AdapterResult, outcome: AttemptOutcome, reason: str | None,
        failure_class: str | None, findings: list[Finding], detector_failures: tuple[str, ...],
        env_names: list[str], log_path: Path, worktree: Path,
        breaker_state: dict[str, str] | None = None,
    ) -> Path | None:
        """Keep the failed attempt's diagnostics bundle; None if it could not be written."""
        profile = self.settings.profile(profile_name)
        path = self.run_dir / "diagnostics" / wsr.ws.id / f"{step.id}.{number}.json"
        data = {
            "run_id": self.run_id, "workstream": wsr.ws.id, "step": step.id,
            "attempt": number, "kind": kind.value, "profile": profile_name,
            "adapter": profile.adapter if profile else None, "tool_version": result.version,
            "command_line": list(result.command_line), "env_names": sorted(set(env_names)),
            "outcome": outcome.value, "reason": reason, "failure_class": failure_class,
            "exit_code": result.exit_code, "signal": result.signal,
            "timed_out": result.timed_out, "duration_s": round(result.duration_s, 3),
            "findings": [f.to_dict() for f in findings],
            "detector_failures": list(detector_failures),
            "usage": result.usage.to_dict(), "log_path": str(log_path),
            "breaker": breaker_state,
        }
        exchanges = recording_path(self.repo, self.run_id, wsr.ws.id, step.id, number)
        if exchanges.is_file():
            from aidp.tools.exchanges import summaries

            data["exchanges_path"] = str(exchanges)
            data["exchanges"] = summaries(exchanges, last=DIAGNOSTIC_EXCHANGES)
        try:
            return write_bundle(path, data, worktree=worktree, log_path=log_path)
        except OSError:
            return None


def run_checks(
    checks: Sequence[Check],
    values: dict[str, str | list[str]],
    env: dict[str, str],
    secrets: list[str],
    log: CappedLog,
    worktree: Path,
    token: str,
    *,
    grace_s: float,
    cancel: threading.Event,
) -> tuple[list[CheckResult], list[CheckEvidence]]:
    """Run ``checks`` in ``worktree`` in order until one fails; their results and output.

    Each runs through the one process runner (its own session, killed as a group at its
    ``timeout`` or on ``cancel``, output masked of ``secrets`` into ``log``); the last
    :data:`CHECK_OUTPUT_BYTES` of each one's output are kept for the detectors. A step's
    acceptance checks and a merge queue's integration checks both run here."""
    results: list[CheckResult] = []
    evidence: list[CheckEvidence] = []
    for index, check in enumerate(checks, 1):
        command = check.run if isinstance(check.run, str) else " ".join(check.run)
        name = check.name or command
        log.note(f"check {index}: {name}")
        output = _Tail(CHECK_OUTPUT_BYTES)
        try:
            res = run_process(
                build_argv(check.run, values), cwd=worktree, env=env, timeout_s=check.timeout,
                log=log, grace_s=grace_s, mask=secrets,
                cancel=cancel, token=token,  # resume finds a check by the same token
                on_output=output.feed,
            )
        except ToolError as exc:
            results.append(CheckResult(name, None, error=exc.message))
            break
        result = CheckResult(name, res.exit_code, res.signal, res.timed_out, res.cancelled)
        results.append(result)
        evidence.append(CheckEvidence(
            name=name, command=command, exit_code=res.exit_code, signal=res.signal,
            timed_out=res.timed_out, output=output.text(), worktree=worktree))
        if res.exit_code != 0:
            break
    return results, evidence


class _Stop(threading.Event):
    """An attempt's own stop (a budget refusal), also set while the run's ``parent`` is."""

    def __init__(self, parent: threading.Event) -> None:
        super().__init__()
        self.parent = parent

    def is_set(self) -> bool:
        return super().is_set() or self.parent.is_set()


def with_traffic(result: AdapterResult, traffic: Traffic, log: CappedLog) -> AdapterResult:
    """``result`` with what the gateway saw: the exact usage (the tool's own report stays only
    for a cost the gateway could not price), the provider's errors, a budget refusal."""
    usage = result.usage
    if traffic.exchanges:
        cost = traffic.usage.cost_usd or result.usage.cost_usd
        usage = replace(traffic.usage, cost_usd=cost)
        log.note(f"[aidp] gateway: {traffic.usage.requests} model requests, "
                 f"{traffic.usage.input_tokens} input + {traffic.usage.output_tokens} output "
                 f"tokens, {traffic.latency_s:.2f} s waiting for the provider")
    from aidp.tools.adapters.openai_api import is_api_error

    # The gateway's word on a provider error replaces the tool's report of it.
    own = result.findings if not traffic.findings else tuple(
        f for f in result.findings if not is_api_error(f))
    return replace(result, usage=usage, via_gateway=True, budget_exceeded=traffic.refused,
                   findings=(*own, *traffic.findings), latency_s=traffic.latency_s)


class _Tail:
    """The last ``cap`` bytes of a stream (a check's output, for the detectors)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            del self.data[: len(self.data) - self.cap]

    def text(self) -> str:
        return bytes(self.data[-self.cap:]).decode("utf-8", "replace")


def _scope_files(wsr: WorkstreamRuntime) -> list[str]:
    """The tracked files of the worktree inside the scope (aider's editable files)."""
    assert wsr.worktree is not None
    try:
        index = wsr.worktree.pygit.index
        return [entry.path for entry in index if wsr.scope.matches(entry.path)]
    except Exception:  # noqa: BLE001 -- a broken index: the adapter works without the list
        return []
