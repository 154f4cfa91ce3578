"""The ``aider`` adapter: drives the real Aider CLI (PyPI ``aider-chat``) through one attempt.

Aider lives in its own environment (``scripts/setup_ai_tools.sh``); the profile's ``command``
names the binary (default: ``aider`` on PATH, then ``.tools/bin/aider`` of a source checkout).

Per attempt, everything Aider writes goes under ``invocation.attempt_dir``, outside the worktree:
a throwaway ``HOME`` (Aider writes ``~/.aider/``), the chat and input history files, and a model
metadata file describing the model (without it, Aider downloads a price list at start-up). The
prompt goes in with ``--message-file``, the scope's files as editable files, context files with
``--read``. Aider does not commit (``--no-auto-commits --no-dirty-commits``): aidp checkpoints.
The API key reaches Aider only as ``OPENAI_API_KEY`` in its environment.

**Aider's exit code means nothing** -- it exits 0 after 429s, a dead server, timeouts and
failed edits. The result reports it, plus what the output says: ``Tokens: ... Cost: ...`` lines
become :class:`~aidp.tools.adapter.Usage`, ``Applied edit to F`` a ``file_change`` event, and
error-looking lines ``error`` events; detectors classify the log afterwards.

A timeout or cancel sends SIGINT first (Aider's Ctrl-C), then kills the process group.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aidp.config import ToolProfile
from aidp.exceptions import ToolError
from aidp.process.runner import kill_by_token, run_process
from aidp.tools.adapter import AdapterResult, Invocation, ProbeResult, ToolEvent, Usage
from aidp.tools.adapters._common import (
    LineReader,
    api_key,
    key_variable,
    masked,
    not_found,
    probe_cli,
    resolve_command,
)

__all__ = [
    "LLM_HISTORY",
    "AiderAdapter",
    "AiderOutput",
    "aider_argv",
    "aider_model",
    "editable_files",
    "model_metadata",
    "parse_tokens",
    "request_timeout_s",
]

#: Aider's own per-request timeout is this share of the step's timeout (it retries after one),
#: so a hanging endpoint shows up in the output as "timed out" before aidp kills Aider.
REQUEST_TIMEOUT_SHARE = 0.15
MIN_REQUEST_TIMEOUT_S = 1.0
MAX_REQUEST_TIMEOUT_S = 600.0
#: A scope holding more files than this (a default ``**`` scope on a real repository) is not
#: handed to Aider as editable files -- that would send the whole repository with every
#: request; Aider then adds the files the prompt and the model name (``--yes-always``).
MAX_EDITABLE_FILES = 25
#: Aider's --llm-history-file in the attempt directory: the model's replies, verbatim.
LLM_HISTORY = "aider.llm.history"
#: Context window written into the model metadata when the profile says nothing more.
DEFAULT_MAX_INPUT_TOKENS = 128_000
DEFAULT_MAX_OUTPUT_TOKENS = 8192

#: Flags that keep Aider non-interactive and offline apart from the model endpoint.
FIXED_FLAGS = (
    "--yes-always", "--no-stream", "--no-pretty", "--no-fancy-input", "--no-show-model-warnings",
    "--no-check-update", "--analytics-disable", "--no-show-release-notes", "--no-gitignore",
    "--map-tokens", "0", "--no-detect-urls", "--no-suggest-shell-commands",
    "--no-restore-chat-history", "--no-auto-commits", "--no-dirty-commits",
)

_NUMBER = r"[\d.,]+[kKmM]?"
_TOKENS_RE = re.compile(
    rf"Tokens: (?P<sent>{_NUMBER}) sent"
    rf"(?:, (?P<cache_write>{_NUMBER}) cache write)?"
    rf"(?:, (?P<cache_hit>{_NUMBER}) cache hit)?"
    rf", (?P<received>{_NUMBER}) received\."
    r"(?: Cost: \$(?P<message>[\d.,]+) message, \$(?P<session>[\d.,]+) session\.)?"
)
_VERSION_RE = re.compile(r"^Aider v(?P<version>\d+\.\d+\S*)")
_APPLIED_RE = re.compile(r"^Applied edit to (?P<path>.+?)\s*$")
#: Lines worth an ``error`` event: litellm exceptions, retries, failed edits, reflections.
_ERROR_RE = re.compile(
    r"litellm\.\w+(Error|Exception)|\w+Error:|Retrying in [\d.]+ seconds|timed out|"
    r"rate limit|Connection error|reflections allowed|did not conform to the edit format|"
    r"Failed to apply edit|SearchReplaceNoExactMatch|Unable to|No LLM provider|API key",
    re.IGNORECASE,
)


def parse_tokens(text: str) -> int:
    """An Aider token count (``950``, ``1.2k``, ``12k``, ``1.5M``) as an integer."""
    text = text.replace(",", "")
    scale = 1
    if text[-1] in "kK":
        scale, text = 1000, text[:-1]
    elif text[-1] in "mM":
        scale, text = 1_000_000, text[:-1]
    return round(float(text) * scale)


class AiderOutput:
    """Reads Aider's output as it comes: usage, version, applied edits, error lines.

    Feed it masked output pieces with :meth:`feed`; :attr:`usage` sums every ``Tokens:`` line
    (one per model request), :attr:`events` lists what was recognized, in order.
    """

    #: At most this many ``error`` events are kept (a retry loop repeats the same lines).
    MAX_ERROR_EVENTS = 50

    def __init__(self) -> None:
        self.usage = Usage()
        self.version: str | None = None
        self.events: list[ToolEvent] = []
        self._errors = 0
        self._reader = LineReader(self._line)

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def close(self) -> None:
        self._reader.close()

    def _line(self, line: str) -> None:
        if (match := _TOKENS_RE.search(line)) is not None:
            usage = Usage(
                input_tokens=parse_tokens(match["sent"]),
                output_tokens=parse_tokens(match["received"]),
                cached_tokens=parse_tokens(match["cache_hit"]) if match["cache_hit"] else 0,
                requests=1,
                cost_usd=float(match["message"].replace(",", "")) if match["message"] else 0.0,
            )
            self.usage += usage
            self.events.append(ToolEvent("usage", usage.to_dict()))
        elif self.version is None and (match := _VERSION_RE.match(line)) is not None:
            self.version = match["version"]
        elif (match := _APPLIED_RE.match(line)) is not None:
            self.events.append(ToolEvent("file_change", {"path": match["path"], "kind": "update"}))
        elif _ERROR_RE.search(line) is not None and self._errors < self.MAX_ERROR_EVENTS:
            self._errors += 1
            self.events.append(ToolEvent("error", {"message": line.strip()[:500]}))


def aider_model(profile: ToolProfile) -> str:
    """The model name Aider gets: the profile's, prefixed ``openai/`` when it has no provider."""
    if not profile.model:
        raise ToolError("an aider profile needs a model", hint="set model = \"...\" in the profile")
    return profile.model if "/" in profile.model else f"openai/{profile.model}"


