"""Real Flower processes for tests: one ``flower-superlink`` and N ``flower-supernode`` on free
127.0.0.1 ports, with an isolated ``FLWR_HOME``; every process is started in its own session and
killed by process group (its ``flower-superexec`` and ClientApp children with it), also when the
test fails. Nothing here touches a SuperLink it did not start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlowerCluster:
    """``with FlowerCluster(tmp, node_configs, env) as c: c.address`` (HOST:PORT of the SuperLink)."""

    def __init__(self, root: Path, node_configs: list[str], env: dict[str, str] | None = None,
                 simulation: bool = False) -> None:
        self.root = root
        self.node_configs = node_configs
        self.simulation = simulation
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {}), "FLWR_HOME": str(root / "flwr-home"),
                    "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # flower-superexec, flwr-*
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process group
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def __enter__(self) -> FlowerCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._start("superlink", [str(BIN / "flower-superlink"), "--insecure",
                                      "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                                      "--port", str(self.port), *(["--simulation"] if self.simulation else [])])
            self._wait_health()
            for i, node_config in enumerate(self.node_configs):
                self.start_node(i, node_config)
        except BaseException:
            self.close()
            raise
        return self

    def start_node(self, i: int, node_config: str) -> subprocess.Popen:
        return self._start(f"supernode{i}", [str(BIN / "flower-supernode"), "--insecure", "--superlink",
                                             self.address, "--port", str(free_port()), "--node-config", node_config])

    def _wait_health(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["superlink"].poll() is not None:
                raise RuntimeError(f"flower-superlink exited: {self.log('superlink')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"flower-superlink not healthy after {timeout} s: {self.log('superlink')[-2000:]}")

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def own_pids(self, program: str) -> list[int]:
        """PIDs of running ``program`` processes started under this cluster's ``FLWR_HOME`` (the
        SuperLink starts the ServerApp in a session of its own, so it is found by environment)."""
        want = f"FLWR_HOME={self.env['FLWR_HOME']}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
                if program.encode() in cmd and want in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def __exit__(self, *exc) -> None:
        self.close()
