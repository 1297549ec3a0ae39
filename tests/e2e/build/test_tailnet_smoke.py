"""The built executable on the test tailnet, with nothing but its embedded tailscaled.

A user story: on a machine without Python, `tailnet-agent serve` joins the tailnet;
an MCP client on another node (through that node's SOCKS5 proxy) lists the tools
and runs check_memory on a server node (a tailscaled in front of a real sshd). On
SIGTERM the agent stops, its ephemeral node leaves and its unpacked files go.
"""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.frozen import (
    exe_of,
    executable,
    process_tree,
    record_figure,
    run,
    tree_pss_mib,
    tree_rss_mib,
    unpack_dirs,
    user_env,
)
from tests.support.sshd import Sshd
from tests.support.tailnet import TestTailnet, free_port, wait_peer

AGENT = "smoke-agent"


def pin_host_key(sshd: Sshd, name: str, path: Path) -> None:
    """known_hosts for the server as the agent reaches it: by MagicDNS name and port."""
    key_type, key_data = Path(f"{sshd.host_key}.pub").read_text().split()[:2]
    path.write_text(f"[{name}]:{sshd.port} {key_type} {key_data}\n")


async def test_serve_on_the_tailnet_with_the_embedded_tailscaled(
    tailnet: TestTailnet, sshd: Sshd, tmp_path: Path
) -> None:
    binary = executable()
    server = await tailnet.node("smoke-server")
    client = await tailnet.node("smoke-client")
    assert server.info is not None and server.info.dns_name, server.info
    server_name = server.info.dns_name
    pin_host_key(sshd, server_name, tmp_path / "known_hosts")

    port = free_port()
    tailnet_env = tailnet.env(user="agent", hostname=AGENT)
    # The point of the test is the embedded tailscaled: no override may reach the agent.
    del tailnet_env["TAILSCALED"]
    env = user_env(tmp_path, {
        **tailnet_env,
        "REMOTE_HOST_NAME": "server",
        "REMOTE_HOST": server_name,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(tmp_path / "known_hosts"),
    })
    tmpdir = Path(env["TMPDIR"])
    workdir = tmp_path / "empty"
    workdir.mkdir()

    with run(["serve", "--port", str(port)], cwd=workdir, env=env) as agent:
        await agent.wait_for(r"tailnet: tailscale: joined as", 120)
        record_figure("serve: cold start to Running on the test tailnet",
                      (time.monotonic() - agent.started) * 1000, "ms")
        url = (await agent.wait_for(r"MCP endpoint: (http://\S+/mcp)", 60)).group(1)
        await agent.wait_for(r"^Ready\.", 30)
        record_figure("serve: cold start to Ready on the test tailnet",
                      (time.monotonic() - agent.started) * 1000, "ms")
        assert url == f"http://{AGENT}.{server_name.split('.', 1)[1]}:{port}/mcp", url
        # Peers learn a new node's DERP region a few seconds after it joins.
        for node in (client, server):
            await wait_peer(node, url.split("//")[1].rsplit(":", 1)[0], within=60)

        # The tailscaled serving us is the one unpacked from the executable.
        unpacked = unpack_dirs(tmpdir)
        assert len(unpacked) == 1, unpacked
        assert stat.S_IMODE(unpacked[0].stat().st_mode) == 0o700
        tree = process_tree(agent.process.pid)
        exes = [exe_of(pid) for pid in tree]
        assert str(unpacked[0] / "tailscaled") in exes, exes
        assert not any("python" in Path(e).name for e in exes), exes

        socks_host, socks_port = client.socks5
        proxy = f"socks5h://{socks_host}:{socks_port}"  # the proxy resolves MagicDNS names
        async with (
            httpx2.AsyncClient(proxy=proxy, trust_env=False, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as mcp,
        ):
            tools = {t.name for t in (await mcp.list_tools()).tools}
            assert {"check_memory", "check_disk", "list_hosts"} <= tools
            result = await mcp.call_tool("check_memory", {"host": "server"})
        assert not result.is_error, f"{result.content}\nagent output:\n{agent.output()}"
        assert result.structured_content is not None
        assert result.structured_content["host"] == "server"
        assert "Mem:" in result.structured_content["stdout"]

        await asyncio.sleep(1.0)
        pid = agent.process.pid
        record_figure("serve: idle memory, VmRSS summed over bootloader+python+tailscaled",
                      tree_rss_mib(pid), "MiB")
        record_figure("serve: idle memory, PSS summed over bootloader+python+tailscaled",
                      tree_pss_mib(pid), "MiB")
        record_figure("embedded tailscaled size",
                      (unpacked[0] / "tailscaled").stat().st_size / 1024 / 1024, "MiB")

        code = await agent.aterminate()
        assert code in (0, -15), f"exit code {code}; output:\n{agent.output()}"

    assert unpack_dirs(tmpdir) == [], "the unpack directory was left behind after SIGTERM"
    assert not [pid for pid in tree if exe_of(pid)], "a process of the agent outlived it"
    # The embedded tailscaled logged the ephemeral node out on the way down.
    gone = await asyncio.to_thread(tailnet.wait_node_gone, AGENT, 20)
    assert gone, f"{AGENT} is still in the tailnet after SIGTERM; output:\n{agent.output()}"
    assert binary.exists()
