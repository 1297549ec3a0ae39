"""The servers the benchmark talks to, each in its own process like a real deployment.

- the floor: the same MCP SDK serving one trivial `echo` tool over Streamable HTTP
  with uvicorn on loopback, and a plain `GET /healthz`
  (`python -m tests.bench.bench_servers floor PORT`);
- ours: `tailnet-agent serve --local` (or on the test tailnet) against the real sshd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.sshd import Sshd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has reaped (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU time of `root` and every live descendant (sshd, its sessions, their shells)."""
    total = 0.0
    for pid in [root, *descendants(root)]:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS  # all but idle and iowait


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    started: float
    lines: list[str] = field(default_factory=list)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.output):
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError(f"server never printed {pattern!r}; its output:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn(argv: list[str], env: dict[str, str]) -> ServerProcess:
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    server = ServerProcess(proc, started)
    threading.Thread(target=server._read, daemon=True).start()
    return server


def scrubbed_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_floor(*, any_host: bool = False) -> tuple[ServerProcess, str, int]:
    """The trivial-tool server; `any_host` accepts a tailnet IP in the Host header."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.bench_servers", "floor", str(port)]
    server = spawn([*argv, "any-host"] if any_host else argv, scrubbed_env())
    server.wait_for(r"floor ready", timeout=60)
    return server, f"http://127.0.0.1:{port}/mcp", port


def agent_env(sshd: Sshd, workdir: Path, *, address: str | None = None,
              known_hosts: Path | None = None) -> dict[str, str]:
    return {
        **scrubbed_env(),
        "REMOTE_HOST": address or sshd.address,
        "REMOTE_HOST_NAME": "bench",
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(known_hosts or sshd.known_hosts),
        # Our own audit log in a scratch folder, never the user's.
        "TAILNET_AGENT_AUDIT_LOG": str(workdir / "audit.jsonl"),
        "HOME": str(workdir),
        # The benchmark measures the call path, not the per-caller rate limit (which
        # would refuse a tailnet caller's 61st call in a burst).
        "TAILNET_AGENT_RATE_PER_MINUTE": "1000000",
        "TAILNET_AGENT_RATE_BURST": "1000000",
    }


def start_agent(env: dict[str, str], *args: str) -> tuple[ServerProcess, str, float]:
    """Start `tailnet-agent serve`; returns it, its MCP URL and seconds from spawn to Ready."""
    port = free_port()
    server = spawn([sys.executable, "-m", "agent.cli", "serve", "--env-file", "/dev/null",
                    "--port", str(port), *args], env)
    url = server.wait_for(r"MCP endpoint: (http://\S+/mcp)", timeout=120).group(1)
    server.wait_for(r"Ready\.", timeout=120)
    return server, url, time.monotonic() - server.started


# -- the floor server (run in its own process) -----------------------------------


def _serve_floor(port: int, any_host: bool) -> None:
    import uvicorn
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    mcp = MCPServer("floor")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    # Reached through the tailnet, the Host header is the node's IP; the SDK's own
    # DNS-rebinding check would refuse it, so the floor switches it off there.
    app = (mcp.streamable_http_app(transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=False)) if any_host else mcp.streamable_http_app())

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    # The floor for a plain GET: the same uvicorn and Starlette as ours, no middleware.
    app.add_route("/healthz", healthz, methods=["GET"])

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            print("floor ready", flush=True)

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    asyncio.run(Announcing(config).serve())


if __name__ == "__main__":
    if sys.argv[1:2] == ["floor"]:
        _serve_floor(int(sys.argv[2]), sys.argv[3:4] == ["any-host"])
    else:
        print("usage: python -m tests.bench.bench_servers floor PORT", file=sys.stderr)
        sys.exit(2)
