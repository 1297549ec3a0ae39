"""The container image, built from dist/tailnet-agent, run by the repository's compose.yaml
(podman-compose on podman), on the test tailnet.

User stories:
- an operator fills in tailnet-agent.env, secrets/ and config/ as the README says and
  runs `compose up -d`. The container has no capabilities, no devices and no host
  network (here: a network namespace of its own that reaches only the control server).
  The agent joins the tailnet, a client node lists the tools and runs check_disk on a
  server node (a tailscaled in front of the real sshd); the health check passes; the
  metrics are there for the identity the policy grants them and refused to another;
  the logs are JSON lines without secrets; `compose stop` logs the ephemeral node out;
- with the node's state on the volume (the image's default), `compose down` and `up`
  again (an upgrade) bring back the same node.

The figures for the issue note (image size, start to Running, idle memory) go to
test-artifacts/build-figures.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tailscale_userspace import TailscaleNode
from tests.support.components import missing
from tests.support.frozen import executable, process_tree, record_figure, tree_pss_mib
from tests.support.output import assert_json_lines, assert_no_warning
from tests.support.podman import ContainerNetwork, Podman, PortForward, build_image, podman_home
from tests.support.sshd import Sshd
from tests.support.tailnet import TEST_TAILSCALED_ENV, TestTailnet, wait_peer
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]
IMAGE = "tailnet-agent"  # compose.yaml's image (in the tests' private store)
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


class Project:
    """A compose project as the README sets it up: compose.yaml (the repository's, as is),
    tailnet-agent.env, secrets/ and config/; run with podman-compose."""

    def __init__(self, podman: Podman, directory: Path, name: str) -> None:
        self.podman = podman
        self.directory = directory
        self.name = name
        self.container = f"{name}_agent_1"
        self.network = ContainerNetwork()
        self.forward: PortForward | None = None
        self.started = 0.0
        compose = shutil.which("podman-compose", path=f"{REPO / '.venv' / 'bin'}:"
                               f"{os.environ['PATH']}")
        if compose is None:
            missing("podman-compose", "pip install -e '.[test]' (make install) installs it")
        self.compose = compose

    def prepare(self, settings: dict[str, str], secrets: dict[str, str], config: dict[str, str],
                control_port: int) -> None:
        shutil.copy(REPO / "compose.yaml", self.directory / "compose.yaml")
        (self.directory / "tailnet-agent.env").write_text(
            "".join(f"{key}={value}\n" for key, value in settings.items()))
        for folder, files, mode in (("secrets", secrets, 0o400), ("config", config, 0o644)):
            (self.directory / folder).mkdir()
            (self.directory / folder).chmod(0o755)
            for name, text in files.items():
                path = self.directory / folder / name
                path.write_text(text)
                path.chmod(mode)
                os.chown(path, 10001 if folder == "secrets" else 0, 0)  # the README's chown
        # The test's only addition: the container's network namespace (see tests/support/
        # podman.py), and the one way out of it, to the control server.
        (self.directory / "test.override.yaml").write_text(
            f"services:\n  agent:\n    network_mode: \"{self.network.podman_network}\"\n")
        self.forward = PortForward(self.network.path, control_port)

    def __call__(self, *args: str, timeout: float = 120) -> str:
        argv = [self.compose, "--podman-path", self.podman.binary,
                "--podman-args", self.podman.engine_args, "--in-pod", "false",
                "-p", self.name, "-f", "compose.yaml", "-f", "test.override.yaml", *args]
        done = subprocess.run(argv, cwd=self.directory, env=self.podman.env, text=True,
                              capture_output=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"podman-compose {' '.join(args)}:\n{done.stdout}\n" \
                                     f"{done.stderr}"
        return done.stdout

    async def up(self) -> None:
        self.started = time.monotonic()
        await asyncio.to_thread(self, "up", "-d")

    def output(self) -> str:
        return self.podman.logs(self.container)

    def state(self) -> dict[str, Any]:
        return dict(self.podman.inspect(self.container)["State"])

    async def wait_for(self, pattern: str, seconds: float = 90) -> float:
        """Seconds from `compose up` until the container's output matched `pattern`."""
        async def logged() -> bool:
            running = (await asyncio.to_thread(self.state))["Running"]
            if re.search(pattern, await asyncio.to_thread(self.output)):
                return True
            if not running:
                raise AssertionError(f"the container stopped without logging {pattern!r}")
            return False

        try:
            await wait_until(logged, seconds, f"the container logging {pattern!r}", every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; output:\n{self.output()}") from None
        return time.monotonic() - self.started

    async def healthcheck(self) -> tuple[int, str]:
        """The image's HEALTHCHECK, run as podman's timer would run it: (exit, its output)."""
        done = await asyncio.to_thread(self.podman.run, "healthcheck", "run", self.container,
                                       check=False)
        state = self.state()
        log = (state.get("Health") or state.get("Healthcheck") or {}).get("Log") or [{}]
        return done.returncode, str(log[-1].get("Output", "")) or done.stderr

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("down", "--timeout", "5")
        if self.forward is not None:
            self.forward.close()
        self.network.close()


@contextlib.contextmanager
def project(podman: Podman, directory: Path, name: str) -> Iterator[Project]:
    made = Project(podman, directory, name)
    try:
        yield made
    finally:
        made.close()


def settings(tailnet: TestTailnet, sshd: Sshd, server_name: str, hostname: str,
             **extra: str) -> dict[str, str]:
    """tailnet-agent.env: the settings exactly as the README documents them."""
    return {
        **TEST_TAILSCALED_ENV,  # only for the offline test tailnet (tests/support/tailnet.py)
        "TS_HOSTNAME": hostname,
        "TS_CONTROL_URL": tailnet.control_url,
        "REMOTE_HOST_NAME": "server",
        "REMOTE_HOST": server_name,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_USER": sshd.user,
        "TAILNET_AGENT_POLICY": "/etc/tailnet-agent/policy.yaml",
        **extra,
    }


def files(sshd: Sshd, server_name: str, authkey: str) -> tuple[dict[str, str], dict[str, str]]:
    """secrets/ (the auth key, the SSH key) and config/ (known_hosts, the policy)."""
    key_type, key_data = Path(f"{sshd.host_key}.pub").read_text().split()[:2]
    return ({"ts_authkey": authkey, "ssh_key": sshd.client_key.read_text()},
            {"known_hosts": f"[{server_name}]:{sshd.port} {key_type} {key_data}\n",
             "policy.yaml": POLICY})


@contextlib.asynccontextmanager
async def through(node: TailscaleNode) -> AsyncIterator[httpx2.AsyncClient]:
    host, port = node.socks5
    async with httpx2.AsyncClient(proxy=f"socks5h://{host}:{port}", trust_env=False,
                                  timeout=60) as http:
        yield http


def timestamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (podman's has nanoseconds)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)",
                     text.strip())
    assert match, text
    base = datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3]))
    return base.timestamp() + float(f"0.{match[2] or 0}")


