"""Tests for the aider adapter's pure parts: its command line, model metadata, output parsing.

The real Aider CLI is driven in test_realtools.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aidp.config import ToolProfile
from aidp.exceptions import ToolError
from aidp.tools.adapter import ToolEvent, Usage
from aidp.tools.adapters.aider import (
    MAX_EDITABLE_FILES,
    AiderAdapter,
    AiderOutput,
    aider_argv,
    aider_model,
    model_metadata,
    parse_tokens,
    request_timeout_s,
)
from tests.helpers import init_repo
from tests.tools._adapters import GREETING, KEY_ENV, SECRET, invocation

PROFILE = ToolProfile(adapter="aider", model="fake-model", base_url="http://127.0.0.1:9/v1",
                      api_key_env=KEY_ENV)

TRANSCRIPT = b"""\
Aider v0.86.2
Model: openai/fake-model with diff edit format
Added hello.py to the chat.

hello.py
```python
<<<<<<< SEARCH
    return "hello"
=======
    return "hello, world"
>>>>>>> REPLACE
```

Tokens: 2.1k sent, 26 received. Cost: $0.01 message, $0.01 session.
Applied edit to hello.py
litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached
The API provider has rate limited you. Try again later or check your quotas.
Retrying in 0.2 seconds...
Tokens: 12k sent, 1.0k cache write, 500 cache hit, 1,234 received. Cost: $0.02 message, $0.03 \
session.
"""


def test_argv_is_offline_non_interactive_and_keeps_files_outside_the_worktree(
    tmp_path: Path,
) -> None:
    """The command line carries the measured offline flags, history outside the worktree, the
    scope as editable files, context via --read, and never the key."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    spec = tmp_path / "spec.md"
    with invocation(tmp_path, repo, PROFILE, timeout_s=100.0, context_files=[spec]) as inv:
        argv = aider_argv(["aider"], inv, message_file=inv.attempt_dir / "prompt.md",
                          metadata_file=inv.attempt_dir / "meta.json")
    for flag in ("--yes-always", "--no-stream", "--no-pretty", "--no-fancy-input",
                 "--no-show-model-warnings", "--no-check-update", "--analytics-disable",
                 "--no-show-release-notes", "--no-gitignore", "--no-detect-urls",
                 "--no-suggest-shell-commands", "--no-restore-chat-history",
                 "--no-auto-commits", "--no-dirty-commits"):
        assert flag in argv
    assert argv[argv.index("--model") + 1] == "openai/fake-model"
    assert argv[argv.index("--openai-api-base") + 1] == "http://127.0.0.1:9/v1"
    assert argv[argv.index("--map-tokens") + 1] == "0"
    assert argv[argv.index("--edit-format") + 1] == "diff"
    assert argv[argv.index("--timeout") + 1] == "15"
    assert argv[argv.index("--read") + 1] == str(spec)
    assert argv[-2:] == ["--", "hello.py"]
    for flag in ("--chat-history-file", "--input-history-file", "--llm-history-file",
                 "--model-metadata-file", "--message-file"):
        assert Path(argv[argv.index(flag) + 1]).parent == tmp_path / "attempt"
    assert not any(SECRET in part for part in argv)
    assert "--openai-api-key" not in argv


def test_profile_args_override_timeout_and_edit_format(tmp_path: Path) -> None:
    """Extra profile args go in; a --timeout or --edit-format there replaces aidp's own."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    profile = PROFILE.model_copy(update={"args": ["--timeout", "7", "--edit-format", "whole"]})
    with invocation(tmp_path, repo, profile) as inv:
        argv = aider_argv(["aider"], inv, message_file=Path("m"), metadata_file=None)
    assert argv.count("--timeout") == 1 and argv[argv.index("--timeout") + 1] == "7"
    assert argv.count("--edit-format") == 1 and argv[argv.index("--edit-format") + 1] == "whole"
    assert "--model-metadata-file" not in argv


def test_a_huge_scope_is_not_sent_as_editable_files(tmp_path: Path) -> None:
    """Past MAX_EDITABLE_FILES scope files, none go on the command line (Aider adds the files
    the conversation names); up to it, all do."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    many = [f"f{i}.py" for i in range(MAX_EDITABLE_FILES + 1)]
    with invocation(tmp_path, repo, PROFILE, scope_files=many) as inv:
        argv = aider_argv(["aider"], inv, message_file=Path("m"), metadata_file=None)
    assert "--" not in argv and "f0.py" not in argv
    with invocation(tmp_path, repo, PROFILE, scope_files=many[:-1]) as inv:
        argv = aider_argv(["aider"], inv, message_file=Path("m"), metadata_file=None)
    assert argv[argv.index("--") + 1:] == many[:-1]


