"""Redaction at ingest: every byte a command prints is scanned on its way into the spool, so
its throughput is the agent's ceiling for output. Measured on 50 MiB of mixed output
(the ordinary outputs of the test corpus, dense with near misses such as `password:
${DB_PASSWORD}`, and a secret of the corpus every 64 KiB), fed in SSH-sized chunks
through a CommandOutput exactly as a command's output is, next to the same with
redaction off (the spool alone). Timed in CPU seconds of this process: the figure is
the work done, whatever else the machine runs meanwhile (wall time is in the note).

    python -m tests.bench.bench_redact [MiB]
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time

from agent.output.spool import CommandOutput
from tests.bench.bench_stats import Row
from tests.support.secret_corpus import ORDINARY, corpus

MiB = 1024 * 1024
CHUNK = 32 * 1024  # what an SSH channel hands over at a time
GROUP = "redaction at ingest, 50 MiB of mixed output"


def mixed_output(size: int) -> bytes:
    ordinary = itertools.cycle(text.encode() for text in ORDINARY.values())
    secrets = itertools.cycle(f"found: {p.text}\n".encode() for p in corpus())
    pieces: list[bytes] = []
    length = since_secret = 0
    while length < size:
        piece = next(ordinary)
        if since_secret >= 64 * 1024:
            piece, since_secret = next(secrets), 0
        pieces.append(piece)
        length += len(piece)
        since_secret += len(piece)
    return b"".join(pieces)[:size]


def ingest_seconds(data: bytes, *, redact: bool) -> tuple[float, float]:
    """CPU and wall seconds to take `data` into a spool."""
    output = CommandOutput(len(data) * 2, 1 << 16, redact=redact)
    cpu, wall = time.process_time(), time.perf_counter()
    for at in range(0, len(data), CHUNK):
        output.feed(False, data[at:at + CHUNK])
    output.finish()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    output.close()
    return cpu, wall


def redaction_rows(size: int = 50 * MiB, rounds: int = 3) -> list[Row]:
    data = mixed_output(size)
    ingest_seconds(data[: 4 * MiB], redact=True)  # compile the formats, warm the caches
    samples: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(rounds):  # interleaved: load from elsewhere falls on both alike
        for redact in (True, False):
            samples[redact].append(ingest_seconds(data, redact=redact))
    mib = size / MiB

    def row(key: str, label: str, redact: bool) -> Row:
        cpu = statistics.median(c for c, _ in samples[redact])
        wall = statistics.median(w for _, w in samples[redact])
        return Row(key, label, GROUP, value=round(mib / cpu, 1), unit="MiB/s", n=rounds,
                   note=f"{cpu / mib * 1000:.1f} ms CPU per MiB; wall {mib / wall:.1f} MiB/s")

    return [row("redact_ingest", "ours: redacted into the spool", True),
            row("redact_floor", "floor: the spool alone (redact: false)", False)]


if __name__ == "__main__":
    size = int(sys.argv[1]) * MiB if len(sys.argv) > 1 else 50 * MiB
    for r in redaction_rows(size):
        print(f"{r.label}: {r.value} {r.unit} ({r.note})")
