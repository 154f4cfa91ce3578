"""Tests for the codex adapter's pure parts: its config.toml, command line, JSONL parsing.

The real Codex CLI is driven in test_realtools.py.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.config import ToolProfile
from aidp.exceptions import ToolError
from aidp.tools.adapter import ToolEvent, Usage
from aidp.tools.adapters.codex import (
    DISABLED_FEATURES,
    PROVIDER_ID,
    SECRET_ENV_PATTERNS,
    CodexAdapter,
    CodexOutput,
    codex_argv,
    codex_config,
    codex_prompt,
    stream_idle_timeout_ms,
)
from tests.helpers import init_repo
from tests.tools._adapters import GREETING, KEY_ENV, SECRET, invocation

PROFILE = ToolProfile(adapter="codex", model="fake-model", base_url="http://127.0.0.1:9/v1",
                      api_key_env=KEY_ENV, sandbox="danger-full-access")

# What Codex 0.169 printed here for an apply_patch edit (the worktree was /w/repo).
TRANSCRIPT = [
    {"type": "thread.started", "thread_id": "01a2338b"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "error", "message":
        "Model metadata for `fake-model` not found. Defaulting to fallback metadata"}},
    {"type": "turn.started"},
    {"type": "item.started", "item": {"id": "item_1", "type": "file_change", "changes": [
        {"path": "/w/repo/hello.py", "kind": "update"}], "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "file_change", "changes": [
        {"path": "/w/repo/hello.py", "kind": "update"}, {"path": "/elsewhere/x", "kind": "add"}],
        "status": "completed"}},
    {"type": "item.completed", "item": {"id": "item_2", "type": "command_execution",
        "command": "pytest -q", "aggregated_output": "1 passed\n", "exit_code": 0,
        "status": "completed"}},
    {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message",
                                        "text": "Done."}},
    {"type": "turn.completed", "usage": {"input_tokens": 11039, "cached_input_tokens": 100,
                                         "output_tokens": 53, "reasoning_output_tokens": 0}},
]


def config(profile: ToolProfile = PROFILE, timeout_s: float = 100.0) -> dict[str, Any]:
    """The generated config.toml, parsed."""
    return tomllib.loads(codex_config(profile, timeout_s=timeout_s))


def test_config_uses_a_custom_responses_provider_with_the_key_by_name() -> None:
    """With a base_url, the model goes through a custom provider speaking the Responses API,
    the key named (not given) by env_key, Codex's own retries off."""
    data = config()
    assert data["model"] == "fake-model"
    assert data["model_provider"] == PROVIDER_ID
    assert data["approval_policy"] == "never"
    assert data["sandbox_mode"] == "danger-full-access"
    assert data["check_for_update_on_startup"] is False
    assert data["web_search"] == "disabled"
    assert data["model_providers"][PROVIDER_ID] == {
        "name": PROVIDER_ID, "base_url": "http://127.0.0.1:9/v1", "wire_api": "responses",
        "env_key": KEY_ENV, "request_max_retries": 0, "stream_max_retries": 0,
        "stream_idle_timeout_ms": 25_000,
    }
    assert SECRET not in codex_config(PROFILE, timeout_s=100.0)


def test_config_turns_off_everything_that_calls_home() -> None:
    """analytics, feedback and agents are off and every listed feature is false."""
    data = config()
    assert data["analytics"] == data["feedback"] == data["agents"] == {"enabled": False}
    assert data["features"] == dict.fromkeys(DISABLED_FEATURES, False)
    assert {"unbounded_connection_retries", "plugins", "remote_plugin"} <= set(data["features"])


def test_config_without_endpoint_uses_the_builtin_provider() -> None:
    """Without a base_url, Codex's built-in openai provider is used and no provider is added."""
    data = config(ToolProfile(adapter="codex", model="gpt-5-codex"))
    assert data["model_provider"] == "openai"
    assert "model_providers" not in data
    assert data["sandbox_mode"] == "workspace-write"


def test_config_quotes_awkward_values() -> None:
    """Quotes, backslashes and newlines in values survive as TOML strings."""
    awkward = 'we"ird\\model\nname'
    assert config(PROFILE.model_copy(update={"model": awkward}))["model"] == awkward


