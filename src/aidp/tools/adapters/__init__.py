"""The built-in adapters, one module each, imported lazily by :mod:`aidp.tools.registry`."""

from __future__ import annotations

__all__: list[str] = []
