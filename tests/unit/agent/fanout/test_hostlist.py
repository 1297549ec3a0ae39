"""Host lists in the compact notation: what `compact` writes, `expand` reads back."""

from __future__ import annotations

import random

import pytest

from agent.fanout.hostlist import compact, compact_within, expand, shown


@pytest.mark.parametrize(("names", "written"), [
    (["web-001", "web-002", "web-003", "web-005"], "web-[001-003,005]"),
    # No padding: the range is as wide as its numbers need.
    (["web-9", "web-10", "web-11"], "web-[9-11]"),
    # Padded numbers run on past their width (099 to 100).
    (["web-098", "web-099", "web-100", "web-101"], "web-[098-101]"),
    # web-1 and web-01 are different hosts: never one range.
    (["web-1", "web-01", "web-2", "web-02"], "web-[01-02,1-2]"),
    (["web-0", "web-00", "web-000"], "web-[0,00,000]"),
    # Several prefixes, in the order their first host came; names without digits as they are.
    (["db", "web-1", "app-3", "web-2", "app-4", "x.example.com"],
     "db, web-[1-2], app-[3-4], x.example.com"),
    # The number is the last run of digits; what follows it is part of the pattern.
    (["n1.a", "n2.a", "n3.b"], "n[1-2].a, n3.b"),
    (["a1b2", "a1b3", "a2b2"], "a1b[2-3], a2b2"),
    (["10", "11", "12"], "[10-12]"),
    # One host of a pattern is written as it is; duplicates once.
    (["web-7", "web-7", "db-1"], "web-7, db-1"),
    ([], ""),
])
def test_compact_writes_ranges_and_expand_reads_them_back(names: list[str],
                                                          written: str) -> None:
    assert compact(names) == written
    assert sorted(expand(written)) == sorted(dict.fromkeys(names))


def test_numbers_in_brackets_are_in_numeric_order_whatever_the_input_order() -> None:
    names = [f"web-{i:03d}" for i in (7, 3, 1, 2, 10, 9, 8)]
    assert compact(names) == "web-[001-003,007-010]"


def test_names_with_notation_characters_or_huge_numbers_are_listed_as_they_are() -> None:
    odd = ["we[b]-1", "web,2", "n" + "9" * 30, "web-1"]
    assert compact(odd) == ", ".join(odd)


@pytest.mark.parametrize("seed", range(20))
def test_any_list_of_host_names_survives_the_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    prefixes = ["web-", "db", "app-", "x.", "", "node-a-"]
    suffixes = ["", ".tailnet.test", "-eu"]
    names = set()
    for _ in range(rng.randrange(1, 300)):
        number = rng.randrange(0, 2000)
        digits = f"{number:0{rng.choice([0, 2, 3, 4])}d}"
        names.add(rng.choice(prefixes) + digits + rng.choice(suffixes))
    names |= {"alpha", "beta-gamma"}
    listed = compact(sorted(names))
    assert sorted(expand(listed)) == sorted(names)


def test_a_fleet_in_blocks_is_short() -> None:
    fleet = ([f"web-{i:03d}" for i in range(1, 601)] + [f"app-{i:03d}" for i in range(1, 301)]
             + [f"db-{i:03d}" for i in range(1, 101)])
    assert compact(fleet) == "web-[001-600], app-[001-300], db-[001-100]"
    # Every fifth host missing: about two bytes per host (web-001 alone takes 7).
    gappy = [name for i, name in enumerate(fleet) if i % 5 != 4]
    assert len(compact(gappy)) < 2.1 * len(gappy)
    assert sorted(expand(compact(gappy))) == sorted(gappy)


def test_a_list_too_long_is_cut_at_a_whole_name_and_says_how_many_more() -> None:
    rng = random.Random(1)
    names = [f"h{rng.randrange(10**9)}x" for _ in range(1000)]  # nothing to compact
    cut = compact_within(names, 2000)
    assert len(cut.text) <= 2000 and cut.shown + cut.more == 1000 and cut.more > 750
    assert sorted(expand(cut.text)) == sorted(names[:cut.shown])
    assert compact_within(names[:3], 2000).more == 0
    # One name longer than the bound is still shown: a list is never empty.
    assert compact_within(["x" * 50, "y"], 10).text == "x" * 50
    assert shown(names, 100).endswith(f"and {1000 - compact_within(names, 100).shown} more")
