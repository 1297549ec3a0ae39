"""The container image, built from dist/tailnet-agent and run with podman, on the test tailnet.

User stories:
- an operator runs the image (no capabilities, no devices, no host network: a network
  namespace of its own that reaches only the control server), with the auth key and
  the SSH key as secrets and the configuration mounted read-only; the agent joins the
  tailnet, a client node lists the tools and runs check_disk on a server node (a
  tailscaled in front of the real sshd); the health check passes; the metrics are
  there for the identity the policy grants them and refused to another; the logs are
  JSON lines without secrets; `podman stop` logs the ephemeral node out;
- with the node's state on the volume (the image's default), a new container (an
  upgrade) comes back as the same node.

The figures for the issue note (image size, start to Running, idle memory) go to
test-artifacts/build-figures.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tailscale_userspace import TailscaleNode
from tests.e2e.build.frozen import executable, process_tree, record_figure, tree_pss_mib
from tests.support.podman import ContainerNetwork, Podman, PortForward, build_image, podman_home
from tests.support.sshd import Sshd
from tests.support.tailnet import TEST_TAILSCALED_ENV, TestTailnet, wait_peer

pytestmark = pytest.mark.e2e

IMAGE = "tailnet-agent-test"
PORT = 8765  # the image's default; nothing else listens in the container's namespace
POLICY = """
rules:
  - name: monitoring
    who: [ctr-ops]
    commands: []
    metrics: true
"""


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    executable()  # the image is built from dist/tailnet-agent: `make dist` first
    with podman_home() as engine:
        yield engine


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    done = build_image(podman, IMAGE)
    assert done.returncode == 0, f"build/image.sh failed:\n{done.stdout}\n{done.stderr}"
    size = int(podman.inspect(f"{IMAGE}:latest", kind="image")["Size"])
    record_figure("image: size (podman image inspect)", size / 1024 / 1024, "MiB")
    return f"{IMAGE}:latest"


@dataclass
class Nodes:
    server: TailscaleNode  # in front of the real sshd
    ops: TailscaleNode  # ctr-ops: the agent's policy grants it the metrics
    bob: TailscaleNode  # a tailnet user with the default rights only
    server_name: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def nodes(tailnet: TestTailnet) -> Nodes:
    server = await tailnet.node("ctr-server", user="ops")
    ops = await tailnet.node("ctr-ops-laptop", user="ctr-ops")
    bob = await tailnet.node("ctr-bob-laptop", user="bob")
    assert server.info is not None
    return Nodes(server, ops, bob, server.info.dns_name)


class Container:
    """One container of the image, in a network namespace of its own."""

    def __init__(self, podman: Podman, name: str) -> None:
        self.podman = podman
        self.name = name
        self.network = ContainerNetwork()
        self.forward: PortForward | None = None
        self.started = 0.0

    def run(self, image: str, env: dict[str, str], *, control_port: int, volume: str,
            config: Path, secrets: dict[str, str]) -> None:
        # The one way out of the namespace: 127.0.0.1:<control port> -> headscale.
        self.forward = PortForward(self.network.path, control_port)
        args = ["run", "--detach", "--name", self.name, "--network", self.network.podman_network,
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--volume", f"{volume}:/var/lib/tailnet-agent",
                "--volume", f"{config}:/etc/tailnet-agent:ro"]
        for target, secret in secrets.items():  # at /run/secrets/<target>, for uid 10001 only
            args += ["--secret", f"{secret},type=mount,target={target},uid=10001,gid=10001,"
                     "mode=0400"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        self.started = time.monotonic()
        self.podman.run(*args, image)

    def output(self) -> str:
        return self.podman.logs(self.name)

    def running(self) -> bool:
        return bool(self.podman.inspect(self.name)["State"]["Running"])

    async def wait_for(self, pattern: str, seconds: float = 90) -> float:
        """Seconds from `podman run` until the output matched `pattern`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if re.search(pattern, await asyncio.to_thread(self.output)):
                return time.monotonic() - self.started
            if not await asyncio.to_thread(self.running):
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"the container never logged {pattern!r}; output:\n"
                             f"{self.output()}")

    @property
    def pid(self) -> int:
        return int(self.podman.inspect(self.name)["State"]["Pid"])

    async def healthcheck(self) -> tuple[int, str]:
        """The image's HEALTHCHECK, run as podman's timer would run it: (exit, its output)."""
        done = await asyncio.to_thread(self.podman.run, "healthcheck", "run", self.name,
                                       check=False)
        state = self.podman.inspect(self.name)["State"]
        log = (state.get("Health") or state.get("Healthcheck") or {}).get("Log") or [{}]
        return done.returncode, str(log[-1].get("Output", "")) or done.stderr

    async def stop(self) -> int:
        await asyncio.to_thread(self.podman.run, "stop", "--time", "30", self.name, timeout=60)
        return int(self.podman.inspect(self.name)["State"]["ExitCode"])

    def remove(self) -> None:
        self.podman.run("rm", "--force", "--time", "5", self.name, check=False)
        if self.forward is not None:
            self.forward.close()
        self.network.close()


