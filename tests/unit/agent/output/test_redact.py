"""Redaction as output arrives (agent/output/redact.py): whole texts, and streams cut anywhere."""

from __future__ import annotations

import subprocess

import pytest

from agent.output.redact import HOLD, MAX_CARRY, Redactor, StreamRedactor
from agent.output.secret_formats import PRIVATE_KEY
from tests.support.secret_corpus import corpus, leaks
from tests.support.secrets_planted import (
    AWS_KEY_ID,
    GITHUB_TOKEN,
    URL_WITH_PASSWORD,
    key_body,
    private_key,
)

REDACTOR = Redactor()


def streamed(data: bytes, cuts: list[int]) -> tuple[bytes, StreamRedactor]:
    """`data` fed in pieces cut at `cuts`, then finished."""
    stream = StreamRedactor()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        out.append(stream.feed(data[start:end]))
    out.append(stream.finish())
    return b"".join(out), stream


def test_planted_secrets_are_replaced_and_counted() -> None:
    pem = private_key()
    text = (f"config dump\n{pem}key id {AWS_KEY_ID} in use\nremote {URL_WITH_PASSWORD}\n"
            f"token={GITHUB_TOKEN}\n"
            "aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'\nend\n")
    shown, counts = REDACTOR.redact(text)
    for secret in [AWS_KEY_ID, "s3cr3t-Pa55", GITHUB_TOKEN, "wJalrXUtnFEMI", *key_body(pem)]:
        assert secret not in shown
    assert counts == {PRIVATE_KEY: 1, "AWS Access Key": 1, "Basic Auth Credentials": 1,
                      "GitHub Token": 1, "Token": 1}
    # The context stays readable: only the secret itself is replaced.
    assert "https://deploy:[REDACTED: Basic Auth Credentials]@git.example.com" in shown
    assert "aws_secret_access_key = [REDACTED: Token]\n" in shown
    assert shown.startswith("config dump\n[REDACTED: Private Key]\nkey id [REDACTED: AWS")
    assert shown.endswith("\nend\n")


@pytest.mark.parametrize("planted", corpus(), ids=lambda p: p.name)
def test_a_secret_cut_at_any_byte_between_two_chunks_is_redacted(planted: object) -> None:
    from tests.support.secret_corpus import Planted

    assert isinstance(planted, Planted)
    data = f"before it: {planted.text} and after\nnext line\n".encode()
    whole, _ = streamed(data, [])
    start = data.index(planted.first_secret.encode())
    for cut in range(start - 3, start + len(planted.first_secret) + 3):
        out, _ = streamed(data, [cut])
        assert out == whole, cut
        assert not leaks(planted, out.decode())


def test_one_byte_at_a_time_is_the_same_as_all_at_once() -> None:
    pem = private_key()
    text = (f"a {GITHUB_TOKEN} b\n{pem}password: hunter2-is-long\nAuthorization: Bearer "
            "abcdefghijklmnop1234\nend without a newline")
    data = text.encode()
    out, stream = streamed(data, list(range(1, len(data))))
    assert out.decode() == REDACTOR.redact(text)[0]
    assert stream.counts == {"GitHub Token": 1, PRIVATE_KEY: 1, "Password": 1,
                             "Authorization Header": 1}


def test_complete_lines_go_out_at_once_and_a_partial_line_waits_for_its_end() -> None:
    stream = StreamRedactor()
    assert stream.feed(b"first line\nsecond li") == b"first line\n"
    assert stream.held == len(b"second li")
    assert stream.feed(b"ne\r50%") == b"second line\r"  # a carriage return ends a line too
    assert stream.finish() == b"50%"


def test_a_long_line_goes_out_but_its_tail_and_never_half_a_secret() -> None:
    stream = StreamRedactor()
    token = "ghp_" + "A1b2C3d4" * 5
    line = ("x" * (MAX_CARRY + 100) + " ").encode()
    # The held tail's edge falls inside the token: the token goes out whole, redacted.
    edge = len(line) + 20
    data = line + token.encode() + b" " + b"y" * (HOLD + 20 - len(token) - 1)
    assert len(data) - edge == HOLD
    out = stream.feed(data)
    assert token.encode() not in out and out.endswith(b"[REDACTED: GitHub Token]")
    assert stream.held <= HOLD
    rest = stream.feed(b"z\n") + stream.finish()
    assert (out + rest).decode() == REDACTOR.redact(data.decode() + "z\n")[0]
    assert stream.held == 0


def test_a_secret_still_growing_at_a_long_line_cut_is_dropped_as_it_continues() -> None:
    stream = StreamRedactor()
    out = stream.feed(b"password=" + b"s" * (MAX_CARRY + HOLD))
    assert out == b"password=[REDACTED: Password]" and stream.held == 0
    out = stream.feed(b"s" * 1000 + b" and then\n")
    assert out == b" and then\n"


def test_the_carry_stays_bounded_whatever_arrives() -> None:
    stream = StreamRedactor()
    for _ in range(200):
        stream.feed(b"no line end here, " * 1000)
        assert stream.held <= MAX_CARRY


