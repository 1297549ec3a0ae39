"""Head, tail and paging handles for big outputs (agent/output/store.py), and the disk budget
they share with running commands (agent/output/spool.py)."""

from __future__ import annotations

import pytest

from agent.access.identity import Identity
from agent.output.results import CommandResult
from agent.output.spool import CommandOutput
from agent.output.store import OutputStore, UnknownOutput
from tests.support.secrets_planted import AWS_KEY_ID, key_body, private_key

ALICE = Identity(login="alice@example.com", node="a")
BOB = Identity(login="bob@example.com", node="b")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result_of(stdout: bytes, stderr: bytes = b"", cap: int = 1 << 30, *, redact: bool = True,
              store: OutputStore | None = None) -> CommandResult:
    output = CommandOutput(cap, 65536, redact=redact,
                           budget=store.budget if store is not None else None)
    output.feed(False, stdout)
    output.feed(True, stderr)
    output.finish()
    return CommandResult(host="h", command="c", rendered="c", stdout="", stderr="",
                         exit_status=0, duration_ms=1.0, truncated=False, output=output)


def lines(count: int, width: int = 20) -> bytes:
    return b"".join(f"{n:0{width - 1}d}\n".encode() for n in range(count))


def test_a_small_output_is_shown_whole_without_a_handle() -> None:
    store = OutputStore(head=1000, tail=200)
    shown = store.present(result_of(b"hello\n", b"warn\n"), ALICE)
    assert (shown.stdout, shown.stderr, shown.output_handle) == ("hello\n", "warn\n", None)
    assert shown.stdout_bytes == 6 and len(store) == 0


def test_a_big_output_shows_head_and_tail_and_pages_read_back_everything() -> None:
    store = OutputStore(head=1000, tail=200)
    data = lines(5000)
    shown = store.present(result_of(data), ALICE)
    handle = shown.output_handle
    assert handle is not None and shown.stdout_bytes == len(data)
    head = shown.stdout.split("\n[... ")[0]
    tail = shown.stdout.split(" ...]\n")[-1]
    assert data.decode().startswith(head) and head.endswith("\n")  # whole lines
    assert f'read_output(handle="{handle}", offset={len(head)})' in shown.stdout
    assert data.decode().endswith(tail) and 0 < len(tail) <= 200
    pages, offset = [], 0
    while True:
        page = store.read(ALICE, handle, offset=offset, max_bytes=3001)
        assert page.text.endswith("\n") and page.total_bytes == len(data)
        pages.append(page.text)
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert "".join(pages).encode() == data
    assert len(pages) == len(data) // 3000 + 1  # 3001 bytes cut back to 150 whole lines


def test_handles_belong_to_their_caller_and_expire() -> None:
    clock = Clock()
    store = OutputStore(head=100, tail=0, ttl=60, clock=clock)
    handle = store.present(result_of(lines(100)), ALICE).output_handle
    assert handle is not None
    with pytest.raises(UnknownOutput, match="belong to whoever ran the command"):
        store.read(BOB, handle)
    assert store.read(ALICE, handle).offset == 0
    clock.now += 61
    with pytest.raises(UnknownOutput):
        store.read(ALICE, handle)
    assert len(store) == 0


def test_the_store_is_bounded_in_handles_per_caller() -> None:
    store = OutputStore(head=100, tail=0, max_handles=5, per_identity=3)
    alice = [store.present(result_of(lines(100)), ALICE).output_handle for _ in range(4)]
    assert len(store) == 3  # Alice's oldest went first
    with pytest.raises(UnknownOutput):
        store.read(ALICE, alice[0] or "")
    bob = [store.present(result_of(lines(100)), BOB).output_handle for _ in range(3)]
    assert len(store) == 5 and store.read(BOB, bob[-1] or "").total_bytes == 2000