def credentials(pid: int) -> dict[str, str]:
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


async def test_compose_up_serves_the_tailnet_and_stop_logs_the_node_out(
    podman: Podman, image: str, tailnet: TestTailnet, nodes: Nodes, sshd: Sshd, tmp_path: Path
) -> None:
    hostname = "ctr-agent"
    authkey = tailnet.auth_key("agent", ephemeral=True)
    secrets, config = files(sshd, nodes.server_name, authkey)
    with project(podman, tmp_path, "tna-ephemeral") as agent:
        # TS_STATE_DIR empty: an ephemeral node, which logs out when the agent stops.
        agent.prepare(settings(tailnet, sshd, nodes.server_name, hostname, TS_STATE_DIR=""),
                      secrets, config, tailnet.headscale.port)
        await agent.up()
        to_running = await agent.wait_for(r"tailnet: tailscale: joined as")
        record_figure("image: compose up to tailnet Running", to_running * 1000, "ms")
        await agent.wait_for(r"Ready\. Press Ctrl-C")
        name = f"{hostname}.{nodes.server_name.split('.', 1)[1]}"
        for node in (nodes.ops, nodes.bob, nodes.server):
            await wait_peer(node, name, within=60)

        # uid 10001 and no capabilities, for every process of the container.
        pid, started_at = int(agent.state()["Pid"]), str(agent.state()["StartedAt"])
        tree = process_tree(pid)
        assert len(tree) >= 3, tree  # bootloader, agent, tailscaled
        for member in tree:
            assert credentials(member) == {"Uid": "10001", "CapPrm": "0" * 16,
                                           "CapEff": "0" * 16}, member

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
        assert (code, said) == (0, "ready (tailnet Running); hosts: server: connected")

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
                      tree_pss_mib(pid), "MiB")
        cgroup = cgroup_memory_mib(pid)
        if cgroup is not None:
            record_figure("image: idle memory, the container's cgroup (incl. page cache)",
                          cgroup, "MiB")

        await asyncio.to_thread(agent, "stop")
        assert agent.state()["ExitCode"] == 0, agent.output()
        gone = await asyncio.to_thread(tailnet.wait_node_gone, hostname, 20)
        assert gone, f"{hostname} is still listed after compose stop:\n{agent.output()}"

        # Logs for shipping (compose.yaml asks for JSON): every line one JSON object; the
        # call is there with who, what and where; no secret is.
        output = agent.output()
        lines = [line for line in output.splitlines() if line.strip()]
        assert_no_warning(output)
        records = assert_json_lines("\n".join(lines), "the container's output")
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        errors = [r for r in records if r["level"] in ("error", "critical")]
        assert not errors, errors  # nothing went wrong, the shutdown included
        joined = next(r for r in records if "joined as" in r["message"])
        record_figure("image: container start to tailnet Running (its own clock)",
                      (timestamp(joined["time"]) - timestamp(started_at)) * 1000, "ms")
        record_figure("image: container start to the agent's first record (unpack, imports)",
                      (timestamp(records[0]["time"]) - timestamp(started_at)) * 1000, "ms")
        call = [r for r in records if r.get("command") == "disk_usage"]
        assert call and call[-1]["identity"] == "ctr-ops" and call[-1]["host"] == "server"
        assert authkey not in output and "PRIVATE KEY" not in output


