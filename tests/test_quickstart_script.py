"""The README's main job: `examples/quickstart/run.sh` works from a fresh directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import AIDP, GIT_ENV

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "run.sh"


def test_quickstart_script_runs_offline(tmp_path: Path) -> None:
    """run.sh runs the shell workstreams (one failing on purpose) and the model step against
    the fake LLM (one fix attempt), and exits 0."""
    env = {**os.environ, **GIT_ENV, "AIDP": AIDP}
    env.pop("AIDP_DATABASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "qs")], capture_output=True,
                          text=True, timeout=240, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "quickstart OK" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "qs" / ".aidp" / "aidp.db").is_file()
