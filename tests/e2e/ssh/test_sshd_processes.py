"""The tests' count of remote processes (`Sshd.processes`): what the test's own sshd
started, orphans included, and nothing that another test run on the machine started as the
same user with the same command line. The leftover checks of the cancel tests rely on it."""

from __future__ import annotations

import asyncio
import os
import random
import socket

from agent.hosts.inventory import HostConfig
from agent.ssh import SSHPool
from tests.support.ports import PORTS_FROM, ephemeral_start
from tests.support.sshd import Sshd, _descendants, remote_processes
from tests.support.waiting import wait_until


async def test_the_count_is_this_sshds_orphans_included_and_nobody_elses(
    sshd: Sshd, ssh_host: HostConfig
) -> None:
    sleep = f"sleep 3{random.randint(100_000, 999_999)}"
    # Another run's process: the same user, the same command line, not through this sshd.
    other = await asyncio.create_subprocess_exec(
        *sleep.split(), user=sshd.user if os.geteuid() == 0 else None,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    pool = SSHPool({"test": ssh_host})
    try:
        # Ours, orphaned: its session ends at once and it leaves sshd's process tree.
        await pool.run("test", f"setsid {sleep} </dev/null >/dev/null 2>&1 &",
                       command_name="orphan", timeout=10, max_output=100, destructive=True)
        await wait_until(lambda: sshd.processes(sleep), 5, "the orphan running")
        ours = [int(line.split()[0]) for line in sshd.processes(sleep)]
        everyone = [int(line.split()[0]) for line in remote_processes(sshd.user, sleep)]
        assert len(ours) == 1, (ours, everyone)
        assert ours[0] not in _descendants(sshd.pid)  # an orphan: out of sshd's tree
        assert sorted(everyone) == sorted([ours[0], other.pid])  # the other one is there
    finally:
        await pool.close()
        sshd.kill(sleep)
        other.kill()
        await other.wait()
    # SIGKILL is delivered at once, the orphan's exit seen once its new parent reaps it.
    await wait_until(lambda: sshd.processes(sleep) == [], 10, "the orphan gone")


async def test_a_port_taken_before_sshd_binds_it_is_replaced_before_anyone_knows_it() -> None:
    """The harness's own sshd (not the product): its port is chosen below the kernel's
    ephemeral range, so outgoing connections never take it; one taken anyway before the first
    start (another worker, say) is replaced, and known_hosts follows."""
    server = Sshd(listen=("0.0.0.0",))
    taken = server.port
    assert PORTS_FROM <= taken < ephemeral_start()
    squatter = socket.socket()
    try:
        squatter.bind(("0.0.0.0", taken))
        squatter.listen()
        server.start()
        assert server.port != taken
        assert f"]:{server.port} " in server.known_hosts.read_text()
        pool = SSHPool({"test": server.host_config()})
        try:
            result = await pool.run("test", "echo here", command_name="echo", timeout=10,
                                    max_output=100)
            assert result.stdout == "here\n"
        finally:
            await pool.close()
    finally:
        squatter.close()
        server.cleanup()
