"""The SSH pool against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from agent.hosts.inventory import HostConfig
from agent.output.results import CommandResult
from agent.ssh import (
    AuthenticationFailed,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
    ShellNotPosix,
    SSHPool,
)
from agent.ssh.known_hosts import known_hosts_pattern
from tests.support.memory import peak_rss_bytes, reset_peak_rss
from tests.support.sshd import (
    PASSPHRASE,
    Sshd,
    accepted_logins,
    ensure_user,
    wait_until_gone,
)
from tests.support.waiting import wait_until

MiB = 1024 * 1024



def host_key_fingerprint(server: Sshd) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{server.host_key}.pub"],
        capture_output=True,
        check=True,
        text=True,
    )
    return out.stdout.split()[1]


async def run(pool: SSHPool, command: str, host: str = "test", **kw: float) -> CommandResult:
    return await pool.run(
        host,
        command,
        command_name="test",
        timeout=kw.get("timeout", 10),
        max_output=int(kw.get("max_output", MiB)),
    )


async def test_runs_a_command_and_reports_everything(pool: SSHPool, sshd: Sshd) -> None:
    result = await pool.run(
        "test",
        "echo out; id -un; echo err >&2; exit 3",
        command_name="demo",
        timeout=10,
        max_output=MiB,
    )
    assert result.stdout == f"out\n{sshd.user}\n"
    assert result.stderr == "err\n"
    assert result.exit_status == 3
    assert result.rendered == "echo out; id -un; echo err >&2; exit 3"
    assert result.command == "demo" and result.host == "test"
    assert not result.truncated and not result.timed_out
    assert result.duration_ms > 0
    assert result.to_dict()["exit_status"] == 3


async def test_undecodable_bytes_are_replaced_not_fatal(pool: SSHPool) -> None:
    result = await pool.run(
        "test", r"printf 'a\377b'", command_name="bytes", timeout=10, max_output=MiB
    )
    assert result.stdout == "a\ufffdb"


async def test_one_connection_serves_many_calls(pool: SSHPool, sshd: Sshd) -> None:
    before = accepted_logins(sshd)
    for i in range(15):
        result = await pool.run(
            "test", f"echo {i}", command_name="echo", timeout=10, max_output=MiB
        )
        assert result.stdout == f"{i}\n"
    assert accepted_logins(sshd) - before == 1
    status = await pool.connection_status()
    assert status["test"]["connected"] is True
    assert status["test"]["shell_ok"] is True
    assert status["test"]["last_error"] is None


async def test_concurrent_commands_share_one_connection_within_the_session_limit(
    ssh_host: HostConfig, sshd: Sshd
) -> None:
    pool = SSHPool({"test": ssh_host}, max_sessions=8)
    before = accepted_logins(sshd)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                pool.run("test", f"sleep 1; echo {i}", command_name="s", timeout=10, max_output=MiB)
                for i in range(12)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]
    assert all(r.exit_status == 0 for r in results)
    # 12 one-second commands through 8 slots: two waves, not twelve.
    assert elapsed < 4.5
    assert accepted_logins(sshd) - before == 1


async def test_timeout_kills_the_command_and_leaves_nothing_behind(
    pool: SSHPool, sshd: Sshd
) -> None:
    sleep = "sleep 97"
    started = time.monotonic()
    result = await pool.run(
        "test", f"{sleep} | cat; echo never", command_name="slow", timeout=2, max_output=MiB
    )
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_status in (None, 124, 137)
    assert "timed out after 2 s" in result.stderr
    assert "never" not in result.stdout
    assert elapsed < 2 + 5
    assert sshd.wait_until_gone(sleep) == []
    # The connection is still good afterwards.
    again = await pool.run("test", "echo ok", command_name="echo", timeout=10, max_output=MiB)
    assert again.stdout == "ok\n"



async def test_huge_output_is_capped_without_holding_it_in_memory(
    pool: SSHPool, sshd: Sshd
) -> None:
    await pool.run("test", "true", command_name="warm", timeout=10, max_output=MiB)
    if not reset_peak_rss():
        pytest.skip("cannot reset the peak RSS counter (/proc/self/clear_refs)")
    peak_before = peak_rss_bytes()
    head = "head -c 52428800"
    started = time.monotonic()
    result = await pool.run(
        "test",
        f"{head} /dev/zero | tr '\\000' a; echo tail-marker",
        command_name="flood",
        timeout=30,
        max_output=MiB,
    )
    elapsed = time.monotonic() - started
    growth = peak_rss_bytes() - peak_before
    assert result.truncated
    assert result.stdout.startswith("a" * 1000)
    assert result.stdout.endswith(f"\n[output truncated at {MiB} bytes]\n")
    assert len(result.stdout) < MiB + 100
    assert "tail-marker" not in result.stdout
    assert growth < 20 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert elapsed < 10
    assert sshd.wait_until_gone(head) == []


async def test_stderr_is_capped_too(pool: SSHPool) -> None:
    result = await pool.run(
        "test",
        "head -c 300000 /dev/zero | tr '\\000' e >&2",
        command_name="noisy",
        timeout=30,
        max_output=MiB,
    )
    assert result.truncated
    assert result.stderr.endswith(f"[output truncated at {64 * 1024} bytes]\n")
    assert len(result.stderr) < 64 * 1024 + 100


async def test_survives_an_sshd_restart_between_calls(sshd_factory: Callable[..., Sshd]) -> None:
    server = sshd_factory()
    pool = SSHPool({"test": server.host_config()})
    try:
        first = await pool.run("test", "echo one", command_name="e", timeout=10, max_output=MiB)
        server.restart()
        await asyncio.sleep(0.2)  # let the client notice the dropped connection, or not
        second = await pool.run("test", "echo two", command_name="e", timeout=10, max_output=MiB)
    finally:
        await pool.close()
    assert (first.stdout, second.stdout) == ("one\n", "two\n")
    assert accepted_logins(server) == 2


async def test_changed_host_key_is_refused_with_its_fingerprint(
    sshd_factory: Callable[..., Sshd],
) -> None:
    server = sshd_factory()
    pool = SSHPool({"web": server.host_config("web")})
    try:
        ok = await pool.run("web", "echo ok", command_name="e", timeout=10, max_output=MiB)
        assert ok.exit_status == 0
        server.regenerate_host_key()  # restarts sshd: the open connection drops too
        with pytest.raises(HostKeyChanged) as caught:
            await pool.run("web", "echo again", command_name="e", timeout=10, max_output=MiB)
    finally:
        await pool.close()
    new_fp = host_key_fingerprint(server)
    assert caught.value.fingerprint == new_fp
    assert caught.value.host == "web"
    message = str(caught.value)
    assert new_fp in message and "SHA256:" in message
    assert "run `tailnet-agent trust web` to review and pin it" in message
    status = await pool.connection_status()
    assert new_fp in status["web"]["last_error"]


async def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host_config(known_hosts=tmp_path / "empty_known_hosts")
    pool = SSHPool({"test": host})
    try:
        with pytest.raises(HostKeyUnknown) as caught:
            await pool.run("test", "echo x", command_name="e", timeout=10, max_output=MiB)
    finally:
        await pool.close()
    assert caught.value.fingerprint == host_key_fingerprint(sshd)
    assert host_key_fingerprint(sshd) in str(caught.value)
    assert "tailnet-agent trust test" in str(caught.value)


async def test_a_key_pinned_for_another_host_name_does_not_count(
    sshd: Sshd, tmp_path: Path
) -> None:
    # Same server, same key, but known_hosts records it for a different name.
    known = tmp_path / "known_hosts"
    line = sshd.known_hosts.read_text().split(None, 1)[1]
    known.write_text(f"[other.example]:{sshd.port} {line}")
    pool = SSHPool({"test": sshd.host_config(known_hosts=known)})
    try:
        with pytest.raises(HostKeyUnknown):
            await run(pool, "true")
    finally:
        await pool.close()


async def test_wrong_user_is_an_authentication_failure(sshd: Sshd) -> None:
    pool = SSHPool({"test": sshd.host_config(user="nosuchuser")})
    try:
        with pytest.raises(AuthenticationFailed) as caught:
            await run(pool, "true")
    finally:
        await pool.close()
    message = str(caught.value)
    assert f"nosuchuser@127.0.0.1:{sshd.port}" in message
    assert str(sshd.client_key) in message
    assert "authorized_keys" in message


async def test_wrong_key_is_an_authentication_failure(sshd: Sshd) -> None:
    pool = SSHPool({"test": sshd.host_config(key_path=sshd.other_key)})
    try:
        with pytest.raises(AuthenticationFailed) as caught:
            await run(pool, "true")
    finally:
        await pool.close()
    assert str(sshd.other_key) in str(caught.value)
    assert f"{sshd.user}@127.0.0.1" in str(caught.value)


async def test_passphrase_protected_key_works(sshd: Sshd) -> None:
    host = sshd.host_config(key_path=sshd.encrypted_key, key_passphrase=PASSPHRASE)
    assert PASSPHRASE not in repr(host)
    pool = SSHPool({"test": host})
    try:
        result = await pool.run("test", "echo hi", command_name="e", timeout=10, max_output=MiB)
    finally:
        await pool.close()
    assert result.stdout == "hi\n"


@pytest.mark.parametrize("passphrase", [None, "wrong passphrase"])
async def test_missing_or_wrong_passphrase_is_explained_without_leaking_it(
    sshd: Sshd, passphrase: str | None
) -> None:
    host = sshd.host_config(key_path=sshd.encrypted_key, key_passphrase=passphrase)
    pool = SSHPool({"test": host})
    try:
        with pytest.raises(AuthenticationFailed) as caught:
            await run(pool, "true")
    finally:
        await pool.close()
    message = str(caught.value)
    assert str(sshd.encrypted_key) in message and "passphrase" in message
    assert "wrong passphrase" not in message
    status = await pool.connection_status()
    assert "wrong passphrase" not in repr(status)


async def test_dead_port_is_unreachable_quickly(sshd: Sshd) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = SSHPool({"test": sshd.host_config(port=port)}, connect_timeout=5)
    started = time.monotonic()
    try:
        with pytest.raises(HostUnreachable) as caught:
            await run(pool, "true")
    finally:
        await pool.close()
    assert time.monotonic() - started < 2
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_silent_server_times_out_at_connect_timeout(sshd: Sshd) -> None:
    # Accepts TCP (the kernel does) but never speaks SSH.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        pool = SSHPool({"test": sshd.host_config(port=port)}, connect_timeout=1)
        started = time.monotonic()
        try:
            with pytest.raises(HostUnreachable) as caught:
                await run(pool, "true")
        finally:
            await pool.close()
    assert time.monotonic() - started < 3
    assert "timed out" in str(caught.value)


async def test_connector_dials_and_known_hosts_uses_the_configured_name(
    sshd: Sshd, tmp_path: Path
) -> None:
    dialed: list[tuple[str, int]] = []

    async def connector(address: str, port: int) -> socket.socket:
        # Stand-in for the tailnet SOCKS5 dialer: the name only resolves "inside".
        dialed.append((address, port))
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", sshd.port))
        return sock

    host = HostConfig(
        name="web1",
        address="web1.tailnet.test",
        user=sshd.user,
        port=22,
        key_path=sshd.client_key,
        known_hosts=tmp_path / "known_hosts",
    )
    key_line = sshd.known_hosts.read_text().split(None, 1)[1]
    (tmp_path / "known_hosts").write_text(f"{known_hosts_pattern(host)} {key_line}")
    pool = SSHPool({"web1": host}, connector=connector)
    try:
        result = await pool.run("web1", "echo via", command_name="e", timeout=10, max_output=MiB)
    finally:
        await pool.close()
    assert result.stdout == "via\n"
    assert dialed == [("web1.tailnet.test", 22)]


async def test_check_host_connects_and_probes(pool: SSHPool) -> None:
    first = await pool.check_host("test")
    second = await pool.check_host("test")
    assert first > 0 and second > 0


async def test_non_posix_login_shell_is_refused(sshd_factory: Callable[..., Sshd]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user whose login shell is python3")
    # python3 is not a POSIX shell but exists everywhere: sshd runs `python3 -c '<probe>'`.
    odd = ensure_user("tnagentpy", "/usr/bin/python3")
    server = sshd_factory(users=(odd,))
    pool = SSHPool({"odd": server.host_config("odd", user=odd)})
    try:
        with pytest.raises(ShellNotPosix) as caught:
            await run(pool, "true", host="odd")
    finally:
        await pool.close()
    assert "not a POSIX shell" in str(caught.value)
    assert f"chsh -s /bin/sh {odd}" in str(caught.value)
    status = await pool.connection_status()
    assert status["odd"]["shell_ok"] is False
    assert status["odd"]["connected"] is False


async def test_unknown_host_name_is_a_clear_error(pool: SSHPool) -> None:
    from agent.errors import UnknownHost

    with pytest.raises(UnknownHost, match="unknown host 'nope'; hosts you can use: test"):
        await run(pool, "true", host="nope")


async def test_callers_queued_behind_a_failing_connect_fail_together(sshd: Sshd) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        pool = SSHPool({"test": sshd.host_config(port=port)}, connect_timeout=1)
        started = time.monotonic()
        try:
            outcomes = await asyncio.gather(
                *(run(pool, "true") for _ in range(6)), return_exceptions=True
            )
        finally:
            await pool.close()
    assert all(isinstance(o, HostUnreachable) for o in outcomes)
    assert time.monotonic() - started < 2.5  # one connect timeout, not six


async def test_reconnects_when_the_connection_dropped_unnoticed(
    sshd_factory: Callable[..., Sshd],
) -> None:
    server = sshd_factory()
    pool = SSHPool({"test": server.host_config()})
    try:
        for attempt in range(3):
            server.restart()  # no pause: the next call may still hold the dead connection
            result = await run(pool, f"echo {attempt}")
            assert result.stdout == f"{attempt}\n"
    finally:
        await pool.close()


async def test_client_gives_up_when_an_escaped_process_holds_the_channel(
    pool: SSHPool, sshd: Sshd
) -> None:
    # `setsid` leaves timeout's process group, so the remote kill misses it and its
    # inherited stdout keeps the channel open: only the client-side deadline ends this.
    sleep = "sleep 89"
    started = time.monotonic()
    try:
        result = await pool.run(
            "test",
            f"setsid {sleep}; echo never",
            command_name="stuck",
            timeout=1,
            max_output=MiB,
        )
    finally:
        sshd.kill(sleep)  # the sleep this test started
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_status is None
    assert "timed out after 1 s" in result.stderr
    assert 1 + 5 <= elapsed < 1 + 5 + 6
    again = await pool.run("test", "echo ok", command_name="echo", timeout=10, max_output=MiB)
    assert again.stdout == "ok\n"


async def test_host_key_of_another_type_counts_as_changed(sshd: Sshd, tmp_path: Path) -> None:
    # known_hosts pins an RSA key; the server has only ed25519, so the handshake
    # cannot even agree on an algorithm. That must not look like a network error.
    pinned = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {pinned.export_public_key().decode()}")
    pool = SSHPool({"test": sshd.host_config(known_hosts=known)})
    try:
        with pytest.raises(HostKeyChanged) as caught:
            await run(pool, "true")
    finally:
        await pool.close()
    assert caught.value.fingerprint == host_key_fingerprint(sshd)


async def test_a_connection_lost_mid_command_is_reported_in_the_result(
    sshd_factory: Callable[..., Sshd],
) -> None:
    server = sshd_factory()
    pool = SSHPool({"test": server.host_config()})
    sleep = "sleep 30.25"
    try:
        running = asyncio.create_task(run(pool, f"echo started; {sleep}"))
        await wait_until(lambda: server.processes(sleep), what="the command runs")
        await asyncio.to_thread(server.restart)
        result = await running
        after = await run(pool, "echo back")
    finally:
        await pool.close()
    assert result.stdout == "started\n"
    assert result.exit_status is None and not result.timed_out
    assert "connection to test lost before the command finished" in result.stderr
    assert after.stdout == "back\n"


@pytest.mark.parametrize("path", ["exec", "fast"])
async def test_a_host_that_leaves_mid_command_lets_it_finish_or_stops_it(
    ssh_host: HostConfig, sshd: Sshd, path: str
) -> None:
    """A tailnet host leaving (or its settings changing) while a command runs on it: the
    command finishes on the old connection, which closes after it; a call given up after
    the host left still stops its command there."""
    hosts = {"test": ssh_host}
    pool = SSHPool(hosts)
    destructive = path == "exec"
    sleep = "sleep 4.25"
    short = "sleep 1.25"
    try:
        running = asyncio.create_task(pool.run("test", f"{short}; echo done", command_name="s",
                                               timeout=10, max_output=1000,
                                               destructive=destructive))
        await wait_until(lambda: sshd.processes(short), what="the command runs")
        old = pool._hosts["test"]
        del hosts["test"]
        pool.prune()
        result = await running
        assert (result.exit_status, result.stdout) == (0, "done\n")
        # The old connection closes once its last call has ended.
        await wait_until(lambda: old.live() is None, 5, "the old connection closed")
        # Given up after the host left: its command is still stopped on the host.
        hosts["test"] = ssh_host
        given_up = asyncio.create_task(pool.run("test", sleep, command_name="s", timeout=30,
                                                max_output=1000, destructive=destructive))
        await wait_until(lambda: sshd.processes(sleep), what="the command runs")
        del hosts["test"]
        pool.prune()
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        assert await asyncio.to_thread(wait_until_gone, sshd.user, sleep, 2.0) == []
    finally:
        await pool.close()
