"""The OpenAI wire format the fake LLM server speaks: JSON bodies and SSE frames for a step.

Shapes follow what the real clients parse (measured against the openai SDK, Aider and Codex;
see ``notes/ai-tools.md``): ``chat.completion`` objects and ``chat.completion.chunk`` SSE lines
ending in ``data: [DONE]``; Responses API objects and ``event:``/``data:`` frames with increasing
``sequence_number``. Pure functions of the step, the request body, the model and a serial number.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aidp.testing.script import Step

__all__ = ["chat_completion", "chat_stream", "estimate_tokens", "response_object",
           "responses_stream"]

DELTA_CHARS = 64  # text is streamed in pieces of this many characters


def estimate_tokens(value: Any) -> int:
    """About four characters per token: enough for a fake's usage numbers."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return max(1, len(text) // 4) if text else 0


def _pieces(text: str) -> list[str]:
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)]


def _usage(step: Step, body: dict[str, Any], prompt_key: str) -> tuple[int, int, int]:
    if step.usage is not None:
        return step.usage.input_tokens, step.usage.output_tokens, step.usage.cached_tokens
    output = (step.reply or "") + "".join(
        call.name + call.arguments_json for call in step.tool_calls or ())
    return estimate_tokens(body.get(prompt_key, "")), estimate_tokens(output), 0


def _chat_usage(step: Step, body: dict[str, Any]) -> dict[str, Any]:
    tokens_in, tokens_out, cached = _usage(step, body, "messages")
    return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _chat_tool_calls(step: Step, number: int) -> list[dict[str, Any]]:
    return [{"id": f"call_{number}_{i}", "type": "function",
             "function": {"name": call.name, "arguments": call.arguments_json}}
            for i, call in enumerate(step.tool_calls or ())]


def chat_completion(step: Step, body: dict[str, Any], model: str, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": step.reply, "refusal": None}
    calls = _chat_tool_calls(step, number)
    if calls:
        message["tool_calls"] = calls
    elif step.reply is None:
        message["content"] = ""
    return {
        "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "fake",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": _chat_usage(step, body),
    }


def _sse(obj: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


def chat_stream(step: Step, body: dict[str, Any], model: str, number: int) -> list[bytes]:
    base = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fake"}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice], **extra})

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": piece}) for piece in _pieces(step.reply or "")]
    calls = _chat_tool_calls(step, number)
    for i, call in enumerate(calls):
        frames.append(chunk({"tool_calls": [{"index": i, **call}]}))
    frames.append(chunk({}, "tool_calls" if calls else "stop", usage=_chat_usage(step, body)))
    frames.append(b"data: [DONE]\n\n")
    return frames


def _response_items(step: Step, number: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if step.reply or not step.tool_calls:
        items.append({"type": "message", "id": f"msg_{number}", "role": "assistant",
                      "status": "completed",
                      "content": [{"type": "output_text", "text": step.reply or "",
                                   "annotations": []}]})
    for i, call in enumerate(step.tool_calls or ()):
        items.append({"type": "function_call", "id": f"fc_{number}_{i}",
                      "call_id": f"call_{number}_{i}", "name": call.name,
                      "arguments": call.arguments_json, "status": "completed"})
    return items


def response_object(step: Step, body: dict[str, Any], model: str, number: int, *,
                     status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    usage: dict[str, Any] | None = None
    if done:
        tokens_in, tokens_out, cached = _usage(step, body, "input")
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out,
                 "total_tokens": tokens_in + tokens_out,
                 "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens_details": {"reasoning_tokens": 0}}
    return {
        "id": f"resp_{number}", "object": "response", "created_at": int(time.time()),
        "status": status, "model": model, "output": _response_items(step, number) if done else [],
        "usage": usage, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "metadata": {}, "parallel_tool_calls": True,
        "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto", "tools": [],
        "text": {"format": {"type": "text"}}, "store": False,
    }


def responses_stream(step: Step, body: dict[str, Any], model: str, number: int) -> list[bytes]:
    frames: list[bytes] = []

    def emit(kind: str, **data: Any) -> None:
        frames.append(_sse({"type": kind, "sequence_number": len(frames), **data}, kind))

    emit("response.created",
         response=response_object(step, body, model, number, status="in_progress"))
    for index, item in enumerate(_response_items(step, number)):
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "content": []})
            part = item["content"][0]
            emit("response.content_part.added", **ids, content_index=0,
                 part={**part, "text": ""})
            for piece in _pieces(part["text"]):
                emit("response.output_text.delta", **ids, content_index=0, delta=piece,
                     logprobs=[])
            emit("response.output_text.done", **ids, content_index=0, text=part["text"],
                 logprobs=[])
            emit("response.content_part.done", **ids, content_index=0, part=part)
        else:
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "arguments": ""})
            emit("response.function_call_arguments.delta", **ids, delta=item["arguments"])
            emit("response.function_call_arguments.done", **ids, name=item["name"],
                 arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=response_object(step, body, model, number))
    return frames