@contextlib.contextmanager
def container(podman: Podman, name: str) -> Iterator[Container]:
    made = Container(podman, name)
    try:
        yield made
    finally:
        made.remove()


def agent_config(tmp: Path, sshd: Sshd, server_name: str) -> Path:
    """The read-only configuration mount: known_hosts pinning the server, and the policy."""
    config = tmp / "config"
    config.mkdir()
    config.chmod(0o755)
    key_type, key_data = Path(f"{sshd.host_key}.pub").read_text().split()[:2]
    (config / "known_hosts").write_text(f"[{server_name}]:{sshd.port} {key_type} {key_data}\n")
    (config / "policy.yaml").write_text(POLICY)
    for path in config.iterdir():
        path.chmod(0o644)
    return config


def agent_env(tailnet: TestTailnet, sshd: Sshd, server_name: str, hostname: str,
              **extra: str) -> dict[str, str]:
    """The settings, exactly as the README documents them for the executable."""
    return {
        **TEST_TAILSCALED_ENV,  # only for the offline test tailnet (tests/support/tailnet.py)
        "TS_AUTHKEY": "file:/run/secrets/ts_authkey",
        "TS_HOSTNAME": hostname,
        "TS_CONTROL_URL": tailnet.control_url,
        "REMOTE_HOST_NAME": "server",
        "REMOTE_HOST": server_name,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_KEY_PATH": "/run/secrets/ssh_key",
        "REMOTE_SSH_KNOWN_HOSTS": "/etc/tailnet-agent/known_hosts",
        "TAILNET_AGENT_POLICY": "/etc/tailnet-agent/policy.yaml",
        **extra,
    }


def secret(podman: Podman, name: str, value: str) -> str:
    podman.run("secret", "create", name, "-", input_text=value)
    return name


@contextlib.asynccontextmanager
async def through(node: TailscaleNode) -> AsyncIterator[httpx2.AsyncClient]:
    host, port = node.socks5
    async with httpx2.AsyncClient(proxy=f"socks5h://{host}:{port}", trust_env=False,
                                  timeout=60) as http:
        yield http


