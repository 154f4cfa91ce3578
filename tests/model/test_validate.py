"""Semantic validation: ids, dependencies, cycles, paths, branches, placeholders, scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidp.exceptions import Problem, ValidationError
from aidp.model.loader import load_plan
from aidp.model.validate import PLACEHOLDERS, check_path, check_placeholders


def load_text(tmp_path: Path, text: str) -> list[Problem]:
    """Problems of a YAML text written to tmp_path (empty when it loads)."""
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_plan([path], repo=tmp_path)
    except ValidationError as exc:
        return exc.problems
    return []


def ws(ws_id: str, extra: str = "", steps: str = "[{id: s, run: 'true'}]") -> str:
    """One workstream entry of a YAML list."""
    return f"  - id: {ws_id}\n{extra}    steps: {steps}\n"


def plan(*entries: str) -> str:
    """A YAML workstream file from entries made by :func:`ws`."""
    return "version: 1\nworkstreams:\n" + "".join(entries)


def codes(problems: list[Problem]) -> list[str]:
    """The problem codes, in order."""
    return [p.code for p in problems]


def test_all_placeholders_and_escaped_braces_are_fine() -> None:
    """Every known placeholder is accepted, and {{ }} are literal braces."""
    template = " ".join("{" + name + "}" for name in sorted(PLACEHOLDERS)) + " {{x}} awk '{{a}}'"
    assert check_placeholders(template) == []


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{nope}", "unknown placeholder {nope}"),
        ("{}", "unknown placeholder {}"),
        ("{0}", "unknown placeholder {0}"),
        ("{worktree.parent}", "unknown placeholder {worktree.parent}"),
        ("{worktree!r}", "no conversion"),
        ("{worktree:>9}", "no conversion"),
        ("echo }", "malformed"),
        ("echo {worktree", "malformed"),
    ],
)
def test_bad_placeholders(template: str, words: str) -> None:
    """Unknown, indexed, converted and malformed placeholders are reported."""
    messages = check_placeholders(template)
    assert messages and words in messages[0]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("/abs", "absolute"),
        ("~/x", "absolute"),
        ("C:/x", "absolute"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a\0b", "NUL"),
        ("", "empty"),
    ],
)
def test_unsafe_paths(value: str, words: str) -> None:
    """Absolute paths, '..' segments, NUL bytes and empty paths are unsafe."""
    reason = check_path(value)
    assert reason is not None and words in reason


def test_safe_paths(tmp_path: Path) -> None:
    """Relative paths and globs inside the repository are safe."""
    for value in ["src/**", "a..b/c", "docs", "*.md", "./x"]:
        assert check_path(value, repo=tmp_path) is None


def test_symlinked_scope_outside_repo(tmp_path: Path) -> None:
    """A scope whose literal prefix is a symlink out of the repository is unsafe."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "out").symlink_to(tmp_path)
    reason = check_path("out/**", repo=repo)
    assert reason is not None and "outside" in reason


def test_independent_workstreams_with_disjoint_scopes_pass(tmp_path: Path) -> None:
    """Disjoint scopes may run in parallel without a declaration."""
    text = plan(ws("a", "    scope: [src/a/**]\n"), ws("b", "    scope: [src/b/**, '*.md']\n"))
    assert load_text(tmp_path, text) == []


def test_default_scopes_conflict(tmp_path: Path) -> None:
    """Two independent workstreams with the default scope (**) conflict."""
    problems = load_text(tmp_path, plan(ws("a"), ws("b")))
    assert codes(problems) == ["scope-conflict"]
    assert problems[0].id == "b" and "'a'" in problems[0].message
    assert "conflicts_with" in problems[0].message and "depends_on" in problems[0].message


@pytest.mark.parametrize(
    ("a_extra", "c_extra", "expected"),
    [
        ("", "    depends_on: [b]\n", set()),  # c -> b -> a: all ordered
        ("    conflicts_with: [c]\n", "", {("c", "b")}),  # declared on a's side only
        ("", "    conflicts_with: [a]\n", {("c", "b")}),
    ],
    ids=["transitive-dependency", "conflict-on-a", "conflict-on-c"],
)
def test_ordered_or_declared_workstreams_may_share_scope(
    tmp_path: Path, a_extra: str, c_extra: str, expected: set[tuple[str, str]]
) -> None:
    """Overlap is fine between an ancestor and a descendant, or when conflicts_with says so."""
    text = plan(ws("a", a_extra), ws("b", "    depends_on: [a]\n"), ws("c", c_extra))
    problems = load_text(tmp_path, text)
    assert codes(problems) == ["scope-conflict"] * len(expected)
    assert {(p.id, p.message.split("'")[1]) for p in problems} == expected


def test_self_references(tmp_path: Path) -> None:
    """Depending on or conflicting with oneself is reported, as is an unknown conflict."""
    text = plan(
        ws(
            "a",
            "    depends_on: [a]\n    conflicts_with: [a, zz]\n",
            "[{id: s, run: 'true', depends_on: [s]}]",
        )
    )
    assert sorted(codes(load_text(tmp_path, text))) == [
        "self-conflict",
        "self-dependency",
        "self-dependency",
        "unknown-conflict",
    ]


