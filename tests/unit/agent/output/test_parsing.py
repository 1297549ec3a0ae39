"""Output as data: jc's parsers on the outputs the default catalog's templates print, and
a one-line note (never an exception) for anything else.

The samples are what Debian 12's coreutils, procps and systemd print for the default
catalog's templates; tests/e2e/ssh/test_output_data.py parses the real thing on the test
sshd (systemd excepted: no systemd runs there).
"""

from __future__ import annotations

import time

import jc.utils
import pytest

from agent.output.parsing import MAX_PARSED, Parsed, parse_result, parse_text
from agent.output.results import CommandResult
from agent.output.spool import CommandOutput
from whitelist import load_catalog
from whitelist.parsers import PARSERS

DF_HP = """\
Filesystem                                       Size  Used Avail Use% Mounted on
udev                                             3.9G     0  3.9G   0% /dev
tmpfs                                            796M  1.2M  795M   1% /run
/dev/mapper/vg0-a-very-long-logical-volume-name   49G   45G  2.4G  95% /
/dev/vda15                                       124M   12M  113M  10% /boot/efi
"""
DF_P = """\
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda1         51287520 47185636   2487368      95% /
"""
FREE_H = """\
               total        used        free      shared  buff/cache   available
Mem:           7.8Gi       1.9Gi       2.1Gi        23Mi       4.0Gi       5.9Gi
Swap:          975Mi          0B       975Mi
"""
UPTIME = " 10:14:03 up 12 days,  3:02,  2 users,  load average: 0.08, 0.03, 0.01\n"
PS = """\
    PID USER     %CPU %MEM   RSS     ELAPSED COMMAND
    812 postgres  3.1  2.0 163840 12-03:02:11 postgres
      1 root      0.0  0.1 12288 12-03:02:15 systemd
"""
# failed_services: its own header line, then `systemctl list-units --failed --plain
# --no-legend` (one failed unit; with none, the header alone).
SYSTEMCTL = """\
UNIT LOAD ACTIVE SUB DESCRIPTION
nginx.service loaded failed failed A high performance web server and a reverse proxy server
"""
OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""


def test_df_rows_with_sizes_in_bytes_and_use_percent() -> None:
    parsed = parse_text(PARSERS["df"], DF_HP)
    assert parsed.note == ""
    root = next(row for row in parsed.data if row["mounted_on"] == "/")
    assert root["filesystem"] == "/dev/mapper/vg0-a-very-long-logical-volume-name"
    assert root["use_percent"] == 95
    assert root["size"] == 49 * 1024**3 and root["available"] == int(2.4 * 1024**3)
    assert len(parsed.data) == 4
    posix = parse_text(PARSERS["df"], DF_P).data
    assert posix == [{"filesystem": "/dev/vda1", "1024_blocks": 51287520, "used": 47185636,
                      "available": 2487368, "mounted_on": "/", "capacity_percent": 95}]


def test_free_uptime_ps_systemctl_os_release() -> None:
    memory = parse_text(PARSERS["free"], FREE_H).data
    assert [row["type"] for row in memory] == ["Mem", "Swap"]
    assert memory[0]["available"] == int(5.9 * 1024**3)
    uptime = parse_text(PARSERS["uptime"], UPTIME).data
    assert (uptime["uptime_days"], uptime["users"], uptime["load_1m"]) == (12, 2, 0.08)
    processes = parse_text(PARSERS["ps"], PS).data
    assert processes[0] == {"pid": 812, "user": "postgres", "cpu_percent": 3.1,
                            "mem_percent": 2.0, "rss": 163840, "elapsed": "12-03:02:11",
                            "command": "postgres"}
    units = parse_text(PARSERS["systemctl"], SYSTEMCTL).data
    assert units == [{"unit": "nginx.service", "load": "loaded", "active": "failed",
                      "sub": "failed", "description": "A high performance web server and a "
                      "reverse proxy server"}]
    assert parse_text(PARSERS["systemctl"], "UNIT LOAD ACTIVE SUB DESCRIPTION\n").data == []
    release = parse_text(PARSERS["os_release"], OS_RELEASE).data
    assert (release["ID"], release["VERSION_ID"]) == ("debian", "12")


def test_systemctl_summary_line_is_why_the_template_drops_it() -> None:
    """jc reads systemctl's own 'N loaded units listed.' line as a unit: the default
    failed_services prints its header itself and drops that line (--no-legend)."""
    plain = "  UNIT LOAD ACTIVE SUB DESCRIPTION\n0 loaded units listed.\n"
    assert parse_text(PARSERS["systemctl"], plain).data == [
        {"unit": "0", "load": "loaded", "active": "units", "sub": "listed."}]
    template = load_catalog().get("failed_services").template
    assert "--no-legend" in template and "echo 'UNIT LOAD ACTIVE SUB DESCRIPTION'" in template


