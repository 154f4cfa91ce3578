"""Public helpers for testing aidp pipelines (and tools) without spending tokens.

:class:`FakeLLM` is a scripted OpenAI-compatible server on 127.0.0.1 (chat completions, the
Responses API, model listing) with a proxy sink that refuses and logs stray outbound
connections; :func:`load_script` reads its YAML/JSON scripts. ``aidp fake-llm --script FILE``
runs the same server from the command line. :class:`aidp.testing.recorder.Recorder` (``aidp
fake-llm --record UPSTREAM --script-out FILE``) writes such a script from a real provider's
answers.
"""

from __future__ import annotations

from aidp.testing.fake_llm import FakeLLM
from aidp.testing.script import (
    ErrorSpec,
    Script,
    ScriptError,
    Step,
    StepUsage,
    ToolCallSpec,
    load_script,
)

__all__ = [
    "ErrorSpec",
    "FakeLLM",
    "Script",
    "ScriptError",
    "Step",
    "StepUsage",
    "ToolCallSpec",
    "load_script",
]
