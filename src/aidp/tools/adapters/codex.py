"""The ``codex`` adapter: drives the real Codex CLI (npm ``@openai/codex``) through one attempt.

``codex exec --json --strict-config --ephemeral -C <worktree> <prompt>`` with stdin from
``/dev/null`` and a per-attempt ``CODEX_HOME`` under ``invocation.attempt_dir`` holding a
generated ``config.toml`` (:func:`codex_config`): a custom model provider at the profile's
``base_url`` speaking the Responses API, the key by environment-variable name (``env_key``),
few retries (aidp retries), a stream idle timeout, analytics / feedback / agents off and every
``[features]`` switch that reaches remote hosts off, ``sandbox_mode`` from ``profile.sandbox``,
and a ``[shell_environment_policy]`` that keeps the provider key and every secret aidp masks out
of the commands Codex runs for the model (every variable holding one, ``OPENAI_API_KEY``,
``*KEY*``/``*SECRET*``/``*TOKEN*``).

Codex prints JSONL on stdout; :class:`CodexOutput` turns it into
:class:`~aidp.tools.adapter.ToolEvent` s: ``command`` (command_execution), ``file_change``
(one per changed path), ``message`` (agent_message), ``usage`` (turn.completed), ``error``
(error items, ``error`` events, turn.failed). Codex does not commit; aidp checkpoints.

The npm ``codex`` is a node wrapper around a native binary: run_process kills the whole process
group (and anything carrying the attempt's token), so the native binary never outlives a
timeout. A hang before response headers has no timeout inside Codex at all: aidp's wall clock
ends it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aidp.config import ToolProfile
from aidp.exceptions import ToolError
from aidp.process.runner import TOKEN_ENV, kill_by_token, run_process
from aidp.tools.adapter import AdapterResult, Invocation, ProbeResult, ToolEvent, Usage
from aidp.tools.adapters._common import (
    LineReader,
    api_key,
    masked,
    not_found,
    probe_cli,
    resolve_command,
)

__all__ = [
    "PROVIDER_ID",
    "CodexAdapter",
    "CodexOutput",
    "codex_argv",
    "codex_config",
    "codex_prompt",
    "stream_idle_timeout_ms",
]

#: The id of the model provider aidp writes into Codex's config.toml.
PROVIDER_ID = "aidp"
#: Retries of one request / one stream inside Codex (aidp's retry policy does the rest).
REQUEST_MAX_RETRIES = 0
STREAM_MAX_RETRIES = 0
#: Codex's stream idle timeout is this share of the step's timeout, within these bounds.
IDLE_TIMEOUT_SHARE = 0.25
MIN_IDLE_TIMEOUT_S = 2.0
MAX_IDLE_TIMEOUT_S = 300.0
#: Feature switches that make Codex contact remote hosts at start-up or retry forever.
DISABLED_FEATURES = (
    "plugins", "remote_plugin", "apps", "goals", "image_generation", "tool_suggest",
    "unbounded_connection_retries", "shell_snapshot",
)
#: Glob patterns (case-insensitive) of variables the commands Codex runs for the model never
#: see: Codex's own default excludes, applied explicitly (its ``ignore_default_excludes``
#: defaults to true, i.e. off).
SECRET_ENV_PATTERNS = ("*KEY*", "*SECRET*", "*TOKEN*")
#: Variables always kept from those commands by exact name (the built-in provider's key).
ALWAYS_EXCLUDED_ENV = ("OPENAI_API_KEY",)
#: Error items Codex emits on every run for a model it does not know (harmless).
_HARMLESS_ERRORS = ("model metadata",)
#: Longest prompt passed on the command line (Linux caps one argument at 128 KiB); a longer
#: one stays in its file and Codex is told to read it.
MAX_ARGV_PROMPT_BYTES = 100_000
#: Longest command output kept in a ``command`` event (the log holds all of it).
MAX_EVENT_OUTPUT = 2000


def _toml(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def stream_idle_timeout_ms(step_timeout_s: float) -> int:
    """Codex's ``stream_idle_timeout_ms`` for a step timeout (seconds)."""
    share = step_timeout_s * IDLE_TIMEOUT_SHARE
    return round(min(max(share, MIN_IDLE_TIMEOUT_S), MAX_IDLE_TIMEOUT_S) * 1000)


