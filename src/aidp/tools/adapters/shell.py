"""The ``shell`` adapter: any command, as an argv list or a ``/bin/sh -c`` template.

The command is the step's ``run`` or the profile's ``command``, with the placeholders of
:mod:`aidp.tools.shell` substituted. The tool gets the attempt's environment (``AIDP_*``
variables included) and runs under :func:`aidp.process.runner.run_process`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aidp.exceptions import ToolError
from aidp.process.runner import run_process
from aidp.tools.adapter import AdapterResult, Invocation, ProbeResult
from aidp.tools.shell import build_argv

if TYPE_CHECKING:
    from aidp.config import ToolProfile

__all__ = ["ShellAdapter"]


class ShellAdapter:
    """Runs a command; its exit code, the scope check and the acceptance checks decide."""

    name = "shell"

    def run(self, invocation: Invocation) -> AdapterResult:
        if invocation.command is None:
            return AdapterResult(None, error=f"no command: the step has no `run` and profile "
                                 f"{invocation.profile_name!r} no `command`")
        try:
            argv = build_argv(invocation.command, invocation.values)
        except (KeyError, ValueError, IndexError) as exc:  # a bad placeholder in a template
            return AdapterResult(None, error=f"bad command template: {exc}")
        shown = tuple(_mask(part, invocation.secrets) for part in argv)
        try:
            result = run_process(
                argv, cwd=invocation.worktree, env=invocation.env,
                timeout_s=invocation.timeout_s, log=invocation.log,
                grace_s=invocation.grace_s, mask=invocation.secrets,
                cancel=invocation.cancel, token=invocation.token,
                on_output=invocation.on_output,
            )
        except ToolError as exc:
            invocation.log.note(f"[aidp] {exc.message}")
            return AdapterResult(None, error=exc.message, command_line=shown)
        return AdapterResult(
            result.exit_code, result.signal, result.timed_out, result.cancelled,
            duration_s=result.duration_s, pid=result.pid, command_line=shown,
        )

    def probe(self, profile_name: str, profile: ToolProfile, env: Mapping[str, str]
              ) -> ProbeResult:
        command = profile.command
        if command is None:
            return ProbeResult(profile_name, True, detail="steps give their own command")
        first = command[0] if isinstance(command, list) else command.split()[0]
        if "{" in first:
            return ProbeResult(profile_name, True, detail="command is a template")
        found = shutil.which(first, path=env.get("PATH")) or (
            first if Path(first).is_file() else None)
        return ProbeResult(profile_name, found is not None,
                           detail=found or f"{first}: not found on PATH")


def _mask(text: str, secrets: tuple[str, ...] | list[str] | object) -> str:
    for secret in secrets if isinstance(secrets, list | tuple) else ():
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
