"""The ``shell`` adapter's command building: argv lists or ``/bin/sh -c`` templates.

Placeholders: those :data:`aidp.model.validate.PLACEHOLDERS` names (``{worktree}``,
``{attempt}``, ``{candidate}`` ...), filled in by the executor. In a string template each value
is shell-quoted (``{context_files}`` expands to several quoted words), so a value can never
inject shell syntax; in an argv list each element is formatted on its own.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

__all__ = ["build_argv"]



def build_argv(command: str | Sequence[str], values: Mapping[str, str | Sequence[str]]
               ) -> list[str]:
    """The argv to execute for ``command`` with ``values`` substituted.

    Sequence values (``context_files``) become several words in a template and one
    space-joined string in an argv element.
    """
    if isinstance(command, str):
        quoted = {
            key: (" ".join(shlex.quote(v) for v in value) if not isinstance(value, str)
                  else shlex.quote(value))
            for key, value in values.items()
        }
        return ["/bin/sh", "-c", command.format_map(quoted)]
    flat = {key: value if isinstance(value, str) else " ".join(value)
            for key, value in values.items()}
    return [part.format_map(flat) for part in command]