def test_a_key_block_is_replaced_whole_across_chunks_and_never_released() -> None:
    pem = private_key().encode()
    data = b"before\n" + pem + b"after\n"
    for cut in range(0, len(data), 7):
        out, _ = streamed(data, [cut, min(cut + 5, len(data))])
        assert out == b"before\n[REDACTED: Private Key]\nafter\n", cut
    stream = StreamRedactor()
    assert stream.feed(b"x\n" + pem[: len(pem) // 2]) == b"x\n[REDACTED: Private Key]"
    assert stream.finish() == b""  # an END that never came: the rest was key material


def test_a_key_on_one_line_of_json_is_replaced() -> None:
    text = ('{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC'
            '\\n-----END PRIVATE KEY-----\\n", "client_email": "a@b.iam.gserviceaccount.com"}')
    shown, counts = REDACTOR.redact(text)
    assert "MIIEv" not in shown and counts == {PRIVATE_KEY: 1}
    assert shown.endswith('\\n", "client_email": "a@b.iam.gserviceaccount.com"}')


def test_values_that_name_a_secret_without_being_one_stay() -> None:
    for text in ["password: ${DB_PASSWORD}", "secret: true", "passwd:         files systemd",
                 "password = ********", "token: <your token here>", "password_file=/run/x",
                 "[sudo] password for alice:", "Failed password for root from 10.0.0.1"]:
        assert REDACTOR.redact(text) == (text, {}), text


@pytest.mark.parametrize("command", [
    "ps auxww", "df -h", "ip addr", "ls -l /usr/bin", "dpkg -l", "ss -tanp", "mount",
    "free -h", "uname -a", "cat /etc/passwd", "env -i PATH=/usr/bin:/bin sh -c env",
    "find /usr/share/doc -maxdepth 2 -name '*.gz'", "sha256sum /usr/bin/ls /usr/bin/cp",
])
def test_ordinary_command_output_is_left_alone(command: str) -> None:
    output = subprocess.run(command, shell=True, capture_output=True, text=True).stdout
    assert output
    shown, counts = REDACTOR.redact(output)
    assert counts == {} and shown == output


def test_no_format_matches_across_a_line_end() -> None:
    # The carry releases whole lines: a format that could span two would be cut there.
    from agent.output.redact import _engine

    engine = _engine()
    for planted in corpus():
        text = planted.text.encode()
        for at, byte in enumerate(text):
            if byte in b" =:,\"'":
                for end in (b"\n", b"\r"):
                    variant = text[:at] + end + text[at + 1:]
                    for span in engine.spans(variant):
                        assert end not in variant[span.match_start:span.match_end], (
                            planted.name, variant)


def test_every_format_redacts_at_most_its_one_named_group() -> None:
    from agent.output.redact import _engine

    engine = _engine()
    for regex in engine.regexes:
        assert regex.groups == len(regex.groupindex) <= 1


@pytest.mark.parametrize("planted", corpus(), ids=lambda p: p.name)
def test_a_whole_text_is_redacted_as_a_stream_would(planted: object) -> None:
    """Redactor.redact answers a text without any format at once (audit records are mostly
    short clean strings); with a secret anywhere, or clean, it answers what a stream does."""
    from tests.support.secret_corpus import Planted

    assert isinstance(planted, Planted)
    for text in (planted.text, f"host web-001 said: {planted.text}\nand more\n",
                 f"{planted.text}\n" * 3, "web-001", "call 3f2a9c0d11e4", "", "line\r\nend"):
        shown, counts = REDACTOR.redact(text)
        whole, stream = streamed(text.encode(), [])
        assert shown == whole.decode(), text
        assert counts == stream.counts


def _each(value: object) -> object:
    """What scrubbing means, string by string (the reference `Redactor.scrub` must match)."""
    if isinstance(value, str):
        return REDACTOR.redact(value)[0]
    if isinstance(value, dict):
        return {k: _each(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_each(v) for v in value]
    return value


@pytest.mark.parametrize("planted", corpus(), ids=lambda p: p.name)
def test_a_record_is_scrubbed_as_each_of_its_strings_would_be(planted: object) -> None:
    """One scan of all a record's strings decides nothing a scan of each would not: the
    planted secret is found wherever it sits among clean strings, and clean neighbours and
    keys stay as they are."""
    from tests.support.secret_corpus import Planted

    assert isinstance(planted, Planted)
    clean = {"call": "3f2a9c0d11e4", "host": "web-001", "tags": ["tag:web", "tag:prod"],
             "exit": 0, "ok": True, "none": None}
    for record in ({**clean, "parameters": {"path": planted.text}},
                   {**clean, "tags": ["tag:web", planted.text]},
                   {planted.text: "a key is not scrubbed", **clean},
                   {**clean, "pair": ("first", planted.text, 3)}):
        scrubbed = REDACTOR.scrub(record)
        assert scrubbed == _each(record)
        if planted.text in str(list(record.values())):
            for secret in planted.secrets:
                assert secret not in str(list(scrubbed.values()))


def test_a_clean_record_comes_back_as_it_is() -> None:
    record = {"call": "3f2a9c0d11e4", "host": "web-001", "parameters": {"unit": "nginx"},
              "argv": ["systemctl", "status", "nginx"], "status": 0}
    assert REDACTOR.scrub(record) is record
    assert REDACTOR.scrub("web-001") == "web-001"
    assert REDACTOR.scrub(7) == 7


def test_a_format_seen_across_two_strings_redacts_neither_on_its_own() -> None:
    """Joined by a line end, the end of one string and the start of the next could look
    like one secret to the first scan; then each string is redacted alone, and neither is."""
    record = {"a": "password", "b": "=hunter2hunter2", "c": f"{AWS_KEY_ID[:10]}",
              "d": f"{AWS_KEY_ID[10:]}"}
    assert REDACTOR.scrub(record) == record == _each(record)
    assert REDACTOR.scrub({"x": ["web", f"key {AWS_KEY_ID}"]}) == {
        "x": ["web", "key [REDACTED: AWS Access Key]"]}
