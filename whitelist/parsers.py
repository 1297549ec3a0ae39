"""The output parsers a catalog command may name (`parser:`), as data.

A command with a parser returns, besides its text, its output as data: rows of named
fields that a caller can filter on. The parsing itself happens in the agent
(agent/output/parsing.py, with the `jc` library); this package only knows the names, what
output each one reads, and the fields of what it gives, so that a catalog is checked at
load and a filter's field names before anything runs.

`fields` are the fields of one row as jc documents them (and, where its documentation
misses one our templates produce, as it gives them), with their types. `key` is a field
every row of a real parse has: jc turns text it does not understand into rows without it,
which then count as "could not parse". A `closed` parser gives no other fields; jc's `ps`
names its fields after the columns `ps -o` chose, `os-release` after the file's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

FieldType = Literal["integer", "number", "text"]


@dataclass(frozen=True)
class OutputParser:
    name: str  # as a catalog names it (`parser: df`)
    reads: str  # the output it understands, for the catalog author and the model
    fields: Mapping[str, FieldType]  # the fields of one row
    key: str  # a field every row has when the output was understood
    many: bool = True  # a list of rows; False: one object (one row)
    closed: bool = True  # no fields other than `fields`

    def describe_fields(self) -> str:
        return ", ".join(f"{name} ({kind})" for name, kind in self.fields.items())


def _fields(**kinds: FieldType) -> Mapping[str, FieldType]:
    return MappingProxyType(dict(kinds))


_INT: FieldType = "integer"
_NUM: FieldType = "number"
_TEXT: FieldType = "text"

_ALL = (
    OutputParser(
        "df", "df -P or df -hP (POSIX format: one line per file system); sizes in bytes "
        "(-h sizes converted, so rounded), or in blocks",
        MappingProxyType({
            "filesystem": _TEXT, "size": _INT, "1k_blocks": _INT, "1024_blocks": _INT,
            "512_blocks": _INT, "used": _INT, "available": _INT, "use_percent": _INT,
            "capacity_percent": _INT, "iused": _INT, "ifree": _INT, "iused_percent": _INT,
            "mounted_on": _TEXT}),
        key="mounted_on"),
    OutputParser(
        "free", "free, free -h or free -b (procps); amounts in bytes (-h amounts converted, "
        "so rounded); one row per type, Mem and Swap",
        _fields(type=_TEXT, total=_INT, used=_INT, free=_INT, shared=_INT, buff_cache=_INT,
                buffers=_INT, cache=_INT, available=_INT),
        key="type"),
    OutputParser(
        "uptime", "uptime (procps or busybox): one object",
        _fields(time=_TEXT, time_hour=_INT, time_minute=_INT, time_second=_INT,
                uptime=_TEXT, uptime_days=_INT, uptime_hours=_INT, uptime_minutes=_INT,
                uptime_total_seconds=_INT, users=_INT, load_1m=_NUM, load_5m=_NUM,
                load_15m=_NUM),
        key="load_1m", many=False),
    OutputParser(
        "ps", "ps with a header line (ps -ef, ps aux, ps -eo <columns>): one row per "
        "process, fields named after the columns (%CPU is cpu_percent, %MEM mem_percent)",
        _fields(pid=_INT, ppid=_INT, uid=_TEXT, user=_TEXT, c=_INT, stime=_TEXT, tty=_TEXT,
                tt=_TEXT, time=_TEXT, elapsed=_TEXT, cmd=_TEXT, command=_TEXT,
                cpu_percent=_NUM, mem_percent=_NUM, vsz=_INT, rss=_INT, stat=_TEXT,
                start=_TEXT),
        key="pid", closed=False),
    OutputParser(
        "systemctl", "systemctl list-units with its header line and without the summary "
        "line 'N loaded units listed.' (jc reads that line as a unit): one row per unit",
        _fields(unit=_TEXT, load=_TEXT, active=_TEXT, sub=_TEXT, description=_TEXT),
        key="unit"),
    OutputParser(
        "os_release", "/etc/os-release (KEY=value lines): one object; fields are the file's "
        "keys, the usual ones listed",
        _fields(NAME=_TEXT, ID=_TEXT, ID_LIKE=_TEXT, PRETTY_NAME=_TEXT, VERSION=_TEXT,
                VERSION_ID=_TEXT, VERSION_CODENAME=_TEXT, BUILD_ID=_TEXT, VARIANT_ID=_TEXT,
                HOME_URL=_TEXT),
        key="ID", many=False, closed=False),
)

PARSERS: Mapping[str, OutputParser] = MappingProxyType({p.name: p for p in _ALL})
