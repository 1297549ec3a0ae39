"""Host lists written compactly: `web-[001-180,182], app-[1-9], db-primary`.

Names that differ only in a number (the last run of digits in the name) share one
prefix and suffix and list their numbers in brackets, consecutive numbers as ranges.
The notation is Slurm's hostlist (`n[01-10]`): a range's width is that of its first
number, and every number in it is zero-padded to that width, so `[098-100]` is 098, 099,
100 and `[9-10]` is 9, 10. Numbers written with leading zeros only join a range of the
same width (`web-1` and `web-01` are different hosts and stay apart). A name without
digits is listed as it is. Groups of names keep the order in which their first name
came; numbers inside brackets are in numeric order.

`expand` reads the notation back (the tests check that it gives back every list
`compact` wrote); `compact_within` cuts a list that would be longer than a bound at a
whole name, and says how many names it left out.

Written here rather than taken from `python-hostlist` (the Slurm-world library), which
is GPL-2.0-or-later: the agent is MIT and ships as one executable with its dependencies.
Host names are letters, digits, '.', '_' and '-' (agent.hosts.inventory), so the brackets,
commas and spaces of the notation never occur in a name; a name that has them anyway is
listed as it is, like one without digits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SEPARATOR = ", "  # between the groups of a list; inside brackets numbers are split by ","
_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")
_NOTATION = re.compile(r"[\[\],\s]")
_BRACKETS = re.compile(r"^(.*?)\[([0-9,\-]+)\](.*)$")
MAX_DIGITS = 18  # longer digit runs are not numbers worth ranging (and stay exact)


@dataclass(frozen=True)
class Compacted:
    text: str
    shown: int  # how many of the names `text` lists (all of them unless it was cut)
    total: int

    @property
    def more(self) -> int:
        return self.total - self.shown


def compact(names: Sequence[str]) -> str:
    """`names` in the compact notation (duplicates listed once)."""
    groups: dict[tuple[str, str], list[str]] = {}  # (prefix, suffix) -> digit strings
    order: list[tuple[str, str] | str] = []  # groups and plain names, as they first came
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        match = _LAST_NUMBER.match(name)
        if match is None or _NOTATION.search(name) or len(match.group(2)) > MAX_DIGITS:
            order.append(name)
            continue
        key = (match.group(1), match.group(3))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(match.group(2))
    parts: list[str] = []
    for item in order:
        if isinstance(item, str):
            parts.append(item)
            continue
        prefix, suffix = item
        numbers = groups[item]
        if len(numbers) == 1:
            parts.append(prefix + numbers[0] + suffix)
        else:
            parts.append(f"{prefix}[{','.join(_ranges(numbers))}]{suffix}")
    return SEPARATOR.join(parts)


def _width(digits: str) -> int:
    """The width a number is padded to: its length if it has a leading zero, else 0 (as
    long as it needs)."""
    return len(digits) if len(digits) > 1 and digits.startswith("0") else 0


def _ranges(numbers: list[str]) -> list[str]:
    """The numbers of one prefix and suffix as ranges (`001-003`) and single numbers.

    Each number is put in a width class: padded ones by their width; an unpadded one in
    the widest padded class it fits without padding (`100` in the class of `098`), else
    in the class of unpadded numbers. A range runs over consecutive numbers of one class,
    so every number in it is its first number's width, zero-padded, as `expand` reads it.
    """
    padded = sorted({_width(d) for d in numbers} - {0})
    classes: dict[int, list[str]] = {}
    for digits in numbers:
        width = _width(digits)
        if width == 0:
            width = max((w for w in padded if w <= len(digits)), default=0)
        classes.setdefault(width, []).append(digits)
    runs: list[tuple[int, str, str]] = []  # (first value, first, last)
    for members in classes.values():
        members.sort(key=int)
        first = last = members[0]
        for digits in members[1:]:
            if int(digits) == int(last) + 1:
                last = digits
                continue
            runs.append((int(first), first, last))
            first = last = digits
        runs.append((int(first), first, last))
    runs.sort()
    return [first if first == last else f"{first}-{last}" for _, first, last in runs]


def expand(text: str) -> list[str]:
    """The names a compact list stands for, in its order."""
    names: list[str] = []
    for part in _split(text):
        match = _BRACKETS.match(part)
        if match is None:
            names.append(part)
            continue
        prefix, inside, suffix = match.groups()
        for item in inside.split(","):
            first, _, last = item.partition("-")
            width = len(first)
            for value in range(int(first), int(last or first) + 1):
                names.append(f"{prefix}{value:0{width}d}{suffix}")
    return names


def _split(text: str) -> list[str]:
    """The top-level parts of a list (the commas inside brackets belong to their part)."""
    parts: list[str] = []
    depth, start = 0, 0
    for at, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:at].strip())
            start = at + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def compact_within(names: Sequence[str], limit: int) -> Compacted:
    """`names` compacted in at most `limit` characters: all of them if they fit, else the
    most names from the start of the list that do (at least one, whatever its length)."""
    unique = list(dict.fromkeys(names))
    full = compact(unique)
    if len(full) <= limit or len(unique) <= 1:
        return Compacted(full, len(unique), len(unique))
    low, high = 1, len(unique) - 1  # the longest prefix of the list that fits
    while low < high:
        middle = (low + high + 1) // 2
        if len(compact(unique[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return Compacted(compact(unique[:low]), low, len(unique))


def shown(names: Sequence[str], limit: int = 400) -> str:
    """`names` compacted for a sentence: cut within `limit` characters with how many more."""
    cut = compact_within(names, limit)
    return cut.text if not cut.more else f"{cut.text} and {cut.more} more"
