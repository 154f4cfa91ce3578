"""Running tools: the process runner (``process``: own session, timeout, group kill, capped and
masked logs) and the ``shell`` adapter's command building (``shell``)."""

from __future__ import annotations

__all__: list[str] = []
