"""The tool registry: adapter names to adapter objects (built-ins and entry points)."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from aidp.config import ADAPTER_ENTRY_POINTS, Settings
from aidp.exceptions import ToolError
from aidp.tools.adapter import Adapter

__all__ = ["BUILTIN", "fallback_chain", "get_adapter"]

# name -> "module:Class", imported on first use
BUILTIN = {
    "shell": "aidp.tools.adapters.shell:ShellAdapter",
    "manual": "aidp.tools.adapters.manual:ManualAdapter",
    "openai": "aidp.tools.adapters.openai_api:OpenAIAdapter",
}

_cache: dict[str, Adapter] = {}  # adapters are stateless and shared between threads
_lock = threading.Lock()


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; ToolError when none is installed under that name."""
    with _lock:
        if name in _cache:
            return _cache[name]
        target = BUILTIN.get(name)
        if target is not None:
            module_name, _, attr = target.partition(":")
            try:
                adapter: Any = getattr(importlib.import_module(module_name), attr)()
            except (ImportError, AttributeError) as exc:
                raise ToolError(f"adapter {name!r} is not available: {exc}") from exc
        else:
            from importlib.metadata import entry_points

            found = [ep for ep in entry_points(group=ADAPTER_ENTRY_POINTS) if ep.name == name]
            if not found:
                raise ToolError(f"no adapter named {name!r}",
                                hint=f"install a package that registers it in {ADAPTER_ENTRY_POINTS}")
            try:
                adapter = found[0].load()()
            except Exception as exc:  # a third-party plugin: report it, never crash the run
                raise ToolError(f"adapter {name!r} failed to load: {exc}") from exc
        _cache[name] = adapter
        return _cache[name]


def fallback_chain(settings: Settings, name: str) -> list[str]:
    """``name`` and the profiles its ``fallback`` lists lead to, breadth first, each once."""
    chain: list[str] = []
    queue = [name]
    while queue:
        current = queue.pop(0)
        if current in chain:
            continue
        chain.append(current)
        profile = settings.profile(current)
        if profile is not None:
            queue.extend(profile.fallback)
    return chain
