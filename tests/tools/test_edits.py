"""Parsing and applying the OpenAI adapter's edit formats: all-or-nothing, inside the scope."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.errors.finding import FailureClass
from aidp.tools.edits import DETECTOR, Edit, apply_edits, check_path, parse_edits

DIFF = '''Here is the change.

src/app.py
```python
<<<<<<< SEARCH
def greet():
    return "hi"
=======
def greet():
    return "hello"
>>>>>>> REPLACE
```
'''


def test_parse_one_search_replace_block() -> None:
    """A path line, a fence and one SEARCH/REPLACE block make one edit."""
    parsed = parse_edits(DIFF, "diff")
    assert parsed.findings == ()
    assert parsed.edits == (Edit("src/app.py", 'def greet():\n    return "hi"\n',
                                 'def greet():\n    return "hello"\n', 5),)


def test_parse_several_blocks_and_files() -> None:
    """Blocks without their own path line edit the previous file; decorated paths are read."""
    text = ("**src/a.py**\n```\n<<<<<<< SEARCH\na\n=======\nA\n>>>>>>> REPLACE\n"
            "<<<<<<< SEARCH\nb\n=======\nB\n>>>>>>> REPLACE\n```\n\n"
            "`src/b.py`:\n```\n<<<<<<< SEARCH\n=======\nnew\n>>>>>>> REPLACE\n```\n")
    parsed = parse_edits(text, "diff")
    assert parsed.findings == ()
    assert [(e.path, e.search, e.replace) for e in parsed.edits] == [
        ("src/a.py", "a\n", "A\n"), ("src/a.py", "b\n", "B\n"), ("src/b.py", "", "new\n")]


def test_parse_unfenced_block() -> None:
    """A block without a fence still counts (models forget fences)."""
    parsed = parse_edits("x.txt\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n", "diff")
    assert [(e.path, e.search, e.replace) for e in parsed.edits] == [("x.txt", "old\n", "new\n")]


@pytest.mark.parametrize(("text", "code"), [
    ("just prose, no edits", "no-edits"),
    ("a.py\n```\n<<<<<<< SEARCH\nx\n```\n", "malformed-block"),
    ("a.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n```\n", "malformed-block"),
    ("a.py\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n", "malformed-block"),
    ("Some text here:\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "missing-path"),
    ("a.py\n=======\n", "malformed-block"),
], ids=["prose", "no-divider", "no-replace", "replace-before-divider", "no-path", "stray"])
def test_malformed_diff_replies(text: str, code: str) -> None:
    """Malformed SEARCH/REPLACE replies become permanent findings of detector openai-edits."""
    parsed = parse_edits(text, "diff")
    assert parsed.edits == ()
    assert [f.code for f in parsed.findings][:1] == [code]
    assert all(f.detector == DETECTOR and f.failure_class is FailureClass.PERMANENT
               for f in parsed.findings)


def test_parse_whole_files() -> None:
    """Whole format: each fenced block after a path line is the file's new content; fences
    without a path are explanations and ignored; a longer fence may hold ``` lines."""
    text = ("src/a.py\n```python\nx = 1\n```\n\nAn example:\n```\nignored\n```\n"
            "README.md\n````markdown\n# T\n```sh\nls\n```\n````\n")
    parsed = parse_edits(text, "whole")
    assert parsed.findings == ()
    assert [(e.path, e.search, e.replace) for e in parsed.edits] == [
        ("src/a.py", None, "x = 1\n"), ("README.md", None, "# T\n```sh\nls\n```\n")]


def test_whole_unclosed_fence_is_malformed() -> None:
    """Whole format: a fence never closed is a malformed block (a truncated reply)."""
    parsed = parse_edits("src/a.py\n```\nx = 1\n", "whole")
    assert [f.code for f in parsed.findings] == ["malformed-block"]


PIECES = ["a", "\n", "`", "<", "=", ">", " ", "SEARCH", "REPLACE", "<<<<<<< SEARCH\n",
          "=======\n", ">>>>>>> REPLACE\n", "```\n", "f.py\n", "../x\n"]


@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_parsers_never_crash(text: str) -> None:
    """Neither parser raises on any text; each returns edits or at least one finding."""
    for edit_format in ("diff", "whole"):
        parsed = parse_edits(text, edit_format)  # type: ignore[arg-type]
        assert parsed.edits or parsed.findings


@pytest.mark.parametrize("path", ["/etc/passwd", "~/x", "../outside.py", "src/../../x",
                                  ".git/config", "a\\b.py", "C:/x.py", ""],
                         ids=["absolute", "home", "dotdot", "inner-dotdot", "git", "backslash",
                              "drive", "empty"])
def test_unsafe_paths_are_refused(tmp_path: Path, path: str) -> None:
    """Absolute paths, '..', .git, backslashes and empty paths are refused."""
    _, finding = check_path(path, tmp_path)
    assert finding is not None and finding.code == "unsafe-path"


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    """A path through a symbolic link (possibly leading outside) is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(outside, work / "link")
    _, finding = check_path("link/x.py", work)
    assert finding is not None and finding.code == "unsafe-path"


def test_apply_is_all_or_nothing(tmp_path: Path) -> None:
    """One bad edit (SEARCH missing, ambiguous, out of scope) means no file is written."""
    (tmp_path / "a.py").write_text("one\ntwo\ntwo\n")
    edits = [Edit("a.py", "one\n", "ONE\n", 1), Edit("b.py", "", "new\n", 5),
             Edit("a.py", "two\n", "TWO\n", 9), Edit("a.py", "zzz\n", "", 12),
             Edit("docs/c.md", "", "x\n", 15)]
    result = apply_edits(edits, tmp_path, in_scope=lambda p: not p.startswith("docs/"))
    assert [f.code for f in result.findings] == ["search-ambiguous", "search-not-found",
                                                 "out-of-scope"]
    assert result.changed == ()
    assert (tmp_path / "a.py").read_text() == "one\ntwo\ntwo\n"
    assert not (tmp_path / "b.py").exists()


def test_apply_writes_in_order_and_creates(tmp_path: Path) -> None:
    """Edits of one file apply in order; an empty SEARCH creates a file and its directories;
    the file mode is kept."""
    script = tmp_path / "run.sh"
    script.write_text("echo a\necho b\n")
    script.chmod(0o755)
    edits = [Edit("run.sh", "echo a\n", "echo A\n", 1), Edit("run.sh", "echo A\necho b\n",
                                                             "echo AB\n", 2),
             Edit("new/dir/f.txt", "", "hello\n", 3)]
    result = apply_edits(edits, tmp_path)
    assert result.ok
    assert result.changed == ("run.sh", "new/dir/f.txt")
    assert result.created == ("new/dir/f.txt",)
    assert script.read_text() == "echo AB\n"
    assert script.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "new/dir/f.txt").read_text() == "hello\n"


def test_empty_search_on_existing_file_and_missing_file(tmp_path: Path) -> None:
    """An empty SEARCH on an existing file, or a SEARCH on a missing file, is a finding."""
    (tmp_path / "a.py").write_text("x\n")
    result = apply_edits([Edit("a.py", "", "y\n", 1), Edit("nope.py", "x\n", "y\n", 2)], tmp_path)
    assert [f.code for f in result.findings] == ["file-exists", "file-not-found"]


def test_binary_file_is_not_edited(tmp_path: Path) -> None:
    """A file that is not UTF-8 text cannot be edited."""
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00")
    result = apply_edits([Edit("blob.bin", "x", "y", 1)], tmp_path)
    assert [f.code for f in result.findings] == ["unreadable"]
