"""The ``manual`` adapter: a human gate.

A step whose profile uses it waits in ``awaiting_approval`` (the engine does the waiting: the
step's worktree stays prepared, its path is in ``aidp status``) until somebody runs
``aidp approve RUN STEP`` or ``aidp reject RUN STEP --reason ...``. On approval this adapter's
attempt does nothing itself: the engine then stages what the human changed in the worktree,
checks the scope, runs the acceptance checks and commits the checkpoint, as for any tool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aidp.tools.adapter import AdapterResult, Invocation, ProbeResult

if TYPE_CHECKING:
    from aidp.config import ToolProfile

__all__ = ["ManualAdapter"]


class ManualAdapter:
    name = "manual"

    def run(self, invocation: Invocation) -> AdapterResult:
        invocation.log.note("[aidp] approved by a human; checking the worktree")
        return AdapterResult(0)

    def probe(self, profile_name: str, profile: ToolProfile, env: Mapping[str, str]
              ) -> ProbeResult:
        return ProbeResult(profile_name, True, detail="a human gate: aidp approve / reject")
