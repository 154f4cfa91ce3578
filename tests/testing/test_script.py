"""Fake LLM scripts: the step kinds, and one-line errors naming file, line and step."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.testing import Script, ScriptError, Step, load_script
from aidp.testing.script import parse_script


def test_shorthand_and_full_steps(tmp_path: Path) -> None:
    """A bare string is a reply; every step kind loads from YAML."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "- hello\n"
        "- tool_calls: [{name: f, arguments: {a: 1}}]\n"
        "- error: {status: 429, message: slow, retry_after: 1.5}\n"
        "- hang: 3\n"
        "- drop: true\n"
        "- {stall: 2, reply: half, usage: {input_tokens: 1, output_tokens: 2}, times: 4}\n"
    )
    script = load_script(path)
    assert script.steps[0] == Step(reply="hello")
    assert script.steps[1].tool_calls is not None
    assert script.steps[1].tool_calls[0].arguments_json == '{"a": 1}'
    assert script.steps[2].error is not None and script.steps[2].error.retry_after == 1.5
    assert script.steps[5].times == 4


def test_mapping_with_steps_and_json(tmp_path: Path) -> None:
    """A JSON file, or a mapping with 'steps', is a script too."""
    path = tmp_path / "s.json"
    path.write_text('{"steps": [{"reply": "a"}, "b"]}')
    assert [s.reply for s in load_script(path).steps] == ["a", "b"]


@pytest.mark.parametrize(("text", "expected"), [
    ("- ok\n- reply: x\n  drop: true\n", r"s\.yaml:2: step 1: drop cannot be combined"),
    ("- ok\n- ok\n- error:\n    status: 200\n", r"s\.yaml:4: step 2: error\.status: Input"),
    ("- {times: 2}\n", r"s\.yaml:1: step 0: a step needs one of"),
    ("- replay: typo\n", r"s\.yaml:1: step 0: replay: Extra inputs"),
    ("- ok\n- [unclosed\n", r"s\.yaml:\d+: invalid YAML"),
    ("[]\n", r"s\.yaml:1: steps: List should have at least 1 item"),
    ("hello: 1\n", r"s\.yaml:1: steps: Field required"),
    ("42\n", r"s\.yaml:1: a script is a list of steps"),
    ("- !!python/object:os.system ls\n", r"s\.yaml:1: tag .* is not allowed"),
], ids=["combined", "status", "empty-step", "unknown-key", "syntax", "no-steps", "mapping",
        "scalar", "tag"])
def test_bad_yaml_names_file_line_and_step(tmp_path: Path, text: str, expected: str) -> None:
    """A bad YAML script raises ScriptError whose message names file, line and step."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScriptError, match=expected) as caught:
        load_script(path)
    assert caught.value.exit_code == 2
    assert "\n" not in caught.value.message


def test_bad_json_names_line(tmp_path: Path) -> None:
    """A bad JSON script names the line of the syntax error, or of the bad step."""
    path = tmp_path / "s.json"
    path.write_text('[\n  "ok",\n  {"error": {"status": 99}}\n]\n')
    with pytest.raises(ScriptError, match=r"s\.json:3: step 1: error\.status"):
        load_script(path)
    path.write_text('[\n  "ok",\n  oops\n]\n')
    with pytest.raises(ScriptError, match=r"s\.json:3: invalid JSON"):
        load_script(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    """A missing, empty or non-UTF-8 file is a ScriptError naming it."""
    with pytest.raises(ScriptError, match=r"nope\.yaml: cannot read"):
        load_script(tmp_path / "nope.yaml")
    (tmp_path / "e.yaml").write_text("")
    with pytest.raises(ScriptError, match=r"e\.yaml:1: file is empty"):
        load_script(tmp_path / "e.yaml")
    (tmp_path / "b.yaml").write_bytes(b"- ok\n- \xff\n")
    with pytest.raises(ScriptError, match=r"b\.yaml:2: file is not valid UTF-8"):
        load_script(tmp_path / "b.yaml")


def test_script_of_python_list() -> None:
    """Script.of takes a list of strings, dicts and Steps."""
    script = Script.of(["a", {"reply": "b"}, Step(drop=True)])
    assert [s.reply for s in script.steps] == ["a", "b", None]


_SCALARS = st.none() | st.booleans() | st.integers(-5, 700) | st.floats(allow_nan=False) | \
    st.sampled_from(["reply", "error", "hang", "drop", "stall", "times", "tool_calls", "status",
                     "name", "arguments", "x"])
_DATA = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["reply", "error", "hang", "drop", "stall", "times", "tool_calls", "usage",
                     "status", "message", "name", "arguments", "steps", "zzz"]), inner,
    max_size=4), max_leaves=12)


@given(_DATA)
def test_parse_script_only_raises_script_error(data: object) -> None:
    """Any parsed data either validates or raises ScriptError with a one-line message."""
    try:
        parse_script(data)
    except ScriptError as exc:
        assert "\n" not in exc.message
