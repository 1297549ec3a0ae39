"""A real, offline tailnet for tests: Headscale (with its embedded DERP) plus tailscaled nodes.

Everything listens on 127.0.0.1. Binaries are built from source with Go at pinned
versions into `<repo>/.cache/tailnet-bin/` (`python -m tests.support.tailnet build`
does it ahead of the tests, outside any network namespace).

What keeps the tailnet on loopback (found by reading the sources of both and by
watching the sockets of the processes, see tests/tailnet/test_userspace.py):

- headscale: `derp.urls: []` (the default DERP map is fetched from the
  internet), `derp.server.enabled` with STUN on 127.0.0.1 and `ipv4: 127.0.0.1`
  so the DERP map points back at us, `derp.auto_update_enabled: false`,
  `disable_check_updates: true` (otherwise it asks GitHub for releases),
  `logtail.enabled: false`, `dns.override_local_dns: false` with no global
  nameservers (nodes get no resolvers on the internet pushed to them).
- tailscaled: `--no-logs-no-support` (no log upload to log.tailscale.com),
  `TS_DEBUG_USE_DERP_HTTP=1` (plain HTTP to the embedded DERP; TLS would hang),
  `TS_ASSUME_NETWORK_UP_FOR_TEST=1` (a loopback-only host otherwise counts as
  offline), `TS_DEBUG_ALWAYS_USE_DERP=1` (all peer traffic via the loopback DERP
  instead of UDP to the host's interface addresses), `TS_DISABLE_PORTMAPPER=1`
  (no UPnP/NAT-PMP/PCP probes to the LAN gateway), prefs with
  `AutoUpdate.Check=false`, and empty `HTTP(S)_PROXY`/`ALL_PROXY` (Go treats an
  empty value as unset, so a proxy in the developer's environment is not used).
  The control URL is an IP, so no DNS lookup (and no bootstrap-DNS fallback to
  the internet) is needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tailscale_userspace import NodeOptions, TailscaleNode
from tests.support.waiting import wait_until, wait_until_sync

from .components import missing
from .ports import free_port  # also imported from here by tests with servers of their own

TAILSCALE_VERSION = "v1.98.8"
HEADSCALE_VERSION = "v0.29.2"
REPO = Path(__file__).resolve().parents[2]
# TAILNET_AGENT_BIN_CACHE moves it (a checkout whose .cache cannot be written).
BIN_CACHE = Path(os.environ.get("TAILNET_AGENT_BIN_CACHE") or REPO / ".cache" / "tailnet-bin")
BASE_DOMAIN = "tailnet.test"
# headscale refuses less than 65 s; short enough that a crashed test's ephemeral
# nodes go away during a session.
EPHEMERAL_INACTIVITY = "70s"

# Knobs every tailscaled in the test tailnet needs (see the module docstring).
TEST_TAILSCALED_ENV: dict[str, str] = {
    "TS_DEBUG_USE_DERP_HTTP": "1",
    "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",
    "TS_DEBUG_ALWAYS_USE_DERP": "1",
    "TS_DISABLE_PORTMAPPER": "1",
    "HTTP_PROXY": "",
    "HTTPS_PROXY": "",
    "ALL_PROXY": "",
    "http_proxy": "",
    "https_proxy": "",
    "all_proxy": "",
}

_GO_HINT = (
    "install Go >= 1.26 (https://go.dev/dl/, or /usr/local/go/bin/go) so the tests can build "
    f"headscale {HEADSCALE_VERSION} and tailscale {TAILSCALE_VERSION}, or run "
    "`python -m tests.support.tailnet build` where Go and the module proxy are reachable"
)


# -- building the binaries ------------------------------------------------------------


@dataclass(frozen=True)
class TailnetBinaries:
    headscale: Path
    tailscaled: Path  # a full build: test peers (servers serving Tailscale SSH, clients)
    tailscale: Path
    # What the executable embeds (build/tailscaled.sh: the omit tags): the agent's own node.
    agent_tailscaled: Path | None = None


class BuildError(RuntimeError):
    pass


def find_go() -> str | None:
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None
    )


def _version_output(binary: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return ""
    return done.stdout + done.stderr


def _is_current(name: str, binary: Path) -> bool:
    if not os.access(binary, os.X_OK):
        return False
    if name == "headscale":
        return f"headscale version {HEADSCALE_VERSION}" in _version_output(binary, "version")
    # tailscale prints e.g. "1.98.8-ERR-BuildInfo" when built with `go install`.
    first = _version_output(binary, "--version").splitlines()[:1]
    return bool(first) and first[0].strip().startswith(TAILSCALE_VERSION.lstrip("v"))


def _cached_path(name: str) -> Path:
    version = HEADSCALE_VERSION if name == "headscale" else TAILSCALE_VERSION
    return BIN_CACHE / f"{name}-{version}"


# Every test binary is built the way build/tailscaled.sh builds the embedded tailscaled:
# static (no cgo, as upstream's release builds; no C compiler needed) and -trimpath, so
# the two tailscaled builds share most compiled packages in Go's build cache (their build
# tags differ, and Go keys compiled packages by their files, not by the tags); no debug
# information (-s -w): the links are faster and the tests never read it.
GO_BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w")


def _go_env(go: str, gobin: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOBIN=str(gobin),
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",  # never download another toolchain
        CGO_ENABLED="0",
        PATH=f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _run_go(go: str, args: Sequence[str], *, env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [go, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise BuildError(f"`go {' '.join(args)}` failed in {cwd}:\n{done.stderr[-4000:]}")


def _build_tailscale(go: str, out: Path) -> None:
    env = _go_env(go, out)
    _run_go(
        go,
        [
            "install",
            *GO_BUILD_FLAGS,
            f"tailscale.com/cmd/tailscaled@{TAILSCALE_VERSION}",
            f"tailscale.com/cmd/tailscale@{TAILSCALE_VERSION}",
        ],
        env=env,
        cwd=out,
    )


def _build_headscale(go: str, out: Path) -> None:
    env = _go_env(go, out)
    package = "github.com/juanfont/headscale/cmd/headscale"
    try:
        _run_go(go, ["install", *GO_BUILD_FLAGS, f"{package}@{HEADSCALE_VERSION}"], env=env,
                cwd=out)
        return
    except BuildError:
        # `go install pkg@version` asks the proxy for the module's version list to look
        # for a deprecation notice; some proxies answer 403 there. Building the package
        # from a throwaway module resolves the same versions (headscale's go.mod has no
        # replace directives) without that lookup.
        pass
    with tempfile.TemporaryDirectory(prefix="hsbuild-") as tmp:
        module = Path(tmp)
        _run_go(go, ["mod", "init", "hsbuild"], env=env, cwd=module)
        _run_go(go, ["get", f"{package}@{HEADSCALE_VERSION}"], env=env, cwd=module)
        _run_go(
            go,
            ["build", "-mod=mod", *GO_BUILD_FLAGS, "-o", str(out / "headscale"), package],
            env=env,
            cwd=module,
        )


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    BIN_CACHE.mkdir(parents=True, exist_ok=True)
    with open(BIN_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers build only once
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_binaries(go: str | None = None) -> TailnetBinaries:
    """Build (or reuse) the pinned binaries; raises BuildError, or BuildError if no Go."""
    names = ("headscale", "tailscaled", "tailscale")
    with _cache_lock():
        stale = [n for n in names if not _is_current(n, _cached_path(n))]
        if stale:
            go = go or find_go()
            if go is None:
                raise BuildError(_GO_HINT)
            with tempfile.TemporaryDirectory(prefix="build-", dir=BIN_CACHE) as tmp:
                out = Path(tmp)
                if "headscale" in stale:
                    _build_headscale(go, out)
                if {"tailscaled", "tailscale"} & set(stale):
                    _build_tailscale(go, out)
                for name in stale:
                    os.replace(out / name, _cached_path(name))
                    if not _is_current(name, _cached_path(name)):
                        raise BuildError(
                            f"built {name} but `{_cached_path(name)} --version` does not "
                            "report the pinned version; delete .cache/tailnet-bin and retry"
                        )
    return TailnetBinaries(*(_cached_path(n) for n in names))


TRIMMED = REPO / "build" / "work" / "tailscaled-bin" / "tailscaled"
TRIMMED_MARK = "-tailnet-agent-trimmed"


def build_trimmed() -> Path:
    """The tailscaled the executable embeds (`make dist` builds it; built here if missing)."""
    with _cache_lock():
        first = _version_output(TRIMMED, "--version").splitlines()[:2]
        if not any(TRIMMED_MARK in line for line in first):
            if find_go() is None:
                raise BuildError(_GO_HINT)
            done = subprocess.run(["sh", str(REPO / "build" / "tailscaled.sh"),
                                   str(TRIMMED.parent)], capture_output=True, text=True,
                                  timeout=1800, check=False)
            if done.returncode != 0:
                raise BuildError(f"build/tailscaled.sh failed:\n{done.stderr[-4000:]}")
    return TRIMMED


def ensure_binaries() -> TailnetBinaries:
    """The pinned binaries, building them if needed; a missing Go skips (fails in CI)."""
    try:
        binaries = build_binaries()
        return dataclasses.replace(binaries, agent_tailscaled=build_trimmed())
    except BuildError:
        if find_go() is None:
            missing("Go toolchain", _GO_HINT)
        raise


# -- headscale -------------------------------------------------------------------------


def headscale_config(workdir: Path, *, port: int, metrics: int, grpc: int, stun: int) -> str:
    """The config headscale needs to run offline on loopback (JSON is valid YAML)."""
    config: dict[str, Any] = {
        "server_url": f"http://127.0.0.1:{port}",
        "listen_addr": f"127.0.0.1:{port}",
        "metrics_listen_addr": f"127.0.0.1:{metrics}",
        "grpc_listen_addr": f"127.0.0.1:{grpc}",
        "grpc_allow_insecure": False,
        "noise": {"private_key_path": str(workdir / "noise_private.key")},
        "prefixes": {
            "v4": "100.64.0.0/10",
            "v6": "fd7a:115c:a1e0::/48",
            "allocation": "sequential",
        },
        "derp": {
            "server": {
                "enabled": True,
                "region_id": 999,
                "region_code": "test",
                "region_name": "Test DERP on loopback",
                "verify_clients": True,
                "stun_listen_addr": f"127.0.0.1:{stun}",
                "private_key_path": str(workdir / "derp_server_private.key"),
                "automatically_add_embedded_derp_region": True,
                "ipv4": "127.0.0.1",
            },
            "urls": [],
            "paths": [],
            "auto_update_enabled": False,
        },
        "disable_check_updates": True,
        "node": {"expiry": 0, "ephemeral": {"inactivity_timeout": EPHEMERAL_INACTIVITY}},
        "database": {
            "type": "sqlite",
            "sqlite": {"path": str(workdir / "db.sqlite"), "write_ahead_log": True},
        },
        "log": {"level": "info", "format": "text"},
        "policy": {"mode": "file", "path": ""},  # no policy: allow all
        "dns": {
            "magic_dns": True,
            "base_domain": BASE_DOMAIN,
            "override_local_dns": False,
            "nameservers": {"global": [], "split": {}},
            "search_domains": [],
            "extra_records": [],
        },
        "unix_socket": str(workdir / "headscale.sock"),
        "unix_socket_permission": "0770",
        "logtail": {"enabled": False},
        "taildrop": {"enabled": False},
    }
    return json.dumps(config, indent=2)


class Headscale:
    """A headscale server in its own temporary directory, on 127.0.0.1 ports."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "headscale.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.config_path.write_text(
            headscale_config(
                workdir,
                port=self.port,
                metrics=free_port(),
                grpc=free_port(),
                stun=free_port(socket.SOCK_DGRAM),
            )
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [str(self.binary), "serve", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=_scrubbed_env(),
            )
        process = self._process

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"headscale exited with code {process.returncode} at start; "
                                   f"log:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return client.get(f"{self.url}/health").status_code == 200
            return False

        with httpx.Client(trust_env=False, timeout=2.0) as client:
            try:
                wait_until_sync(healthy, timeout, f"headscale answering {self.url}/health",
                                every=0.1)
            except AssertionError as exc:
                self.stop()
                raise RuntimeError(f"{exc}; log:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cli(self, *args: str) -> Any:
        """Run a headscale CLI command (over its unix socket) and parse its JSON output."""
        argv = [str(self.binary), "--config", str(self.config_path), *args, "--output", "json"]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False, env=_scrubbed_env()
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`headscale {' '.join(args)}` failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return json.loads(done.stdout)

    def create_user(self, name: str) -> int:
        user = self.cli("users", "create", name)
        return int(user["id"])

    def preauth_key(
        self,
        user_id: int,
        *,
        ephemeral: bool = True,
        reusable: bool = True,
        tags: Sequence[str] = (),
        expiration: str = "1h",
    ) -> str:
        args = ["preauthkeys", "create", "--user", str(user_id), "--expiration", expiration]
        if ephemeral:
            args.append("--ephemeral")
        if reusable:
            args.append("--reusable")
        if tags:
            args += ["--tags", ",".join(tags)]
        return str(self.cli(*args)["key"])

    def nodes(self) -> list[dict[str, Any]]:
        listed = self.cli("nodes", "list")
        return list(listed or [])


def _scrubbed_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_VARS}
    env.pop("PORT", None)
    return env


_PROXY_VARS = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


# -- the test tailnet ------------------------------------------------------------------


async def wait_peer(viewer: TailscaleNode, peer_dns_name: str, within: float = 30.0) -> None:
    """Wait until `viewer` knows `peer_dns_name` as online with a home DERP region.

    Right after a node joins, the other nodes' netmaps lack its DERP region for a few
    seconds; a dial in that window waits for a WireGuard handshake retry (5 s) and
    tailscaled's SOCKS5 proxy gives up ("general SOCKS server failure").
    """
    wanted = peer_dns_name.rstrip(".")

    async def seen() -> bool:
        peers = (await viewer.localapi.status()).get("Peer") or {}
        return any(str(peer.get("DNSName", "")).rstrip(".") == wanted and peer.get("Online")
                   and peer.get("Relay") for peer in peers.values())

    viewer_name = viewer.info.dns_name if viewer.info else "node"
    await wait_until(seen, within, f"{viewer_name} seeing {wanted} online with a DERP region",
                     every=0.2)


class TestTailnet:
    """Headscale plus a factory of joined tailscaled nodes; cleans up every node it made."""

    __test__ = False  # not a pytest test class

    def __init__(self, binaries: TailnetBinaries, headscale: Headscale, workdir: Path) -> None:
        self.binaries = binaries
        self.headscale = headscale
        self.workdir = workdir
        self._users: dict[str, int] = {}
        self._nodes: list[TailscaleNode] = []

    @property
    def control_url(self) -> str:
        return self.headscale.url

    def user_id(self, user: str) -> int:
        if user not in self._users:
            self._users[user] = self.headscale.create_user(user)
        return self._users[user]

    def auth_key(
        self, user: str = "alice", *, ephemeral: bool = True, tags: Sequence[str] = ()
    ) -> str:
        return self.headscale.preauth_key(self.user_id(user), ephemeral=ephemeral, tags=tags)

    def login_name(self, user: str) -> str:
        """The login name headscale gives a CLI-created user (it has no e-mail)."""
        return user

    def node_options(
        self,
        name: str,
        *,
        user: str = "alice",
        ephemeral: bool = True,
        tags: Sequence[str] = (),
        auth_key: str | None = None,
        with_key: bool = True,
    ) -> NodeOptions:
        state_dir = None if ephemeral else self.workdir / "state" / name
        key = auth_key
        if key is None and with_key:
            key = self.auth_key(user, ephemeral=ephemeral, tags=tags)
        return NodeOptions(
            tailscaled=self.binaries.tailscaled,
            state_dir=state_dir,
            auth_key=key,
            hostname=name,
            control_url=self.control_url,
            extra_env=dict(TEST_TAILSCALED_ENV),
        )

    def adopt(self, node: TailscaleNode) -> TailscaleNode:
        """Have the tailnet stop `node` at the end of the session."""
        self._nodes.append(node)
        return node

    async def node(
        self,
        name: str,
        *,
        user: str = "alice",
        ephemeral: bool = True,
        tags: Sequence[str] = (),
        on_progress: Callable[[str], None] | None = None,
        join_timeout: float = 60.0,
    ) -> TailscaleNode:
        """A node already Running in the test tailnet."""
        options = self.node_options(name, user=user, ephemeral=ephemeral, tags=tags)
        others = [n for n in self._nodes if n.pid is not None and n.info and n.info.dns_name]
        node = self.adopt(TailscaleNode(options, on_progress=on_progress))
        info = await node.up(timeout=join_timeout)
        for other in others:
            assert other.info is not None
            await wait_peer(other, info.dns_name)
            await wait_peer(node, other.info.dns_name)
        return node

    def env(
        self, *, user: str | None = "agent", ephemeral: bool = True, hostname: str | None = None
    ) -> dict[str, str]:
        """Environment for a subprocess (`tailnet-agent serve`) joining this tailnet the same way,
        with the trimmed tailscaled the executable embeds (what we ship, loopback only).

        Start from os.environ and update with this; it includes TS_AUTHKEY when `user` is set.
        """
        env = dict(TEST_TAILSCALED_ENV)
        env["PORT"] = ""  # tailscaled would take it as --port
        env["TAILSCALED"] = str(self.binaries.agent_tailscaled or self.binaries.tailscaled)
        env["TS_CONTROL_URL"] = self.control_url
        if user is not None:
            env["TS_AUTHKEY"] = self.auth_key(user, ephemeral=ephemeral)
        if hostname is not None:
            env["TS_HOSTNAME"] = hostname
        return env

    def wait_node_gone(self, hostname: str, timeout: float = 20.0) -> bool:
        """True once headscale lists no node `hostname`, False if it still does after
        `timeout` (the caller says what the node's owner printed)."""
        def gone() -> bool:
            return not any(hostname in (n.get("name"), n.get("given_name"))
                           for n in self.headscale.nodes())

        try:
            wait_until_sync(gone, timeout, f"{hostname} gone from headscale", every=0.25)
        except AssertionError:
            return False
        return True

    async def aclose(self) -> None:
        nodes, self._nodes = self._nodes, []
        for node in nodes:
            with contextlib.suppress(Exception):
                await node.stop()


@pytest.fixture(scope="session")
def tailnet_binaries() -> TailnetBinaries:
    """headscale, tailscaled and tailscale at the pinned versions (built on first use)."""
    return ensure_binaries()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def tailnet(
    tailnet_binaries: TailnetBinaries, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestTailnet]:
    """A running headscale on loopback; `await tailnet.node(name)` gives joined nodes."""
    binaries = tailnet_binaries
    workdir = tmp_path_factory.mktemp("tailnet")
    os.chmod(workdir, 0o700)
    async with running(TestTailnet(binaries, Headscale(binaries.headscale, workdir),
                                   workdir)) as net:
        yield net


@contextlib.asynccontextmanager
async def running(net: TestTailnet) -> AsyncIterator[TestTailnet]:
    """Start `net`'s headscale; at the end stop every node it made, then headscale."""
    net.headscale.start()
    try:
        yield net
    finally:
        await net.aclose()
        net.headscale.stop()


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["build"]:
        print("usage: python -m tests.support.tailnet build", file=sys.stderr)
        return 2
    # Not the trimmed tailscaled: `make dist` builds that one (make test runs both at once),
    # and a test that needs it without `make dist` builds it on first use.
    try:
        binaries = build_binaries()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in (binaries.headscale, binaries.tailscaled, binaries.tailscale):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
