"""Files every SSH connection needs (known_hosts, the client's private keys), parsed once
per version of the file instead of once per connection.

A 1,000-line known_hosts took about 45 ms to parse, in the event loop, for every one of
a 1,000-host fan-out's connections (the cold fan-out's CPU per host grew with N: 3.2x its
SSH-layer floor at 1,000 hosts); an encrypted private key costs a bcrypt KDF each time.
Now a connection costs one `fstat` per file: the parsed value is reused while the file's
device, inode, size and modification time are the same, so an edit (`ssh-keygen -R`,
an editor), an atomic replace (`tailnet-agent trust`, from this process or another) or
a removal is seen by the next connection. A failure to read or parse is never kept: the
next connection tries again and reports it again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

# (st_dev, st_ino, st_size, st_mtime_ns): a different value means a different file content
Signature = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Entry(Generic[T]):
    signature: Signature
    value: T


class ParsedFiles(Generic[T]):
    """`parse(path, data, *extra)` of the file at a path, kept while the file is unchanged.

    `extra` is part of the key (a key's passphrase: the same file read with another
    passphrase is another value). Entries are few (one per file and extra), and an entry
    is replaced when its file changes, so nothing here grows with connections."""

    def __init__(self, parse: Callable[..., T], *, missing: Callable[[], T] | None = None
                 ) -> None:
        self._parse = parse
        self._missing = missing  # the value of a file that does not exist (None: raise)
        self._entries: dict[tuple[Path, Hashable], _Entry[T]] = {}

    def get(self, path: Path, *extra: Hashable) -> T:
        key = (path, extra)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._entries.pop(key, None)
            if self._missing is None:
                raise
            return self._missing()
        try:
            # The signature and the bytes come from the same open file: a replace between
            # the two cannot pair one version's signature with another's content.
            st = os.fstat(fd)
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._entries.get(key)
            if cached is not None and cached.signature == signature:
                return cached.value
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read()
        finally:
            os.close(fd)
        value = self._parse(path, data, *extra)
        self._entries[key] = _Entry(signature, value)
        return value

    def forget(self) -> None:
        self._entries.clear()
