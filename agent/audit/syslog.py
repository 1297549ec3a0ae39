"""The syslog wire of the audit shipper: RFC 5424 messages, octet-counted (RFC 6587), over
TCP or TLS (RFC 5425).

Each record is one message: facility authpriv, severity info, APP-NAME `tailnet-agent`,
PROCID the agent's pid, MSGID the record's event, no structured data, and the record's
line (canonical JSON, ASCII) as MSG; the TIMESTAMP is the record's own `time`. The framing
is the message's length in bytes and a space before it. That is all the standard asks, so
it is written here: a library (rfc5424-logging-handler) would bring a blocking logging
handler to wrap in the shipper's own queue anyway.
"""

from __future__ import annotations

import fcntl
import socket
import ssl
import struct
import termios
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PRI = 10 * 8 + 6  # authpriv.info
APP_NAME = "tailnet-agent"
CONNECT_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0  # a receiver that takes no bytes for this long is dropped


@dataclass(frozen=True)
class Sink:
    """Where records go: `tcp://HOST:PORT` or `tls://HOST:PORT` (settings check the form)."""

    url: str
    ca: Path | None = None  # CA file for tls:// (default: the system's)

    @property
    def tls(self) -> bool:
        return self.url.startswith("tls://")

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
        """A connection to the receiver (TLS handshake done); OSError when it fails."""
        host, port = self.address
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.tls:
            return sock
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        try:
            return context.wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError):
            sock.close()
            raise


def frame(line: bytes, record: Mapping[str, Any], hostname: str, pid: int) -> bytes:
    """A record's line as one octet-counted RFC 5424 message."""
    stamp = record.get("time")
    event = str(record.get("event") or "")
    msgid = event if event and len(event) <= 32 and event.isascii() and event.isprintable() \
        and " " not in event else "-"
    header = (f"<{PRI}>1 {stamp if isinstance(stamp, str) and ' ' not in stamp else '-'} "
              f"{hostname} {APP_NAME} {pid} {msgid} - ")
    message = header.encode("ascii") + line.rstrip(b"\n")
    return b"%d " % len(message) + message


def syslog_hostname() -> str:
    """This machine's name as RFC 5424 allows it (printable ASCII, no spaces, 255 at most)."""
    name = "".join(c for c in socket.gethostname() if c.isascii() and c.isprintable()
                   and c != " ")
    return name[:255] or "-"


def closed(sock: socket.socket) -> str | None:
    """Why a readable connection is over, or None: a receiver sends nothing but its close
    (and, over TLS, handshake messages such as session tickets, which are not data)."""
    sock.settimeout(0)
    try:
        data = sock.recv(1)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except (OSError, ssl.SSLError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        sock.settimeout(SEND_TIMEOUT)
    return None if data else "the receiver closed the connection"


def unacknowledged(sock: socket.socket) -> int:
    """Bytes sent on `sock` that the peer's TCP has not acknowledged yet (SIOCOUTQ). With
    TLS these are encrypted bytes, a little more than the plain ones: an underestimate of
    what was acknowledged, never an overestimate."""
    value = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", value)[0])