@pytest.mark.parametrize("parser", sorted(PARSERS))
@pytest.mark.parametrize("text", [
    "hello world\nfoo bar baz\n",
    FREE_H,
    "\x00\x01\xff garbage\n" * 3,
    "[REDACTED: AWS Access Key] 1G 2G 3G 50% /\n",
    "Filesystem Size Used Avail Use% Mounted on\n" + "x " * 5000,
])
def test_anything_else_is_a_note_never_an_exception(parser: str, text: str) -> None:
    parsed = parse_text(PARSERS[parser], text)
    if parsed.note:
        assert parsed.data is None
        assert parsed.note.startswith(f"could not parse the output as {parser} (")
        assert "\n" not in parsed.note and len(parsed.note) < 600
        assert parsed.note.endswith("The output is shown as text")
    elif parser != "free" or text != FREE_H:  # free's own output parses, of course
        # What jc accepts must at least have the parser's key in every row.
        rows = parsed.data if isinstance(parsed.data, list) else [parsed.data]
        assert all(row.get(PARSERS[parser].key) is not None for row in rows), parsed


def test_a_redacted_field_makes_the_row_unparsable_not_wrong() -> None:
    text = "Filesystem Size Used Avail Use% Mounted on\n[REDACTED: x] 1G 2G 3G 50% /\n"
    parsed = parse_text(PARSERS["df"], text)
    assert parsed.data is None and "a row without mounted_on" in parsed.note


def result_with(stdout: bytes, *, exit_status: int | None = 0, truncated: bool = False,
                timed_out: bool = False) -> CommandResult:
    output = CommandOutput(len(stdout) + 10, 1000)
    output.feed(False, stdout)
    output.finish()
    return CommandResult("h", "disk_usage", "df -hP", "", "", exit_status, 1.0, truncated,
                         timed_out=timed_out, output=output)


async def test_only_a_whole_successful_output_is_parsed() -> None:
    disk = load_catalog().get("disk_usage")
    ok = await parse_result(disk, result_with(DF_HP.encode()))
    assert ok is not None and ok.note == "" and len(ok.data) == 4
    failed = await parse_result(disk, result_with(DF_HP.encode(), exit_status=1))
    assert failed == Parsed(note="not parsed: the command failed (exit status 1)")
    cut = await parse_result(disk, result_with(DF_HP.encode(), truncated=True))
    assert cut is not None and cut.data is None and "cut" in cut.note
    late = await parse_result(disk, result_with(DF_HP.encode(), exit_status=None,
                                                timed_out=True))
    assert late is not None and "did not finish" in late.note
    assert await parse_result(load_catalog().get("hostname"), result_with(b"h\n")) is None


async def test_big_outputs_are_parsed_off_the_loop_and_huge_ones_not_at_all() -> None:
    disk = load_catalog().get("disk_usage")
    rows = "".join(f"{f'/dev/sd{i}':<10}  10G  5.0G  5.0G  50% /mnt/{i}\n" for i in range(3000))
    big = await parse_result(disk, result_with(
        f"Filesystem  Size  Used Avail Use% Mounted on\n{rows}".encode()))
    assert big is not None and len(big.data) == 3000
    huge = await parse_result(disk, result_with(b"x" * (MAX_PARSED + 1)))
    assert huge is not None and huge.data is None and "more than" in huge.note


def test_the_size_cache_gives_jc_s_own_answers_faster() -> None:
    convert = jc.utils.convert_size_to_int
    original = convert.__wrapped__  # type: ignore[attr-defined]
    for size in ("3.9G", "796M", "1.2M", "0", "12Gi", "975Mi", "0B", "124M"):
        for posix in (False, True):
            assert convert(size, posix_mode=posix) == original(size, posix_mode=posix)
    started = time.perf_counter()
    for _ in range(200):
        parse_text(PARSERS["df"], DF_HP)
    cached = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(200):
        for size in ("3.9G", "0", "3.9G", "796M", "1.2M", "795M", "49G", "45G", "2.4G",
                     "124M", "12M", "113M"):
            original(size, posix_mode=True)
    uncached = time.perf_counter() - started
    # Not a timing claim (the bench has those): the cache is in front, and it helps.
    assert cached < uncached, (cached, uncached)
