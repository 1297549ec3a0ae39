"""A real rsyslogd (Debian's) on 127.0.0.1 for tests: its own config, no system daemon.

It listens with imtcp on a free loopback port (optionally TLS through the ossl driver,
with a CA and a certificate for 127.0.0.1 made here) and writes every message it gets to
a file as `APP-NAME PROCID MSGID TIMESTAMP MSG`, which the tests read back. Stopping it
(SIGTERM) and starting it again on the same port and file is a receiver that was down.

The `rsyslog` fixture is registered for every test by tests/conftest.py (pytest_plugins):
a test names it as an argument, and imports only `Rsyslog` or `Received` for its types.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.components import require_executable
from tests.support.tailnet import free_port
from tests.support.waiting import wait_until_sync

READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Received:
    """One message as rsyslog parsed and wrote it."""

    app: str
    procid: str
    msgid: str
    timestamp: str
    line: str  # MSG: the record's line as the agent wrote it

    @property
    def record(self) -> dict[str, Any]:
        value = json.loads(self.line)
        assert isinstance(value, dict)
        return value


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path, name: str = "test CA") -> Certificates:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    files = Certificates(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


class Rsyslog:
    def __init__(self, directory: Path, *, tls: Certificates | None = None) -> None:
        self.binary = require_executable("rsyslogd", "apt-get install rsyslog "
                                         "(and rsyslog-openssl for TLS)", "/usr/sbin/rsyslogd")
        self.directory = directory
        self.tls = tls
        self.port = free_port()
        self.output = directory / "received.log"
        self.config = directory / "rsyslog.conf"
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "work").mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._config())

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def _config(self) -> str:
        driver = ""
        listener = 'module(load="imtcp")'
        if self.tls is not None:
            driver = (f'global(DefaultNetstreamDriver="ossl" '
                      f'DefaultNetstreamDriverCAFile="{self.tls.ca}" '
                      f'DefaultNetstreamDriverCertFile="{self.tls.cert}" '
                      f'DefaultNetstreamDriverKeyFile="{self.tls.key}")')
            listener = ('module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
                        'StreamDriver.AuthMode="anon")')
        return f"""
global(workDirectory="{self.directory / 'work'}" maxMessageSize="64k")
{driver}
{listener}
template(name="received" type="string"
         string="%app-name% %procid% %msgid% %timereported:::date-rfc3339% %msg%\\n")
input(type="imtcp" address="127.0.0.1" port="{self.port}" ruleset="audit")
ruleset(name="audit") {{
  action(type="omfile" file="{self.output}" template="received")
}}
"""

    def start(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.config), "-i",
             str(self.directory / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "rsyslogd.err", "ab"))  # noqa: SIM115
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: "
                                   f"{(self.directory / 'rsyslogd.err').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until_sync(listening, READY_TIMEOUT, f"rsyslogd listening on 127.0.0.1:{self.port}",
                        every=0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def received(self) -> list[Received]:
        if not self.output.exists():
            return []
        found = []
        for text in self.output.read_text().splitlines():
            app, procid, msgid, timestamp, line = text.split(" ", 4)
            found.append(Received(app, procid, msgid, timestamp, line))
        return found

    def wait_for(self, done: Callable[[list[Received]], bool],
                 timeout: float = 60.0) -> list[Received]:
        """The messages once `done(messages)` holds (or the last seen, after `timeout`: the
        caller's assert says what is missing)."""
        def arrived() -> tuple[list[Received]] | None:
            got = self.received()
            return (got,) if done(got) else None  # a tuple: true even for no messages

        try:
            (got,) = wait_until_sync(arrived, timeout, "rsyslogd receiving the messages",
                                     every=0.1)
        except AssertionError:
            return self.received()
        return got


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Callable[..., Rsyslog]]:
    """Start rsyslogd (`rsyslog(tls=True)` for TLS); stopped after the test."""
    started: list[Rsyslog] = []

    def start(*, tls: bool = False) -> Rsyslog:
        directory = tmp_path / f"rsyslog-{len(started)}"
        server = Rsyslog(directory, tls=make_certificates(directory / "tls") if tls else None)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
