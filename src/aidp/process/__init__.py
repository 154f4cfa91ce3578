"""Running external processes: the one way aidp starts one.

``runner`` owns starting, timing out and killing processes: ``run_process`` streams a tool or an
acceptance check into a capped, masked log; ``run_captured`` captures a short command's output
(git, gh, a test run). Both run the process in its own session and kill its whole process group
at a timeout. ``capped_log`` owns the size-capped attempt log and secret masking, ``procfs``
process liveness read from ``/proc``.

The package imports only :mod:`aidp.exceptions`, so every layer (workspace, state, tools, specs,
engine, cli) can use it without an import cycle; importing the package loads no submodule.
"""

from __future__ import annotations

__all__: list[str] = []
