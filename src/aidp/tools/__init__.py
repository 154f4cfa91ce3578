"""Running tools: the adapters, the registry, prompts and the ``shell`` adapter's command building
(``shell``). Processes themselves are started by :mod:`aidp.process.runner`."""

from __future__ import annotations

__all__: list[str] = []
