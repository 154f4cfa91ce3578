"""File scopes: gitignore-like globs over repo-relative POSIX paths, and their overlap.

Semantics (the same for :func:`compile_scope` and :func:`globs_overlap`, which a property test
keeps in agreement):

- patterns are anchored at the repository root: ``*.md`` names Markdown files at the top level
  only, ``**/*.md`` names them at any depth;
- ``*``, ``?`` and ``[...]`` (``[!...]`` or ``[^...]`` negates) stay within one path segment;
  ``\\`` escapes the next character;
- a segment that is exactly ``**`` matches zero or more whole segments; ``**`` inside a
  segment (``a**b``) is an ordinary ``*``;
- a pattern also matches everything below what it names (``docs`` and ``docs/`` match
  ``docs/a.md``, ``src/*`` matches ``src/a/b.py``), unless its last segment looks like a file
  name: one with a ``.`` after its first character (``README.md``, ``*.py``) matches only
  that name. Write ``v1.0/`` for a directory whose name has a dot.

Literal patterns become exact names and directory prefixes; the others are compiled to one
regular expression per scope, so matching a changed file costs one ``re.match`` call at most.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

__all__ = ["ScopeMatcher", "compile_scope", "glob_literal_prefix", "globs_overlap"]

_MAX_CHAR = 0x10FFFF
_SLASH = ord("/")


@dataclass(frozen=True)
class _CharSet:
    """One character position: ``ranges`` of code points, or their complement if ``negated``."""

    negated: bool
    ranges: tuple[tuple[int, int], ...]

    def contains(self, code: int) -> bool:
        inside = any(lo <= code <= hi for lo, hi in self.ranges)
        return code != _SLASH and inside != self.negated


class _Star:
    """``*``: any run of characters other than ``/``."""


_STAR = _Star()
_ANY = _CharSet(negated=True, ranges=())
_Token = _CharSet | _Star
_Segment = tuple[_Token, ...]
_GLOBSTAR: None = None  # a segment that is exactly ``**``


def _parse_class(seg: str, start: int) -> tuple[_CharSet, int] | None:
    """Parse ``[...]`` starting at ``seg[start] == '['``; None when it is not closed."""
    i = start + 1
    negated = i < len(seg) and seg[i] in "!^"
    if negated:
        i += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while i < len(seg):
        char = seg[i]
        if char == "]" and not first:
            return _CharSet(negated, tuple(ranges)), i + 1
        first = False
        if char == "\\" and i + 1 < len(seg):
            i += 1
            char = seg[i]
        low = ord(char)
        if i + 2 < len(seg) and seg[i + 1] == "-" and seg[i + 2] != "]":
            high = ord(seg[i + 2])
            if low <= high:
                ranges.append((low, high))
            i += 3
        else:
            ranges.append((low, low))
            i += 1
    return None


def _parse_segment(seg: str) -> _Segment | None:
    """Turn one ``/``-free segment into tokens; None stands for a ``**`` segment."""
    if seg == "**":
        return _GLOBSTAR
    tokens: list[_Token] = []
    i = 0
    while i < len(seg):
        char = seg[i]
        if char == "*":
            if not tokens or tokens[-1] is not _STAR:
                tokens.append(_STAR)
            i += 1
        elif char == "?":
            tokens.append(_ANY)
            i += 1
        elif char == "[" and (parsed := _parse_class(seg, i)) is not None:
            tokens.append(parsed[0])
            i = parsed[1]
        else:
            if char == "\\" and i + 1 < len(seg):
                i += 1
                char = seg[i]
            tokens.append(_CharSet(False, ((ord(char), ord(char)),)))
            i += 1
    return tuple(tokens)


@lru_cache(maxsize=4096)
def _parse(pattern: str) -> tuple[_Segment | None, ...]:
    """Split a pattern into segments; the implicit "and everything below" is a final ``**``
    (left out when the last segment looks like a file name)."""
    text = pattern.strip()
    while text.startswith("./"):
        text = text[2:]
    raw = [s for s in text.split("/") if s not in ("", ".")]
    segments = [_parse_segment(s) for s in raw]
    names_a_file = bool(raw) and not text.endswith("/") and "." in raw[-1][1:]
    if not names_a_file and (not segments or segments[-1] is not _GLOBSTAR):
        segments.append(_GLOBSTAR)
    return tuple(segments)


def _token_regex(token: _Token) -> str:
    if isinstance(token, _Star):
        return "[^/]*"
    if not token.negated and len(token.ranges) == 1 and token.ranges[0][0] == token.ranges[0][1]:
        return re.escape(chr(token.ranges[0][0]))
    body = "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in token.ranges
    )
    if token.negated:
        return f"[^/{body}]"
    return f"(?!/)[{body}]" if body else "(?!)"


def _pattern_regex(pattern: str) -> str:
    """Regex matching ``path + "/"`` when ``path`` is matched by ``pattern``."""
    parts = []
    for segment in _parse(pattern):
        if segment is _GLOBSTAR:
            parts.append("(?:[^/]+/)*")
        else:
            parts.append("".join(_token_regex(t) for t in segment) + "/")
    return "".join(parts)


@dataclass(frozen=True)
class ScopeMatcher:
    """Compiled scope globs; :meth:`matches` tells whether a path lies in the scope.

    Literal globs (``src/a.py``, ``docs``, ``w01/**``: the common case) are kept as exact names
    and directory prefixes, so building a matcher compiles no regular expression for them; the
    other globs share one expression.
    """

    globs: tuple[str, ...]
    _regex: re.Pattern[str] | None
    _names: frozenset[str] = frozenset()
    _dirs: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        """Return whether the repo-relative POSIX ``path`` (``src/a.py``) is in the scope."""
        while path.startswith("./"):
            path = path[2:]
        path = path.rstrip("/")
        if path in self._names:
            return True
        for prefix in self._dirs:
            if path == prefix or path.startswith(prefix + "/"):
                return True
        return self._regex is not None and self._regex.fullmatch(path + "/") is not None


def _literal(pattern: str) -> tuple[str, bool] | None:
    """``(name, is_directory)`` when ``pattern`` names one path without wildcards, else None.

    A directory matches itself and everything below it (a trailing ``**`` or the implicit one);
    a name matches only itself. The root itself (``**``, ``.``) is left to the regex.
    """
    segments = _parse(pattern)
    directory = segments[-1] is _GLOBSTAR
    names = []
    for segment in segments[:-1] if directory else segments:
        if segment is _GLOBSTAR:
            return None
        chars = []
        for token in segment:
            if (not isinstance(token, _CharSet) or token.negated or len(token.ranges) != 1
                    or token.ranges[0][0] != token.ranges[0][1] or token.ranges[0][0] == _SLASH):
                return None
            chars.append(chr(token.ranges[0][0]))
        names.append("".join(chars))
    if not names:
        return None
    return "/".join(names), directory


def compile_scope(globs: Iterable[str]) -> ScopeMatcher:
    """Compile scope globs once into a matcher.

    Args:
        globs: gitignore-like patterns (see the module docstring); an empty list matches nothing.

    Returns:
        A :class:`ScopeMatcher`: a set lookup and prefix tests for literal globs, one
        regular-expression match for the rest.
    """
    globs = tuple(globs)
    names: set[str] = set()
    dirs: list[str] = []
    patterns: list[str] = []
    for glob in globs:
        literal = _literal(glob)
        if literal is None:
            patterns.append(glob)
        elif literal[1]:
            dirs.append(literal[0])
        else:
            names.add(literal[0])
    regex = None
    if patterns:
        regex = re.compile("|".join(f"(?:{_pattern_regex(g)})" for g in patterns), re.DOTALL)
    return ScopeMatcher(globs, regex, frozenset(names), tuple(dirs))


def _charsets_meet(a: _CharSet, b: _CharSet) -> bool:
    """Whether some character other than ``/`` belongs to both sets (exact)."""
    # The smallest member of the intersection, if any, is 0, '/'+1, or a boundary of a range.
    candidates = {0, _SLASH + 1}
    for lo, hi in a.ranges + b.ranges:
        candidates.add(lo)
        if hi < _MAX_CHAR:
            candidates.add(hi + 1)
    return any(a.contains(c) and b.contains(c) for c in candidates)


def _sequences_meet(
    a: Sequence[T], b: Sequence[T], star: object, pair_meets: Callable[[T, T], bool]
) -> bool:
    """Whether the two patterns ``a`` and ``b`` (sequences of items, where ``star`` matches any
    run of items, including none) accept a common sequence: a memoised walk of the product
    automaton. Used at two levels: characters within a segment, segments within a path."""
    memo: dict[tuple[int, int], bool] = {}

    def meet(i: int, j: int) -> bool:
        key = (i, j)
        if key in memo:
            return memo[key]
        memo[key] = False
        if i == len(a) or j == len(b):
            rest = a[i:] if j == len(b) else b[j:]
            result = all(t is star for t in rest)
        else:
            ta, tb = a[i], b[j]
            if ta is star:
                result = meet(i + 1, j) or meet(i, j + 1)
            elif tb is star:
                result = meet(i, j + 1) or meet(i + 1, j)
            else:
                result = pair_meets(ta, tb) and meet(i + 1, j + 1)
        memo[key] = result
        return result

    return meet(0, 0)


def _segments_meet(a: _Segment, b: _Segment) -> bool:
    """Whether some non-empty ``/``-free string matches both segment globs (exact).

    Both all-star segments also match a non-empty string, so the empty witness is harmless.
    """
    return _sequences_meet(a, b, _STAR, _charsets_meet)  # type: ignore[arg-type]


def globs_overlap(a: str, b: str) -> bool:
    """Tell whether some path could match both globs.

    Exact at the level of path segments and characters, except that a character class is
    assumed to be satisfiable; so a False answer is sound: no path matches both.

    Args:
        a: a scope glob.
        b: another scope glob.

    Returns:
        True when the globs may name a common file (``src/**`` and ``src/b/x.py``), False when
        they cannot (``src/a/**`` and ``src/b/**``; ``*.md`` and ``docs/**``).
    """
    # Fast exit (validation compares every pair of parallel workstreams): paths matching a glob
    # all start with its literal directory segments, so two globs whose literal segments
    # disagree somewhere cannot meet.
    literal_a, literal_b = glob_literal_prefix(a).split("/"), glob_literal_prefix(b).split("/")
    if any(x != y for x, y in zip(literal_a, literal_b) if x and y):
        return False
    return _overlap(a, b)


@lru_cache(maxsize=4096)
def _overlap(a: str, b: str) -> bool:
    segments_a, segments_b = _parse(a), _parse(b)
    return _sequences_meet(segments_a, segments_b, _GLOBSTAR,
                           _segments_meet)  # type: ignore[arg-type]


_MAGIC = re.compile(r"[*?\[\\]")


def glob_literal_prefix(pattern: str) -> str:
    """The directory part of ``pattern`` before its first wildcard (``src/a`` for ``src/a/*.py``).

    Used to check that a scope cannot point outside the repository through a symlink.
    """
    match = _MAGIC.search(pattern)
    if match is None:
        return pattern.rstrip("/")
    head = pattern[: match.start()]
    return head.rsplit("/", 1)[0] if "/" in head else ""
