"""Reading audit lines as a strict JSON reader would: NaN and Infinity are errors."""

from __future__ import annotations

import json
from typing import Any


def strict(line: str) -> dict[str, Any]:
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    record = json.loads(line, parse_constant=refuse)
    assert isinstance(record, dict)
    return record
