"""The empty page's example questions and its line on what the agent can and cannot do."""

from __future__ import annotations

from agent.chat.examples import MAX_EXAMPLES, capabilities, examples
from whitelist import Catalog, Command, load_catalog


def test_examples_are_questions_about_commands_and_hosts_the_caller_may_use() -> None:
    catalog = load_catalog([])
    asked = examples(catalog, ["web-1", "db-1"], "db-1")
    assert 0 < len(asked) <= MAX_EXAMPLES
    assert asked[0] == "How full are the disks on db-1?"
    assert any("my hosts" in q for q in asked)  # several hosts: a question across them
    # Only what this caller may run: no disk question without disk_usage.
    memory_only = Catalog({"top_memory_processes": catalog.get("top_memory_processes")})
    assert examples(memory_only, ["web-1"], None) == ["What is using the most memory on web-1?"]
    assert examples(catalog, [], None) == []


def test_the_capability_line_says_what_runs_where_and_what_cannot() -> None:
    catalog = load_catalog([])
    line = capabilities(catalog, ["web-1"])
    assert f"{len(catalog)} whitelisted commands" in line and "on web-1" in line
    assert "no shell" in line and "Nothing you may run here changes a server." in line
    destructive = Catalog({"reboot": Command(name="reboot", description="d", category="X",
                                             template="reboot", destructive=True)})
    assert "without your click" in capabilities(destructive, ["a", "b"])
    assert "on your 2 hosts" in capabilities(destructive, ["a", "b"])
    assert "ask the agent's operator" in capabilities(Catalog({}), ["web-1"])
