"""The local operator's socket: private from the moment it exists, one agent per path."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.web.unix_socket import bind_unix


def test_the_socket_appears_with_mode_0600_and_nothing_else_is_left(tmp_path: Path) -> None:
    path = tmp_path / "run" / "agent.sock"
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # whenever the path exists, it must already be private
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(stat.S_IMODE(path.lstat().st_mode))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        sock = bind_unix(path)
    finally:
        stop.set()
        watcher.join()
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert set(seen) <= {0o600} and stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert sorted(os.listdir(path.parent)) == ["agent.sock"]
    finally:
        sock.close()


def test_a_live_socket_is_refused_and_a_dead_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    first = bind_unix(path)
    first.listen()
    with pytest.raises(ConfigError, match="another agent already serves on the socket"):
        bind_unix(path)
    first.close()  # the agent was killed: its socket file stays behind, nobody listens
    second = bind_unix(path)
    second.listen()
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(path))
    client.close()
    second.close()


def test_a_path_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(ConfigError, match="is not a socket"):
        bind_unix(path)
    assert path.read_text() == "mine"