def capabilities(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm", "Uid"):
            fields[key] = value.split()[0]
    return fields


def cgroup_memory_mib(pid: int) -> float | None:
    """The container's memory as its cgroup counts it (v1 or v2), None if not readable."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if controllers == "memory" or (hierarchy == "0" and controllers == ""):
            for base, name in (("/sys/fs/cgroup/memory", "memory.usage_in_bytes"),
                               ("/sys/fs/cgroup", "memory.current")):
                with contextlib.suppress(OSError, ValueError):
                    return int(Path(f"{base}{path}/{name}").read_text()) / 1024 / 1024
    return None


async def test_the_image_joins_serves_and_leaves_on_stop(
    podman: Podman, image: str, tailnet: TestTailnet, nodes: Nodes, sshd: Sshd, tmp_path: Path
) -> None:
    hostname = "ctr-agent"
    authkey = tailnet.auth_key("agent", ephemeral=True)
    secrets = {"ts_authkey": secret(podman, "eph-authkey", authkey),
               "ssh_key": secret(podman, "eph-ssh-key", sshd.client_key.read_text())}
    # TS_STATE_DIR empty: an ephemeral node, which logs out when the agent stops.
    env = agent_env(tailnet, sshd, nodes.server_name, hostname, TS_STATE_DIR="",
                    TAILNET_AGENT_LOG_FORMAT="json")
    with container(podman, "tna-ephemeral") as agent:
        agent.run(image, env, control_port=tailnet.headscale.port, volume="tna-eph-state",
                  config=agent_config(tmp_path, sshd, nodes.server_name), secrets=secrets)
        to_running = await agent.wait_for(r"tailnet: tailscale: joined as")
        record_figure("image: podman run to tailnet Running", to_running * 1000, "ms")
        await agent.wait_for(r"Ready\. Press Ctrl-C")
        name = f"{hostname}.{nodes.server_name.split('.', 1)[1]}"
        for node in (nodes.ops, nodes.bob, nodes.server):
            await wait_peer(node, name, within=60)

        # The agent runs as uid 10001 with no capabilities, in the container's namespace.
        tree = process_tree(agent.pid)
        assert len(tree) >= 3, tree  # bootloader, agent, tailscaled
        for pid in tree:
            caps = capabilities(pid)
            assert caps == {"Uid": "10001", "CapPrm": "0" * 16, "CapEff": "0" * 16}, (pid, caps)

        url = f"http://{name}:{PORT}"
        async with through(nodes.ops) as http, Client(
                streamable_http_client(f"{url}/mcp", http_client=http)) as mcp:
            tools = {t.name for t in (await mcp.list_tools()).tools}
            assert {"check_disk", "list_hosts", "execute_command"} <= tools
            disk = await mcp.call_tool("check_disk", {})
        assert not disk.is_error, f"{disk.content}\n{agent.output()}"
        assert disk.structured_content is not None
        assert disk.structured_content["host"] == "server"
        assert "Filesystem" in disk.structured_content["stdout"]

        code, said = await agent.healthcheck()
        assert code == 0, said
        assert said.startswith("ready (tailnet Running); hosts: server: connected"), said

        # Metrics: granted to ctr-ops by the policy, refused to bob; readiness for both.
        async with through(nodes.ops) as http:
            metrics = await http.get(f"{url}/metrics")
            ready = await http.get(f"{url}/readyz")
        assert metrics.status_code == 200, metrics.text
        assert ('tailnet_agent_calls_total{command="disk_usage",host="server",outcome="ok",'
                'tool="check_disk"} 1.0') in metrics.text, metrics.text
        assert 'tailnet_agent_tailnet_state{state="Running"} 1.0' in metrics.text
        assert ready.json()["hosts"] == {"server": "connected"}
        async with through(nodes.bob) as http:
            refused = await http.get(f"{url}/metrics")
            ready = await http.get(f"{url}/readyz")
        assert refused.status_code == 403 and "may not read this agent's metrics" in refused.text
        assert ready.status_code == 200 and ready.json() == {
            "ready": True, "reason": "ready", "tailnet": "Running"}

        await asyncio.sleep(2.0)  # idle
        record_figure("image: idle memory, PSS of the container's processes",
                      tree_pss_mib(agent.pid), "MiB")
        cgroup = cgroup_memory_mib(agent.pid)
        if cgroup is not None:
            record_figure("image: idle memory, the container's cgroup (incl. page cache)",
                          cgroup, "MiB")

        assert await agent.stop() == 0, agent.output()
        gone = await asyncio.to_thread(tailnet.wait_node_gone, hostname, 20)
        assert gone, f"{hostname} is still listed after podman stop:\n{agent.output()}"

        # Logs for shipping: every line is one JSON object; the call is there with who,
        # what and where; no secret is.
        output = agent.output()
        lines = [line for line in output.splitlines() if line.strip()]
        assert all(line.startswith("{") and line.endswith("}") for line in lines), output
        records = [json.loads(line) for line in lines]
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        call = [r for r in records if r.get("command") == "disk_usage"]
        assert call and call[-1]["identity"] == "ctr-ops" and call[-1]["host"] == "server"
        assert authkey not in output and "PRIVATE KEY" not in output


async def test_the_node_state_on_the_volume_survives_a_new_container(
    podman: Podman, image: str, tailnet: TestTailnet, nodes: Nodes, sshd: Sshd, tmp_path: Path
) -> None:
    hostname = "ctr-persistent"
    # A non-ephemeral key: the node stays registered while the container is gone.
    secrets = {"ts_authkey": secret(podman, "keep-authkey",
                                    tailnet.auth_key("agent", ephemeral=False)),
               "ssh_key": secret(podman, "keep-ssh-key", sshd.client_key.read_text())}
    env = agent_env(tailnet, sshd, nodes.server_name, hostname)  # the image's TS_STATE_DIR
    config = agent_config(tmp_path, sshd, nodes.server_name)
    addresses = []
    for generation in ("first", "second"):
        with container(podman, f"tna-{generation}") as agent:
            agent.run(image, env, control_port=tailnet.headscale.port, volume="tna-keep-state",
                      config=config, secrets=secrets)
            await agent.wait_for(r"Ready\. Press Ctrl-C")
            banner = re.findall(r"serving tailnet peers as \S+ \(([0-9.]+)", agent.output())
            addresses.append(banner[-1])
            assert await agent.stop() == 0, agent.output()
        listed = [n for n in tailnet.headscale.nodes() if n.get("name") == hostname]
        assert len(listed) == 1, listed  # still registered (not ephemeral), and only once
    assert addresses[0] == addresses[1], addresses
    for node in listed:
        tailnet.headscale.cli("nodes", "delete", "--identifier", str(node["id"]), "--force")
