"""Terminal output as safe HTML: ANSI SGR colours become ``<span class="ansi-...">``, every
other escape sequence and control character is dropped, and the text is HTML-escaped.

Tool output is hostile input: it may hold ``<script>``, ``<img onerror=...>`` or escape
sequences that move the cursor, set the window title (OSC) or carry hyperlinks. Only the
colours and weights survive, as CSS classes of ``aidp.css``; the text between them goes through
:func:`markupsafe.escape`, so markup in it shows as text.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

__all__ = ["ansi_to_html", "strip_ansi"]

# CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL or ESC \), other two-byte escapes,
# and the 8-bit CSI (0x9b).
_ESCAPE = re.compile(
    r"\x1b\[([0-?]*)([ -/]*)([@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Controls other than tab and newline (a carriage return alone is dropped too).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
_ATTRS = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "inverse", 9: "strike"}
_ATTR_OFF = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",), 27: ("inverse",),
             29: ("strike",)}


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences and control characters (tab and newline kept)."""
    return _CONTROL.sub("", _ESCAPE.sub("", text))


class _Style:
    def __init__(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.attrs: set[str] = set()

    def classes(self) -> list[str]:
        found = [f"ansi-{a}" for a in sorted(self.attrs)]
        if self.fg:
            found.append(f"ansi-fg-{self.fg}")
        if self.bg:
            found.append(f"ansi-bg-{self.bg}")
        return found

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.fg, self.bg, self.attrs = None, None, set()
            elif code in _ATTRS:
                self.attrs.add(_ATTRS[code])
            elif code in _ATTR_OFF:
                self.attrs.difference_update(_ATTR_OFF[code])
            elif 30 <= code <= 37:
                self.fg = str(code - 30)
            elif 90 <= code <= 97:
                self.fg = str(code - 90 + 8)
            elif code == 39:
                self.fg = None
            elif 40 <= code <= 47:
                self.bg = str(code - 40)
            elif 100 <= code <= 107:
                self.bg = str(code - 100 + 8)
            elif code == 49:
                self.bg = None
            elif code in (38, 48):
                # 256-colour (5;N) and true-colour (2;R;G;B): the nearest of the 16 classes
                # would need a palette; the colour is dropped, the text kept.
                if i + 1 < len(codes) and codes[i + 1] == 5:
                    i += 2
                elif i + 1 < len(codes) and codes[i + 1] == 2:
                    i += 4
            i += 1


def ansi_to_html(text: str | None) -> Markup:
    """``text`` as HTML: escaped, with SGR colours as ``ansi-*`` classes on spans.

    Classes: ``ansi-fg-N`` and ``ansi-bg-N`` (N 0-15: the 8 colours, then the 8 bright ones),
    ``ansi-bold``, ``ansi-dim``, ``ansi-italic``, ``ansi-underline``, ``ansi-inverse``,
    ``ansi-strike``.
    """
    if not text:
        return Markup("")
    style = _Style()
    out: list[str] = []
    pos = 0

    def emit(chunk: str) -> None:
        chunk = _CONTROL.sub("", chunk)
        if not chunk:
            return
        classes = style.classes()
        if classes:
            out.append(f'<span class="{" ".join(classes)}">')
            out.append(str(escape(chunk)))
            out.append("</span>")
        else:
            out.append(str(escape(chunk)))

    for match in _ESCAPE.finditer(text):
        emit(text[pos:match.start()])
        pos = match.end()
        if match.group(3) == "m" and not match.group(2):
            style.apply(match.group(1) or "")
    emit(text[pos:])
    return Markup("".join(out))
