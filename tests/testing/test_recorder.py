"""The recorder: the real openai SDK through the recorder to a FakeLLM upstream, over real HTTP
on 127.0.0.1; the written script served again by a new FakeLLM gives the client the same
answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from aidp.exceptions import InputError
from aidp.testing import FakeLLM, load_script
from aidp.testing.recorder import Recorder
from tests.conftest import AIDP

KEY = "sk-recorder-secret-key"
USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "exec_command", "parameters": {
    "type": "object", "properties": {"cmd": {"type": "string"}}}}}
RESP_TOOL = {"type": "function", "name": "exec_command", "parameters": {
    "type": "object", "properties": {"cmd": {"type": "string"}}}}
UPSTREAM_SCRIPT: list[Any] = [
    {"reply": "Hello from upstream, " + "long text " * 20 + "\nsecond line.",
     "usage": {"input_tokens": 12, "output_tokens": 34, "cached_tokens": 5}, "times": 3},
    {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "ls -la"}},
                    {"name": "apply_patch", "arguments": '{"patch": "*** Begin"}'}],
     "times": 3},
    {"error": {"status": 429, "message": "Rate limit reached", "retry_after": 2}},
]


def _session(base_url: str) -> list[Any]:
    """The client's requests; what it saw, as plain data."""
    seen: list[Any] = []
    with OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=20) as client:
        for _ in range(2):  # the text reply, then the tool calls
            reply = client.chat.completions.create(model="m", messages=USER, tools=[TOOL])
            message = reply.choices[0].message
            seen.append(("chat", message.content,
                         [(c.function.name, c.function.arguments)
                          for c in message.tool_calls or ()],
                         reply.usage.model_dump() if reply.usage else None))
            text: list[str] = []
            calls: dict[int, list[str]] = {}
            usage = None
            with client.chat.completions.create(
                    model="m", messages=USER, tools=[TOOL], stream=True,
                    stream_options={"include_usage": True}) as stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage.model_dump()
                    for choice in chunk.choices:
                        text.append(choice.delta.content or "")
                        for call in choice.delta.tool_calls or ():
                            entry = calls.setdefault(call.index, ["", ""])
                            assert call.function is not None
                            entry[0] += call.function.name or ""
                            entry[1] += call.function.arguments or ""
            seen.append(("chat-stream", "".join(text), [tuple(c) for c in calls.values()],
                         usage))
            with client.responses.stream(model="m", input="hi", tools=[RESP_TOOL]) as events:
                final = events.get_final_response()
            seen.append(("responses-stream", final.output_text,
                         [(item.name, item.arguments) for item in final.output
                          if item.type == "function_call"],
                         final.usage.model_dump() if final.usage else None))
        for call in (lambda: client.chat.completions.create(model="m", messages=USER),
                     lambda: client.responses.create(model="m", input="hi", stream=True)):
            with pytest.raises(openai.RateLimitError) as caught:
                call()
            error = caught.value
            seen.append(("error", error.status_code, error.message,
                         error.response.headers.get("retry-after"),
                         error.response.headers.get("retry-after-ms"), error.body))
    return seen