def codex_config(profile: ToolProfile, *, timeout_s: float, exclude_env: Sequence[str] = (),
                 set_env: Mapping[str, str] | None = None) -> str:
    """The text of ``$CODEX_HOME/config.toml`` for ``profile`` and a step timeout (seconds).

    With a ``base_url`` the model goes through a custom provider (``OPENAI_BASE_URL`` on the
    built-in one does not reach a local server); without one, Codex's built-in ``openai``
    provider is used.

    ``[shell_environment_policy]`` keeps the provider key out of the commands Codex runs for
    the model (Codex itself still reads it for its requests): the profile's ``api_key_env``,
    ``OPENAI_API_KEY`` and ``exclude_env`` by exact name, plus the ``*KEY*`` / ``*SECRET*`` /
    ``*TOKEN*`` patterns; ``set_env`` is put back after the excludes (aidp's process token,
    which the ``*TOKEN*`` pattern would drop).
    """
    if not profile.model:
        raise ToolError("a codex profile needs a model", hint="set model = \"...\" in the profile")
    top: list[tuple[str, str | int | bool]] = [
        ("model", profile.model),
        ("model_provider", PROVIDER_ID if profile.base_url else "openai"),
        ("approval_policy", "never"),
        ("sandbox_mode", profile.sandbox),
        ("check_for_update_on_startup", False),
        ("web_search", "disabled"),
    ]
    lines = [f"{key} = {_toml(value)}" for key, value in top]
    if profile.base_url:
        provider: list[tuple[str, str | int | bool]] = [
            ("name", PROVIDER_ID), ("base_url", profile.base_url), ("wire_api", "responses"),
        ]
        if profile.api_key_env:
            provider.append(("env_key", profile.api_key_env))
        provider += [
            ("request_max_retries", REQUEST_MAX_RETRIES),
            ("stream_max_retries", STREAM_MAX_RETRIES),
            ("stream_idle_timeout_ms", stream_idle_timeout_ms(timeout_s)),
        ]
        lines += ["", f"[model_providers.{PROVIDER_ID}]"]
        lines += [f"{key} = {_toml(value)}" for key, value in provider]
    for table in ("analytics", "feedback", "agents"):
        lines += ["", f"[{table}]", "enabled = false"]
    lines += ["", "[features]"] + [f"{name} = false" for name in DISABLED_FEATURES]
    names = [*([profile.api_key_env] if profile.api_key_env else []), *ALWAYS_EXCLUDED_ENV,
             *exclude_env]
    exclude = list(dict.fromkeys([*names, *SECRET_ENV_PATTERNS]))
    lines += ["", "[shell_environment_policy]", 'inherit = "all"',
              "ignore_default_excludes = false",
              f"exclude = [{', '.join(_toml(name) for name in exclude)}]"]
    pairs = ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in sorted((set_env or {}).items()))
    lines.append(f"set = {{ {pairs} }}" if pairs else "set = {}")
    return "\n".join(lines) + "\n"


def codex_prompt(prompt: str, prompt_file: Path) -> str:
    """The prompt argument: the prompt itself, or -- when too long for one argument -- an
    instruction to read it from ``prompt_file`` (which must then hold it)."""
    if len(prompt.encode()) <= MAX_ARGV_PROMPT_BYTES:
        return prompt
    return (f"Your task is too long to pass here; it is in the file {prompt_file}. Read that "
            "whole file first, then do what it says.")


def codex_argv(binary: list[str], invocation: Invocation, prompt: str) -> list[str]:
    """The whole Codex command line for one attempt (no secrets in it)."""
    return [*binary, "exec", "--json", "--strict-config", "--ephemeral",
            "-C", str(invocation.worktree), *invocation.profile.args, "--", prompt]


