"""The shell frame's stream parser (agent/ssh/shell.py) against a reference: whatever the
body holds (bytes that begin the end marker, stray "E"s, a real marker of another call) and
however the stream is split, the body comes out whole, in order, and nothing is held back
but a tail that could still become this call's end marker."""

from __future__ import annotations

import random

import pytest

from agent.ssh.shell import FrameStream

TOKEN = "0123456789abcdef" * 2
END = f"E{TOKEN} ".encode()


def reference_hold(buf: bytes) -> int:
    """The longest tail of `buf` that begins the end marker, by trying every length."""
    for size in range(min(len(buf), len(END) - 1), 0, -1):
        if END.startswith(buf[-size:]):
            return size
    return 0


def body_piece(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return END[: rng.randrange(1, len(END))]  # begins the marker, then stops
    if choice == 1:
        return b"E" * rng.randrange(1, 4)
    if choice == 2:
        return f"E{'f' * 32} 0\n".encode()  # another token's marker: just output
    if choice == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
    if choice == 4:
        return b"x" * rng.randrange(1, 200)
    return b"\n"


@pytest.mark.parametrize("seed", range(300))
def test_any_body_split_anywhere_comes_out_whole(seed: int) -> None:
    rng = random.Random(seed)
    body = b"".join(body_piece(rng) for _ in range(rng.randrange(0, 12)))
    status = rng.randrange(256)
    stream = f"S{TOKEN}\n".encode() + body + END + f"{status}\n".encode()
    kept: list[bytes] = []

    def keep(data: bytes) -> bool:
        kept.append(data)
        return True

    parser = FrameStream(TOKEN, keep)
    at = 0
    while at < len(stream):
        size = rng.choice((1, 2, 5, 33, 34, 35, 100, 10_000))
        before = b"".join(kept)
        parser.feed(stream[at : at + size])
        at += size
        if not parser.done and parser.started:
            # While the body arrives, everything of it is passed on at once except a tail
            # that may begin the end marker, and exactly that tail.
            released = b"".join(kept)
            arrived = stream[len(f"S{TOKEN}\n") : at]
            if END not in arrived:
                assert released == arrived[: len(arrived) - reference_hold(arrived)]
            assert released.startswith(before)
    assert parser.done and parser.doubt is None
    assert parser.status == status
    assert b"".join(kept) == body


def test_the_token_must_be_lowercase_hex() -> None:
    for bad in ("ABCDEF", "0E12", "x; rm -rf /", ""):
        with pytest.raises(ValueError):
            FrameStream(bad, lambda data: True)