@pytest.fixture
def upstream() -> Iterator[FakeLLM]:
    with FakeLLM(UPSTREAM_SCRIPT, api_key=KEY) as llm:
        yield llm


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_record_then_replay_gives_the_same_answers(upstream: FakeLLM, tmp_path: Path,
                                                   suffix: str) -> None:
    """Text, tool calls, usage and a 429 with Retry-After: through the recorder and from the
    recorded script the client sees the same; the key passes through and is never written."""
    out = tmp_path / f"recorded{suffix}"
    problems: list[str] = []
    with Recorder(upstream.base_url, out) as recorder:
        recorder.on_problem = problems.append
        assert recorder.base_url == f"http://127.0.0.1:{recorder.port}/v1"
        recorded = _session(recorder.base_url)
        # a request that is not a model request: forwarded, not recorded
        models = httpx.get(f"{recorder.base_url}/models",
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert models.json()["data"][0]["id"] == upstream.model
    assert problems == []
    # the upstream got the client's own key (it answers 401 to any other)
    assert len(upstream.requests) == 9
    assert all(r["headers"]["authorization"] == "Bearer ***" for r in upstream.requests)
    assert recorded[0][:3] == ("chat", UPSTREAM_SCRIPT[0]["reply"], [])
    usage = recorded[0][3]
    assert (usage["prompt_tokens"], usage["completion_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"]) == (12, 34, 5)
    assert recorded[1][1] == recorded[2][1] == recorded[0][1]
    assert recorded[3][2] == [("exec_command", '{"cmd": "ls -la"}'),
                              ("apply_patch", '{"patch": "*** Begin"}')]
    assert recorded[4][2] == recorded[5][2] == recorded[3][2]
    assert recorded[6][1] == 429 and "Rate limit reached" in recorded[6][2]
    assert recorded[6][3:5] == ("2", "2000")
    assert recorded[7][1] == 429 and recorded[7][3:5] == ("2", "2000")

    text = out.read_text()
    assert KEY not in text and "uthorization" not in text
    script = load_script(out)
    assert len(script.steps) == 8
    assert script.steps[0].usage is not None and script.steps[0].usage.cached_tokens == 5
    assert script.steps[6].error is not None and script.steps[6].error.retry_after == 2
    with FakeLLM(out) as replay:
        replayed = _session(replay.base_url)
    assert replayed == recorded


def test_file_is_a_valid_script_after_each_step(upstream: FakeLLM, tmp_path: Path) -> None:
    """The file is rewritten whole after each model answer: loadable at every step."""
    out = tmp_path / "steps.yaml"
    with Recorder(upstream.base_url, out) as recorder, \
            OpenAI(base_url=recorder.base_url, api_key=KEY, max_retries=0,
                   timeout=20) as client:
        assert not out.exists()
        for count in range(1, 5):
            try:
                client.chat.completions.create(model="m", messages=USER)
            except openai.RateLimitError:
                pass
            assert len(load_script(out).steps) == count
        assert [sorted(step) for step in recorder.steps] == [
            ["reply", "usage"], ["reply", "usage"], ["reply", "usage"], ["tool_calls", "usage"]]


def test_unreachable_upstream_is_502_and_records_nothing(tmp_path: Path) -> None:
    """No upstream: the client gets a 502 and the problem is reported; no step is written."""
    with FakeLLM(["x"]) as gone:
        dead = gone.base_url
    problems: list[str] = []
    out = tmp_path / "none.yaml"
    with Recorder(dead, out) as recorder:
        recorder.on_problem = problems.append
        answer = httpx.post(f"{recorder.base_url}/chat/completions", json={"model": "m"},
                            timeout=10)
    assert answer.status_code == 502
    assert len(problems) == 1 and "unreachable" in problems[0]
    assert not out.exists()


@pytest.mark.parametrize("upstream_url", ["ftp://example.com/v1", "api.openai.com/v1", ""])
def test_bad_upstream_is_an_input_error(tmp_path: Path, upstream_url: str) -> None:
    with pytest.raises(InputError, match="not an http"):
        Recorder(upstream_url, tmp_path / "x.yaml")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIDP, "fake-llm", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_cli_script_and_record_are_mutually_exclusive(tmp_path: Path) -> None:
    """--script with --record, or neither: exit 2 and one clear line, no traceback."""
    script = tmp_path / "s.yaml"
    script.write_text("- ok\n")
    both = _run("--script", str(script), "--record", "http://127.0.0.1:9/v1",
                "--script-out", str(tmp_path / "out.yaml"))
    neither = _run()
    no_out = _run("--record", "http://127.0.0.1:9/v1")
    bad_url = _run("--record", "nowhere", "--script-out", str(tmp_path / "out.yaml"))
    for proc, words in ((both, "mutually exclusive"), (neither, "--record UPSTREAM_URL"),
                        (no_out, "--script-out"), (bad_url, "not an http(s) URL")):
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert proc.stdout == ""
    assert not (tmp_path / "out.yaml").exists()


def test_cli_records_until_sigterm(upstream: FakeLLM, tmp_path: Path) -> None:
    """`aidp fake-llm --record URL --script-out FILE` prints its base URL, records, exits 0."""
    out = tmp_path / "cli.json"
    proc = subprocess.Popen([AIDP, "fake-llm", "--record", upstream.base_url, "--script-out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=20) as client:
            reply = client.chat.completions.create(model="m", messages=USER)
        assert reply.choices[0].message.content == UPSTREAM_SCRIPT[0]["reply"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out.read_text()) == [{
        "reply": UPSTREAM_SCRIPT[0]["reply"],
        "usage": {"input_tokens": 12, "output_tokens": 34, "cached_tokens": 5}}]
