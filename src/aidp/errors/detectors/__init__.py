"""The built-in detectors, one module per concern; each is a pluggy plugin of hookimpls.

:data:`BUILTIN` names them in calling order (detector name -> module path); the manager imports
them when it is first built, not when this package is imported.
"""

from __future__ import annotations

__all__ = ["BUILTIN"]

BUILTIN: dict[str, str] = {
    "process": "aidp.errors.detectors.process_exit",
    "disk-full": "aidp.errors.detectors.disk_full",
    "git-conflict": "aidp.errors.detectors.git_conflict",
    "pytest": "aidp.errors.detectors.pytest_report",
    "ruff": "aidp.errors.detectors.ruff_report",
    "mypy": "aidp.errors.detectors.mypy_report",
    "eslint": "aidp.errors.detectors.eslint_report",
    "tsc": "aidp.errors.detectors.tsc_report",
    "python-traceback": "aidp.errors.detectors.python_traceback",
    "codex": "aidp.errors.detectors.codex_events",
    "aider": "aidp.errors.detectors.aider_output",
    "http": "aidp.errors.detectors.provider_http",
}
