"""Scope globs: gitignore-like matching, and a sound overlap test."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidp.model.scope import _pattern_regex, compile_scope, glob_literal_prefix, globs_overlap

MATCHES = [
    ("src/**", "src/a.py", True),
    ("src/**", "src/a/b/c.py", True),
    ("src/**", "srcx/a.py", False),
    ("**/x.py", "x.py", True),
    ("**/x.py", "a/b/x.py", True),
    ("**/x.py", "a/b/y.py", False),
    ("*.md", "README.md", True),
    ("*.md", "docs/a.md", False),
    ("docs", "docs/a.md", True),
    ("docs", "docs/sub/a.md", True),
    ("docs/", "docs/a.md", True),
    ("docs", "docsx/a.md", False),
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/a/b.py", False),
    ("src/?.py", "src/a.py", True),
    ("src/?.py", "src/ab.py", False),
    ("src/[ab].py", "src/b.py", True),
    ("src/[!ab].py", "src/b.py", False),
    ("src/[!ab].py", "src/c.py", True),
    ("src/[a-c]*.py", "src/cat.py", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("a**b/x", "aqqb/x", True),
    ("a**b/x", "a/b/x", False),
    ("\\*.md", "*.md", True),
    ("\\*.md", "a.md", False),
    ("**", "anything/at/all", True),
    ("./src/a.py", "src/a.py", True),
    ("src/a.py", "src/a.py/x", False),
    ("src/*", "src/a/b.py", True),
    ("v1.0/", "v1.0/notes.txt", True),
    ("*.py", "x.py/y.py", False),
]


@pytest.mark.parametrize(("glob", "path", "expected"), MATCHES, ids=lambda v: str(v))
def test_matching_follows_gitignore_like_rules(glob: str, path: str, expected: bool) -> None:
    """* ? [..] stay in one segment, ** crosses segments, a directory covers what is below."""
    assert compile_scope([glob]).matches(path) is expected


def test_several_globs_match_any() -> None:
    """A scope of several globs matches a path matched by any of them; none matches nothing."""
    matcher = compile_scope(["docs/**", "src/a.py"])
    assert matcher.matches("src/a.py") and matcher.matches("docs/x/y.md")
    assert not matcher.matches("src/b.py")
    assert not compile_scope([]).matches("src/a.py")


OVERLAPS = [
    ("src/a/**", "src/b/**", False),
    ("src/**", "src/b/x.py", True),
    ("*.md", "docs/**", False),
    ("**", "x/y/z", True),
    ("docs/a.md", "docs/a.md", True),
    ("**/*.py", "src/a.py", True),
    ("**/*.py", "src/a.md", False),
    ("src/*.py", "src/a/b.py", False),
    ("src/*.py", "src/**/b.py", True),
    ("src/[ab].py", "src/[cd].py", False),
    ("src/[ab].py", "src/[!a].py", True),
    ("a*", "*b", True),
    ("a*c", "b*", False),
    ("docs", "docs/a.md", True),
    ("x?", "xyz", False),
    ("README.md", "**/*.py", False),
    ("src/*", "src/a/b.py", True),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAPS, ids=lambda v: str(v))
def test_overlap_is_conservative_but_not_silly(a: str, b: str, expected: bool) -> None:
    """globs_overlap says False only when no path can match both, and is symmetric."""
    assert globs_overlap(a, b) is expected
    assert globs_overlap(b, a) is expected


def test_literal_prefix() -> None:
    """The literal directory before the first wildcard is what the repo check resolves."""
    assert glob_literal_prefix("src/a/*.py") == "src/a"
    assert glob_literal_prefix("src/a.py") == "src/a.py"
    assert glob_literal_prefix("**") == ""


SEGMENT_PARTS = st.sampled_from(["a", "b", ".c", "*", "?", "[ab]", "[!a]", "\\*", "a*b", "*.c"])
GLOB_SEGMENTS = st.one_of(
    st.just("**"), st.lists(SEGMENT_PARTS, min_size=1, max_size=3).map("".join)
)
GLOBS = st.tuples(
    st.lists(GLOB_SEGMENTS, min_size=1, max_size=4).map("/".join), st.sampled_from(["", "/"])
).map("".join)
PATHS = st.lists(
    st.text(alphabet="abc*.", min_size=1, max_size=4).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=5,
).map("/".join)


UNIVERSE_SEGMENTS = ["a", "b", "ab", "ba", "a.c", ".c", "*", "x.c"]
UNIVERSE = [
    "/".join(parts)
    for parts in itertools.chain.from_iterable(
        itertools.product(UNIVERSE_SEGMENTS, repeat=n) for n in (1, 2, 3)
    )
]


@settings(max_examples=400, deadline=None)
@given(GLOBS, GLOBS)
def test_no_overlap_means_no_common_path(a: str, b: str) -> None:
    """If globs_overlap(a, b) is False, no path of a 584-path universe matches both globs."""
    if globs_overlap(a, b):
        return
    match_a, match_b = compile_scope([a]), compile_scope([b])
    common = [p for p in UNIVERSE if match_a.matches(p) and match_b.matches(p)]
    assert common == []


@settings(max_examples=300, deadline=None)
@given(PATHS)
def test_a_path_overlaps_itself_and_everything_below(path: str) -> None:
    """A literal path glob matches itself, overlaps itself and the ** below it."""
    literal = path.replace("*", "\\*")
    assert compile_scope([literal]).matches(path)
    assert globs_overlap(literal, literal)
    assert globs_overlap(literal, path + "/**")
    assert globs_overlap(literal, "**")


@settings(max_examples=400, deadline=None)
@given(GLOBS, PATHS)
def test_literal_globs_match_as_their_regex_would(glob: str, path: str) -> None:
    """Literal globs skip the regular expression; the answer is the same as the regex's."""
    matcher = compile_scope([glob])
    regex = re.compile(_pattern_regex(glob), re.DOTALL)
    assert matcher.matches(path) is (regex.fullmatch(path.rstrip("/") + "/") is not None)


def test_literal_globs_compile_no_regex() -> None:
    """Names and directories (the usual scopes) are set lookups and prefix tests."""
    matcher = compile_scope(["w01/**", "docs", "src/a.py", "a\\*b"])
    assert matcher._regex is None
    assert matcher.matches("w01") and matcher.matches("w01/x/y") and not matcher.matches("w012")
    assert matcher.matches("docs/a.md") and matcher.matches("src/a.py")
    assert not matcher.matches("src/a.py/x") and matcher.matches("a*b")
