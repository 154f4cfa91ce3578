"""``aidp fake-llm`` end to end: a real subprocess, the real openai SDK, SIGTERM, bad scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from openai import OpenAI

from tests.cli.test_cli import _modules_after
from tests.conftest import AIDP


def test_help_stays_light() -> None:
    """aidp --help and aidp fake-llm --help import neither the openai SDK nor the web stack."""
    for args in (("--help",), ("fake-llm", "--help")):
        code, modules, out = _modules_after(*args)
        assert code == 0 and "Usage:" in out
        assert not [m for m in modules if m.split(".")[0] in ("openai", "httpx", "sqlalchemy")]
    _, _, out = _modules_after("--help")
    assert "  fake-llm " in out


def test_serves_records_and_stops_on_sigterm(tmp_path: Path) -> None:
    """It prints the base URL, answers the SDK, records the request, exits 0 on SIGTERM."""
    script = tmp_path / "script.yaml"
    script.write_text("- reply: served by the CLI\n")
    record = tmp_path / "requests.jsonl"
    proc = subprocess.Popen([AIDP, "fake-llm", "--script", str(script), "--log-requests",
                             str(record)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with OpenAI(base_url=base_url, api_key="sk-cli-secret", max_retries=0,
                    timeout=10) as client:
            reply = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "served by the CLI"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert [e["path"] for e in entries] == ["/v1/chat/completions"]
    assert "sk-cli-secret" not in record.read_text()


def test_bad_script_is_exit_2_naming_file_line_and_step(tmp_path: Path) -> None:
    """A bad script: exit 2 and one error line naming the file, the line and the step."""
    script = tmp_path / "bad.yaml"
    script.write_text("- ok\n- error: {status: 99}\n")
    proc = subprocess.run([AIDP, "fake-llm", "--script", str(script)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {script}:2: step 1: error.status")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_missing_script_is_exit_2(tmp_path: Path) -> None:
    """A missing script file: exit 2, one line, no traceback."""
    proc = subprocess.run([AIDP, "fake-llm", "--script", str(tmp_path / "none.yaml")],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert "none.yaml: cannot read" in proc.stderr and "Traceback" not in proc.stderr
