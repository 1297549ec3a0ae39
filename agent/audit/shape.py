"""Shaping one audit record into one bounded, strict-JSON line, in canonical form.

A caller chooses most of what a record holds (command name, host, parameters), so
nothing in it may grow without bound: every string longer than MAX_VALUE_CHARS keeps
its start and says how long it was and the sha256 of the whole value; mappings and
lists keep their first MAX_ITEMS entries; and if the record is still longer than
MAX_RECORD_BYTES its biggest fields are replaced by such a summary, biggest first (never
the call's recording, `cast`: bounded by construction, see agent/audit/recorder.py).
The sha256 lets an investigator match a cut value against a copy from elsewhere.

NaN and Infinity are not JSON: the service refuses them in arguments, and any that
reach a record anyway become strings, so `json.dumps(..., allow_nan=False)` never
fails and every line stays strict JSON. Lines are pure ASCII (JSON escapes), so no
value can break a line for any reader.

`canonical` is the one canonical JSON of the project: keys sorted, no spaces, ASCII only.
A record's line is its canonical JSON, so the hash of the line as written and the hash of
the record parsed back and written again are the same (agent.audit.chain links each
record to the previous one by that hash).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

MAX_VALUE_CHARS = 1000
MAX_ITEMS = 50
MAX_DEPTH = 8
MAX_RECORD_BYTES = 4096
PREVIEW_CHARS = 200
# Never cut: they say which call this is and who made it.
_CORE_FIELDS = ("time", "event", "call", "identity")
# Never summarised to make a record fit: a call's recording (its id, sha256 and, for a
# small one, the cast itself: at most recorder.INLINE_MAX bytes, so never cut by `clip`),
# and the record's link in the hash chain (agent.audit.chain: `seq` and `prev`).
_KEPT_WHOLE = (*_CORE_FIELDS, "cast", "seq", "prev")
MAX_KEY_CHARS = 100


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def cut(text: str, keep: int = PREVIEW_CHARS) -> str:
    """`text` shortened to `keep` characters, with its length and the sha256 of all of it."""
    return f"{text[:keep]}...[cut: {len(text)} chars, sha256 {digest(text)}]"


def canonical(value: Any, *, strict: bool = False) -> str:
    """The canonical JSON text of `value`: keys sorted, no spaces, ASCII only (every other
    character escaped), so equal values give equal text. `strict` is for a record, which
    holds only JSON (raises ValueError or TypeError otherwise); a caller's value, hashed for
    what a record had to cut, may hold anything: what JSON cannot say becomes its repr."""
    if strict:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          default=repr)
    except (ValueError, RecursionError, TypeError):
        return repr(value)


def summary(value: Any, *, preview: bool = True) -> dict[str, Any]:
    """What a record keeps of a value it cannot hold whole: length, sha256, a preview."""
    text = canonical(value)
    kept: dict[str, Any] = {"cut": True, "length": len(text), "sha256": digest(text)}
    if preview:
        kept["preview"] = text[:PREVIEW_CHARS]
    return kept


def clip(value: Any, depth: int = 0) -> Any:
    """A copy of `value` in which no string, mapping or list is longer than its bound."""
    if isinstance(value, str):
        return cut(value) if len(value) > MAX_VALUE_CHARS else value
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return summary(value)
    if isinstance(value, Mapping):
        items = list(value.items())
        clipped = {_key(k): clip(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            clipped["..."] = f"[{len(items) - MAX_ITEMS} more keys]"
        return clipped
    if isinstance(value, list | tuple):
        listed = [clip(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            listed.append(f"[{len(value) - MAX_ITEMS} more items]")
        return listed
    return clip(repr(value), depth)


def _key(key: Any) -> str:
    text = str(key)
    return cut(text, 60) if len(text) > MAX_KEY_CHARS else text


def bounded(value: Any, depth: int = 0) -> bool:
    """Whether `clip` would give back `value` unchanged: only dicts with string keys,
    lists, strings, ints, bools, None and finite floats (exactly those types), each within
    its bound. Looks without copying; a record of a call almost always is."""
    if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
        return False
    if type(value) is dict:
        for key in value:
            if type(key) is not str or len(key) > MAX_KEY_CHARS:
                return False
        items: Any = value.values()
    elif type(value) is list:
        items = value
    else:
        return False
    for item in items:
        kind = type(item)
        if kind is str:
            if len(item) > MAX_VALUE_CHARS:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict or kind is list:
            if not bounded(item, depth + 1):
                return False
        elif not (kind is int or kind is bool or item is None):
            return False
    return True


def _dumps(record: Mapping[str, Any]) -> str:
    return canonical(record, strict=True)


def shape(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` cut to fit one line of at most about MAX_RECORD_BYTES (`_dumps` of it)."""
    return shape_line(record)[0]


def shape_line(record: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """`shape(record)` and its line (its canonical JSON, computed once)."""
    plain = dict(record)
    # No copy when clipping would change nothing. (Depth -1: `clip` sees the record's values
    # at depth 0. A record with a key that is no string, or a long one, is clipped, as ever.)
    shaped = plain if bounded(plain, -1) else {str(k): clip(v) for k, v in plain.items()}
    line = _dumps(shaped)
    if len(line) <= MAX_RECORD_BYTES:
        return shaped, line
    fitted = _fit(record, shaped)
    return fitted, _dumps(fitted)


def _fit(record: Mapping[str, Any], shaped: dict[str, Any]) -> dict[str, Any]:
    """`shaped` (too long a line) made to fit, biggest fields first."""
    # Biggest fields first, summarised from the original value (so the hash is of what
    # the caller really sent), until the line fits.
    sizes = sorted(((len(_dumps({k: v})), k) for k, v in shaped.items()
                    if k not in _KEPT_WHOLE), reverse=True)
    for _, key in sizes:
        shaped[key] = summary(record[key])
        line = _dumps(shaped)
        if len(line) <= MAX_RECORD_BYTES:
            return shaped
    for key in list(shaped):
        if key not in _KEPT_WHOLE:
            shaped[key] = summary(record[key], preview=False)
    return {k: (cut(v, 60) if isinstance(v, str) and len(v) > 100 else v)
            for k, v in shaped.items()}
