"""Host keys from the netmap against known_hosts: agree, fall back, or refuse."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from agent.hosts.inventory import HostConfig
from agent.ssh.errors import HostKeyContradicted
from agent.ssh.tailnet_keys import host_key_check, published_keys


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


ED1, ED2 = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
EC = asyncssh.generate_private_key("ecdsa-sha2-nistp256")


def host(tmp_path: Path, *published: asyncssh.SSHKey, pinned: str = "") -> HostConfig:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(pinned)
    return HostConfig(name="db-1", address="db-1.tailnet.test", user="ops",
                      known_hosts=known_hosts, source="tailnet",
                      host_keys=tuple(public(k) for k in published))


def accepted(host: HostConfig) -> set[bytes]:
    keys, ca_keys, revoked, *_ = host_key_check(host)("db-1.tailnet.test", "", None)
    assert not ca_keys and not revoked
    return {k.public_data for k in keys}


def test_the_netmap_keys_are_trusted_with_no_known_hosts_entry(tmp_path: Path) -> None:
    assert accepted(host(tmp_path, ED1, EC)) == {ED1.public_data, EC.public_data}


def test_a_pin_that_agrees_narrows_the_choice_to_it(tmp_path: Path) -> None:
    pinned = f"db-1.tailnet.test {public(ED1)}\n"
    assert accepted(host(tmp_path, ED1, EC, pinned=pinned)) == {ED1.public_data}


def test_a_pin_of_a_type_the_node_does_not_publish_does_not_count(tmp_path: Path) -> None:
    pinned = f"db-1.tailnet.test {public(EC)}\n"
    assert accepted(host(tmp_path, ED1, pinned=pinned)) == {ED1.public_data}


def test_a_pin_that_contradicts_the_netmap_is_refused(tmp_path: Path) -> None:
    pinned = f"db-1.tailnet.test {public(ED2)}\n"
    with pytest.raises(HostKeyContradicted) as refused:
        host_key_check(host(tmp_path, ED1, EC, pinned=pinned))
    text = str(refused.value)
    assert "disagrees with the netmap" in text and "ssh-keygen -R 'db-1.tailnet.test'" in text
    assert ED2.get_fingerprint("sha256") in text and ED1.get_fingerprint("sha256") in text


def test_without_published_keys_known_hosts_decides(tmp_path: Path) -> None:
    plain = host(tmp_path, pinned=f"db-1.tailnet.test {public(ED2)}\n")
    assert accepted(plain) == {ED2.public_data}
    keys = published_keys(HostConfig(name="x", address="x", user="u",
                                     host_keys=("not a key", public(ED1))))
    assert [k.public_data for k in keys] == [ED1.public_data]
