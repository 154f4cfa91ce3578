"""The model gateway's overhead against a direct connection to the same fake provider.

Run: ``.venv/bin/python bench/bench_gateway.py [--requests 300] [--streams 20] [--out F]``.

In one invocation, with one ``aidp fake-llm`` process as the provider and a
:class:`~aidp.tools.gateway.Gateway` in a process of its own (as in a run: the tool, the
orchestrator holding the gateway and the provider are three processes), it measures for a
direct client and for a client through the gateway:

* **per request**: the median and p90 wall time of a non-streamed chat completion (the openai
  SDK on one keep-alive connection, ``max_retries=0``); the gateway's added latency is the
  difference of the medians (target <= 2 ms);
* **first streamed byte**: the median time from sending a streamed chat request to its first
  content chunk (target <= 5 ms added);
* **concurrent streams**: ``--streams`` streamed requests at once from as many threads, the wall
  time for all of them and the chunks per second;
* **the gateway's process**: its CPU per forwarded request, and how long a thread sleeping
  1 ms in that process takes to wake meanwhile (the orchestrator's scheduler shares the
  process with an in-process gateway: the GIL effect), beside the same ticker in a process of
  its own (the scheduler beside a sidecar gateway: only the CPU is shared).

Direct and gateway runs alternate in rounds so that a busy machine slows both alike. Prints a
table and writes JSON (``bench/results/gateway.json`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openai import OpenAI

HI = [{"role": "user", "content": "hi"}]
KEY = "sk-bench-key"
ROUNDS = 5


def _timed(fn: Callable[[], Any], count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _first_byte(client: OpenAI, model: str) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(model=model, messages=HI, stream=True)  # type: ignore[call-overload]
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
            break
    else:
        first = time.perf_counter() - started
    for _ in stream:
        pass
    return first


def _streams(make: Callable[[], OpenAI], model: str, count: int) -> tuple[float, int]:
    chunks = [0] * count

    def one(i: int) -> None:
        client = make()
        for _ in client.chat.completions.create(model=model, messages=HI, stream=True):  # type: ignore[call-overload]
            chunks[i] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return time.perf_counter() - started, sum(chunks)


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def _p90(values: list[float]) -> float:
    return round(sorted(values)[int(len(values) * 0.9)] * 1000, 3)


class _Ticker:
    """A thread sleeping 1 ms at a time, standing in for the orchestrator's threads: how late
    does it wake? (Its own CPU is kept apart.)"""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.001):
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now
        self.cpu = time.thread_time()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        gaps = sorted(self.gaps) or [0.0]
        return {"tick_p99_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 2),
                "tick_max_ms": round(gaps[-1] * 1000, 2)}


def _serve_ticker() -> None:
    """A process of its own with only a ticker: the scheduler beside a sidecar gateway."""
    ticker = _Ticker()
    print("{}", flush=True)
    sys.stdin.read()
    print(json.dumps(ticker.stop()), flush=True)


def _serve_gateway(upstream: str) -> None:
    """The child process holding the gateway and a ticker (the scheduler beside an
    in-process gateway): prints the gateway's URL and token, runs until stdin ends."""
    from aidp.tools.gateway import Gateway, Grant

    with Gateway() as gateway:
        ticket = gateway.open(Grant(upstream=upstream, key=KEY, profile="bench"))
        ticker = _Ticker()
        cpu = time.process_time()
        print(json.dumps({"base_url": ticket.base_url, "token": ticket.token}), flush=True)
        sys.stdin.read()
        cpu = time.process_time() - cpu
        ticks = ticker.stop()
        cpu -= ticker.cpu
        traffic = gateway.close(ticket)
        print(json.dumps({"requests": traffic.usage.requests, "cpu_s": round(cpu, 3),
                          **ticks}), flush=True)