def test_running_and_kept_outputs_share_one_disk_budget() -> None:
    store = OutputStore(head=100, tail=0, max_bytes=50_000)
    kept = [store.present(result_of(lines(1000), store=store), ALICE).output_handle
            for _ in range(2)]
    assert store.budget.used == store.bytes_kept == 40_000
    # A running command needs room: the oldest kept output goes for it.
    running = CommandOutput(1 << 30, 65536, budget=store.budget)
    assert running.feed(False, lines(1000)) and store.budget.used == 40_000
    with pytest.raises(UnknownOutput):
        store.read(ALICE, kept[0] or "")
    assert store.read(ALICE, kept[1] or "").total_bytes == 20_000
    # Beyond what can be freed (the other kept output too), it is cut, and says why.
    other = CommandOutput(1 << 30, 65536, budget=store.budget)
    assert not other.feed(False, lines(2000))
    assert other.stdout.cut == "disk" and other.disk_cut and other.stdout.size == 30_000
    assert len(store) == 0
    assert store.budget.used == store.budget.peak == 50_000
    running.close()
    other.close()
    store.close()
    assert store.budget.used == 0


def test_secrets_are_redacted_in_head_tail_and_every_page_even_across_page_edges() -> None:
    store = OutputStore(head=500, tail=300)
    pem = private_key()
    data = (lines(30) + pem.encode() + f"id {AWS_KEY_ID}\n".encode() + lines(60)
            + pem.encode() + f"id {AWS_KEY_ID}\n".encode())
    shown = store.present(result_of(data), ALICE)
    assert AWS_KEY_ID not in shown.stdout and "[REDACTED: AWS Access Key]" in shown.stdout
    assert shown.redacted and all(body not in shown.stdout for body in key_body(pem))
    handle = shown.output_handle or ""
    offset: int | None = 0
    seen = []
    while offset is not None:  # small pages: the key spans several of them
        page = store.read(ALICE, handle, offset=offset, max_bytes=70)
        seen.append(page.text)
        offset = page.next_offset
    text = "".join(seen)
    assert AWS_KEY_ID not in text and all(body not in text for body in key_body(pem))
    assert text.count("[REDACTED: AWS Access Key]") == 2


def test_redaction_can_be_turned_off_per_command() -> None:
    store = OutputStore()
    shown = store.present(result_of(f"id {AWS_KEY_ID}\n".encode(), redact=False), ALICE)
    assert AWS_KEY_ID in shown.stdout and shown.redacted == {}


def open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_a_flood_of_big_outputs_stays_within_the_bounds() -> None:
    store = OutputStore(head=100, tail=100, max_handles=64, per_identity=16,
                        max_bytes=20 << 20)
    callers = [Identity(login=f"user{n}@example.com", node="n") for n in range(6)]
    fds = open_fds()
    handles: dict[str, list[str]] = {c.key: [] for c in callers}
    for round_ in range(200):  # 1200 outputs of 100 kB, each spilled to an unlinked file
        for caller in callers:
            shown = store.present(result_of(lines(5000), redact=False, store=store), caller)
            handles[caller.key].append(shown.output_handle or "")
        assert len(store) <= 64 and store.bytes_kept <= 20 << 20, round_
    assert open_fds() - fds <= 64 + 2  # one file per kept output, no more
    # Each caller keeps only their newest 16 at most; nobody reads anyone else's.
    for caller in callers:
        newest = handles[caller.key][-1]
        assert store.read(caller, newest).total_bytes == 100_000
        for other in callers:
            if other != caller:
                with pytest.raises(UnknownOutput):
                    store.read(other, newest)
    store.close()
    assert open_fds() <= fds


def test_output_arriving_after_the_caller_has_gone_is_dropped() -> None:
    # A cancelled fast-path call's channel may still deliver what the command wrote before
    # its stop; feeding a closed output once raised inside asyncssh's packet handling and
    # closed the whole connection, failing every other call on it (seen in `make soak`).
    heard: list[bytes] = []
    output = CommandOutput(1024, 1024, listener=lambda stderr, data: heard.append(data))
    assert output.feed(False, b"before\n")
    output.close()
    assert output.feed(False, b"after\n") is False
    assert output.feed(True, b"late stderr\n") is False
    assert heard == [b"before\n"] and output.closed
