"""The ``aidp`` command line (entry point: :func:`aidp.cli.main.main`); one module per group of
commands, imported only when its command runs."""

from __future__ import annotations

__all__: list[str] = []