def _provider(script: Path) -> tuple[subprocess.Popen[str], str]:
    """``aidp fake-llm`` in its own process; its base URL."""
    aidp = Path(sys.executable).with_name("aidp")
    proc = subprocess.Popen([str(aidp), "fake-llm", "--script", str(script), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()  # its only line: the base URL
        if line.startswith("http://"):
            return proc, line
    proc.kill()
    raise SystemExit("aidp fake-llm did not start")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-gateway":
        _serve_gateway(sys.argv[2])
        return
    if len(sys.argv) == 2 and sys.argv[1] == "--serve-ticker":
        _serve_ticker()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "gateway.json")
    args = parser.parse_args()
    reply = "word " * 200  # a 200-word answer: the stream has ~200 content chunks
    script = args.out.parent / "gateway-script.json"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(json.dumps([{"reply": reply}]))
    provider, base_url = _provider(script)
    holder = subprocess.Popen([sys.executable, __file__, "--serve-gateway", base_url],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    ticket = json.loads(holder.stdout.readline())
    apart = subprocess.Popen([sys.executable, __file__, "--serve-ticker"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert apart.stdout is not None and apart.stdin is not None
    apart.stdout.readline()
    model = "fake-model"
    try:

        def direct() -> OpenAI:
            return OpenAI(base_url=base_url, api_key=KEY, max_retries=0)

        def through() -> OpenAI:
            return OpenAI(base_url=ticket["base_url"], api_key=ticket["token"], max_retries=0)

        clients = {"direct": direct(), "gateway": through()}
        plain: dict[str, list[float]] = {"direct": [], "gateway": []}
        first: dict[str, list[float]] = {"direct": [], "gateway": []}
        per_round = max(1, args.requests // ROUNDS)
        for client in clients.values():  # warm up: connections, imports
            _timed(lambda c=client: c.chat.completions.create(model=model, messages=HI), 5)  # type: ignore[misc]
        for _ in range(ROUNDS):
            for name, client in clients.items():
                plain[name] += _timed(
                    lambda c=client: c.chat.completions.create(model=model, messages=HI),  # type: ignore[misc]
                    per_round)
                first[name] += [_first_byte(client, model)
                                for _ in range(max(1, per_round // 5))]
        streams = {name: _streams(make, model, args.streams)
                   for name, make in (("direct", direct), ("gateway", through))}
    finally:
        holder.stdin.close()
        apart.stdin.close()
        counted = json.loads(holder.stdout.readline() or '{"requests": 0}')
        beside = json.loads(apart.stdout.readline() or "{}")
        holder.wait(30)
        apart.wait(30)
        os.killpg(provider.pid, signal.SIGTERM)
        provider.wait(30)
    result = {
        "requests_per_client": len(plain["direct"]),
        "plain_ms": {k: {"median": _ms(v), "p90": _p90(v)} for k, v in plain.items()},
        "first_byte_ms": {k: {"median": _ms(v), "p90": _p90(v)} for k, v in first.items()},
        "streams": {k: {"count": args.streams, "wall_s": round(w, 3),
                        "chunks_per_s": round(c / w, 1)} for k, (w, c) in streams.items()},
        "added_ms_per_request": round(_ms(plain["gateway"]) - _ms(plain["direct"]), 3),
        "added_ms_first_byte": round(_ms(first["gateway"]) - _ms(first["direct"]), 3),
        "gateway_requests_counted": counted["requests"],
        # the gateway's process: its CPU for everything it forwarded, and how late a thread
        # waiting 1 ms woke meanwhile (the scheduler's threads share that process)
        "gateway_cpu_ms_per_request": round(
            counted.get("cpu_s", 0.0) * 1000 / max(1, counted["requests"]), 3),
        "ticker_p99_ms": counted.get("tick_p99_ms"), "ticker_max_ms": counted.get("tick_max_ms"),
        # the same ticker in a process of its own (as beside a sidecar gateway)
        "ticker_apart_p99_ms": beside.get("tick_p99_ms"),
        "ticker_apart_max_ms": beside.get("tick_max_ms"),
        "targets": {"added_ms_per_request": 2.0, "added_ms_first_byte": 5.0},
    }
    print(f"{'':22}{'direct':>12}{'gateway':>12}{'added':>10}{'target':>8}")
    print(f"{'request median ms':22}{result['plain_ms']['direct']['median']:>12}"
          f"{result['plain_ms']['gateway']['median']:>12}{result['added_ms_per_request']:>10}"
          f"{'<= 2':>8}")
    print(f"{'first byte median ms':22}{result['first_byte_ms']['direct']['median']:>12}"
          f"{result['first_byte_ms']['gateway']['median']:>12}"
          f"{result['added_ms_first_byte']:>10}{'<= 5':>8}")
    print(f"{f'{args.streams} streams wall s':22}{result['streams']['direct']['wall_s']:>12}"
          f"{result['streams']['gateway']['wall_s']:>12}")
    print(f"gateway CPU {result['gateway_cpu_ms_per_request']} ms per request; a 1 ms ticker "
          f"in its process woke after {result['ticker_p99_ms']} ms at p99, "
          f"{result['ticker_max_ms']} ms at worst; in a process of its own after "
          f"{result['ticker_apart_p99_ms']} / {result['ticker_apart_max_ms']} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
