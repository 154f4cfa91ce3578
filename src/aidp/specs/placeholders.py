"""Placeholder purposes: a spec whose Purpose is still ``TBD``/``TODO`` or the text archive
generates for a new spec, and the line to point at.

Pure text helpers for :mod:`aidp.specs.validate` (the reference CLI's purpose-placeholder
warning); they read strings and return positions, nothing else.
"""

from __future__ import annotations

import re

from aidp.specs.apply import PLACEHOLDER_PREFIX, PLACEHOLDER_SUFFIX
from aidp.specs.markdown import fence_mask

__all__ = ["placeholder_issue"]


def _placeholder_line(content: str, leading: bool) -> int | None:
    lines = content.split("\n")
    mask = fence_mask(lines)
    header = next((i for i, line in enumerate(lines)
                   if not mask[i] and re.match(r"^ {0,3}##(?!#)[ \t]+Purpose[ \t]*$", line, re.I)),
                  -1)
    if header == -1:
        return None
    collected: list[tuple[int, str]] = []
    for i in range(header + 1, len(lines)):
        if mask[i]:
            continue
        if re.match(r"^ {0,3}#{1,2}(?!#)[ \t]+", lines[i]):
            break
        if leading and lines[i].strip():
            return i + 1
        collected.append((i + 1, lines[i]))
    if leading:
        return None
    purpose = "\n".join(text for _, text in collected)
    at = _generated_placeholder_at(purpose)
    if at is None:
        return None
    offset = purpose[:at].count("\n")
    return collected[offset][0] if offset < len(collected) else None


def _generated_placeholder_at(text: str) -> int | None:
    suffix = text.find(PLACEHOLDER_SUFFIX)
    while suffix != -1:
        prefix = text.rfind(PLACEHOLDER_PREFIX, 0, suffix + len(PLACEHOLDER_PREFIX))
        if prefix != -1 and prefix <= suffix:
            return prefix
        suffix = text.find(PLACEHOLDER_SUFFIX, suffix + 1)
    return None


_WORD_END = r"(?![^\W_]|_)"
_SHOUTED = re.compile(rf"^(?:TBD|TODO){_WORD_END}")
_PUNCTUATED = re.compile(
    rf"^(?:TBD|TODO){_WORD_END}(?=[ \t]*(?:$|\n|[:\-\u2013\u2014.,;()\[\]{{}}]))", re.IGNORECASE)


def placeholder_issue(overview: str, content: str) -> tuple[bool, int | None]:
    lines = overview.split("\n")
    mask = fence_mask(lines)
    prose = "\n".join(line for i, line in enumerate(lines) if not mask[i]).strip()
    leading = bool(_SHOUTED.match(prose) or _PUNCTUATED.match(prose))
    if not leading and _generated_placeholder_at(prose) is None:
        return False, None
    return True, _placeholder_line(content, leading)