def test_config_keeps_the_keys_out_of_the_commands_codex_runs() -> None:
    """[shell_environment_policy] excludes the profile's key variable and OPENAI_API_KEY by
    exact name, plus Codex's default *KEY*/*SECRET*/*TOKEN* patterns (which it does not apply
    unless ignore_default_excludes = false); nothing in it is a secret."""
    text = codex_config(PROFILE, timeout_s=100.0)
    assert "\n[shell_environment_policy]\n" in text
    assert tomllib.loads(text)["shell_environment_policy"] == {
        "inherit": "all", "ignore_default_excludes": False,
        "exclude": [KEY_ENV, "OPENAI_API_KEY", *SECRET_ENV_PATTERNS], "set": {},
    }
    assert SECRET_ENV_PATTERNS == ("*KEY*", "*SECRET*", "*TOKEN*")
    builtin = config(ToolProfile(adapter="codex", model="gpt-5-codex"))
    assert builtin["shell_environment_policy"]["exclude"] == [
        "OPENAI_API_KEY", *SECRET_ENV_PATTERNS]


def test_config_excludes_more_names_and_sets_variables_back() -> None:
    """exclude_env names are excluded too (once each); set_env is put back after the excludes
    (aidp's process token, which *TOKEN* would drop)."""
    text = codex_config(PROFILE, timeout_s=100.0, exclude_env=["OTHER_CRED", KEY_ENV],
                        set_env={"AIDP_PROCESS_TOKEN": "abc123", "Q": 'a"b'})
    policy = tomllib.loads(text)["shell_environment_policy"]
    assert policy["exclude"] == [KEY_ENV, "OPENAI_API_KEY", "OTHER_CRED", *SECRET_ENV_PATTERNS]
    assert policy["set"] == {"AIDP_PROCESS_TOKEN": "abc123", "Q": 'a"b'}


def test_run_writes_a_policy_excluding_every_name_holding_the_key(tmp_path: Path) -> None:
    """run() excludes every variable holding the provider key (aliases included) and keeps
    the attempt's process token for the commands Codex runs."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    profile = PROFILE.model_copy(update={"command": ["/bin/true"]})
    with invocation(tmp_path, repo, profile, extra_env={"ALIAS_CRED": SECRET}) as inv:
        CodexAdapter().run(inv)
    text = (inv.attempt_dir / "codex-home" / "config.toml").read_text()
    policy = tomllib.loads(text)["shell_environment_policy"]
    assert {KEY_ENV, "ALIAS_CRED", "OPENAI_API_KEY"} <= set(policy["exclude"])
    assert policy["set"] == {"AIDP_PROCESS_TOKEN": inv.token}
    assert SECRET not in text


def test_run_excludes_every_variable_holding_any_masked_secret(tmp_path: Path) -> None:
    """Another profile's key or a step's declared secret under a name no pattern catches
    (DEPLOY_PASSPHRASE) is kept out of the commands Codex runs too."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    profile = PROFILE.model_copy(update={"command": ["/bin/true"]})
    other = "other-provider-credential-value"
    with invocation(tmp_path, repo, profile, extra_env={"DEPLOY_PASSPHRASE": other,
                                                         "HARMLESS": "plain"},
                    extra_secrets=[other]) as inv:
        CodexAdapter().run(inv)
    text = (inv.attempt_dir / "codex-home" / "config.toml").read_text()
    exclude = tomllib.loads(text)["shell_environment_policy"]["exclude"]
    assert "DEPLOY_PASSPHRASE" in exclude and "HARMLESS" not in exclude
    assert other not in text


def test_config_needs_a_model() -> None:
    """A codex profile must name a model."""
    with pytest.raises(ToolError, match="needs a model"):
        codex_config(ToolProfile(adapter="codex"), timeout_s=10)


@pytest.mark.parametrize(("step", "expected"), [(1.0, 2000), (100.0, 25_000), (1e6, 300_000)],
                         ids=["floor", "share", "ceiling"])
def test_idle_timeout_is_a_bounded_share_of_the_step_timeout(step: float, expected: int) -> None:
    """stream_idle_timeout_ms is 25 % of the step timeout, within 2..300 s."""
    assert stream_idle_timeout_ms(step) == expected


