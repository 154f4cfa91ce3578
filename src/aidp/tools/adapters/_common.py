"""What the CLI-tool adapters (aider, codex) share: finding the binary, the API key, reading
output line by line, asking a tool its version, and a canary request to the endpoint."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aidp.exceptions import ToolError
from aidp.process.capped_log import MIN_SECRET_LEN, CappedLog
from aidp.process.runner import build_env, run_process
from aidp.tools.adapter import OFFLINE_ENV, ProbeResult

if TYPE_CHECKING:
    from aidp.config import ToolProfile

__all__ = [
    "CANARY_TIMEOUT_S",
    "DEFAULT_ENDPOINT",
    "LineReader",
    "api_key",
    "canary",
    "key_variable",
    "masked",
    "not_found",
    "offline_refusal",
    "probe_cli",
    "resolve_command",
    "tool_version",
]

#: The endpoint of a model tool whose profile sets no ``base_url`` (OpenAI's, as the tools'
#: own default for the OpenAI models and key aidp gives them).
DEFAULT_ENDPOINT = "https://api.openai.com/v1"
#: Seconds a canary request to an endpoint may take.
CANARY_TIMEOUT_S = 5.0
#: Seconds ``TOOL --version`` may take.
VERSION_TIMEOUT_S = 60.0
#: Where scripts/setup_ai_tools.sh installs the tools in a source checkout of aidp.
DEV_TOOLS_BIN = Path(__file__).resolve().parents[4] / ".tools" / "bin"
_VERSION_RE = re.compile(r"\b\d+\.\d+(?:\.\d+)?(?:[-.+][0-9A-Za-z.]+)?")


def resolve_command(
    command: str | Sequence[str] | None, default: str, env: Mapping[str, str]
) -> list[str] | None:
    """The argv prefix that starts the tool, or None when its binary cannot be found.

    ``command`` (the profile's) is a binary, a path, or an argv prefix (a string is split like a
    shell would); None means ``default``. A bare name is looked up on ``env["PATH"]``, then in
    the ``.tools/bin`` of a source checkout of aidp (where ``scripts/setup_ai_tools.sh`` puts
    Aider and Codex).
    """
    argv = [default] if command is None else (
        shlex.split(command) if isinstance(command, str) else list(command))
    if not argv:
        return None
    head = argv[0]
    if "/" in head:
        return argv if Path(head).is_file() else None
    found = shutil.which(head, path=env.get("PATH", ""))
    if found is None and (DEV_TOOLS_BIN / head).is_file():
        found = str(DEV_TOOLS_BIN / head)
    return [found, *argv[1:]] if found is not None else None


def api_key(api_key_env: str | None, env: Mapping[str, str]) -> str | None:
    """The API key's value from ``env`` (by the profile's ``api_key_env`` name), if any."""
    if api_key_env is None:
        return None
    value = env.get(api_key_env)
    return value or None


def key_variable(profile: ToolProfile) -> str | None:
    """The variable whose value a CLI model tool gets as its key: the profile's
    ``api_key_env``; without a ``base_url`` (the provider's endpoint) ``OPENAI_API_KEY`` when
    none is named. A custom endpoint never gets the provider's key unless named for it."""
    return profile.api_key_env if profile.base_url else profile.key_env()


class LineReader:
    """Turns output pieces into whole lines (UTF-8, undecodable bytes replaced)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._on_line(line.rstrip(b"\r").decode("utf-8", "replace"))

    def close(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, b""
            self._on_line(pending.rstrip(b"\r").decode("utf-8", "replace"))


def tool_version(argv: Sequence[str], env: Mapping[str, str]) -> tuple[str | None, str]:
    """Run ``argv`` (``TOOL --version``) in a throwaway HOME; ``(version, detail)``.

    The version is the last ``N.N[.N]`` number printed (tools print warnings before it).
    The version is None when the tool did not start or exited non-zero; ``detail`` then says why.
    """
    with tempfile.TemporaryDirectory(prefix="aidp-probe-") as tmp:
        home = Path(tmp)
        child_env = build_env(env, (), {"HOME": str(home)})
        try:
            with CappedLog(home / "version.log", cap_bytes=64 * 2**10) as log:
                result = run_process(argv, cwd=home, env=child_env, timeout_s=VERSION_TIMEOUT_S,
                                     grace_s=1.0, log=log)
        except ToolError as exc:
            return None, exc.message
        output = (home / "version.log").read_text(encoding="utf-8", errors="replace").strip()
    last = output.splitlines()[-1].strip() if output else ""
    if result.timed_out:
        return None, f"{argv[0]} --version did not answer in {VERSION_TIMEOUT_S:g} s"
    if result.exit_code != 0:
        return None, f"{argv[0]} --version exited {result.exit_code}: {last[:200]}"
    versions = _VERSION_RE.findall(output)
    if not versions:
        return None, f"{argv[0]} --version printed no version: {last[:200]}"
    return versions[-1], last


def _loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def offline_refusal(endpoint: str, env: Mapping[str, str]) -> str | None:
    """Why ``endpoint`` is not asked (``--offline`` and not on this machine), or None."""
    if env.get(OFFLINE_ENV) and not _loopback(endpoint):
        return f"--offline and {endpoint} is not on 127.0.0.1"
    return None


def canary(base_url: str, key: str | None) -> tuple[bool, float, str]:
    """``GET {base_url}/models``: ``(answered 200, seconds, detail)``.

    Loopback endpoints are asked directly, never through a proxy from the environment.
    """
    url = base_url.rstrip("/") + "/models"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    handlers = [urllib.request.ProxyHandler({})] if _loopback(url) else []
    opener = urllib.request.build_opener(*handlers)
    started = time.monotonic()
    try:
        with opener.open(request, timeout=CANARY_TIMEOUT_S) as response:
            body = response.read(2**20)
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, time.monotonic() - started, f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, time.monotonic() - started, f"{url} unreachable: {reason}"
    latency = time.monotonic() - started
    try:
        models = [m.get("id") for m in json.loads(body).get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return False, latency, f"{url} answered {status} but not a model list"
    return status == 200, latency, f"{url} answered {status} ({len(models)} models)"


def masked(argv: Sequence[str], secrets: Sequence[str]) -> tuple[str, ...]:
    """``argv`` with every secret value (of at least MIN_SECRET_LEN characters) as ``***``."""
    values = sorted((s for s in secrets if len(s) >= MIN_SECRET_LEN), key=len, reverse=True)
    out = []
    for part in argv:
        for value in values:
            part = part.replace(value, "***")
        out.append(part)
    return tuple(out)


def not_found(tool: str, command: str | Sequence[str] | None) -> str:
    """Why a tool's binary was not found, and what to do about it."""
    shown = command if command is not None else tool
    return (f"{tool} not found: {shown!r} is neither a file nor on PATH"
            " (install it with scripts/setup_ai_tools.sh, or set command in the profile)")


def probe_cli(
    profile_name: str, profile: ToolProfile, env: Mapping[str, str], tool: str, *,
    key_needed: bool,
) -> ProbeResult:
    """Probe a CLI tool: its binary, ``--version``, then ``GET /models`` at the endpoint it
    would use (``base_url``, else :data:`DEFAULT_ENDPOINT`) with the key it would get.

    ``key_needed``: the tool cannot work without its key variable set (the adapter knows when):
    then a missing key fails the check, named, and nothing is sent. The key is never shown.
    """
    binary = resolve_command(profile.command, tool, env)
    if binary is None:
        return ProbeResult(profile_name, ok=False, detail=not_found(tool, profile.command))
    version, detail = tool_version([*binary, "--version"], env)
    if version is None:
        return ProbeResult(profile_name, ok=False, detail=detail)
    endpoint = profile.base_url or DEFAULT_ENDPOINT
    key_env = key_variable(profile)
    key = api_key(key_env, env)
    if key is None and key_needed:
        why = f"no API key in {key_env}" + (
            " (any value will do for a local server)" if profile.base_url else
            f" (no base_url: {tool} would call {endpoint})")
        return ProbeResult(profile_name, ok=False, version=version,
                           detail=f"{tool} {version}; not checked: {why}", not_checked=why)
    refused = offline_refusal(endpoint, env)
    if refused is not None:
        return ProbeResult(profile_name, ok=True, version=version,
                           detail=f"{tool} {version}; not checked: {refused}",
                           not_checked=refused)
    answered, latency, canary_detail = canary(endpoint, key)
    return ProbeResult(profile_name, ok=answered, version=version,
                       detail=f"{tool} {version}; {canary_detail}",
                       canary_ok=answered, latency_s=round(latency, 3))
