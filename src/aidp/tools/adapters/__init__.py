"""Built-in adapters of AI tools (each module drives one kind of tool; see
:mod:`aidp.tools.adapter` for the protocol). Modules import the SDKs they need lazily."""

from __future__ import annotations

from aidp.tools.adapters.openai_api import OpenAIAdapter

__all__ = ["OpenAIAdapter"]
