"""Prompt templates of the openai adapter: rendering, caps, fix attempts, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

import aidp.tools.adapters
from aidp.errors.finding import FailureClass, Finding
from aidp.exceptions import ToolError
from aidp.tools.prompts import (
    BUILTIN_DIR,
    TEMPLATE_NAMES,
    build_messages,
    load_template,
    read_files,
    render_files,
)


def test_adapters_export_list_is_pinned() -> None:
    """aidp.tools.adapters exports the OpenAI adapter."""
    assert "OpenAIAdapter" in aidp.tools.adapters.__all__


def test_every_builtin_template_exists() -> None:
    """Each template name has a built-in Markdown file."""
    for name in TEMPLATE_NAMES:
        text, path = load_template(name)
        assert path == BUILTIN_DIR / f"{name}.md" and text.strip()


def test_fix_attempt_carries_the_findings() -> None:
    """With findings, fix.md is rendered into the user message, one line per finding."""
    finding = Finding(detector="pytest", message="assert 1 == 2", file="tests/test_a.py",
                      line=3, code="test-failed", failure_class=FailureClass.PERMANENT)
    system, user = build_messages(prompt="Fix it.", files=[], findings=[finding],
                                  scope=["src/**"], edit_format="whole")
    assert "whole" in system["content"] and "src/**" in system["content"]
    assert "# The previous attempt failed" in user["content"]
    assert "- [test-failed] tests/test_a.py:3: assert 1 == 2" in user["content"]
    _, plain = build_messages(prompt="Fix it.", files=[])
    assert "previous attempt" not in plain["content"]


def test_files_are_capped_and_binary_files_listed(tmp_path: Path) -> None:
    """Files over the caps and binary files appear by path only; others in a safe fence."""
    (tmp_path / "small.md").write_text("text with ``` inside\n")
    (tmp_path / "big.txt").write_text("x" * 5000)
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01")
    files = read_files(tmp_path, ["small.md", "big.txt", "blob.bin", "gone.txt"],
                       max_file_bytes=1000)
    shown = render_files(files)
    assert "small.md\n````\ntext with ``` inside\n````" in shown
    assert "big.txt (5000 bytes, over the prompt size limit; not shown)" in shown
    assert "blob.bin (binary; not shown)" in shown
    assert "gone.txt (missing; not shown)" in shown


def test_override_wins_and_bad_placeholders_name_the_file(tmp_path: Path) -> None:
    """<repo>/.aidp/templates/NAME.md replaces the built-in; a bad one is a ToolError."""
    folder = tmp_path / ".aidp" / "templates"
    folder.mkdir(parents=True)
    (folder / "fix.md").write_text("FIX: $findings\n")
    finding = Finding(detector="d", message="m", failure_class=FailureClass.UNKNOWN)
    _, user = build_messages(prompt="p", files=[], findings=[finding], repo=tmp_path)
    assert "FIX: - m" in user["content"]
    (folder / "step.md").write_text("cost: $5\n")
    with pytest.raises(ToolError, match=r"step\.md: Invalid placeholder"):
        build_messages(prompt="p", files=[], repo=tmp_path)
