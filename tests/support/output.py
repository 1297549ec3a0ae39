"""What a person or a log shipper reads from the agent: no raw Python warning, ever, and in
JSON mode (`--log-format json`) nothing but JSON objects, one per line.

"Warning" (capitalised) is how every Python warning prints (`DeprecationWarning`,
`CryptographyDeprecationWarning`, ...); our own records say "warning" or "WARNING".
"""

from __future__ import annotations

import json


def assert_no_warning(text: str, where: str = "the output") -> None:
    lines = [line for line in text.splitlines() if "Warning" in line]
    assert not lines, f"a raw warning in {where}:\n" + "\n".join(lines) + f"\n--- all:\n{text}"


def assert_json_lines(text: str, where: str = "stderr") -> list[dict[str, object]]:
    """Every line of `text` is one JSON object; return them."""
    entries: list[dict[str, object]] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        assert isinstance(entry, dict), f"line {number} of {where} is not JSON: {line!r}\n{text}"
        entries.append(entry)
    return entries


def assert_clean(stdout: str, stderr: str, *, json_mode: bool) -> None:
    """No warning on either stream; in JSON mode, stdout empty and stderr all JSON."""
    assert_no_warning(stdout, "stdout")
    assert_no_warning(stderr, "stderr")
    if json_mode:
        assert stdout == "", f"stdout in JSON mode:\n{stdout}"
        assert stderr.strip(), "nothing logged in JSON mode: nothing to check"
        assert_json_lines(stderr)