def test_two_independent_cycles_are_both_reported(tmp_path: Path) -> None:
    """Each cycle is reported once, with its path."""
    text = plan(
        ws("a", "    depends_on: [b]\n    scope: [a/**]\n"),
        ws("b", "    depends_on: [a]\n    scope: [b/**]\n"),
        ws("c", "    depends_on: [d]\n    scope: [c/**]\n"),
        ws("d", "    depends_on: [c]\n    scope: [d/**]\n"),
    )
    messages = [p.message for p in load_text(tmp_path, text) if p.code == "cycle"]
    assert messages == [
        "workstream dependency cycle: a -> b -> a",
        "workstream dependency cycle: c -> d -> c",
    ]


def test_branch_names(tmp_path: Path) -> None:
    """base must be a valid ref; merge.into a valid branch outside aidp/."""
    text = plan(
        ws("a", "    base: 'main~1'\n    scope: [a/**]\n"),
        ws("b", "    merge: {into: 'aidp/x'}\n    scope: [b/**]\n"),
        ws(
            "c",
            "    merge: {into: 'release/2.0', strategy: squash}\n    base: HEAD\n"
            "    scope: [c/**]\n",
        ),
    )
    problems = load_text(tmp_path, text)
    assert [(p.id, p.code) for p in problems] == [("a", "branch-name"), ("b", "branch-name")]


def test_check_commands_are_checked_too(tmp_path: Path) -> None:
    """Placeholders in acceptance checks are checked like the step's run."""
    steps = "[{id: s, run: 'true', checks: ['test -d {worktree}', {run: ['x', '{oops}']}]}]"
    problems = load_text(tmp_path, plan(ws("a", "", steps)))
    assert [(p.id, p.code) for p in problems] == [("a/s", "placeholder")]


def test_non_shell_step_needs_no_run(tmp_path: Path) -> None:
    """A step of another tool may omit run; a shell step with an empty argv may not."""
    steps = "[{id: s, tool: aider, prompt: hi}, {id: t, run: []}]"
    problems = load_text(tmp_path, plan(ws("a", "", steps)))
    assert [(p.id, p.code) for p in problems] == [("a/t", "missing-run")]


def test_select_needs_a_capability(tmp_path: Path) -> None:
    """select other than score on a step without a capability is refused, naming the step, the
    file and the line of its select; with a capability (or select: score) it is fine."""
    text = ("version: 1\nworkstreams:\n  - id: a\n    steps:\n"
            "      - id: s\n        run: 'true'\n        select: best_success\n"
            "      - {id: t, capability: code_edit, select: cheapest_passing, run: 'true'}\n"
            "      - {id: u, select: score, run: 'true'}\n")
    problems = load_text(tmp_path, text)
    assert [(p.id, p.code, p.line) for p in problems] == [
        ("a/s", "select-without-capability", 7)]
    assert problems[0].file is not None and problems[0].file.endswith("p.yaml")
    assert "select: best_success" in problems[0].message and "capability" in problems[0].message


def test_select_outside_its_values_is_a_shape_error(tmp_path: Path) -> None:
    """select: fastest is not one of score, best_success, cheapest_passing."""
    steps = "[{id: s, capability: code_edit, select: fastest, run: 'true'}]"
    problems = load_text(tmp_path, plan(ws("a", "", steps)))
    assert len(problems) == 1 and "select" in problems[0].message


SCOPE_SHAPES = ["src/a/**", "src/b/**", "src/**", "docs/*.md", "*.md", "**", "src/a/x.py",
                "docs/**", "lib/[ab]/*", "?rc/**"]


def test_scope_conflicts_are_found_between_every_overlapping_pair(tmp_path: Path) -> None:
    """Comparing only workstreams whose scopes share a first literal segment finds exactly the
    pairs a comparison of every pair finds, in the same order."""
    from itertools import combinations

    from aidp.model.scope import globs_overlap

    entries = [(f"w{i}", [SCOPE_SHAPES[i % len(SCOPE_SHAPES)],
                          SCOPE_SHAPES[(i * 7 + 3) % len(SCOPE_SHAPES)]]) for i in range(24)]
    text = plan(*(ws(name, f"    scope: {scopes!r}\n") for name, scopes in entries))
    found = [(p.id, p.message.split("'")[1]) for p in load_text(tmp_path, text)
             if p.code == "scope-conflict"]
    expected = [(b, a) for (a, sa), (b, sb) in combinations(entries, 2)
                if any(globs_overlap(x, y) for x in sa for y in sb)]
    assert 0 < len(found) < len(entries) * (len(entries) - 1) // 2
    assert sorted(found, key=lambda f: (int(f[0][1:]), int(f[1][1:]))) == found
    assert found == sorted(expected, key=lambda f: (int(f[0][1:]), int(f[1][1:])))
