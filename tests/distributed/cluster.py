"""A real Dask cluster for the tests, started from the command line as separate processes: a
``dask scheduler`` and ``aidp worker``s, each worker in its own clone of a shared bare
repository -- optionally each in its own network namespace, with its own address on a bridge (so
several "hosts" on one machine, reached only over the network)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import AIDP, GIT_ENV, git, init_repo

DASK = str(Path(sys.executable).parent / "dask")


def can_make_namespaces() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no ip(8) here"
    name = f"aidpt{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return None


@dataclass
class Network:
    """A bridge with the scheduler's address and one namespace per worker."""

    bridge: str
    prefix: str  # "10.X.Y."
    namespaces: list[str] = field(default_factory=list)

    @property
    def scheduler_ip(self) -> str:
        return self.prefix + "1"

    def add_host(self, index: int) -> tuple[str, str]:
        """A namespace with an address on the bridge: (its name, its address)."""
        ns = f"{self.bridge}n{index}"
        veth = f"{self.bridge}v{index}"
        ip = f"{self.prefix}{10 + index}"
        for argv in (["ip", "netns", "add", ns],
                     ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                      "netns", ns],
                     ["ip", "link", "set", veth, "master", self.bridge, "up"],
                     ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
                     ["ip", "-n", ns, "link", "set", "eth0", "up"],
                     ["ip", "-n", ns, "link", "set", "lo", "up"]):
            subprocess.run(argv, check=True, capture_output=True)
        self.namespaces.append(ns)
        return ns, ip

    def close(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)


@contextmanager
def network() -> Iterator[Network]:
    tag = secrets.token_hex(2)
    net = Network(f"aidb{tag}", f"10.{100 + int(tag[:2], 16) % 100}.{int(tag[2:], 16)}.")
    subprocess.run(["ip", "link", "add", net.bridge, "type", "bridge"], check=True,
                   capture_output=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{net.scheduler_ip}/24", "dev", net.bridge],
                       check=True, capture_output=True)
        subprocess.run(["ip", "link", "set", net.bridge, "up"], check=True, capture_output=True)
        yield net
    finally:
        net.close()


@dataclass
class Cluster:
    """The shared remote, the orchestrator's clone, the scheduler and the workers."""

    root: Path
    remote: Path
    clone: Path
    address: str = ""
    scheduler: subprocess.Popen[str] | None = None
    workers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    clones: dict[str, Path] = field(default_factory=dict)
    net: Network | None = None
    files: list[Any] = field(default_factory=list)  # the processes' log files, closed at the end

    def _log_file(self, name: str) -> Any:
        handle = (self.root / f"{name}.log").open("w")
        self.files.append(handle)
        return handle

    def env(self) -> dict[str, str]:
        env = {**os.environ, **GIT_ENV, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        env.pop("AIDP_DATABASE_URL", None)
        return env

    def start_scheduler(self) -> None:
        host = self.net.scheduler_ip if self.net else "127.0.0.1"
        info = self.root / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", host, "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)], stdout=subprocess.DEVNULL,
            stderr=self._log_file("scheduler"), text=True, env=self.env(),
            start_new_session=True)
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert self.scheduler.poll() is None, (self.root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]

    def add_worker(self, name: str, *args: str) -> None:
        """Clone the remote for ``name`` and start ``aidp worker`` there (in a namespace of its
        own when the cluster has a network)."""
        clone = self.root / name
        git(self.root, "clone", "-q", str(self.remote), str(clone))
        prefix: list[str] = []
        host: list[str] = []
        if self.net is not None:
            ns, ip = self.net.add_host(len(self.workers))
            prefix, host = ["ip", "netns", "exec", ns], ["--host", ip]
        self.clones[name] = clone
        self.workers[name] = subprocess.Popen(
            [*prefix, AIDP, "worker", "--scheduler", self.address, "--repo", str(clone),
             "--name", name, *host, *args], cwd=clone, stdout=subprocess.DEVNULL,
            stderr=self._log_file(name), text=True, env=self.env(),
            start_new_session=True)

    def wait_for_workers(self, count: int, timeout_s: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout_s)

    def kill(self, name: str) -> None:
        """``kill -9`` of a worker (its tools are its own children: they die with it)."""
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for handle in self.files:
            handle.close()


@contextmanager
def cluster(root: Path, files: dict[str, str], *, net: Network | None = None
            ) -> Iterator[Cluster]:
    """A bare remote holding ``files`` on main, the orchestrator's clone and a scheduler (no
    workers yet: :meth:`Cluster.add_worker`)."""
    seed = init_repo(root / "seed", files)
    remote = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(seed), str(remote))
    clone = root / "orchestrator"
    git(root, "clone", "-q", str(remote), str(clone))
    for repo in (clone,):
        git(repo, "config", "user.name", "aidp tests")
        git(repo, "config", "user.email", "tests@aidp.invalid")
    made = Cluster(root, remote, clone, net=net)
    try:
        made.start_scheduler()
        yield made
    finally:
        made.close()
