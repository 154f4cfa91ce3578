"""The fake LLM server, driven by the real openai SDK over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

import aidp.testing
from aidp.testing import FakeLLM, ScriptError

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "exec_command", "parameters": {
    "type": "object", "properties": {"cmd": {"type": "string"}}}}}


_clients: list[OpenAI] = []


def client(llm: FakeLLM, timeout: float = 10) -> OpenAI:
    """A real SDK client for ``llm``, without retries; closed after the test."""
    sdk = OpenAI(base_url=llm.base_url, api_key="sk-test-secret-key", max_retries=0,
                 timeout=timeout)
    _clients.append(sdk)
    return sdk


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def test_export_list_is_pinned() -> None:
    """aidp.testing exports exactly the documented names."""
    assert set(aidp.testing.__all__) == {"ErrorSpec", "FakeLLM", "Script", "ScriptError", "Step",
                                         "StepUsage", "ToolCallSpec", "load_script"}


def test_urls_and_model() -> None:
    """base_url is http://127.0.0.1:PORT/v1 on an ephemeral port; proxy_url the same origin."""
    with FakeLLM(["x"], model="m1") as llm:
        assert llm.port > 0
        assert llm.base_url == f"http://127.0.0.1:{llm.port}/v1"
        assert llm.proxy_url == f"http://127.0.0.1:{llm.port}"
        assert llm.model == "m1"


def test_chat_plain() -> None:
    """A reply step answers a chat completion with the text, stop and usage."""
    with FakeLLM([{"reply": "Hello!", "usage": {"input_tokens": 11, "output_tokens": 3}}]) as llm:
        response = client(llm).chat.completions.create(model="gpt-x", messages=USER)
    choice = response.choices[0]
    assert choice.message.content == "Hello!"
    assert choice.finish_reason == "stop"
    assert response.model == "gpt-x"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 3)


def test_chat_streaming() -> None:
    """Streaming chat: a role delta, content deltas adding up to the reply, usage last."""
    text = "word " * 60
    with FakeLLM([text]) as llm:
        chunks = list(client(llm).chat.completions.create(model="m", messages=USER, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert len(chunks) > 3
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streaming"])
def test_chat_tool_calls(stream: bool) -> None:
    """A tool_calls step becomes chat tool_calls with JSON arguments, finish_reason tool_calls."""
    step = {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "ls -la"}},
                           {"name": "other", "arguments": "{\"raw\": true}"}]}
    with FakeLLM([step]) as llm:
        sdk = client(llm)
        if stream:
            calls: dict[int, dict[str, str]] = {}
            finish = None
            for chunk in sdk.chat.completions.create(model="m", messages=USER, tools=[TOOL],
                                                     stream=True):
                for call in chunk.choices[0].delta.tool_calls or ():
                    entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    assert call.function is not None
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
                finish = chunk.choices[0].finish_reason or finish
            got = [calls[i] for i in sorted(calls)]
        else:
            response = sdk.chat.completions.create(model="m", messages=USER, tools=[TOOL])
            finish = response.choices[0].finish_reason
            got = [{"name": c.function.name, "arguments": c.function.arguments}
                   for c in response.choices[0].message.tool_calls or ()
                   if c.type == "function"]
    assert finish == "tool_calls"
    assert [g["name"] for g in got] == ["exec_command", "other"]
    assert json.loads(got[0]["arguments"]) == {"cmd": "ls -la"}
    assert got[1]["arguments"] == "{\"raw\": true}"


def test_responses_streaming_text() -> None:
    """The Responses event sequence parses into a final response with the text and usage."""
    with FakeLLM([{"reply": "All done.", "usage": {"input_tokens": 7, "output_tokens": 2}}]) as llm:
        with client(llm).responses.stream(model="m", input="do it") as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds[1:-1] == [
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done"]
    assert final.output_text == "All done."
    assert final.status == "completed"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 2)


