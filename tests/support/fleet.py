"""A fleet of tailnet server nodes on one machine, each a host of its own.

Every server node lives in its own network, UTS and mount namespaces (a holder process
made by `unshare`), so that:

- its tailscaled forwards tailnet connections to *its own* 127.0.0.1 (userspace mode
  lands a peer's connection to IP:P on 127.0.0.1:P of the namespace tailscaled runs in);
- `hostname` run through it answers its own name (its own UTS namespace): a command that
  prints `web-1` ran on web-1;
- it has its own /etc/ssh (a bind mount), whose host keys its sshd serves and, when it
  runs Tailscale SSH as root, its tailscaled publishes in the netmap.

The namespaces hang off a bridge (`BRIDGE`, `CONTROL_IP`/16) made inside the tests' own
network namespace (tests/run-isolated.sh), where headscale, its DERP server and the
agent run: nothing here touches the machine's real network, and nothing leaves it.
Each node's tailscaled is the full build from .cache/tailnet-bin (Tailscale SSH needs
it; ours is built without), run as root with the test knobs of tests/support/tailnet.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio

from tailscale_userspace import LocalAPI, TailscaleNode
from tests.support.components import missing, require_executable
from tests.support.headscale_policy import PolicyHeadscale
from tests.support.sshd import Sshd, _keygen
from tests.support.tailnet import (
    TEST_TAILSCALED_ENV,
    TailnetBinaries,
    TestTailnet,
    _scrubbed_env,
    ensure_binaries,
    running,
)
from tests.support.waiting import wait_until

BRIDGE = "tnfleet0"
# A /16: the scale benchmark puts hundreds of nodes on the bridge (a /24 stopped it at 245).
PREFIX_LENGTH = 16
CONTROL_IP = "10.77.0.1"
NODES_PER_OCTET = 250  # node addresses 10.77.1.1-250, 10.77.2.1-250, ...


def node_address(index: int) -> str:
    return f"10.77.{1 + index // NODES_PER_OCTET}.{1 + index % NODES_PER_OCTET}"
JOIN_TIMEOUT = 60.0


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout


def require_namespaces() -> None:
    """Root, the tools, and an isolated network namespace to build the bridge in."""
    if os.geteuid() != 0:
        missing("root", "the fleet tests give every server node its own namespaces; run as "
                "root (CI does)")
    for tool in ("ip", "unshare", "nsenter", "mount"):
        require_executable(tool, "apt-get install iproute2 util-linux mount")
    interfaces = set(network_interfaces()) - {"lo", BRIDGE}
    if interfaces:
        missing("an isolated network namespace",
                f"this namespace has {', '.join(sorted(interfaces))}; run the tests through "
                "tests/run-isolated.sh (make pytest does) so the bridge never touches a real "
                "network")


def network_interfaces() -> list[str]:
    """This network namespace's interfaces (/sys/class/net shows the mounter's namespace)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines]


def make_bridge() -> None:
    if BRIDGE in network_interfaces():
        return
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{CONTROL_IP}/{PREFIX_LENGTH}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


class Namespaces:
    """A holder process in new network, UTS and mount namespaces, linked to the bridge.

    Processes join it with `nsenter` (`prefix`); its veth peer is eth0 with `address`.
    """

    def __init__(self, name: str, index: int, etc_ssh: Path) -> None:
        self.name = name
        self.index = index
        self.address = node_address(index)
        script = (f"mount --bind {etc_ssh} /etc/ssh && hostname {name} && "
                  "ip link set lo up && echo ready && exec sleep infinity")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--uts", "--mount", "--propagation", "private",
             "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "ready":
            error = self.holder.stderr.read() if self.holder.stderr else ""
            raise RuntimeError(f"namespaces for {name} failed: {error}")
        veth, peer = f"tnf{index}", f"tnp{index}"  # unique names: nodes start in parallel
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns",
             str(self.holder.pid))
        _run("ip", "link", "set", veth, "master", BRIDGE, "up")
        _run(*self.prefix, "ip", "link", "set", peer, "name", "eth0")
        _run(*self.prefix, "ip", "addr", "add", f"{self.address}/{PREFIX_LENGTH}", "dev",
             "eth0")
        _run(*self.prefix, "ip", "link", "set", "eth0", "up")

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "--net", "--uts", "--mount"]

    def close(self) -> None:
        # The network namespace (and the veth pair) goes when its last process exits.
        self.holder.kill()
        self.holder.wait()


