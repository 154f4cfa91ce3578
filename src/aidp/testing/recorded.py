"""A recorded answer as a fake LLM script step, and the script file written atomically (the
parsing half of :mod:`aidp.testing.recorder`)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aidp.tools.model_wire import retry_after_s

__all__ = ["dump_script", "step_from_answer", "write_atomic"]


# -- parsing an answer into a step ------------------------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usage(raw: Any, input_key: str, output_key: str, details_key: str) -> dict[str, int] | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get(details_key)
    usage = {"input_tokens": _int(raw.get(input_key)), "output_tokens": _int(raw.get(output_key))}
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    if cached:
        usage["cached_tokens"] = cached
    return usage


def _answer(text: str, calls: list[tuple[str, str]], usage: dict[str, int] | None
            ) -> dict[str, Any]:
    step: dict[str, Any] = {}
    if text or not calls:
        step["reply"] = text
    if calls:
        step["tool_calls"] = [{"name": name, "arguments": arguments}
                              for name, arguments in calls]
    if usage is not None:
        step["usage"] = usage
    return step


def _sse_events(text: str) -> Iterator[tuple[str | None, Any]]:
    """``(event name, parsed data)`` of each SSE event; ``[DONE]`` and non-JSON data skipped."""
    event: str | None = None
    data: list[str] = []
    for line in [*re.split(r"\r\n|\r|\n", text), ""]:
        if not line:
            payload = "\n".join(data)
            if data and payload.strip() != "[DONE]":
                try:
                    yield event, json.loads(payload)
                except json.JSONDecodeError:
                    pass
            event, data = None, []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def _chat_message(message: Any) -> tuple[str, list[tuple[str, str]]]:
    if not isinstance(message, dict):
        return "", []
    content = message.get("content")
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            calls.append((str(function.get("name") or ""),
                          arguments if isinstance(arguments, str) else json.dumps(arguments)))
    return content if isinstance(content, str) else "", calls


def _chat_stream(text: str) -> dict[str, Any]:
    pieces: list[str] = []
    calls: dict[int, tuple[list[str], list[str]]] = {}
    usage: Any = None
    for _, chunk in _sse_events(text):
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("content"), str):
                pieces.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                index = call.get("index")
                name, arguments = calls.setdefault(
                    index if isinstance(index, int) else len(calls), ([], []))
                function = call.get("function")
                if isinstance(function, dict):
                    if isinstance(function.get("name"), str):
                        name.append(function["name"])
                    if isinstance(function.get("arguments"), str):
                        arguments.append(function["arguments"])
    return _answer("".join(pieces),
                   [("".join(calls[i][0]), "".join(calls[i][1])) for i in sorted(calls)],
                   _usage(usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details"))


def _response_items(items: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """Text of the message items (None if there is none) and the function calls."""
    text: list[str] | None = None
    calls: list[tuple[str, str]] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            text = text or []
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text.append(str(part.get("text") or ""))
        elif item.get("type") == "function_call":
            arguments = item.get("arguments")
            calls.append((str(item.get("name") or ""),
                          arguments if isinstance(arguments, str) else json.dumps(arguments)))
    return (None if text is None else "".join(text)), calls


def _responses_stream(text: str) -> dict[str, Any]:
    deltas: list[str] = []
    items: list[Any] = []
    final: dict[str, Any] = {}
    for event, data in _sse_events(text):
        if not isinstance(data, dict):
            continue
        kind = data.get("type", event)
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            deltas.append(data["delta"])
        elif kind == "response.output_item.done":
            items.append(data.get("item"))
        elif kind in ("response.completed", "response.incomplete", "response.failed") \
                and isinstance(data.get("response"), dict):
            final = data["response"]
    reply, calls = _response_items(items or final.get("output"))
    return _answer("".join(deltas) if reply is None else reply, calls,
                   _usage(final.get("usage"), "input_tokens", "output_tokens",
                          "input_tokens_details"))


def _error(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    text = body.decode("utf-8", "replace")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = None
    raw = data.get("error") if isinstance(data, dict) else None
    if isinstance(raw, str):
        raw = {"message": raw}
    error: dict[str, Any] = {"status": status}
    if isinstance(raw, dict):
        if raw.get("message") is not None:
            error["message"] = str(raw["message"])
        for key in ("type", "code"):
            if raw.get(key) is not None:
                error[key] = str(raw[key])
    elif text.strip():
        error["message"] = text.strip()[:2000]
    retry_after = retry_after_s(headers)
    if retry_after is not None:
        error["retry_after"] = retry_after
    return {"error": error}


def step_from_answer(route: str, status: int, headers: Mapping[str, str], body: bytes
                     ) -> dict[str, Any] | None:
    """The script step reproducing one answer of ``/chat/completions`` or ``/responses``
    (``route``), from its status, headers (lower-case names) and decoded body; None for a status
    a step cannot express (1xx-3xx)."""
    if 400 <= status <= 599:
        return _error(status, headers, body)
    if not 200 <= status <= 299:
        return None
    text = body.decode("utf-8", "replace")
    chat = route == "/chat/completions"
    if "text/event-stream" in headers.get("content-type", "").lower():
        return _chat_stream(text) if chat else _responses_stream(text)
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return _answer(text, [], None)
    if chat:
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else {}
        reply, calls = _chat_message(first.get("message") if isinstance(first, dict) else None)
        return _answer(reply, calls, _usage(data.get("usage"), "prompt_tokens",
                                            "completion_tokens", "prompt_tokens_details"))
    found, calls = _response_items(data.get("output"))
    return _answer(found or "", calls, _usage(data.get("usage"), "input_tokens",
                                              "output_tokens", "input_tokens_details"))


# -- writing the script -----------------------------------------------------------------------


def dump_script(steps: list[dict[str, Any]], path: Path) -> str:
    if path.suffix == ".json":
        return json.dumps(steps, indent=2, ensure_ascii=False) + "\n"
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    text = yaml.dump(steps, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    from aidp.model.loader import TreeError, build_yaml_tree

    try:  # aidp reads YAML 1.2: if a scalar would read back otherwise, write JSON (also YAML)
        same = build_yaml_tree(text)[0] == steps
    except TreeError:
        same = False
    return text if same else json.dumps(steps, indent=2, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