def test_responses_streaming_sequence_numbers() -> None:
    """Raw Responses events carry increasing sequence numbers and one output_item.done each."""
    step = {"reply": "ok", "tool_calls": [{"name": "exec_command", "arguments": {"cmd": "ls"}}]}
    with FakeLLM([step]) as llm:
        events = list(client(llm).responses.create(model="m", input="x", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = [e for e in events if e.type == "response.output_item.done"]
    assert [d.item.type for d in done] == ["message", "function_call"]


def test_responses_function_call() -> None:
    """A tool_calls step becomes function_call items with call ids and JSON arguments."""
    step = {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo hi"}}]}
    with FakeLLM([step]) as llm:
        with client(llm).responses.stream(model="m", input="x", tools=[{
                "type": "function", "name": "exec_command", "parameters": TOOL["function"][
                    "parameters"]}]) as stream:
            final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "exec_command" and calls[0].call_id
    assert json.loads(calls[0].arguments) == {"cmd": "echo hi"}


def test_responses_plain() -> None:
    """A non-streaming Responses request gets the final response object."""
    with FakeLLM(["plain answer"]) as llm:
        response = client(llm).responses.create(model="m", input="x")
    assert response.output_text == "plain answer"


def test_models_list() -> None:
    """GET /v1/models lists the fake model, and consumes no step."""
    with FakeLLM(["first", "second"], model="fake-1") as llm:
        sdk = client(llm)
        assert [m.id for m in sdk.models.list()] == ["fake-1"]
        assert sdk.models.retrieve("fake-1").id == "fake-1"
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("nope")
        reply = sdk.chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "first"


def test_steps_advance_times_and_last_repeats() -> None:
    """Each model request takes the next step; times: N repeats one; the last step repeats."""
    with FakeLLM([{"reply": "a", "times": 2}, "b", "c"]) as llm:
        sdk = client(llm)
        got = [sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content
               for _ in range(6)]
        assert [r["step"] for r in llm.requests] == [0, 0, 1, 2, 2, 2]
    assert got == ["a", "a", "b", "c", "c", "c"]


def test_rate_limit_with_retry_after() -> None:
    """An error step answers 429 with an OpenAI-shaped body and a Retry-After the SDK sees."""
    error = {"status": 429, "message": "Rate limit reached", "retry_after": 7}
    with FakeLLM([{"error": error}, "ok"]) as llm:
        sdk = client(llm)
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="m", messages=USER)
        assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content \
            == "ok"
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert "Rate limit reached" in caught.value.message


@pytest.mark.parametrize(("status", "kind"), [
    (401, openai.AuthenticationError), (404, openai.NotFoundError),
    (500, openai.InternalServerError), (503, openai.InternalServerError),
], ids=["401", "404", "500", "503"])
def test_error_statuses_map_to_sdk_errors(status: int, kind: type[Exception]) -> None:
    """Error steps with other statuses raise the SDK's matching exception, streaming too."""
    with FakeLLM([{"error": {"status": status, "message": "nope"}}]) as llm:
        sdk = client(llm)
        with pytest.raises(kind):
            sdk.chat.completions.create(model="m", messages=USER)
        with pytest.raises(kind):
            sdk.responses.create(model="m", input="x", stream=True)


def test_hang_makes_the_sdk_time_out() -> None:
    """A hang step sends nothing; the SDK's own timeout fires; stop() ends the hang at once."""
    llm = FakeLLM([{"hang": 60}]).start()
    try:
        with pytest.raises(openai.APITimeoutError):
            client(llm, timeout=0.5).chat.completions.create(model="m", messages=USER)
    finally:
        began = time.monotonic()
        llm.stop()
    assert time.monotonic() - began < 5


def test_short_hang_then_reply() -> None:
    """hang combined with reply delays the answer, then answers."""
    with FakeLLM([{"hang": 0.2, "reply": "late"}]) as llm:
        began = time.monotonic()
        reply = client(llm).chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "late"
    assert time.monotonic() - began >= 0.2


def test_drop_is_a_connection_error() -> None:
    """A drop step closes the connection without a response: APIConnectionError."""
    with FakeLLM([{"drop": True}, "after"]) as llm:
        sdk = client(llm)
        with pytest.raises(openai.APIConnectionError):
            sdk.chat.completions.create(model="m", messages=USER)
        assert sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content \
            == "after"


def test_stall_mid_stream_times_out() -> None:
    """A stall sends headers and part of the stream, then waits: the read timeout fires."""
    text = "x" * 400
    with FakeLLM([{"stall": 30, "reply": text}]) as llm:
        stream = client(llm, timeout=0.5).chat.completions.create(model="m", messages=USER,
                                                                  stream=True)
        received = ""
        with pytest.raises((httpx.ReadTimeout, openai.APITimeoutError)):
            for chunk in stream:
                received += chunk.choices[0].delta.content or ""
    assert 0 < len(received) < len(text)


def test_short_stall_completes() -> None:
    """A stall shorter than the client's timeout only delays the rest of the stream."""
    with FakeLLM([{"stall": 0.2, "reply": "y" * 300}]) as llm:
        with client(llm).responses.stream(model="m", input="x") as stream:
            final = stream.get_final_response()
    assert final.output_text == "y" * 300


def test_requests_are_recorded_with_auth_masked(tmp_path: Path) -> None:
    """Every request is recorded (method, path, body, step); Authorization never in clear."""
    record = tmp_path / "requests.jsonl"
    with FakeLLM(["ok"], record_path=record) as llm:
        sdk = client(llm)
        sdk.models.list()
        sdk.chat.completions.create(model="m", messages=USER)
        recorded = llm.requests
    assert [(r["method"], r["path"], r["step"]) for r in recorded] == [
        ("GET", "/v1/models", None), ("POST", "/v1/chat/completions", 0)]
    assert recorded[1]["body"]["messages"] == USER
    assert recorded[1]["headers"]["authorization"] == "Bearer ***"
    lines = record.read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["/v1/models", "/v1/chat/completions"]
    assert "sk-test-secret-key" not in record.read_text()
    assert "sk-test-secret-key" not in json.dumps(recorded)


def test_unknown_route_is_404_and_bad_json_is_400() -> None:
    """An unknown path answers an OpenAI-shaped 404; a model call with a non-JSON body 400."""
    with FakeLLM(["ok"]) as llm:
        with httpx.Client(trust_env=False) as http:
            missing = http.get(f"{llm.base_url}/nothing")
            bad = http.post(f"{llm.base_url}/chat/completions", content=b"{not json")
    assert missing.status_code == 404 and "error" in missing.json()
    assert bad.status_code == 400 and "error" in bad.json()


def test_gzip_request_body_is_read() -> None:
    """A gzip-compressed request body is decoded, recorded and answered."""
    import gzip

    payload = gzip.compress(json.dumps({"model": "m", "messages": USER}).encode())
    with FakeLLM(["zipped"]) as llm:
        with httpx.Client(trust_env=False) as http:
            answer = http.post(f"{llm.base_url}/chat/completions", content=payload,
                               headers={"Content-Encoding": "gzip",
                                        "Content-Type": "application/json"})
        assert llm.requests[0]["body"]["messages"] == USER
    assert answer.json()["choices"][0]["message"]["content"] == "zipped"


PROXY_PROBE = """
import sys, urllib.request, openai
try:
    urllib.request.urlopen("https://stray.example.invalid/track", timeout=5)
except Exception as exc:
    print("https refused:", type(exc).__name__)
try:
    urllib.request.urlopen("http://plain.example.invalid/x", timeout=5)
except Exception as exc:
    print("http refused:", type(exc).__name__)
client = openai.OpenAI(base_url=sys.argv[1], api_key="x", max_retries=0, timeout=5)
print("model:", client.chat.completions.create(
    model="m", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content)
"""


def test_proxy_sink_refuses_and_logs_stray_connections() -> None:
    """With the proxy env set, outside URLs are refused and logged; 127.0.0.1 stays direct."""
    seen: list[str] = []
    with FakeLLM(["direct"]) as llm:
        llm.on_stray = seen.append
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        proc = subprocess.run([sys.executable, "-c", PROXY_PROBE, llm.base_url],
                              env={**env, **llm.proxy_env()}, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, check=False)
        stray = llm.stray
        paths = [r["path"] for r in llm.requests]
    assert proc.returncode == 0, proc.stderr
    assert "https refused: " in proc.stdout and "http refused: " in proc.stdout
    assert "model: direct" in proc.stdout
    assert stray == ["stray.example.invalid:443", "plain.example.invalid:80"]
    assert seen == stray
    assert paths == ["/v1/chat/completions"]


def test_proxied_request_to_itself_is_served() -> None:
    """A client using the proxy without NO_PROXY still reaches the fake itself; nothing stray."""
    with FakeLLM(["via proxy"]) as llm:
        with httpx.Client(proxy=llm.proxy_url, trust_env=False) as http:
            answer = http.post(f"{llm.base_url}/chat/completions",
                               json={"model": "m", "messages": USER})
        assert llm.stray == []
    assert answer.json()["choices"][0]["message"]["content"] == "via proxy"


def test_script_from_file(tmp_path: Path) -> None:
    """FakeLLM accepts the path of a YAML script."""
    path = tmp_path / "script.yaml"
    path.write_text("- reply: from a file\n")
    with FakeLLM(path) as llm:
        reply = client(llm).chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "from a file"


def test_invalid_python_script_names_the_step() -> None:
    """A bad step in a Python list raises ScriptError naming the step index."""
    with pytest.raises(ScriptError, match=r"^script: step 1: error.status"):
        FakeLLM(["ok", {"error": {"status": 200}}])


def test_concurrent_requests() -> None:
    """Requests from several threads are all served and recorded."""
    from concurrent.futures import ThreadPoolExecutor

    with FakeLLM(["same"]) as llm:
        sdk = client(llm)

        def ask(_: int) -> Any:
            return sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, range(8)))
        assert len(llm.requests) == 8
    assert answers == ["same"] * 8
