"""The safe loader: YAML/JSON parsing with lines, model errors mapped to lines and ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidp.exceptions import Problem, ValidationError
from aidp.model.loader import MAX_DEPTH, TreeError, build_yaml_tree, load_plan, parse_file
from aidp.model.plan import Plan

VALID = """\
version: 1
workstreams:
  - id: api
    scope: [src/api/**]
    steps:
      - id: build
        run: make {worktree}
  - id: docs
    scope: [docs/**]
    steps:
      - id: write
        run: [echo, "{step}"]
"""


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(paths: list[Path], **kwargs: object) -> list[Problem]:
    """The problems load_plan raises for ``paths`` (fails the test if it loads)."""
    with pytest.raises(ValidationError) as info:
        load_plan(paths, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_valid_yaml_loads_with_sources(tmp_path: Path) -> None:
    """A valid file gives a Plan in file order, with file:line of each workstream."""
    path = write(tmp_path / "plan.yaml", VALID)
    plan = load_plan([path])
    assert [ws.id for ws in plan.workstreams] == ["api", "docs"]
    assert plan.sources == {"api": f"{path}:3", "docs": f"{path}:8"}
    assert plan.step("docs", "write").run == ["echo", "{step}"]


def test_directory_loads_sorted_files(tmp_path: Path) -> None:
    """A directory contributes its .yaml/.yml/.json files in name order, ignoring others."""
    write(tmp_path / "b.yml", VALID.replace("api", "api2").replace("docs", "docs2"))
    write(
        tmp_path / "a.json",
        '{"version": 1, "workstreams": [{"id": "j", "scope": ["j/**"],'
        ' "steps": [{"id": "s", "run": "true"}]}]}',
    )
    write(tmp_path / "notes.txt", "not a plan")
    plan = load_plan([tmp_path])
    assert [ws.id for ws in plan.workstreams] == ["j", "api2", "docs2"]


def test_json_problems_have_lines(tmp_path: Path) -> None:
    """A JSON file's model problems carry the line of the offending key."""
    path = write(
        tmp_path / "p.json",
        '{\n  "version": 1,\n  "workstreams": [\n    {\n      "id": "w",\n'
        '      "steps": [{"id": "s", "run": "true", "timeout": "soon"}]\n    }\n  ]\n}\n',
    )
    [problem] = problems_of([path])
    assert (problem.line, problem.id, problem.code) == (6, "w/s", "type")


def test_missing_key_points_at_the_parent(tmp_path: Path) -> None:
    """A missing required key is reported at the line of the object that lacks it."""
    path = write(tmp_path / "p.yaml", "version: 1\nworkstreams:\n  - id: w\n    title: x\n")
    [problem] = problems_of([path])
    assert (problem.line, problem.id, problem.code) == (3, "w", "missing-key")
    assert "'steps'" in problem.message


def test_union_errors_are_merged(tmp_path: Path) -> None:
    """A value failing every member of a union gives one problem, not one per member."""
    text = VALID.replace("run: make {worktree}", "run: 42")
    problems = problems_of([write(tmp_path / "p.yaml", text)])
    assert [(p.line, p.id, p.code) for p in problems] == [(7, "api/build", "type")]


def test_all_files_are_reported(tmp_path: Path) -> None:
    """Problems of several files are collected before raising."""
    bad1 = write(tmp_path / "a.yaml", "version: 1\nworkstreams: [{id: a, stepz: []}]\n")
    bad2 = write(tmp_path / "b.yaml", "version: 1\nversion: 1\n")
    files = {p.file for p in problems_of([bad1, bad2])}
    assert files == {str(bad1), str(bad2)}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("version: 1\ntrue: 2\n", "yaml-key"),
        ("version: 1\n? [a]\n: 1\n", "yaml-key"),
        ("version: 1\nworkstreams: !!set {a}\n", "yaml-tag"),
        ("version: !!int x\n", "yaml-tag"),
        ("version: 1\nworkstreams: [\n", "yaml-syntax"),
        ("- just\n- a list\n", "type"),
        ("# only a comment\n", "empty"),
        ("---\n...\n", "empty"),
        ("version: 1\nw: &x 1\n", "yaml-alias"),
    ],
    ids=[
        "bool-key",
        "complex-key",
        "set-tag",
        "bad-int",
        "syntax",
        "list",
        "comment",
        "null",
        "anchor",
    ],
)
def test_unsafe_or_odd_yaml_is_refused(tmp_path: Path, text: str, code: str) -> None:
    """Odd YAML is refused with a specific code rather than guessed at."""
    problems = problems_of([write(tmp_path / "p.yaml", text)])
    assert [p.code for p in problems] == [code]


def test_standard_tags_and_timestamps_are_plain_values() -> None:
    """!!str and friends work; an implicit date stays the string that was written."""
    data, lines = build_yaml_tree("a: !!str 12\nb: 2024-01-02\nc: [1, 2.5, null, true]\n")
    assert data == {"a": "12", "b": "2024-01-02", "c": [1, 2.5, None, True]}
    assert lines[("c", 1)] == 3


def test_depth_limit_counts_collections() -> None:
    """Nesting of exactly MAX_DEPTH collections loads; one more is refused."""
    build_yaml_tree("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(TreeError) as info:
        build_yaml_tree("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert info.value.code == "too-deep"


def test_very_deep_json_does_not_crash(tmp_path: Path) -> None:
    """JSON nested far beyond Python's recursion limit is refused as too deep."""
    path = write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)
    assert [p.code for p in problems_of([path])] == ["too-deep"]


def test_paths_that_are_not_plans(tmp_path: Path) -> None:
    """Missing paths, empty directories and other suffixes are problems, not crashes."""
    (tmp_path / "empty").mkdir()
    other = write(tmp_path / "plan.toml", "x = 1")
    codes = [p.code for p in problems_of([tmp_path / "nope.yaml", tmp_path / "empty", other])]
    assert codes == ["not-found", "no-files", "file-type"]


def test_prompt_file_is_inlined(tmp_path: Path) -> None:
    """prompt_file is read (relative to the workstream file) into prompt, which replaces it."""
    write(tmp_path / "plans" / "prompts" / "do.md", "Do the thing.\n")
    path = write(
        tmp_path / "plans" / "p.yaml",
        "version: 1\nworkstreams:\n  - id: w\n    steps:\n"
        "      - {id: s, tool: aider, prompt_file: prompts/do.md}\n",
    )
    plan = load_plan([path], repo=tmp_path)
    step = plan.step("w", "s")
    assert step.prompt == "Do the thing.\n"
    assert step.prompt_file is None


def test_missing_prompt_file(tmp_path: Path) -> None:
    """A prompt_file that does not exist is reported at its line."""
    path = write(
        tmp_path / "p.yaml",
        "version: 1\nworkstreams:\n  - id: w\n    steps:\n      - id: s\n"
        "        tool: aider\n        prompt_file: nope.md\n",
    )
    [problem] = problems_of([path], repo=tmp_path)
    assert (problem.line, problem.id, problem.code) == (7, "w/s", "missing-file")


def test_prompt_file_symlink_out_of_repo(tmp_path: Path) -> None:
    """A prompt_file reaching outside the repository through a symlink is unsafe."""
    repo = tmp_path / "repo"
    write(tmp_path / "secret.md", "secret")
    repo.mkdir()
    os.symlink(tmp_path / "secret.md", repo / "link.md")
    path = write(
        repo / "p.yaml",
        "version: 1\nworkstreams:\n  - id: w\n    steps:\n"
        "      - {id: s, tool: aider, prompt_file: link.md}\n",
    )
    [problem] = problems_of([path], repo=repo)
    assert problem.code == "unsafe-path" and "outside the repository" in problem.message
    assert load_plan([path]).step("w", "s").prompt == "secret"  # no repo given: not checked


def test_parse_file_checks_one_file(tmp_path: Path) -> None:
    """parse_file validates a single file's shape without plan-wide checks."""
    model = parse_file(write(tmp_path / "p.yaml", VALID))
    assert [ws.id for ws in model.workstreams] == ["api", "docs"]


def test_plan_round_trips_through_json(tmp_path: Path) -> None:
    """A loaded plan survives to_json/from_json unchanged."""
    plan = load_plan([write(tmp_path / "p.yaml", VALID)])
    assert Plan.from_json(plan.to_json()) == plan


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!#'\" \n\t,?|>%@`")), max_size=80))
def test_yaml_tree_never_crashes(text: str) -> None:
    """Arbitrary text either builds a tree or raises TreeError, nothing else."""
    try:
        build_yaml_tree(text)
    except TreeError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.sampled_from([".yaml", ".json"]))
def test_loader_never_crashes(text: str, suffix: str) -> None:
    """Any text in a workstream file ends in a Plan or a ValidationError."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"p{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_plan([path])
        except ValidationError as exc:
            assert exc.problems


def test_plan_with_inlined_prompt_round_trips(tmp_path: Path) -> None:
    """A plan whose prompt_file was read into prompt survives to_json/from_json."""
    write(tmp_path / "do.md", "Do it.\n")
    path = write(
        tmp_path / "p.yaml",
        "version: 1\nworkstreams:\n  - id: w\n    steps:\n"
        "      - {id: s, tool: aider, prompt_file: do.md}\n",
    )
    plan = load_plan([path])
    step = plan.step("w", "s")
    assert step.prompt == "Do it.\n" and step.prompt_file is None
    assert Plan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO"])
def test_yaml_11_booleans_are_strings_in_every_yaml_aidp_reads(word: str) -> None:
    """`yes`, `no`, `on` ... are strings in workstream files, CCPM frontmatter and OpenSpec
    configs alike (YAML 1.2 booleans: only true/false are booleans)."""
    from aidp.model.yaml_tree import load_yaml

    tree, _ = build_yaml_tree(f"a: {word}\nb: true\nc: False\n")
    assert tree == {"a": word, "b": True, "c": False}
    assert load_yaml(f"a: {word}\nb: true\nc: False\n") == tree


def test_a_name_too_long_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """A path the OS refuses to look at (ENAMETOOLONG) is an input problem naming it."""
    [problem] = problems_of([tmp_path / ("x" * 5000 + ".yaml")])
    assert problem.code == "unreadable" and "x" * 50 in problem.file
