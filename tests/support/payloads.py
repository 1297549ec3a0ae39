"""Shell- and option-injection payloads for parameter values.

`PAYLOADS` is generated combinatorially (valid-looking prefixes x operators x
actions, plus hand-written special cases) and deduplicated in a stable order.

Payloads that try to create a file use the literal token `CANARY` where the
file's path goes. A test picks a canary path it can check afterwards and calls
`payloads(canary_path)`, which substitutes it:

    for value in payloads(str(tmp_path / "canary")):
        ...run the command with value...
    assert not (tmp_path / "canary").exists()

Every payload must either be rejected by validation or reach the command as
exactly one literal argument; no payload may ever create the canary.
"""

from __future__ import annotations

CANARY = "CANARY"

# Values that are valid for some parameter type, so a payload appended to them
# gets past a check that only looks at the start of the value.
PREFIXES = ["", "/tmp", "/var/log", "nginx", "nginx.service", "web-1", "5", "all"]

# Ways a shell could be talked into running a second command.
OPERATORS = [
    ";",
    " ; ",
    "&&",
    " && ",
    "||",
    " || ",
    "|",
    " | ",
    "&",
    " & ",
    "\n",
    "\r\n",
    "\r",
    "\t;",
    "\x00;",
    "\uff1b",  # FULLWIDTH SEMICOLON
    "\uff06\uff06",  # FULLWIDTH AMPERSAND x2
    "\uff5c",  # FULLWIDTH VERTICAL LINE
    "\u037e",  # GREEK QUESTION MARK (looks like ';')
    "\u2028",  # LINE SEPARATOR
    "\u0085",  # NEXT LINE
]

ACTIONS = [
    f"touch {CANARY}",
    f"echo pwned > {CANARY}",
    f"sh -c 'touch {CANARY}'",
    f"touch${{IFS}}{CANARY}",
]

# Command substitution and similar wrappers; `{}` is replaced by an action.
WRAPPERS = [
    "`{}`",
    "$({})",
    '"$({})"',
    "'$({})'",
    "$(\n{}\n)",
    "${{x:-$({})}}",
    "'; {}; '",
    '"; {}; "',
    "'\"; {}; #",
    "\\'; {}; #",
    "<({})",
    ">({})",
]

SPECIAL = [
    # Option injection: quoting does not help against these.
    f"--output={CANARY}",
    f"-oProxyCommand=touch {CANARY}",
    f"-oProxyCommand=sh -c 'touch {CANARY}'",
    f"--exec=touch {CANARY}",
    f"-exec touch {CANARY} ;",
    f"--files0-from={CANARY}",
    f"--log-file={CANARY}",
    "-rf",
    "--help",
    "-n 100000000",
    "--lines=100000000",
    "-f",
    "--follow",
    "--format={{.ID}}",
    "-",
    "--",
    # Globs and tilde expansion.
    "*",
    "/*",
    "/etc/*",
    "?",
    "[a-z]*",
    "/tmp/{a,b}",
    "~",
    "~root",
    "~/.ssh/id_rsa",
    # Redirections.
    f"> {CANARY}",
    f">> {CANARY}",
    f"/tmp > {CANARY}",
    f"nginx >{CANARY}",
    f"5>{CANARY}",
    f"2>{CANARY}",
    "< /etc/passwd",
    f"/tmp 2>&1 >{CANARY}",
    # Variables and expansions.
    "$HOME",
    "${HOME}",
    "$IFS",
    f"${{IFS}}touch${{IFS}}{CANARY}",
    "$((1+1))",
    "$0",
    "$$",
    "!!",
    # Quotes and escapes.
    "'",
    '"',
    "\\",
    "'\\''",
    "\\x27",
    # Path traversal and odd paths.
    "/var/log/../../etc/shadow",
    "/var/log/..",
    "../../etc/passwd",
    "..",
    "/tmp/./../etc",
    "//etc//passwd",
    "/var/logx",
    "relative/path",
    # Whitespace and control characters alone.
    "",
    " ",
    "\t",
    "\n",
    "\r",
    "\x00",
    "\x1b[31m",
    "\x7f",
    f"/tmp\x00; touch {CANARY}",
    f"nginx\ntouch {CANARY}",
    # Unicode look-alikes and invisible characters.
    "\u2010rf",  # HYPHEN
    "\u2212rf",  # MINUS SIGN
    "\uff0drf",  # FULLWIDTH HYPHEN-MINUS
    "\u2013help",  # EN DASH
    "nginx\u200b",  # ZERO WIDTH SPACE
    "nginx\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\ufeffnginx",  # BYTE ORDER MARK
    "\u2066nginx\u2069",  # bidi isolates
    "\uff0ftmp",  # FULLWIDTH SOLIDUS
    "\u0438nginx",  # Cyrillic
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "\u0665",  # ARABIC-INDIC DIGIT FIVE
    "1_000",
    " 5",
    "5 ",
    "+5",
    "0x10",
    "1e3",
    # Long values.
    "a" * 300,
    "/" + "a/" * 200,
    "9" * 400,
]


def _generate() -> list[str]:
    generated: list[str] = []
    for prefix in PREFIXES:
        for operator in OPERATORS:
            for action in ACTIONS:
                generated.append(f"{prefix}{operator}{action}")
        for wrapper in WRAPPERS:
            for action in ACTIONS[:2]:
                generated.append(prefix + wrapper.format(action))
    generated.extend(SPECIAL)
    return list(dict.fromkeys(generated))


PAYLOADS: list[str] = _generate()


def payloads(canary: str) -> list[str]:
    """`PAYLOADS` with the literal token CANARY replaced by `canary` (a file path)."""
    return list(dict.fromkeys(p.replace(CANARY, canary) for p in PAYLOADS))