def test_the_image_carries_the_sbom_of_its_files(podman: Podman, image: str,
                                                 tmp_path: Path) -> None:
    """The SBOM in the image: the executable with every component of the SBOM it carries,
    and the Debian packages of the libraries and CA certificates image_root.py copied."""
    from PyInstaller.archive.readers import CArchiveReader

    container = podman.run("create", image).stdout.strip()
    try:
        podman.run("cp", f"{container}:/usr/share/doc/tailnet-agent/sbom.cdx.json",
                   str(tmp_path / "sbom.json"))
    finally:
        podman.run("rm", container)
    sbom = json.loads((tmp_path / "sbom.json").read_text())
    assert (sbom["specVersion"], sbom["metadata"]["component"]["type"]) == ("1.6", "container")
    inner = json.loads(CArchiveReader(str(executable())).extract("tailnet-agent.cdx.json"))
    refs = {c["bom-ref"] for c in sbom["components"]}
    assert inner["metadata"]["component"]["bom-ref"] in refs
    assert {c["bom-ref"] for c in inner["components"]} <= refs
    debian = {c["name"] for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert {"libc6", "ca-certificates"} <= debian, debian
    record_figure("image: SBOM components", len(sbom["components"]), "components")


async def test_the_node_state_on_the_volume_survives_down_and_up(
    podman: Podman, image: str, tailnet: TestTailnet, nodes: Nodes, sshd: Sshd, tmp_path: Path
) -> None:
    hostname = "ctr-persistent"
    # A non-ephemeral key: the node stays registered while the container is gone.
    key = tailnet.headscale.cli("preauthkeys", "create", "--user",
                                str(tailnet.user_id("agent")), "--reusable", "--expiration", "1h")
    secrets, config = files(sshd, nodes.server_name, key["key"])
    addresses: list[str] = []
    with project(podman, tmp_path, "tna-persistent") as agent:
        agent.prepare(settings(tailnet, sshd, nodes.server_name, hostname), secrets, config,
                      tailnet.headscale.port)
        for run in ("first", "after an upgrade"):
            if run != "first":
                # The README's key rotation: the key only joins; a node with its state
                # comes back even once the key is revoked.
                tailnet.headscale.cli("preauthkeys", "expire", "--id", str(key["id"]),
                                      "--force")
            await agent.up()
            await agent.wait_for(r"Ready\. Press Ctrl-C")
            banner = re.findall(r"serving tailnet peers as \S+ \(([0-9.]+)", agent.output())
            addresses.append(banner[-1])
            await asyncio.to_thread(agent, "down")  # the container goes, the volume stays
            listed = [n for n in tailnet.headscale.nodes() if n.get("name") == hostname]
            assert len(listed) == 1, listed  # still registered (not ephemeral), and once
    assert addresses[0] == addresses[1], addresses
    for node in listed:
        tailnet.headscale.cli("nodes", "delete", "--identifier", str(node["id"]), "--force")
