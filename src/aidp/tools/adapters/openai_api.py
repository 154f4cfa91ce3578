"""The ``openai`` adapter: one chat-completions request per attempt, edits applied by aidp.

For an attempt it:

1. builds a system and a user message from the prompt templates (:mod:`aidp.tools.prompts`:
   the step's prompt, the files in scope, read-only context files; overridable per repository);
2. waits for the profile's client-side rate limit (:mod:`aidp.tools.ratelimit`), honouring
   ``invocation.cancel``;
3. sends one ``POST {base_url}/chat/completions`` with the openai SDK, ``max_retries=0`` (retries
   belong to aidp's retry policy, never hidden in the SDK) and ``timeout_s`` per request;
4. parses the reply in the profile's ``edit_format`` (:mod:`aidp.tools.edits`) and applies the
   edits inside the worktree and the scope -- all of them or none.

Configuration (``[tools.NAME]`` in ``aidp.toml``)::

    [tools.gpt]
    adapter = "openai"
    model = "gpt-4.1-mini"
    base_url = "https://api.openai.com/v1"   # any OpenAI-compatible endpoint
    api_key_env = "OPENAI_API_KEY"           # the variable's *name*; the default
    edit_format = "diff"                     # or "whole"
    timeout = "120s"
    rate_limit = { requests_per_minute = 60, tokens_per_minute = 200000 }

The API key is read from the attempt's environment, masked everywhere and never logged. SDK
errors become findings of detector ``openai-api``: 429 / 408 / 409 / 5xx / connection problems /
timeouts are transient (429 carries ``retry_after`` from ``Retry-After``), a 429 for an exhausted
quota, 400, 401, 403, 404 and 422 are permanent. Exit code 0 means the edits were applied; 1 means
the findings say why not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidp.errors.finding import FailureClass, Finding
from aidp.process.capped_log import MIN_SECRET_LEN
from aidp.tools.adapter import AdapterResult, Invocation, ProbeResult, ToolEvent, Usage
from aidp.tools.adapters._common import offline_refusal
from aidp.tools.edits import apply_edits, parse_edits
from aidp.tools.model_wire import retry_after_s
from aidp.tools.prompts import build_messages, read_files
from aidp.tools.ratelimit import limiter_for

if TYPE_CHECKING:
    from openai import OpenAI

    from aidp.config import ToolProfile

__all__ = ["DEFAULT_BASE_URL", "DETECTOR", "PROBE_TIMEOUT_S", "OpenAIAdapter", "error_finding",
           "is_api_error"]

DETECTOR = "openai-api"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
PROBE_TIMEOUT_S = 10.0
_POLL_S = 0.05


class _Masker:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len,
                               reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def error_finding(exc: Exception, *, model: str, mask: Callable[[str], str] = str
                  ) -> tuple[Finding, bool]:
    """The finding for an openai SDK error, and whether it was a timeout."""
    import openai

    def make(message: str, failure: FailureClass, code: str,
             retry_after: float | None = None) -> Finding:
        return Finding(detector=DETECTOR, message=mask(message), failure_class=failure,
                       code=code, retry_after=retry_after)

    if isinstance(exc, openai.APITimeoutError):
        return make("the request timed out", FailureClass.TRANSIENT, "timeout"), True
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f": {type(cause).__name__}: {cause}" if cause else ""
        return make(f"connection error{detail}", FailureClass.TRANSIENT, "connection"), False
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        inner = body.get("error", body) if isinstance(body, dict) else {}
        api_code = exc.code or (inner.get("code") if isinstance(inner, dict) else None)
        message = f"HTTP {status}: {exc.message}"
        if status == 429:
            if api_code == "insufficient_quota":
                return make(message, FailureClass.PERMANENT, "quota"), False
            after = retry_after_s(exc.response.headers)
            return make(message, FailureClass.TRANSIENT, "rate-limit", after), False
        if status >= 500 or status in (408, 409):
            return make(message, FailureClass.TRANSIENT, f"http-{status}"), False
        if status in (401, 403):
            return make(message, FailureClass.PERMANENT, "auth"), False
        if status == 404:
            return make(f"{message} (model {model!r}?)", FailureClass.PERMANENT,
                        "not-found"), False
        return make(message, FailureClass.PERMANENT, f"http-{status}"), False
    return make(f"{type(exc).__name__}: {exc}", FailureClass.UNKNOWN, "sdk-error"), False


#: The codes :func:`error_finding` gives (besides ``http-NNN``).
_API_ERROR_CODES = frozenset({"timeout", "connection", "quota", "rate-limit", "auth",
                              "not-found", "sdk-error"})


def is_api_error(finding: Finding) -> bool:
    """Whether ``finding`` is this adapter's report of a failed API call (which a gateway
    that saw the call reports exactly)."""
    code = finding.code or ""
    return finding.detector == DETECTOR and (code in _API_ERROR_CODES
                                             or code.startswith("http-"))


def _estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(len(m.get("content", "")) for m in messages) // 4 + 16


class OpenAIAdapter:
    """Drives any OpenAI-compatible chat-completions endpoint through the openai SDK.

    Stateless and shared between threads (the rate limiters are process-wide, per profile).
    """

    name = "openai"

    # -- configuration ---------------------------------------------------------------------

    @staticmethod
    def _settings(profile_name: str, profile: ToolProfile,
                  env: Mapping[str, str]) -> tuple[str, str, str] | str:
        """(model, base_url, api key), or the one-line reason the tool cannot start."""
        key_env = profile.api_key_env or DEFAULT_KEY_ENV
        key = env.get(key_env)
        if not key:
            return (f"tool profile {profile_name!r}: environment variable {key_env} is not set "
                    "(any value will do for a local server)")
        if not profile.model:
            return f"tool profile {profile_name!r}: no model set"
        base_url = profile.base_url or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        return profile.model, base_url.rstrip("/"), key

    @staticmethod
    def _client(base_url: str, key: str, timeout_s: float) -> OpenAI:
        from openai import OpenAI

        return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout_s)

    # -- one attempt -----------------------------------------------------------------------

    def run(self, invocation: Invocation) -> AdapterResult:
        """Ask the model once and apply its edits; never raises for the endpoint's failures."""
        import openai

        started = time.monotonic()
        inv = invocation
        log = inv.log
        settings = self._settings(inv.profile_name, inv.profile, inv.env)
        if isinstance(settings, str):
            log.note(f"[openai] {settings}")
            return AdapterResult(exit_code=None, error=settings)
        model, base_url, key = settings
        mask = _Masker([key, *inv.secrets])
        command_line = ("openai", "chat.completions.create", f"--model={model}",
                        f"--base-url={mask(base_url)}")
        version = f"openai-python {openai.__version__}"

        def ended(**fields: Any) -> AdapterResult:
            return AdapterResult(duration_s=time.monotonic() - started, version=version,
                                 command_line=command_line, **fields)

        repo_value = inv.values.get("repo")
        repo = Path(repo_value) if isinstance(repo_value, str) and repo_value else inv.worktree
        from aidp.exceptions import ToolError

        try:
            messages = build_messages(
                prompt=inv.prompt or "", files=read_files(inv.worktree, inv.scope_files),
                context=read_files(inv.worktree, inv.context_files), scope=inv.scope,
                edit_format=inv.profile.edit_format, repo=repo,
            )
        except ToolError as exc:
            log.note(f"[openai] {exc.message}")
            return ended(exit_code=None, error=exc.message)

        estimate = _estimate_tokens(messages)
        limiter = limiter_for(inv.profile_name, inv.profile.rate_limit)
        admitted = limiter.acquire(estimate, cancel=inv.cancel, on_wait=lambda s: log.note(
            f"[openai] rate limit of profile {inv.profile_name}: waiting {s:.1f}s"))
        if not admitted:
            return ended(exit_code=None, cancelled=True)

        log.note(f"[openai] POST {mask(base_url)}/chat/completions model={model} "
                 f"messages={len(messages)} chars={sum(len(m['content']) for m in messages)} "
                 f"estimated_tokens={estimate} edit_format={inv.profile.edit_format}")
        client = self._client(base_url, key, inv.timeout_s)
        try:
            outcome = self._call(client, model, messages, inv.cancel, inv.timeout_s)
        finally:
            client.close()
        elapsed = time.monotonic() - started
        if outcome is None:
            log.note("[openai] cancelled")
            limiter.settle(-estimate)
            return ended(exit_code=None, cancelled=True, usage=Usage(requests=1))
        if isinstance(outcome, Exception):
            finding, timed_out = error_finding(outcome, model=model, mask=mask)
            limiter.settle(-estimate)
            log.note(f"[openai] failed after {elapsed:.2f}s: {finding.message}"
                     + (f" (retry after {finding.retry_after:g}s)"
                        if finding.retry_after is not None else ""))
            return ended(exit_code=None if timed_out else 1, timed_out=timed_out,
                         findings=(finding,), usage=Usage(requests=1),
                         events=(ToolEvent("error", {"code": finding.code,
                                                     "message": finding.message}),))
        return self._finish(inv, outcome, estimate, elapsed, mask, ended)

    @staticmethod
    def _call(client: OpenAI, model: str, messages: list[dict[str, str]],
              cancel: threading.Event, timeout_s: float) -> Any:
        """The response, the exception the SDK raised, or None if cancelled first.

        The request runs on a helper thread so that a cancellation returns at once (the
        abandoned request ends by its own timeout); a wall clock a little past ``timeout_s``
        backs up the SDK's per-read timeout.
        """
        import openai

        box: list[Any] = []
        done = threading.Event()

        def work() -> None:
            try:
                box.append(client.chat.completions.create(
                    model=model, messages=messages,  # type: ignore[arg-type]
                ))
            except Exception as exc:  # noqa: BLE001 -- the adapter boundary: all are reported
                box.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name="openai-request", daemon=True).start()
        deadline = time.monotonic() + timeout_s + 5.0
        while not done.wait(_POLL_S):
            if cancel.is_set():
                return None
            if time.monotonic() > deadline:
                return openai.APITimeoutError(request=_placeholder_request())
        return box[0]

    @staticmethod
    def _finish(inv: Invocation, response: Any, estimate: int, elapsed: float,
                mask: Callable[[str], str], ended: Callable[..., AdapterResult]) -> AdapterResult:
        log = inv.log
        choice = response.choices[0] if getattr(response, "choices", None) else None
        text = (choice.message.content or "") if choice is not None else ""
        finish = choice.finish_reason if choice is not None else None
        raw_usage = getattr(response, "usage", None)
        details = getattr(raw_usage, "prompt_tokens_details", None)
        usage = Usage(
            input_tokens=getattr(raw_usage, "prompt_tokens", 0) or 0,
            output_tokens=getattr(raw_usage, "completion_tokens", 0) or 0,
            cached_tokens=getattr(details, "cached_tokens", 0) or 0,
            requests=1,
        )
        limiter = limiter_for(inv.profile_name, inv.profile.rate_limit)
        limiter.settle((usage.total_tokens or estimate) - estimate)
        log.note(f"[openai] answered in {elapsed:.2f}s: finish_reason={finish} "
                 f"input_tokens={usage.input_tokens} output_tokens={usage.output_tokens} "
                 f"reply_chars={len(text)}")
        shown = mask(text).encode("utf-8", "replace") + (b"" if text.endswith("\n") else b"\n")
        log.write(shown)
        if inv.on_output is not None:
            inv.on_output(shown)
        events: list[ToolEvent] = [ToolEvent("message", {"chars": len(text), "finish": finish}),
                                   ToolEvent("usage", usage.to_dict())]
        in_scope = inv.in_scope
        if in_scope is None and inv.scope:
            from aidp.model.scope import compile_scope

            in_scope = compile_scope(inv.scope).matches
        parsed = parse_edits(text, inv.profile.edit_format)
        findings = list(parsed.findings)
        changed: tuple[str, ...] = ()
        created: tuple[str, ...] = ()
        if not findings:
            result = apply_edits(parsed.edits, inv.worktree, in_scope)
            findings = list(result.findings)
            changed, created = result.changed, result.created
        if findings and finish == "length":
            findings.append(Finding(
                detector=DETECTOR, failure_class=FailureClass.PERMANENT, code="truncated",
                message="the reply was cut off at the model's output limit "
                        "(ask for smaller changes, or use the diff edit format)"))
        for finding in findings:
            log.note(f"[openai] {finding.code}: {mask(finding.message)}")
        if findings:
            return ended(exit_code=1, findings=tuple(findings), usage=usage,
                         events=(*events, *(ToolEvent("error", {"code": f.code,
                                                                "message": f.message})
                                            for f in findings)))
        for path in changed:
            events.append(ToolEvent("file_change", {
                "path": path, "kind": "add" if path in created else "update"}))
        log.note(f"[openai] applied {len(parsed.edits)} edit(s) to {len(changed)} file(s)"
                 + (f": {', '.join(changed[:10])}" if changed else ""))
        return ended(exit_code=0, usage=usage, events=tuple(events))

    # -- aidp tools check ------------------------------------------------------------------

    def probe(self, profile_name: str, profile: ToolProfile, env: Mapping[str, str]) -> ProbeResult:
        """List the endpoint's models; if the profile's model is not listed (or listing is not
        offered), send a one-line canary chat request. Short timeouts, no retries."""
        import openai

        settings = self._settings(profile_name, profile, env)
        version = f"openai-python {openai.__version__}"
        if isinstance(settings, str):  # no key or no model: it cannot work, nothing is sent
            return ProbeResult(profile_name, ok=False, version=version,
                               detail=f"not checked: {settings}", not_checked=settings)
        model, base_url, key = settings
        refused = offline_refusal(base_url, env)
        if refused is not None:
            return ProbeResult(profile_name, ok=True, version=version,
                               detail=f"not checked: {refused}", not_checked=refused)
        mask = _Masker([key])
        started = time.monotonic()
        client = self._client(base_url, key, PROBE_TIMEOUT_S)
        try:
            listed: list[str] | None
            try:
                listed = [m.id for m in client.models.list()]
            except openai.APIStatusError as exc:
                if exc.status_code not in (404, 405, 501):
                    finding, _ = error_finding(exc, model=model, mask=mask)
                    return ProbeResult(profile_name, ok=False, version=version,
                                       detail=f"GET {mask(base_url)}/models: {finding.message}",
                                       canary_ok=False, latency_s=time.monotonic() - started)
                listed = None
            except openai.APIError as exc:
                finding, _ = error_finding(exc, model=model, mask=mask)
                return ProbeResult(profile_name, ok=False, version=version,
                                   detail=f"{mask(base_url)}: {finding.message}",
                                   canary_ok=False, latency_s=time.monotonic() - started)
            if listed is not None and model in listed:
                return ProbeResult(profile_name, ok=True, version=version, canary_ok=True,
                                   detail=f"{mask(base_url)} lists {model}",
                                   latency_s=time.monotonic() - started)
            try:
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "Reply with: ok"}])
            except openai.APIError as exc:
                finding, _ = error_finding(exc, model=model, mask=mask)
                return ProbeResult(profile_name, ok=False, version=version,
                                   detail=f"canary request to {model}: {finding.message}",
                                   canary_ok=False, latency_s=time.monotonic() - started)
            return ProbeResult(profile_name, ok=True, version=version, canary_ok=True,
                               detail=f"{mask(base_url)} answered a canary request for {model}",
                               latency_s=time.monotonic() - started)
        finally:
            client.close()


def _placeholder_request() -> Any:
    import httpx

    return httpx.Request("POST", "http://aidp.invalid/chat/completions")
