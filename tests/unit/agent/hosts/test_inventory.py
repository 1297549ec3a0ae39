"""The inventory's `tailnet:` selectors: what they match and how they log in."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.hosts.inventory import (
    AUTH_KEY,
    AUTH_TAILSCALE_SSH,
    TailnetSelector,
    load_inventory,
)


def inventory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_selectors_load_with_their_login(tmp_path: Path) -> None:
    loaded = load_inventory(inventory(tmp_path, """
default: db-1
tailnet:
  - tags: [tag:db]
    user: postgres
  - names: ["web-*"]
    tags: tag:web
    user: ops
    port: 2222
    auth: key
    key: ~/.ssh/id_ops
hosts:
  - {name: bastion, address: 192.0.2.1, user: ops}
"""), {})
    assert list(loaded.hosts) == ["bastion"]
    assert loaded.default == "db-1"  # a tailnet host: checked when used
    db, web = loaded.tailnet
    assert db == TailnetSelector(user="postgres", tags=("tag:db",))
    assert web.names == ("web-*",) and web.tags == ("tag:web",) and web.port == 2222
    assert web.auth == AUTH_KEY and web.key_path == Path("~/.ssh/id_ops").expanduser()


def test_a_selector_matches_by_tag_and_name() -> None:
    both = TailnetSelector(user="u", tags=("tag:web", "tag:api"), names=("web-*",))
    assert both.matches("web-1", ("tag:api",))
    assert not both.matches("web-1", ())
    assert not both.matches("db-1", ("tag:web",))
    assert TailnetSelector(user="u", names=("*",)).matches("anything", ())


def test_auto_means_tailscale_ssh_when_the_peer_publishes_keys_on_port_22() -> None:
    keys = ("ssh-ed25519 AAAA",)
    auto = TailnetSelector(user="u", tags=("tag:db",))
    assert auto.host("db-1", "db-1.ts.net", tags=(), host_keys=keys).auth == AUTH_TAILSCALE_SSH
    assert auto.host("db-2", "db-2.ts.net", tags=(), host_keys=()).auth == AUTH_KEY
    other_port = TailnetSelector(user="u", tags=("tag:db",), port=2222)
    assert other_port.host("db-1", "a", tags=(), host_keys=keys).auth == AUTH_KEY
    host = auto.host("db-1", "db-1.ts.net", tags=("tag:db",), host_keys=keys,
                     tailnet_self="tag:agent")
    assert (host.source, host.tags, host.host_keys, host.tailnet_self) == (
        "tailnet", ("tag:db",), keys, "tag:agent")


@pytest.mark.parametrize(("text", "message"), [
    ("tailnet: [{tags: [tag:db]}]", "`user` is required"),
    ("tailnet: [{user: u}]", "give `tags` and/or `names`"),
    ("tailnet: [{user: u, tags: [db]}]", "tags look like tag:server, got db"),
    ("tailnet: [{user: u, names: [x], auth: password}]", "auth must be auto, key or"),
    ("tailnet: [{user: u, names: [x], users: [y]}]", "unknown field(s) users"),
    ("tailnet: {user: u}", "`tailnet:` (a list of selectors)"),
    ("tailnet: [{user: u, names: [x], port: 0}]", "port must be an integer 1-65535"),
    ("default: web\nhosts: [{name: a, address: x, user: u}]", "default 'web' is not one"),
])
def test_selector_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_inventory(inventory(tmp_path, text), {})
    assert message in str(caught.value)