@pytest.mark.parametrize(("model", "expected"), [
    ("fake-model", "openai/fake-model"), ("openrouter/x/y", "openrouter/x/y"),
], ids=["bare", "with-provider"])
def test_model_name_gets_the_openai_provider_when_it_has_none(model: str, expected: str) -> None:
    """A bare model name is sent as openai/<name>; one with a provider is kept."""
    assert aider_model(ToolProfile(adapter="aider", model=model)) == expected


def test_profile_without_a_model_is_refused() -> None:
    """An aider profile must name a model."""
    with pytest.raises(ToolError, match="needs a model"):
        aider_model(ToolProfile(adapter="aider"))


def test_model_metadata_describes_a_free_openai_chat_model() -> None:
    """The metadata file names the model with zero costs, provider openai, mode chat."""
    meta = model_metadata("openai/fake-model")["openai/fake-model"]
    assert meta["input_cost_per_token"] == meta["output_cost_per_token"] == 0.0
    assert (meta["litellm_provider"], meta["mode"]) == ("openai", "chat")
    assert meta["max_input_tokens"] > 0
    json.dumps(meta)


@pytest.mark.parametrize(("step", "expected"), [(4.0, 1.0), (100.0, 15.0), (1e6, 600.0)],
                         ids=["floor", "share", "ceiling"])
def test_request_timeout_is_a_bounded_share_of_the_step_timeout(step: float,
                                                                 expected: float) -> None:
    """Aider's per-request --timeout is 15 % of the step timeout, within 1..600 s."""
    assert request_timeout_s(step) == expected


@pytest.mark.parametrize(("text", "value"), [
    ("950", 950), ("1.2k", 1200), ("12k", 12000), ("1,234", 1234), ("1.5M", 1_500_000),
])
def test_token_counts_parse(text: str, value: int) -> None:
    """Aider's abbreviated token counts parse to integers."""
    assert parse_tokens(text) == value


@pytest.mark.parametrize("chunk", [1, 7, 10_000], ids=["bytewise", "small", "whole"])
def test_output_yields_usage_edits_version_and_errors(chunk: int) -> None:
    """Token lines sum into usage (cost from the message costs), edits and error lines become
    events, the banner gives the version -- however the output is cut into pieces."""
    output = AiderOutput()
    for start in range(0, len(TRANSCRIPT), chunk):
        output.feed(TRANSCRIPT[start:start + chunk])
    output.close()
    assert output.usage == Usage(input_tokens=14100, output_tokens=1260, cached_tokens=500,
                                 requests=2, cost_usd=pytest.approx(0.03))
    assert output.version == "0.86.2"
    kinds = [event.kind for event in output.events]
    assert kinds == ["usage", "file_change", "error", "error", "error", "usage"]
    assert output.events[1] == ToolEvent("file_change", {"path": "hello.py", "kind": "update"})
    assert "rate limited" in output.events[3].data["message"]


def test_error_events_are_bounded() -> None:
    """A retry loop printing the same error forever yields a bounded number of events."""
    output = AiderOutput()
    output.feed(b"litellm.RateLimitError: boom\n" * (AiderOutput.MAX_ERROR_EVENTS + 50))
    assert len(output.events) == AiderOutput.MAX_ERROR_EVENTS


@given(st.lists(st.binary(max_size=200), max_size=20))
def test_output_parser_never_crashes(pieces: list[bytes]) -> None:
    """Arbitrary bytes never make the output parser raise."""
    output = AiderOutput()
    for piece in pieces:
        output.feed(piece)
    output.close()
    assert output.usage.requests >= 0


def test_missing_binary_is_an_error_result(tmp_path: Path) -> None:
    """When the aider binary is missing, run() reports an error instead of raising."""
    repo = init_repo(tmp_path / "repo", {"hello.py": GREETING})
    profile = PROFILE.model_copy(update={"command": str(tmp_path / "no" / "aider")})
    with invocation(tmp_path, repo, profile) as inv:
        result = AiderAdapter().run(inv)
    assert result.exit_code is None and result.error is not None
    assert result.error.startswith("aider not found")


def test_missing_binary_fails_the_probe(tmp_path: Path) -> None:
    """probe() says the binary is missing, without raising."""
    profile = PROFILE.model_copy(update={"command": str(tmp_path / "aider")})
    probe = AiderAdapter().probe("aider", profile, {"PATH": ""})
    assert not probe.ok and probe.detail.startswith("aider not found")