class CodexOutput:
    """Reads Codex's JSONL as it comes (non-JSON lines -- warnings on stderr -- are skipped).

    :attr:`events` lists the recognized events in order, :attr:`usage` sums ``turn.completed``
    usage, :attr:`turn_failed` tells whether a turn failed, :attr:`thread_id` is Codex's id.
    """

    #: At most this many events are kept (a runaway loop of commands stays bounded).
    MAX_EVENTS = 500

    def __init__(self, worktree: Path | None = None) -> None:
        self.worktree = worktree
        self.events: list[ToolEvent] = []
        self.usage = Usage()
        self.turn_failed = False
        self.thread_id: str | None = None
        self._reader = LineReader(self._line)

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def close(self) -> None:
        self._reader.close()

    def _add(self, kind: str, data: dict[str, Any]) -> None:
        if len(self.events) < self.MAX_EVENTS:
            self.events.append(ToolEvent(kind, data))

    def _line(self, line: str) -> None:
        line = line.strip()
        if not line.startswith("{"):
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self.handle(event)

    def handle(self, event: dict[str, Any]) -> None:
        """Take one decoded JSONL event."""
        kind = event.get("type")
        if kind == "thread.started":
            self.thread_id = _text(event.get("thread_id")) or None
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            self._item(event["item"])
        elif kind == "turn.completed":
            raw = event.get("usage")
            usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
            turn = Usage(input_tokens=_int(usage.get("input_tokens")),
                         output_tokens=_int(usage.get("output_tokens")),
                         cached_tokens=_int(usage.get("cached_input_tokens")), requests=1)
            self.usage += turn
            self._add("usage", turn.to_dict())
        elif kind == "turn.failed":
            self.turn_failed = True
            error = event.get("error")
            message = _text(error.get("message") if isinstance(error, dict) else error)
            self._add("error", {"message": message[:2000], "source": "turn.failed"})
        elif kind == "error":
            self._add("error", {"message": _text(event.get("message"))[:2000],
                                "source": "error"})

    def _relative(self, path: str) -> str:
        """A path inside the worktree as a relative POSIX path; others unchanged."""
        if self.worktree is None or not os.path.isabs(path):
            return path
        for root in {str(self.worktree), os.path.realpath(self.worktree)}:
            if path.startswith(root.rstrip("/") + "/"):
                return path[len(root.rstrip("/")) + 1:]
        return path

    def _item(self, item: dict[str, Any]) -> None:
        item_type = item.get("type")
        if item_type == "command_execution":
            self._add("command", {
                "command": _text(item.get("command")),
                "exit_code": item.get("exit_code"),
                "status": _text(item.get("status")),
                "output": _text(item.get("aggregated_output"))[-MAX_EVENT_OUTPUT:],
            })
        elif item_type == "file_change":
            changes = item.get("changes")
            for change in changes if isinstance(changes, list) else ():
                if isinstance(change, dict):
                    self._add("file_change", {"path": self._relative(_text(change.get("path"))),
                                              "kind": _text(change.get("kind"))})
        elif item_type == "agent_message":
            self._add("message", {"text": _text(item.get("text"))[:MAX_EVENT_OUTPUT]})
        elif item_type == "error":
            message = _text(item.get("message"))
            harmless = any(mark in message.lower() for mark in _HARMLESS_ERRORS)
            self._add("warning" if harmless else "error",
                      {"message": message[:2000], "source": "item"})


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class CodexAdapter:
    """Runs ``codex exec`` for one attempt (see the module docstring)."""

    name = "codex"

    def run(self, invocation: Invocation) -> AdapterResult:
        """Run Codex on the worktree with the attempt's prompt; never raises for its failure."""
        profile = invocation.profile
        binary = resolve_command(profile.command, "codex", invocation.env)
        if binary is None:
            return AdapterResult(exit_code=None, error=not_found("codex", profile.command))
        prompt = invocation.prompt
        if prompt is None and invocation.prompt_file is not None:
            prompt = invocation.prompt_file.read_text(encoding="utf-8")
        if not prompt:
            return AdapterResult(exit_code=None, error="a codex step needs a prompt")
        key = api_key(profile.api_key_env, invocation.env)
        # every variable holding the key or any other secret aidp masks (other profiles' keys,
        # the step's declared secrets): the commands Codex runs for the model see none of them
        hidden = {v for v in (key, *invocation.secrets) if v}
        aliases = [name for name, value in invocation.env.items() if value in hidden]
        try:
            config = codex_config(profile, timeout_s=invocation.timeout_s, exclude_env=aliases,
                                  set_env={TOKEN_ENV: invocation.token})
        except ToolError as exc:
            return AdapterResult(exit_code=None, error=exc.message)
        codex_home = invocation.attempt_dir / "codex-home"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(config, encoding="utf-8")
        home = invocation.attempt_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = dict(invocation.env)
        env.update({"CODEX_HOME": str(codex_home), "HOME": str(home), "NO_COLOR": "1"})
        if not profile.base_url and key:
            env["OPENAI_API_KEY"] = key  # the built-in provider reads this name
        secrets = [*invocation.secrets, *([key] if key else [])]
        prompt_file = invocation.prompt_file
        if prompt_file is None or len(prompt.encode()) > MAX_ARGV_PROMPT_BYTES:
            prompt_file = invocation.attempt_dir / "prompt.md"
            prompt_file.write_text(prompt, encoding="utf-8")
        argv = codex_argv(binary, invocation, codex_prompt(prompt, prompt_file))
        shown = masked([*argv[:-1], _short(prompt)], secrets)
        output = CodexOutput(invocation.worktree)

        def on_output(data: bytes) -> None:
            output.feed(data)
            if invocation.on_output is not None:
                invocation.on_output(data)

        try:
            result = run_process(
                argv, cwd=invocation.worktree, env=env, timeout_s=invocation.timeout_s,
                grace_s=invocation.grace_s, log=invocation.log, mask=secrets,
                on_output=on_output, cancel=invocation.cancel, token=invocation.token,
            )
        except ToolError as exc:
            return AdapterResult(exit_code=None, error=exc.message, command_line=shown)
        output.close()
        # Codex starts helpers in sessions of their own (a shell snapshot, commands it runs):
        # they carry the attempt's token, so nothing of this attempt outlives it.
        kill_by_token(invocation.token)
        if result.timed_out:
            invocation.log.note(f"[aidp] codex timed out after {invocation.timeout_s:g} s")
        return AdapterResult(
            exit_code=result.exit_code, signal=result.signal, timed_out=result.timed_out,
            cancelled=result.cancelled, duration_s=result.duration_s, pid=result.pid,
            events=tuple(output.events), usage=output.usage, command_line=shown,
        )

    def probe(self, profile_name: str, profile: ToolProfile, env: Mapping[str, str]) -> ProbeResult:
        """``codex --version``, then ``GET /models`` at its endpoint (see :func:`probe_cli`)."""
        # Codex's own provider needs a key; a custom one (base_url) only when it names one
        # (env_key: Codex refuses to start without the variable)
        return probe_cli(profile_name, profile, env, "codex",
                         key_needed=not profile.base_url or bool(profile.api_key_env))


def _short(prompt: str) -> str:
    return prompt if len(prompt) <= 200 else prompt[:197] + "..."
