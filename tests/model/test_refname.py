"""Ref-name rules, checked against the real ``git check-ref-format``."""

from __future__ import annotations

import subprocess

import pytest

from aidp.model.refname import check_ref_name, is_valid_branch_name, is_valid_ref_name

NAMES = [
    "main",
    "feature/login",
    "aidp/01ARZ3NDEKTSV4RRFFQ69G5FAV/ws-a",
    "release-1.0",
    "a.b",
    "a/b/c/d",
    "x_y",
    "ünïcode",
    "a@b",
    "a{b}",
    "a..b",
    "a/.hidden",
    ".hidden",
    "a.lock",
    "a/b.lock/c",
    "a.lock.b",
    "ends.",
    "ends/",
    "/starts",
    "a//b",
    "with space",
    "tab\tname",
    "ctrl\x01x",
    "del\x7fx",
    "tilde~1",
    "caret^",
    "co:lon",
    "quest?",
    "star*",
    "brack[et",
    "back\\slash",
    "at@{brace",
    "-dash",
    "a-",
    "HEAD",
    "refs/heads/x",
    "a/./b",
    "a/../b",
    "",
]


def git_accepts_branch(name: str) -> bool:
    """Ask ``git check-ref-format --branch`` (run outside any repository)."""
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        capture_output=True,
        check=False,
        cwd="/",
    )
    return done.returncode == 0


@pytest.mark.parametrize("name", NAMES, ids=repr)
def test_branch_rules_agree_with_git(name: str) -> None:
    """is_valid_branch_name says what git check-ref-format --branch says."""
    assert is_valid_branch_name(name) == git_accepts_branch(name)


@pytest.mark.parametrize("name", ["HEAD", "main", "origin/main", "v1.0"])
def test_plain_refs_allow_head(name: str) -> None:
    """A base ref may be HEAD, which is not a branch name."""
    assert is_valid_ref_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("a..b", "'..'"), ("a.lock", ".lock"), ("@", "'@'"), ("x/", "'/'"), ("", "empty")],
)
def test_reasons_name_the_rule(name: str, reason: str) -> None:
    """check_ref_name explains which rule failed."""
    message = check_ref_name(name)
    assert message is not None and reason in message