def test_argv_is_exec_json_strict_ephemeral_in_the_worktree(tmp_path: Path) -> None:
    """The command line is codex exec --json --strict-config --ephemeral -C WORKTREE -- PROMPT."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    profile = PROFILE.model_copy(update={"args": ["--skip-git-repo-check"]})
    with invocation(tmp_path, repo, profile) as inv:
        argv = codex_argv(["codex"], inv, "-rf do it")
    assert argv == ["codex", "exec", "--json", "--strict-config", "--ephemeral", "-C", str(repo),
                    "--skip-git-repo-check", "--", "-rf do it"]


def test_a_prompt_too_long_for_one_argument_is_read_from_its_file() -> None:
    """A prompt over the argument limit is replaced by an instruction naming its file."""
    assert codex_prompt("short", Path("/a/prompt.md")) == "short"
    instead = codex_prompt("x" * 200_000, Path("/a/prompt.md"))
    assert "/a/prompt.md" in instead and len(instead) < 200


def feed(lines: list[bytes], chunk: int, worktree: Path | None = Path("/w/repo")) -> CodexOutput:
    """A CodexOutput fed ``lines`` cut into pieces of ``chunk`` bytes."""
    output = CodexOutput(worktree)
    data = b"".join(lines)
    for start in range(0, len(data), chunk):
        output.feed(data[start:start + chunk])
    output.close()
    return output


@pytest.mark.parametrize("chunk", [1, 13, 100_000], ids=["bytewise", "small", "whole"])
def test_jsonl_becomes_events_and_usage(chunk: int) -> None:
    """Items become command / file_change / message events, turn.completed usage; paths in the
    worktree turn relative; the harmless model-metadata error is only a warning."""
    lines = [b"WARNING: proceeding, even though ...\n", b"Reading additional input from stdin\n"]
    lines += [json.dumps(event).encode() + b"\n" for event in TRANSCRIPT]
    output = feed(lines, chunk)
    assert output.thread_id == "01a2338b"
    assert [event.kind for event in output.events] == [
        "warning", "file_change", "file_change", "command", "message", "usage"]
    assert output.events[1] == ToolEvent("file_change", {"path": "hello.py", "kind": "update"})
    assert output.events[2].data == {"path": "/elsewhere/x", "kind": "add"}
    assert output.events[3].data == {"command": "pytest -q", "exit_code": 0,
                                     "status": "completed", "output": "1 passed\n"}
    assert output.usage == Usage(input_tokens=11039, output_tokens=53, cached_tokens=100,
                                 requests=1)
    assert not output.turn_failed


def test_failed_turn_and_errors_become_error_events() -> None:
    """error events and turn.failed become error events; turn_failed is set."""
    events = [
        {"type": "turn.started"},
        {"type": "error", "message": "exceeded retry limit, last status: 429 Too Many Requests"},
        {"type": "turn.failed", "error": {"message": "exceeded retry limit, last status: 429"}},
    ]
    output = feed([json.dumps(event).encode() + b"\n" for event in events], 1000)
    assert output.turn_failed
    assert [(e.kind, e.data["source"]) for e in output.events] == [
        ("error", "error"), ("error", "turn.failed")]
    assert "429 Too Many Requests" in output.events[0].data["message"]


def test_events_are_bounded() -> None:
    """A runaway stream of items yields a bounded number of events."""
    item = {"type": "item.completed", "item": {"type": "agent_message", "text": "again"}}
    line = json.dumps(item).encode() + b"\n"
    assert len(feed([line] * (CodexOutput.MAX_EVENTS + 20), 100_000).events) == \
        CodexOutput.MAX_EVENTS


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
TYPES = st.sampled_from(["thread.started", "item.completed", "turn.completed", "turn.failed",
                         "error", "other"])
ITEM_TYPES = st.sampled_from(["command_execution", "file_change", "agent_message", "error"])
KEYS = st.sampled_from(["message", "text", "command", "changes", "exit_code", "input_tokens",
                        "output_tokens", "thread_id", "path"]) | st.text(max_size=6)


@given(st.lists(st.one_of(
    st.binary(max_size=80),
    st.builds(lambda t, it, extra: json.dumps({"type": t, "item": {"type": it, **extra},
                                               "usage": extra, "error": extra}).encode() + b"\n",
              TYPES, ITEM_TYPES, st.dictionaries(KEYS, JSON, max_size=5)),
), max_size=15))
def test_jsonl_parser_never_crashes(lines: list[bytes]) -> None:
    """Arbitrary bytes and ill-typed events never make the JSONL parser raise."""
    output = feed(lines, 37)
    assert output.usage.requests >= 0


def test_missing_binary_is_an_error_result(tmp_path: Path) -> None:
    """When the codex binary is missing, run() reports an error instead of raising."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    profile = PROFILE.model_copy(update={"command": ["/nonexistent/codex"]})
    with invocation(tmp_path, repo, profile) as inv:
        result = CodexAdapter().run(inv)
    assert result.exit_code is None and result.error is not None
    assert result.error.startswith("codex not found")