def model_metadata(model: str) -> dict[str, Any]:
    """Aider's model metadata for ``model``: an OpenAI-compatible chat model with zero costs."""
    return {model: {
        "max_tokens": DEFAULT_MAX_OUTPUT_TOKENS,
        "max_input_tokens": DEFAULT_MAX_INPUT_TOKENS,
        "max_output_tokens": DEFAULT_MAX_OUTPUT_TOKENS,
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
        "litellm_provider": "openai",
        "mode": "chat",
    }}


def request_timeout_s(step_timeout_s: float) -> float:
    """Aider's ``--timeout`` (seconds per model request) for a step timeout."""
    share = step_timeout_s * REQUEST_TIMEOUT_SHARE
    return round(min(max(share, MIN_REQUEST_TIMEOUT_S), MAX_REQUEST_TIMEOUT_S), 1)


def aider_argv(
    binary: list[str], invocation: Invocation, *, message_file: Path, metadata_file: Path | None,
) -> list[str]:
    """The whole Aider command line for one attempt (no secrets in it)."""
    profile = invocation.profile
    attempt_dir = invocation.attempt_dir
    argv = [*binary, "--model", aider_model(profile)]
    if profile.base_url:
        argv += ["--openai-api-base", profile.base_url]
    if metadata_file is not None:
        argv += ["--model-metadata-file", str(metadata_file)]
    argv += FIXED_FLAGS
    argv += ["--chat-history-file", str(attempt_dir / "aider.chat.history.md"),
             "--input-history-file", str(attempt_dir / "aider.input.history"),
             "--llm-history-file", str(attempt_dir / LLM_HISTORY)]
    if "--edit-format" not in profile.args:
        argv += ["--edit-format", profile.edit_format]
    if "--timeout" not in profile.args:
        argv += ["--timeout", f"{request_timeout_s(invocation.timeout_s):g}"]
    for path in invocation.context_files:
        argv += ["--read", str(path)]
    argv += profile.args
    argv += ["--message-file", str(message_file)]
    files = editable_files(invocation)
    argv += ["--", *files] if files else []
    return argv


