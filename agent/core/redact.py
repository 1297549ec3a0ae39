"""Secrets in command output are replaced before the output reaches a model, a client or the
audit log.

The patterns come from Yelp's detect-secrets (Apache-2.0, the secret scanner behind many
pre-commit set-ups): its regex plugins for cloud access keys (AWS, Azure storage), tokens
(GitHub, GitLab, Slack, Stripe, OpenAI, npm, PyPI, SendGrid, Twilio, Mailchimp, Square,
Discord, Telegram), JSON Web Tokens and passwords in URLs (`scheme://user:password@`).
We use its pattern set rather than our own so the list is kept up to date by people who
study leaked secrets; we leave out its entropy and keyword plugins (hashes, container
IDs and ordinary `password=` prose in command output are not secrets to hide, and those
plugins are slow) and its verification (no network). detect-secrets recognises a private
key by its BEGIN line only; here the whole PEM block is replaced, from BEGIN to END or to
the end of the text when the END has not arrived yet.

A `Redactor` works on text of any size in one call, and keeps one bit of state between
calls (`inside_key`): whether a private key block is still open, so output read in
pieces (live lines, pages) is redacted like the whole.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detect_secrets.plugins.base import RegexBasedDetector

PRIVATE_KEY = "Private Key"
JWT = "JSON Web Token"  # detect-secrets' JwtTokenDetector.secret_type
# BEGIN ... PRIVATE KEY (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK, SSH2 ENCRYPTED).
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----")
# How far back a page looks to know whether it starts inside a key (keys are a few KiB).
KEY_LOOKBACK = 64 * 1024


def marker(kind: str) -> str:
    return f"[REDACTED: {kind}]"


@dataclass(frozen=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]


def plugins() -> tuple[type[RegexBasedDetector], ...]:
    """The detect-secrets plugins we use; imported on first use (requests comes with them,
    and an agent that never shows output need not pay for it at start-up)."""
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    return (
        AWSKeyDetector, AzureStorageKeyDetector, BasicAuthDetector, DiscordBotTokenDetector,
        GitHubTokenDetector, GitLabTokenDetector, MailchimpDetector, NpmDetector,
        OpenAIDetector, PypiTokenDetector, SendGridDetector, SlackDetector,
        SquareOAuthDetector, StripeDetector, TelegramBotTokenDetector, TwilioKeyDetector,
    )


def _patterns() -> list[_Pattern]:
    found: list[_Pattern] = []
    for plugin in (cls() for cls in plugins()):
        for regex in plugin.denylist:
            # detect-secrets matches line by line; we match whole texts, so ^ and $ must
            # mean the start and end of a line.
            found.append(_Pattern(plugin.secret_type,
                                  re.compile(regex.pattern, regex.flags | re.MULTILINE)))
    return found


class Redactor:
    def __init__(self) -> None:
        self._loaded: tuple[list[_Pattern], Any] | None = None

    def _load(self) -> tuple[list[_Pattern], Any]:
        if self._loaded is None:
            from detect_secrets.plugins.jwt import JwtTokenDetector

            self._loaded = (_patterns(), JwtTokenDetector())
        return self._loaded

    def redact(self, text: str, *, inside_key: bool = False) -> tuple[str, Counter[str], bool]:
        """`text` with secrets replaced, what was replaced by kind, and whether a private key
        block is still open at its end (pass it as `inside_key` for the text that follows).

        Give whole lines: a secret cut in two by the caller cannot be recognised."""
        counts: Counter[str] = Counter()
        text, inside_key = self._keys(text, inside_key, counts)
        spans = sorted(self._spans(text), key=lambda s: (s[0], -s[1]))
        if not spans and JWT_PREFIX not in text:
            return text, counts, inside_key
        for value in set(self._load()[1].analyze_string(text)):
            start = text.find(value)
            while start >= 0:
                # detect-secrets reports header.payload.; the signature goes too.
                tail = _JWT_TAIL.match(text, start + len(value))
                spans.append((start, tail.end() if tail else start + len(value), JWT))
                start = text.find(value, start + len(value))
            spans.sort(key=lambda s: (s[0], -s[1]))
        pieces: list[str] = []
        at = 0
        for start, end, kind in spans:
            if start < at:
                continue  # inside a span already replaced
            pieces += [text[at:start], marker(kind)]
            counts[kind] += 1
            at = end
        pieces.append(text[at:])
        return "".join(pieces), counts, inside_key

    def _spans(self, text: str) -> Iterator[tuple[int, int, str]]:
        for pattern in self._load()[0]:
            for match in pattern.regex.finditer(text):
                yield (*_secret_span(match), pattern.kind)

    def _keys(self, text: str, inside: bool, counts: Counter[str]) -> tuple[str, bool]:
        pieces: list[str] = []
        at = 0
        while True:
            if not inside:
                begin = _KEY_BEGIN.search(text, at)
                if begin is None:
                    break
                pieces.append(text[at:begin.start()])
                at = begin.start()
                inside = True
            end = _KEY_END.search(text, at)
            pieces.append(marker(PRIVATE_KEY))
            counts[PRIVATE_KEY] += 1
            if end is None:
                return "".join(pieces), True  # the rest of the text is key material
            at = end.end()
            inside = False
        pieces.append(text[at:])
        return "".join(pieces), False

    @staticmethod
    def key_open_after(line: str, inside: bool) -> bool:
        """Whether a key block is open after `line`, given whether it was before it."""
        begin = max((m.end() for m in _KEY_BEGIN.finditer(line)), default=-1)
        end = max((m.end() for m in _KEY_END.finditer(line)), default=-1)
        return inside if begin == end == -1 else begin > end

    @staticmethod
    def inside_key_at(before: str) -> bool:
        """Given text just before a point, is that point inside a private key block?"""
        begin = max((m.end() for m in _KEY_BEGIN.finditer(before)), default=-1)
        end = max((m.end() for m in _KEY_END.finditer(before)), default=-1)
        return begin > end


JWT_PREFIX = "eyJ"
_JWT_TAIL = re.compile(r"[A-Za-z0-9_\-+/=.]*")


def _secret_span(match: re.Match[str]) -> tuple[int, int]:
    """The part of a match that is the secret.

    Patterns that need context around a secret capture it in group 1 (the password of
    `://user:password@`, the key after `aws_secret_access_key = '`, an npm token after
    `_authToken=`): then only the group is replaced, the context stays readable. Other
    groups (GitHub's `(ghp|gho|...)_` prefix) are part of the secret: the whole match goes.
    """
    if match.re.groups and match.group(1):
        start, end = match.span(1)
        if start > match.start() and match.end() - end <= 1:
            return start, end
    return match.span()
