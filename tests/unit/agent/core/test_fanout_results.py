"""A fan-out's result: identical outcomes grouped, the whole within its byte budget
whatever the number of hosts, and nothing lost (the rest read by handle).

The service is real; its Runner answers what each host is scripted to print
(tests/support/recording.py), through the same output spools a command's output takes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import mcp
import pytest

from agent.audit.reader import read_records
from agent.core.fanout_run import FanoutResult
from agent.core.service import AgentService
from agent.errors import RateLimited
from agent.fanout.hostlist import expand
from agent.fanout.view import size
from agent.hosts.registry import Presence
from agent.mcp.tools import build_mcp_server
from agent.output.store import UnknownOutput
from tests.bench.scale_hosts import DF_COMMON, DF_HEADER, DF_ROOT
from tests.support.fanout import outcomes_by_host
from tests.support.recording import ALICE, Answer, fleet_service, tailnet_host

BUDGET = 32 * 1024
DF = ("Filesystem      Size  Used Avail Use% Mounted on\n"
      "/dev/vda1        49G   {used}G   {avail}G  {pct}% /\n"
      "tmpfs           3.9G     0  3.9G   0% /dev/shm\n")
DISKS = {"normal": DF.format(used=20, avail=27, pct=41),
         "busy": DF.format(used=37, avail=9.6, pct=78),
         "full": DF.format(used=45, avail=2.4, pct=95)}


def fleet(n: int) -> list[str]:
    """web-001... then app-, db-, in blocks (the scale benchmark's naming)."""
    web, app = n * 6 // 10, n * 3 // 10
    return ([f"web-{i:03d}" for i in range(1, web + 1)]
            + [f"app-{i:03d}" for i in range(1, app + 1)]
            + [f"db-{i:03d}" for i in range(1, n - web - app + 1)])


def disk_of(names: list[str]) -> dict[str, str]:
    return {name: "full" if i % 50 == 7 else "busy" if i % 5 == 4 else "normal"
            for i, name in enumerate(names)}


def every_host(data: dict[str, Any]) -> list[str]:
    """The hosts a result names: its groups' (expanded) and those on their own."""
    return list(outcomes_by_host(data))


async def run(service: AgentService, command: str = "disk_usage",
              hosts: list[str] | None = None, **kwargs: Any) -> FanoutResult:
    return await service.run_on_hosts(command, {}, hosts or ["all"], identity=ALICE, **kwargs)


async def test_three_distinct_outputs_on_300_hosts_are_three_groups(tmp_path: Path) -> None:
    names = fleet(300)
    disks = disk_of(names)
    service = fleet_service(tmp_path, names, lambda host: (DISKS[disks[host]], "", 0))
    data = (await run(service)).to_dict()
    assert [g["count"] for g in data["groups"]] == [234, 60, 6]  # largest first
    assert data["hosts"] == [] and "not_shown" not in data and "listing" not in data
    normal, busy, full = data["groups"]
    assert (normal["stdout"], busy["stdout"], full["stdout"]) == (
        DISKS["normal"], DISKS["busy"], DISKS["full"])
    assert full["hosts"] == "web-[008,058,108,158], app-[028,078]"
    assert sorted(every_host(data)) == sorted(names)
    for group in data["groups"]:
        assert group["status"] == "ok" and group["exit_status"] == 0
        assert sorted(expand(group["hosts"])) == sorted(
            h for h in names if DISKS[disks[h]] == group["stdout"])
    text = json.dumps(data)
    assert all(text.count(json.dumps(out)[1:-1]) == 1 for out in DISKS.values())
    assert size(data) < 4096
    assert data["summary"] == {"total": 300, "ok": 300, "failed": 0, "offline": 0,
                               "refused": 0, "skipped": 0}


async def test_differing_failing_and_offline_hosts_are_listed_with_their_own_output(
    tmp_path: Path,
) -> None:
    names = [f"web-{i:02d}" for i in range(1, 11)]
    answers: dict[str, Answer] = {name: ("same\n", "", 0) for name in names[:6]}
    answers |= {"web-07": ("other\n", "", 0), "web-08": ("", "boom\n", 2),
                "web-09": ("", "boom\n", 2), "web-10": ("", "bang\n", 3)}
    service = fleet_service(tmp_path, names, lambda host: answers[host])
    service.hosts.tailnet_enabled = True
    service.hosts.set_tailnet({name: (tailnet_host(name), Presence(online=False))
                               for name in ("t-1", "t-2")})
    data = (await run(service, "hostname")).to_dict()
    groups = [(g["hosts"], g["count"], g["status"]) for g in data["groups"]]
    # Largest first; a tie puts what needs a look first.
    assert groups == [("web-[01-06]", 6, "ok"), ("web-[08-09]", 2, "failed"),
                      ("t-[1-2]", 2, "offline")]
    assert data["groups"][1]["stderr"] == "boom\n" and data["groups"][1]["exit_status"] == 2
    # The agent's own message names the host: grouped with the name as <host>.
    assert "<host>" in data["groups"][2]["error"] and "t-1" not in data["groups"][2]["error"]
    assert [(h["host"], h["status"]) for h in data["hosts"]] == [("web-10", "failed"),
                                                               ("web-07", "ok")]
    assert data["hosts"][0]["stderr"] == "bang\n" and data["hosts"][0]["exit_status"] == 3
    assert data["summary"]["offline"] == 2 and data["summary"]["failed"] == 3


async def test_long_outputs_group_by_the_whole_output_not_what_is_shown(
    tmp_path: Path,
) -> None:
    """Outputs longer than a result shows (head and tail, the rest by handle) are compared
    whole: the same head and tail around a different middle is a different output."""
    head, tail = "begin\n" * 200, "end\n" * 200
    names = [f"web-{i}" for i in range(1, 7)]
    middles = {"web-1": "a", "web-2": "a", "web-3": "a", "web-4": "b", "web-5": "b",
               "web-6": "c"}
    service = fleet_service(tmp_path, names,
                            lambda host: (head + middles[host] * 3000 + "\n" + tail, "", 0),
                            output_head=1000, output_tail=500)
    data = (await run(service, "hostname")).to_dict()
    assert [(g["hosts"], g["count"]) for g in data["groups"]] == [("web-[1-3]", 3),
                                                                  ("web-[4-5]", 2)]
    assert [h["host"] for h in data["hosts"]] == ["web-6"]
    # Each shows the first host's head and tail, and its handle for the rest.
    group = data["groups"][0]
    assert group["output_handle"] and group["output_handle"] in group["stdout"]


async def test_all_distinct_outputs_beyond_the_bound_are_read_by_handle(
    tmp_path: Path,
) -> None:
    names = fleet(1000)
    rng = random.Random(7)
    outputs = {name: f"{name}: " + "".join(rng.choice("abcdef") for _ in range(300)) + "\n"
               for name in names}
    service = fleet_service(tmp_path, names, lambda host: (outputs[host], "", 0))
    data = (await run(service, "hostname")).to_dict()
    assert size(data) <= BUDGET
    shown = {h["host"] for h in data["hosts"]}
    assert data["groups"] == [] and 40 < len(shown) < 1000
    assert all(outputs[h["host"]] == h["stdout"] for h in data["hosts"])
    left = data["not_shown"]
    assert left == {"groups": 0, "alone": 1000 - len(shown), "hosts": 1000 - len(shown),
                    "by_status": {"ok": 1000 - len(shown)}}
    handle = data["listing"]["handle"]
    assert handle in data["listing"]["read"]
    # A host not shown is read by itself...
    hidden = next(name for name in names if name not in shown)
    page = await service.read_output(ALICE, f"{handle}/{hidden}")
    line = json.loads(page.text)
    assert line["host"] == hidden and line["stdout"] == outputs[hidden]
    assert page.next_offset is None and page.host == hidden
    # ... and the whole result page by page: a header, then one line per host.
    lines, offset = [], 0
    while offset is not None:
        page = await service.read_output(ALICE, handle, offset=offset, max_bytes=100_000)
        lines += page.text.splitlines()
        offset = page.next_offset
    assert json.loads(lines[0])["summary"]["total"] == 1000
    assert sorted(json.loads(line)["host"] for line in lines[1:]) == sorted(names)
    with pytest.raises(UnknownOutput, match="no host or group 'nope'"):
        await service.read_output(ALICE, f"{handle}/nope")
    # Only the caller who ran it reads it.
    from tests.support.recording import BOB
    with pytest.raises(UnknownOutput):
        await service.read_output(BOB, f"{handle}/{hidden}")


async def test_a_long_host_list_is_cut_and_the_whole_group_read_by_handle(
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    names = sorted({f"h{rng.randrange(10**9)}x" for _ in range(1000)})  # nothing compacts
    service = fleet_service(tmp_path, names, lambda host: ("the same\n", "", 0))
    data = (await run(service, "hostname")).to_dict()
    (group,) = data["groups"]
    assert group["count"] == 1000 and 0 < group["hosts_not_listed"] < 1000
    listed = expand(group["hosts"])
    assert len(listed) + group["hosts_not_listed"] == 1000
    page = await service.read_output(ALICE, group["hosts_handle"])
    line = json.loads(page.text)
    assert line["hosts"] == names and line["stdout"] == "the same\n"
    # A host of the group, read by name, gives its group.
    assert json.loads((await service.read_output(
        ALICE, f"{data['listing']['handle']}/{names[-1]}")).text)["group"] == 1
    assert size(data) <= BUDGET


@pytest.mark.parametrize("shape", ["distinct", "grouped-long", "failing", "odd-names"])
async def test_the_mcp_result_stays_within_the_bound_at_1000_hosts(
    tmp_path: Path, shape: str,
) -> None:
    """The text content and the structured content, as the official SDK client receives
    them, are each within TAILNET_AGENT_FANOUT_RESULT_BYTES (32 KB), whatever the outputs."""
    names = fleet(1000)
    rng = random.Random(shape)
    if shape == "odd-names":
        names = [f"node{rng.randrange(10**6)}-{rng.choice('abc')}.{rng.randrange(99)}"
                 for _ in range(1000)]
        names = list(dict.fromkeys(names))

    def answer(host: str) -> Answer:
        if shape == "distinct":
            return f"{host}\n" + "x" * rng.randrange(10, 3000) + "\n", "", 0
        if shape == "failing":
            return "", f"error on {host}: " + "e" * rng.randrange(10, 600) + "\n", 1
        return ("line of output\n" * 900 if host[-1] in "02468" else "short\n"), "", 0

    service = fleet_service(tmp_path, names, answer)
    async with mcp.Client(build_mcp_server(service, stdio_caller=ALICE)) as client:
        result = await client.call_tool("run_on_hosts", {"command": "hostname",
                                                         "hosts": "all"})
    assert not result.is_error, result.content
    (text,) = [c.text for c in result.content if c.type == "text"]
    data = result.structured_content
    assert data is not None
    assert len(text.encode()) <= BUDGET and size(data) <= BUDGET
    assert json.loads(text) == data
    shown = len(every_host(data)) + sum(g.get("hosts_not_listed", 0) for g in data["groups"])
    assert shown + data.get("not_shown", {}).get("hosts", 0) == len(names)
    assert data["summary"]["total"] == len(names)


async def test_a_smaller_budget_is_kept_too(tmp_path: Path) -> None:
    names = fleet(300)
    service = fleet_service(tmp_path, names, lambda host: (host + "\n", "", 0),
                            fanout_result_bytes=4096)
    data = (await run(service, "hostname")).to_dict()
    assert size(data) <= 4096 and data["not_shown"]["hosts"] > 200


async def test_a_tailnet_callers_fan_out_over_many_hosts_is_charged_once(
    tmp_path: Path,
) -> None:
    """With the default burst (60), a fan-out over 300 hosts runs on all of them: it is
    charged 1 + 300/10 = 31 tokens once, not one per host. The next one finds 29 left and
    is refused as a whole, before any host runs, recorded once; a fan-out over 1,000 hosts
    costs at most the whole burst, so it can run whenever the budget is full."""
    names = fleet(1000)
    # Refilled at 1 a minute: what the test does takes no time, however loaded the machine.
    service = fleet_service(tmp_path, names, lambda host: ("ok\n", "", 0),
                            rate_burst=60, rate_per_minute=1)
    first = await run(service, "hostname", names[:300])
    assert first.summary["ok"] == 300
    ran = len(service.pool.ran)  # type: ignore[attr-defined]
    with pytest.raises(RateLimited, match=r"fan-out over 300 host\(s\) costs 31 calls of a "
                       r"budget of 60 at once \(29 left\)"):
        await run(service, "hostname", names[:300])
    assert len(service.pool.ran) == ran  # type: ignore[attr-defined]
    records = list(read_records(tmp_path / "audit.jsonl"))
    assert sum(r["event"] == "start" and r.get("fanout") is not None for r in records) == 300
    assert [r["outcome"] for r in records if r["event"] == "end" and r.get("error", "")
            .startswith("rate limit")] == ["limited"]
    # A whole burst later (an hour at 1 a minute), 1,000 hosts at once.
    bucket = service.rate._buckets[ALICE.key]
    bucket.updated -= 3600
    big = await run(service, "hostname")
    assert big.summary["ok"] == 1000
    assert bucket.tokens < 1


async def test_a_filtered_fan_out_groups_the_hosts_that_matched_with_their_rows(
    tmp_path: Path,
) -> None:
    """The hosts whose rows match are grouped like any outcome (the same rows: one group),
    listed with those rows instead of their text; the group's recording is its first
    host's."""
    names = fleet(300)
    disks = disk_of(names)
    # What df -hP prints (tests/bench/scale_hosts.py): jc's df parser reads it.
    service = fleet_service(tmp_path, names, lambda host: (
        DF_HEADER + DF_COMMON.format(root=DF_ROOT[disks[host]]), "", 0))
    result = await run(service, filter_expression="use_percent >= `90`")
    data = result.to_dict()
    assert data["filter"] == {"expression": "use_percent >= `90`", "matched": 6,
                              "not_matched": 294, "undetermined": 0, "note": ""}
    (group,) = data["groups"]
    assert data["hosts"] == [] and group["hosts"] == "web-[008,058,108,158], app-[028,078]"
    assert group["matched"] is True and "stdout" not in group
    assert [(row["mounted_on"], row["use_percent"]) for row in group["data"]] == [("/", 95)]
    first = next(o for o in result.hosts if o.host == "web-008")
    assert (group["audit_host"], group["audit_id"]) == ("web-008", first.audit_id)
    ids = [o.audit_id for o in result.hosts]  # each matched host recorded on its own
    assert len(set(ids)) == 6 and None not in ids


async def test_rows_are_cut_like_text_and_read_whole_by_handle(tmp_path: Path) -> None:
    names = fleet(40)

    def answer(host: str) -> Answer:
        mounts = [f"/dev/{host}-{i}  49G   20G   27G  41% /m{i}\n" for i in range(200)]
        return DF_HEADER + "".join(mounts), "", 0

    service = fleet_service(tmp_path, names, answer, fanout_result_bytes=8192)
    data = (await run(service)).to_dict()
    assert size(data) <= 8192
    cut = [h for h in data["hosts"] if h.get("rows_not_shown")]
    assert cut, data["hosts"][:1]
    host = cut[0]
    assert len(host.get("data", [])) + host["rows_not_shown"] == 200
    assert host["rows_handle"] == f"{data['listing']['handle']}/{host['host']}"
    line = json.loads((await service.read_output(ALICE, host["rows_handle"])).text)
    assert len(line["data"]) == 200 and line["data"][0]["filesystem"] == f"/dev/{host['host']}-0"