@dataclass
class ServerNode:
    """One server: namespaces, its own /etc/ssh, an sshd on port 22, a tailscaled."""

    name: str
    tags: tuple[str, ...]
    tailscale_ssh: bool
    workdir: Path
    ns: Namespaces
    sshd: Sshd
    socket: Path
    tailscaled: subprocess.Popen[bytes] | None = None
    localapi: LocalAPI | None = None
    dns_name: str = ""
    ips: tuple[str, ...] = ()
    extra_sshd: list[Sshd] = field(default_factory=list)
    joined: bool = False

    @property
    def host_key_pub(self) -> str:
        """`type base64` of the node's ed25519 host key (in its /etc/ssh)."""
        fields = (self.workdir / "etc-ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        return f"{fields[0]} {fields[1]}"

    @property
    def short_name(self) -> str:
        return self.dns_name.split(".")[0]

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "tailscaled.log").read_text(errors="replace")[-4000:]
        return ""

    async def stop_tailscaled(self, *, logout: bool = False) -> None:
        """Stop the node's tailscaled: it stays registered (offline) unless `logout`."""
        if logout and self.localapi is not None:
            with contextlib.suppress(Exception):
                await self.localapi.logout()
        if self.localapi is not None:
            await self.localapi.aclose()
            self.localapi = None
        process, self.tailscaled = self.tailscaled, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)

    async def close(self) -> None:
        await self.stop_tailscaled()
        for server in (self.sshd, *self.extra_sshd):
            server.cleanup()
        self.ns.close()


def fleet_policy(ssh_rules: Sequence[Mapping[str, Any]], tags: Sequence[str],
                 owner: str = "ops") -> dict[str, Any]:
    """Every node may reach every other; Tailscale SSH as `ssh_rules` say."""
    return {
        "tagOwners": {tag: [f"{owner}@"] for tag in tags},
        "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}],
        "ssh": list(ssh_rules),
    }


class FleetHeadscale(PolicyHeadscale):
    """Headscale (and its DERP and STUN) on the bridge address, so every namespace reaches it."""

    def __init__(self, binary: Path, workdir: Path, policy: Mapping[str, Any]) -> None:
        super().__init__(binary, workdir, policy)
        config = json.loads(self.config_path.read_text())
        config["server_url"] = self.url
        config["listen_addr"] = f"{CONTROL_IP}:{self.port}"
        derp = config["derp"]["server"]
        derp["ipv4"] = CONTROL_IP
        derp["stun_listen_addr"] = f"{CONTROL_IP}:{derp['stun_listen_addr'].rsplit(':', 1)[1]}"
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"http://{CONTROL_IP}:{self.port}"


