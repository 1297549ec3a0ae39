"""The fast path (persistent shell channels) against a real OpenSSH sshd on 127.0.0.1.

A connection's first call takes the exec path (pool.py), so each test opens the
connection first (`opened`): every call it makes can then take the fast path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from agent.hosts.inventory import HostConfig
from agent.output.results import CommandResult
from agent.ssh import SSHPool
from agent.ssh.shell import FrameStream, frame
from tests.support.memory import peak_rss_bytes, reset_peak_rss
from tests.support.sshd import Sshd, accepted_logins
from tests.support.waiting import wait_until
from whitelist import wrap_for_exec

MiB = 1024 * 1024


async def opened(pool: SSHPool) -> SSHPool:
    """`pool` with its connection to "test" open (the shell probe opens it)."""
    await pool.check_host("test")
    return pool


@pytest.fixture
async def pool(ssh_host: HostConfig) -> AsyncIterator[SSHPool]:
    ssh_pool = await opened(SSHPool({ssh_host.name: ssh_host}))
    yield ssh_pool
    await ssh_pool.close()


async def run(
    pool: SSHPool,
    command: str,
    *,
    timeout: float = 10,  # noqa: ASYNC109 - the command's catalog timeout, passed through
    max_output: int = MiB,
    destructive: bool = False,
) -> CommandResult:
    return await pool.run(
        "test", command, command_name="t", timeout=timeout, max_output=max_output,
        destructive=destructive,
    )



async def test_a_connections_first_call_opens_no_shell_and_its_second_does(
        ssh_host: HostConfig) -> None:
    pool = SSHPool({"test": ssh_host})
    try:
        assert (await run(pool, "echo one")).stdout == "one\n"
        assert pool.shells("test") == 0  # a host asked once (a cold fan-out) pays for none
        assert (await run(pool, "echo two")).stdout == "two\n"
        assert pool.shells("test") == 1
        await pool.close()  # as an idle close would: the next connection starts over
        assert (await run(pool, "echo three")).stdout == "three\n"
        assert pool.shells("test") == 0
    finally:
        await pool.close()


async def test_fast_path_is_used_for_read_only_commands_only(ssh_host: HostConfig) -> None:
    pool = await opened(SSHPool({"test": ssh_host}))
    try:
        await run(pool, "true", destructive=True)
        assert pool.shells("test") == 0
        await run(pool, "true", timeout=61)  # long commands keep the exec path
        assert pool.shells("test") == 0
        for _ in range(5):
            result = await run(pool, "echo out; echo err >&2; exit 3")
            assert (result.stdout, result.stderr, result.exit_status) == ("out\n", "err\n", 3)
        assert pool.shells("test") == 1  # one shell served all five
    finally:
        await pool.close()


async def test_fast_path_can_be_switched_off(ssh_host: HostConfig) -> None:
    pool = SSHPool({"test": ssh_host}, fast_path=False)
    try:
        assert (await run(pool, "echo x")).stdout == "x\n"
        assert pool.shells("test") == 0
    finally:
        await pool.close()


async def test_output_that_looks_like_markers_is_just_output(pool: SSHPool) -> None:
    await run(pool, "true")  # a warm shell, so the next calls are framed on it
    fake = "S0123456789abcdef0123456789abcdef\nE0123456789abcdef0123456789abcdef 0\n"
    script = (
        f"printf '%s' '{fake}'; printf '%s' '{fake}' >&2; "
        "printf 'E%s 0\\n' deadbeef; printf 'no newline at the end E'; exit 7"
    )
    result = await run(pool, script)
    assert result.stdout == fake + "Edeadbeef 0\nno newline at the end E"
    assert result.stderr == fake
    assert result.exit_status == 7
    assert pool.shells("test") == 1
    # The same shell still frames correctly afterwards.
    assert (await run(pool, "printf abc")).stdout == "abc"


async def test_a_command_reading_stdin_gets_eof_and_cannot_eat_later_calls(
    pool: SSHPool,
) -> None:
    result = await run(
        pool, 'cat; read -r line; echo "got:${line}:"; head -c 10 /dev/stdin | wc -c'
    )
    assert result.stdout == "got::\n0\n"
    assert result.exit_status == 0
    follow = await asyncio.gather(*(run(pool, f"echo {i}") for i in range(3)))
    assert [r.stdout for r in follow] == ["0\n", "1\n", "2\n"]


async def test_binary_output_arrives_byte_for_byte(pool: SSHPool) -> None:
    every_byte = bytes(range(256))
    octal = "".join(f"\\{b:03o}" for b in every_byte)
    result = await run(pool, f"printf '{octal}'; printf '{octal}' >&2")
    expected = every_byte.decode("utf-8", errors="replace")
    assert result.stdout == expected
    assert result.stderr == expected
    assert result.exit_status == 0


async def test_a_timeout_in_the_middle_of_the_pool_leaves_the_others_alone(
    ssh_host: HostConfig, sshd: Sshd
) -> None:
    pool = await opened(SSHPool({"test": ssh_host}, max_sessions=4))
    try:
        await asyncio.gather(*(run(pool, "true") for _ in range(4)))  # four warm shells
        sleep = "sleep 96"
        started = time.monotonic()
        results = await asyncio.gather(
            run(pool, "sleep 0.5; echo a"),
            run(pool, f"{sleep} | cat; echo never", timeout=1),
            run(pool, "sleep 0.5; echo b"),
            run(pool, "sleep 1.5; echo c"),
        )
        elapsed = time.monotonic() - started
        assert [r.stdout for r in results] == ["a\n", "", "b\n", "c\n"]
        stuck = results[1]
        assert stuck.timed_out and stuck.exit_status in (124, 137)
        assert "timed out after 1 s" in stuck.stderr
        assert elapsed < 4
        assert sshd.wait_until_gone(sleep) == []
        # The timed-out shell was thrown away; the pool refills and keeps answering.
        assert pool.shells("test") == 3
        again = await asyncio.gather(*(run(pool, f"echo {i}") for i in range(6)))
        assert [r.stdout for r in again] == [f"{i}\n" for i in range(6)]
        assert pool.shells("test") <= 4
    finally:
        await pool.close()



async def test_50_mb_of_output_is_capped_on_the_fast_path(pool: SSHPool, sshd: Sshd) -> None:
    await run(pool, "true")
    assert pool.shells("test") == 1
    if not reset_peak_rss():
        pytest.skip("cannot reset the peak RSS counter (/proc/self/clear_refs)")
    peak_before = peak_rss_bytes()
    head = "head -c 52428808"
    started = time.monotonic()
    result = await run(pool, f"{head} /dev/zero | tr '\\000' f; echo tail-marker", timeout=30)
    elapsed = time.monotonic() - started
    growth = peak_rss_bytes() - peak_before
    assert result.truncated
    assert result.stdout.startswith("f" * 1000)
    assert result.stdout.endswith(f"\n[output truncated at {MiB} bytes]\n")
    assert "tail-marker" not in result.stdout
    assert growth < 20 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert elapsed < 10
    assert sshd.wait_until_gone(head) == []
    # The cut shell was discarded, not reused with half a frame in it.
    assert pool.shells("test") == 0
    assert (await run(pool, "echo after")).stdout == "after\n"


async def test_pooled_shells_survive_an_sshd_restart(sshd_factory: Callable[..., Sshd]) -> None:
    server = sshd_factory()
    pool = await opened(SSHPool({"test": server.host_config()}, max_sessions=4))
    try:
        first = await asyncio.gather(*(run(pool, "sleep 0.2; echo one") for _ in range(4)))
        assert pool.shells("test") == 4
        server.restart()  # no pause: the pool still holds four dead shells
        second = await asyncio.gather(*(run(pool, "echo two") for _ in range(4)))
        server.restart()
        # This time the client has noticed before the next calls.
        await wait_until(lambda: pool._hosts["test"].live() is None, what="connection closed")
        third = await asyncio.gather(*(run(pool, "echo three") for _ in range(4)))
    finally:
        await pool.close()
    assert [r.stdout for r in first] == ["one\n"] * 4
    assert [r.stdout for r in second] == ["two\n"] * 4
    assert [r.stdout for r in third] == ["three\n"] * 4
    assert accepted_logins(server) == 3


async def test_exec_takes_a_slot_from_an_idle_shell_when_all_are_taken(
    ssh_host: HostConfig,
) -> None:
    pool = await opened(SSHPool({"test": ssh_host}, max_sessions=2))
    try:
        await asyncio.gather(run(pool, "sleep 0.2"), run(pool, "sleep 0.2"))
        assert pool.shells("test") == 2
        result = await run(pool, "echo exec", destructive=True)
        assert result.stdout == "exec\n"
        assert pool.shells("test") == 1
    finally:
        await pool.close()


async def test_many_concurrent_calls_stay_within_the_channel_limit(ssh_host: HostConfig) -> None:
    pool = await opened(SSHPool({"test": ssh_host}, max_sessions=3))
    try:
        results = await asyncio.gather(
            *(run(pool, f"echo {i}", destructive=i % 5 == 0) for i in range(40))
        )
    finally:
        await pool.close()
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(40)]


def test_the_frame_holds_the_wrapped_command_verbatim_and_nothing_else_of_the_caller() -> None:
    wrapped = wrap_for_exec("echo {a} $(b) `c` '\"'", timeout=5)
    token = "0" * 32
    text = frame(wrapped, token)
    assert text.count(wrapped) == 1
    assert text.replace(wrapped, "WRAPPED").count("{") == text.replace(wrapped, "WRAPPED").count(
        "}"
    )
    with pytest.raises(ValueError):
        frame(wrapped, "x; rm -rf /")


def keep(into: list[bytes]) -> Callable[[bytes], bool]:
    def store(data: bytes) -> bool:
        into.append(data)
        return True

    return store


def test_frame_parser_handles_markers_split_anywhere() -> None:
    token = "ab" * 16
    body = b"x" * 70 + b"E" + token.encode()[:5] + b"\n"
    stream = f"S{token}\n".encode() + body + f"E{token} 42\n".encode()
    for size in (1, 2, 3, 7, 33, 1000):
        kept: list[bytes] = []
        parser = FrameStream(token, keep(kept))
        for at in range(0, len(stream), size):
            parser.feed(stream[at : at + size])
        assert parser.done and parser.doubt is None
        assert parser.status == 42
        assert b"".join(kept) == body


def test_frame_parser_doubts_stray_output() -> None:
    token = "cd" * 16
    before = FrameStream(token, keep([]))
    before.feed(b"late output from someone\n")
    assert before.doubt == "output before the start marker"
    after = FrameStream(token, keep([]))
    after.feed(f"S{token}\nok\nE{token} 0\nmore".encode())
    assert after.doubt == "output after the end marker"
    bad = FrameStream(token, keep([]))
    bad.feed(f"S{token}\nE{token} x\n".encode())
    assert bad.doubt == "a malformed end marker"


async def test_shells_idle_too_long_are_closed(
    ssh_host: HostConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await opened(SSHPool({"test": ssh_host}, max_sessions=4))
    try:
        await asyncio.gather(*(run(pool, "sleep 0.2") for _ in range(3)))
        assert pool.shells("test") == 3
        # As if they had been idle for IDLE_SECONDS (300 s): none of them is used again.
        monkeypatch.setattr("agent.ssh.shell.IDLE_SECONDS", 0.0)
        assert (await run(pool, "echo fresh")).stdout == "fresh\n"
        assert pool.shells("test") == 1
    finally:
        await pool.close()


async def test_a_cancelled_caller_does_not_leave_its_shell_in_the_pool(
    pool: SSHPool, sshd: Sshd
) -> None:
    await run(pool, "true")
    assert pool.shells("test") == 1
    sleep = "sleep 3.25"
    task = asyncio.create_task(run(pool, f"{sleep}; echo never", timeout=4))
    await wait_until(lambda: sshd.processes(sleep), what="the command runs")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Half a frame may still be on its way: that shell is never reused.
    assert pool.shells("test") == 0
    results = await asyncio.gather(*(run(pool, f"echo {i}") for i in range(3)))
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]


async def test_a_plain_command_runs_straight_under_timeout_on_the_shell(pool: SSHPool) -> None:
    """On a persistent shell a plain command line (a program and quoted words) is run by
    `timeout` itself, as wrap_for_shell says: the command is timeout's child and in the
    group its report named (taken off stderr); its exit status and stdin are as on the exec
    path. A line that needs the shell still has one between."""
    await run(pool, "true")  # a warm shell: the calls below are framed on it
    plain = await run(pool, "cat /proc/self/stat")
    fields = plain.stdout.rsplit(")", 1)[1].split()
    parent, group = int(fields[1]), int(fields[2])
    assert parent == group  # no `/bin/sh -c` between timeout and the command
    assert plain.stderr == "" and plain.exit_status == 0
    assert pool.shells("test") == 1  # it took the fast path
    shelled = await run(pool, "cat /proc/self/stat; true")
    fields = shelled.stdout.rsplit(")", 1)[1].split()
    assert int(fields[1]) != int(fields[2])  # the line needed `/bin/sh -c`: it is the parent
    missing = await run(pool, "ls -- '/no such file'")
    assert missing.exit_status == 2 and "no such file" in missing.stderr
    assert not missing.stderr.startswith("tailnet-agent-pgid:")
    assert (await run(pool, "cat")).stdout == ""  # stdin is /dev/null
    assert (await run(pool, "sleep 30", timeout=1)).timed_out