def model_lines(llm_history: Path) -> frozenset[str]:
    """The lines of the model's replies, stripped, from Aider's ``--llm-history-file``.

    Aider prints each reply into its output (``--no-pretty``: verbatim; ``COLUMNS`` keeps rich
    from wrapping it) and logs it there as ``ASSISTANT <line>`` lines (io.log_llm_history,
    utils.format_content). Its own messages -- errors, the reflection limit, a failed SEARCH
    block -- are never ``ASSISTANT`` lines (a reflection goes back to the model as ``USER``), so
    the detectors can skip what the model wrote: a reply quoting "401 Unauthorized" is not the
    provider refusing. (Aider's own line is skipped too if the model wrote the very same line;
    a failing provider sends no reply to write it in.)
    """
    try:
        text = llm_history.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(line for raw in text.splitlines() if raw.startswith("ASSISTANT ")
                     and (line := raw[len("ASSISTANT "):].strip()))


def editable_files(invocation: Invocation) -> list[str]:
    """The scope's files Aider gets as editable: all of them, or none past MAX_EDITABLE_FILES."""
    files = list(invocation.scope_files)
    return files if len(files) <= MAX_EDITABLE_FILES else []


class AiderAdapter:
    """Runs Aider for one attempt (see the module docstring)."""

    name = "aider"

    def run(self, invocation: Invocation) -> AdapterResult:
        """Run Aider on the worktree with the attempt's prompt; never raises for its failure."""
        profile = invocation.profile
        binary = resolve_command(profile.command, "aider", invocation.env)
        if binary is None:
            return AdapterResult(exit_code=None, error=not_found("aider", profile.command))
        attempt_dir = invocation.attempt_dir
        home = attempt_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        try:
            model = aider_model(profile)
        except ToolError as exc:
            return AdapterResult(exit_code=None, error=exc.message)
        message_file = invocation.prompt_file
        if message_file is None:
            if invocation.prompt is None:
                return AdapterResult(exit_code=None, error="an aider step needs a prompt")
            message_file = attempt_dir / "prompt.md"
            message_file.write_text(invocation.prompt, encoding="utf-8")
        metadata_file: Path | None = None
        if profile.base_url:
            metadata_file = attempt_dir / "aider-model-metadata.json"
            metadata_file.write_text(json.dumps(model_metadata(model), indent=2), encoding="utf-8")
        argv = aider_argv(binary, invocation, message_file=message_file,
                          metadata_file=metadata_file)
        if invocation.scope_files and not editable_files(invocation):
            invocation.log.note(
                f"[aidp] {len(invocation.scope_files)} files in scope (more than "
                f"{MAX_EDITABLE_FILES}): none added to Aider's chat up front")
        key = api_key(key_variable(profile), invocation.env)
        env = dict(invocation.env)
        env.update({
            "HOME": str(home),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",  # live output, not one block at exit
            "NO_COLOR": "1",
            "TERM": "dumb",
            # rich wraps at 80 columns otherwise, splitting "Connection error." over two lines
            "COLUMNS": "1000",
            # Aider talks to the endpoint through litellm's openai client, which wants a key even
            # for a local server: a placeholder when the profile names none.
            "OPENAI_API_KEY": key or "aidp-no-key",
        })
        secrets = [*invocation.secrets, *([key] if key else [])]
        output = AiderOutput()

        def on_output(data: bytes) -> None:
            output.feed(data)
            if invocation.on_output is not None:
                invocation.on_output(data)

        try:
            result = run_process(
                argv, cwd=invocation.worktree, env=env, timeout_s=invocation.timeout_s,
                grace_s=invocation.grace_s, log=invocation.log, mask=secrets,
                on_output=on_output, cancel=invocation.cancel, token=invocation.token,
                interrupt_signal=signal.SIGINT,
            )
        except ToolError as exc:
            return AdapterResult(exit_code=None, error=exc.message,
                                 command_line=masked(argv, secrets))
        output.close()
        kill_by_token(invocation.token)  # anything Aider started outside its group
        if result.timed_out:
            invocation.log.note(f"[aidp] aider timed out after {invocation.timeout_s:g} s")
        echoed = model_lines(attempt_dir / LLM_HISTORY)
        return AdapterResult(
            exit_code=result.exit_code, signal=result.signal, timed_out=result.timed_out,
            cancelled=result.cancelled, duration_s=result.duration_s, pid=result.pid,
            events=tuple(e for e in output.events
                         if e.kind != "error" or e.data.get("message") not in echoed),
            usage=output.usage, version=output.version,
            command_line=masked(argv, secrets), echoed=echoed,
        )

    def probe(self, profile_name: str, profile: ToolProfile, env: Mapping[str, str]) -> ProbeResult:
        """``aider --version``, then ``GET /models`` at its endpoint (see :func:`probe_cli`)."""
        # With a base_url Aider gets a placeholder key when none is set (a local server needs
        # none); without one it calls the provider, which does.
        return probe_cli(profile_name, profile, env, "aider", key_needed=not profile.base_url)