class Fleet(TestTailnet):
    """The test tailnet on the bridge, plus server nodes in namespaces of their own."""

    def __init__(self, binaries: TailnetBinaries, headscale: FleetHeadscale,
                 workdir: Path) -> None:
        super().__init__(binaries, headscale, workdir)
        self.servers: dict[str, ServerNode] = {}
        self.client_key = workdir / "id_ed25519"
        _keygen(self.client_key, comment="fleet-agent")
        self._next_index = 0

    async def server(
        self,
        name: str,
        *,
        tags: Sequence[str],
        tailscale_ssh: bool = False,
        ephemeral: bool = False,
        extra_sshd_port: int | None = None,
    ) -> ServerNode:
        """A server node joined to the tailnet: sshd on its port 22 (and `extra_sshd_port`),
        Tailscale SSH when asked; `ephemeral` nodes leave the tailnet on logout."""
        self._next_index += 1
        index = self._next_index
        workdir = self.workdir / "servers" / name
        etc_ssh = workdir / "etc-ssh"
        etc_ssh.mkdir(parents=True)
        host_key = etc_ssh / "ssh_host_ed25519_key"
        await asyncio.to_thread(_keygen, host_key, "", f"{name}-host")
        ns = await asyncio.to_thread(Namespaces, name, index, etc_ssh)
        servers = [self._sshd(ns, host_key, port) for port in (22, extra_sshd_port) if port]
        node = ServerNode(name, tuple(tags), tailscale_ssh, workdir, ns, servers[0],
                          workdir / "tailscaled.sock", extra_sshd=servers[1:])
        self.servers[name] = node
        for server in servers:
            await asyncio.to_thread(server.start)
        await self.start_tailscaled(node, ephemeral=ephemeral)
        return node

    def _sshd(self, ns: Namespaces, host_key: Path, port: int) -> Sshd:
        server = Sshd(port=port, listen=("127.0.0.1", ns.address), run_in=ns.prefix,
                      host_key=host_key)
        server.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        return server

    async def start_tailscaled(self, node: ServerNode, *, ephemeral: bool = False) -> None:
        """Start (or restart) the node's tailscaled and bring it up; returns once Running."""
        node.tailscaled = self._spawn_tailscaled(node)
        node.localapi = LocalAPI(node.socket)
        process = node.tailscaled

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tailscaled of {node.name} exited at start:\n"
                                   f"{node.log_text()}")
            return node.socket.exists()

        await wait_until(listening, JOIN_TIMEOUT, f"tailscaled of {node.name} creating its "
                         "LocalAPI socket", every=0.05)
        args = [str(self.binaries.tailscale), f"--socket={node.socket}", "up",
                f"--login-server={self.control_url}", f"--hostname={node.name}",
                "--accept-dns=false", f"--timeout={JOIN_TIMEOUT:g}s"]
        if node.tailscale_ssh:
            args.append("--ssh")
        if not node.joined:  # a restart comes back as the same node, from its state
            key = self.auth_key("ops", ephemeral=ephemeral, tags=node.tags)
            args.append(f"--auth-key={key}")
        done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True,
                                       env=_scrubbed_env(), timeout=JOIN_TIMEOUT + 10)
        if done.returncode != 0:
            raise RuntimeError(f"`tailscale up` for {node.name} failed: {done.stderr}\n"
                               f"{node.log_text()}")
        node.joined = True
        status = await node.localapi.status()
        node.dns_name = str(status["Self"]["DNSName"]).rstrip(".")
        node.ips = tuple(status["Self"]["TailscaleIPs"])

    def _spawn_tailscaled(self, node: ServerNode) -> subprocess.Popen[bytes]:
        statedir = node.workdir / "state"
        statedir.mkdir(exist_ok=True, mode=0o700)
        env = {**_scrubbed_env(), **TEST_TAILSCALED_ENV}
        with open(node.workdir / "tailscaled.log", "ab") as log:
            return subprocess.Popen(
                [*node.ns.prefix, str(self.binaries.tailscaled), "--tun=userspace-networking",
                 f"--socket={node.socket}", f"--statedir={statedir}", "--port=0",
                 "--no-logs-no-support"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    async def aclose(self) -> None:
        servers, self.servers = list(self.servers.values()), {}
        for node in servers:
            with contextlib.suppress(Exception):
                await node.close()
        await super().aclose()


async def wait_seen(viewer: TailscaleNode | LocalAPI, dns_name: str, *, online: bool,
                    within: float = 30.0) -> dict[str, Any]:
    """Wait until `viewer`'s netmap shows `dns_name` online (with a DERP region) or offline."""
    api = viewer.localapi if isinstance(viewer, TailscaleNode) else viewer

    async def seen() -> dict[str, Any] | None:
        for peer in ((await api.status()).get("Peer") or {}).values():
            if (str(peer.get("DNSName", "")).rstrip(".") == dns_name
                    and bool(peer.get("Online")) == online and (not online or peer.get("Relay"))):
                return dict(peer)
        return None

    found = await wait_until(seen, within, f"{dns_name} seen "
                             f"{'online' if online else 'offline'}", every=0.1)
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def fleet_tailnet(workdir: Path, policy: Mapping[str, Any]) -> AsyncIterator[Fleet]:
    """Headscale on the bridge with `policy`; the fleet's nodes are closed on exit."""
    require_namespaces()
    binaries = ensure_binaries()
    make_bridge()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    fleet = Fleet(binaries, FleetHeadscale(binaries.headscale, workdir, policy), workdir)
    async with running(fleet):
        yield fleet


def fleet_fixture(policy: Mapping[str, Any]) -> Any:
    """A module-scoped `Fleet` whose headscale enforces `policy`."""

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def fixture(tmp_path_factory: Any) -> AsyncIterator[Fleet]:
        async with fleet_tailnet(tmp_path_factory.mktemp("fleet"), policy) as fleet:
            yield fleet

    return fixture

