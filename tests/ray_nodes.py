"""Ray nodes for tests: `ray start --block` processes on loopback, each with its own ports and
CPUs, under a private Ray temp dir (RAY_TMPDIR), so a test's cluster is never found by another
process on the machine, and stopping it never touches another Ray (`ray stop` would stop every
Ray of this user)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
START_GUARD_S = 300  # a hang guard: two nodes on a busy two-core machine start slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_tmpdir() -> Path:
    """Short (Ray's unix sockets live under it and their paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))


class RayNode:
    """`ray start --head` (no `head`), or a worker node joining `head`."""

    def __init__(self, tmpdir: Path, num_cpus: int, head: RayNode | None = None, **env: str):
        """`env`: more of the node's own environment (its tasks see it)."""
        self.tmpdir = tmpdir
        self.port = free_port()
        cmd = [RAY, "start", "--block", "--num-cpus", str(num_cpus), "--disable-usage-stats",
               "--node-ip-address", "127.0.0.1",
               "--dashboard-agent-listen-port", str(free_port()),
               "--metrics-export-port", str(free_port())]  # fmt: skip
        if head is None:
            cmd += ["--head", "--port", str(self.port), "--include-dashboard=false",
                    "--ray-client-server-port", str(free_port())]  # fmt: skip
        else:
            cmd += ["--address", head.address]
        self.proc = subprocess.Popen(
            cmd, env={**self.env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.output: list[str] = []
        started = threading.Event()
        threading.Thread(target=self._read, args=(started,), daemon=True).start()
        deadline = time.time() + START_GUARD_S
        while not started.wait(0.5) and self.proc.poll() is None and time.time() < deadline:
            pass
        if not started.is_set():
            self.stop()
            raise RuntimeError("ray start failed:\n" + "".join(self.output[-30:]))
        self.session = (tmpdir / "ray" / "session_latest").resolve()  # its logs

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """For the nodes and a driver process: the Ray temp dir of this cluster, no RAY_ADDRESS,
        and Ray's token authentication, which a new cluster has by default and a process
        joining one must ask for (the token is in ~/.ray, made by the first start)."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        return {**env, "RAY_TMPDIR": str(self.tmpdir), "RAY_AUTH_MODE": "token"}

    def _read(self, started: threading.Event) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            if "block forever" in line:
                started.set()

    def stop(self, force: bool = False) -> None:
        """Its processes gone: gracefully (SIGTERM, as `ray stop` does), or as a lost node
        (SIGKILL of everything this node runs, its tasks' train.py included)."""
        pids = self.tree()
        if force:
            for pid in pids:
                _kill(pid, signal.SIGKILL)
        else:
            _kill(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)
        for pid in pids:  # what did not stop with it (Ray workers have groups of their own)
            _kill(pid, signal.SIGKILL)
        self.proc.wait()

    def tree(self) -> set[int]:
        return descendants(self.proc.pid) | {self.proc.pid}


def descendants(pid: int) -> set[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in ps.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def remove(tmpdir: Path) -> None:
    shutil.rmtree(tmpdir, ignore_errors=True)


def wait_gone(pids: set[int], limit: float) -> set[int]:
    """Those of `pids` still running after waiting up to `limit` seconds (a hang guard)."""
    deadline = time.time() + limit
    while True:
        alive = {p for p in pids if running(p)}
        if not alive or time.time() >= deadline:
            return alive
        time.sleep(1)


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has finished
