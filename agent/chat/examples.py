"""What the empty page offers: a few questions this caller can really get answered, and
one line on what the agent can and cannot do, both from their catalog and hosts."""

from __future__ import annotations

from collections.abc import Sequence

from whitelist import Catalog

# A question per catalog command it needs, in the order they are offered.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("disk_usage", "How full are the disks on {host}?"),
    ("top_memory_processes", "What is using the most memory on {host}?"),
    ("failed_services", "Are any services failing on {host}?"),
    ("uptime", "How long has {host} been up, and how busy is it?"),
    ("listening_ports", "Which ports is {host} listening on?"),
    ("docker_ps", "Which containers are running on {host}?"),
)
MAX_EXAMPLES = 4


def examples(catalog: Catalog, hosts: Sequence[str], default_host: str | None) -> list[str]:
    if not hosts:
        return []
    host = default_host if default_host in hosts else hosts[0]
    asked = [q.format(host=host) for name, q in QUESTIONS if name in catalog.commands]
    if len(hosts) > 1 and "uptime" in catalog.commands:
        asked.insert(1, "Which of my hosts has the highest load right now?")
    return asked[:MAX_EXAMPLES]


def capabilities(catalog: Catalog, hosts: Sequence[str]) -> str:
    if not len(catalog) or not hosts:
        return ("You may not run any command here yet: ask the agent's operator for a grant "
                "(or, if no host is configured, to add one).")
    categories = ", ".join(c.lower() for c in catalog.by_category())
    where = f"on {hosts[0]}" if len(hosts) == 1 else f"on your {len(hosts)} hosts"
    destructive = any(c.destructive for c in catalog)
    changes = ("Nothing that changes a server runs without your click." if destructive
               else "Nothing you may run here changes a server.")
    return (f"Answers come from {len(catalog)} whitelisted commands ({categories}) run {where} "
            f"over SSH. There is no shell: nothing outside the catalog can run. {changes}")
