"""Hypothesis strategies from the JSON Schemas our MCP tools publish.

hypothesis-jsonschema 0.23.1 (its newest release) fails on Hypothesis 6.170
(`'many' object has no attribute 'more'`), so this covers the subset pydantic
emits for our tools: object/properties/required/additionalProperties, anyOf,
enum, string, integer, number, boolean, null, array. An unknown construct fails
loudly instead of being fuzzed wrongly. `hints` mixes known-good values into
strings by property name, so some examples get past validation and run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)


def from_schema(
    schema: Mapping[str, Any],
    hints: Mapping[str, Sequence[Any]] | None = None,
    name: str = "",
) -> st.SearchStrategy[Any]:
    hints = hints or {}
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s, hints, name) for s in schema["anyOf"]))
    kind = schema.get("type")
    if kind == "string":
        text = st.text(max_size=int(schema.get("maxLength", 200)))
        known = hints.get(name)
        return st.one_of(st.sampled_from(list(known)), text) if known else text
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), hints, name), max_size=5)
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        fixed = st.fixed_dictionaries(
            {k: from_schema(v, hints, k) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, hints, k) for k, v in properties.items()
                      if k not in required},
        )
        if schema.get("additionalProperties") is True or (
            not properties and "additionalProperties" not in schema and name
        ):
            extra_keys = st.sampled_from(list(hints.get(f"{name}.keys", ()))) | st.text(
                max_size=20) if hints.get(f"{name}.keys") else st.text(max_size=20)
            extra = st.dictionaries(extra_keys, JSON_VALUES | st.sampled_from(
                list(hints.get(f"{name}.values", ())) or [None]), max_size=4)
            return st.tuples(fixed, extra).map(lambda pair: {**pair[1], **pair[0]})
        return fixed
    if not schema:
        return JSON_VALUES
    raise ValueError(f"schema construct not covered by the fuzzer: {dict(schema)}")
