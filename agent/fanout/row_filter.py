"""run_on_hosts' `filter`: keep the hosts whose parsed output has a row matching a condition.

The language is JMESPath (jmespath.py, the query language of the AWS CLI's `--query`),
not one of ours and never Python's eval: no loops, no variables, no recursion, nothing
but the row it is given. The expression is a JMESPath *condition*, what goes inside a
filter `[? ... ]`, evaluated on each row of a host's parsed output (agent/output/parsing.py;
a parser that gives one object gives one row): `use_percent >= `90``, `mounted_on == '/'
&& use_percent > `80``, `starts_with(unit, 'nginx')`. A row matches when the condition is
true; a host matches when at least one of its rows does, and its result shows the rows
that matched.

Why JMESPath and not CEL (cel-python 0.5.0, as Kubernetes admission rules use CEL):
measured here, cel-python evaluates `use_percent >= 90` in about 1 ms per row (its lark
tree is interpreted in Python) plus 0.4 ms to convert the row, jmespath in about 6 µs:
for `df` on 300 hosts (7 rows each) 2.7 s of the agent's CPU against 13 ms. cel-python
brings lark, pendulum and tzdata (about 5 MB, and jmespath itself) into the executable;
jmespath is 84 KB with no dependency, botocore's, maintained by AWS. CEL's strengths are
its literals (`90` instead of `` `90` ``) and its errors on unknown names and mixed types,
where JMESPath quietly gives null: so those are checked here, before anything runs.

Checked when the call is planned, before anything runs (FilterError, one line each):

- length (MAX_LENGTH characters) and nesting (MAX_DEPTH levels of the parsed tree);
- syntax, with jmespath's own message and where it is;
- every field name is a field of the command's parser (the error names them all), every
  function one of JMESPath's;
- a dry run on a row of the parser's field types (0 for numbers, '' for text): a
  condition that compares text with a number, calls a function with the wrong types or
  gives something other than true or false is refused with what went wrong.

Evaluation is bounded: at most MAX_STEPS interpreter steps per row, no list, object or
string over MAX_ITEMS / MAX_TEXT in any step (a pipe of `[@,@][]` doubles a list each
time), and at most TIME_BUDGET seconds for a whole fan-out. A host whose rows cannot be
evaluated (a null where a function wants text; the budget spent) gets a note instead of a
verdict and is listed as undetermined.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions as jmespath_functions
from jmespath import visitor as jmespath_visitor

from agent.errors import ConfigError
from whitelist import Command
from whitelist.parsers import FieldType, OutputParser

MAX_LENGTH = 400  # characters of an expression
MAX_DEPTH = 24  # levels of its parsed tree
MAX_STEPS = 500  # interpreter steps for one row
MAX_ITEMS = 1000  # elements of a list or object any step makes
MAX_TEXT = 16 * 1024  # characters of a string any step makes
TIME_BUDGET = 2.0  # seconds of evaluation for one fan-out, all hosts together

SYNTAX = ("a JMESPath condition evaluated on each row, e.g. use_percent >= `90` (numbers "
          "in backticks, text in single quotes: mounted_on == '/'; && || ! and functions "
          "like starts_with(unit, 'ssh'))")
_SAMPLE: Mapping[FieldType, Any] = {"integer": 0, "number": 0.0, "text": ""}
_FUNCTIONS = frozenset(jmespath_functions.Functions.FUNCTION_TABLE)


class FilterError(ConfigError):
    """A filter that cannot be used: refused before anything runs."""


class Unevaluable(Exception):
    """A host's rows could not be evaluated (the message says why)."""


class _OverBudget(Exception):
    pass


@dataclass(frozen=True)
class RowFilter:
    """A filter, checked against a command's parser (`compile_filter`)."""

    expression: str
    parser: OutputParser
    fields: frozenset[str]  # the field names it refers to
    tree: Mapping[str, Any] = field(repr=False, compare=False)

    def matching(self, data: Any, tally: FilterTally) -> list[dict[str, Any]]:
        """The rows of one host's parsed output that match (raises Unevaluable)."""
        rows = data if isinstance(data, list) else [data]
        left = TIME_BUDGET - tally.spent
        if left <= 0:
            raise Unevaluable(f"not evaluated: the filter's time budget ({TIME_BUDGET:g} s for "
                              "the whole fan-out) was spent on other hosts")
        started = time.monotonic()
        interpreter = _Bounded(started + left)
        try:
            matched = [row for row in rows if isinstance(row, dict)
                       and interpreter.condition(self.tree, row, tally) is True]
        except _OverBudget as exc:
            raise Unevaluable(f"not evaluated: {exc}") from None
        except (jmespath_errors.JMESPathError, TypeError, ValueError, RecursionError) as exc:
            raise Unevaluable(f"the filter failed on a row: {_reason(exc)}") from None
        finally:
            tally.spent += time.monotonic() - started
        return matched


@dataclass
class FilterTally:
    """One fan-out's evaluation: time spent, and the fields its rows had."""

    spent: float = 0.0
    seen: set[str] = field(default_factory=set)

    def missing(self, row_filter: RowFilter) -> list[str]:
        """Fields the filter names that no evaluated row had (empty if no row was)."""
        return sorted(row_filter.fields - self.seen) if self.seen else []


class _Bounded(jmespath_visitor.TreeInterpreter):  # type: ignore[misc]
    """jmespath's own interpreter, with a step count, a size check and a deadline."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline
        self.steps = 0  # left for this row
        self.ticks = 0  # taken on every row: the deadline is checked every 32

    def condition(self, tree: Mapping[str, Any], row: dict[str, Any],
                  tally: FilterTally | None = None) -> Any:
        self.steps = MAX_STEPS
        if tally is not None:
            tally.seen.update(row)
        return self.visit(tree, row)

    def visit(self, node: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.steps -= 1
        self.ticks += 1
        if self.steps < 0:
            raise _OverBudget(f"the filter takes more than {MAX_STEPS} steps on one row")
        if self.ticks % 32 == 0 and time.monotonic() > self.deadline:
            raise _OverBudget(f"the filter's time budget ({TIME_BUDGET:g} s for the whole "
                              "fan-out) ran out")
        value = super().visit(node, *args, **kwargs)
        if isinstance(value, list | dict) and len(value) > MAX_ITEMS:
            raise _OverBudget(f"a step of the filter made {len(value)} items (at most "
                              f"{MAX_ITEMS})")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise _OverBudget(f"a step of the filter made {len(value)} characters of text "
                              f"(at most {MAX_TEXT})")
        return value


def compile_filter(expression: str, command: Command) -> RowFilter:
    """`expression` checked against `command`'s parser; raises FilterError."""
    parser = command.parser
    if parser is None:
        raise FilterError(f"'{command.name}' has no parser, so its output has no fields to "
                          "filter on; run it without a filter (list_commands shows which "
                          "commands have fields)")
    if not isinstance(expression, str) or not expression.strip():
        raise FilterError(f"the filter is empty; write {SYNTAX}")
    if len(expression) > MAX_LENGTH:
        raise FilterError(f"the filter is {len(expression)} characters long, at most "
                          f"{MAX_LENGTH}; write {SYNTAX}")
    try:
        tree: Mapping[str, Any] = jmespath.compile(expression).parsed
    except RecursionError:
        raise FilterError(f"the filter is nested too deeply (at most {MAX_DEPTH} levels)"
                          ) from None
    except jmespath_errors.JMESPathError as exc:
        raise FilterError(f"the filter is not valid JMESPath: {_syntax(exc)}; write "
                          f"{SYNTAX}") from None
    names: set[str] = set()
    for node, depth in _nodes(tree):
        if depth > MAX_DEPTH:
            raise FilterError(f"the filter is nested too deeply (at most {MAX_DEPTH} levels)")
        if node.get("type") == "field":
            names.add(str(node.get("value")))
        elif node.get("type") == "function_expression" and node.get("value") not in _FUNCTIONS:
            raise FilterError(f"unknown function {str(node.get('value'))[:40]!r} in the "
                              f"filter; JMESPath's are: {', '.join(sorted(_FUNCTIONS))}")
    unknown = sorted(names - set(parser.fields))
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise FilterError(f"the filter names {shown}, not a field of '{command.name}' "
                          f"({parser.name}); its rows have: {parser.describe_fields()}")
    row_filter = RowFilter(expression, parser, frozenset(names), tree)
    _dry_run(row_filter, command)
    return row_filter


def _dry_run(row_filter: RowFilter, command: Command) -> None:
    """Evaluate on a row of the parser's field types: mixed types, wrong function
    arguments and a result that is not a condition show here, before anything runs."""
    sample = {name: _SAMPLE[kind] for name, kind in row_filter.parser.fields.items()}
    try:
        value = _Bounded(time.monotonic() + TIME_BUDGET).condition(row_filter.tree, sample)
    except _OverBudget as exc:
        raise FilterError(f"the filter is too costly: {exc}") from None
    except (jmespath_errors.JMESPathError, TypeError, ValueError, RecursionError) as exc:
        raise FilterError(f"the filter fails on a row of '{command.name}': {_reason(exc)} "
                          f"(its fields: {row_filter.parser.describe_fields()}; numbers "
                          "in backticks: `90`, text in single quotes: '/')") from None
    if value is not None and not isinstance(value, bool):
        kind = {int: "a number", float: "a number", str: "text", list: "a list",
                dict: "an object"}.get(type(value), type(value).__name__)
        raise FilterError(f"the filter must be a condition, true or false for a row; it "
                          f"gives {kind}. Compare a field: e.g. use_percent >= `90`")


def _nodes(tree: Mapping[str, Any], depth: int = 1) -> Iterator[tuple[Mapping[str, Any], int]]:
    yield tree, depth
    if depth > MAX_DEPTH:
        return
    for child in tree.get("children", ()):
        if isinstance(child, Mapping):
            yield from _nodes(child, depth + 1)


def _syntax(exc: jmespath_errors.JMESPathError) -> str:
    """jmespath's message in one line: what, where, and a hint for a bare number."""
    message = getattr(exc, "msg", None) or str(exc).splitlines()[0]
    position = getattr(exc, "lex_position", None)
    token = getattr(exc, "token_value", None)
    where = f" at column {position + 1}" if isinstance(position, int) else ""
    text = f"{message}{where}" + (f" ({str(token)[:30]!r})" if token not in (None, "") else "")
    if str(getattr(exc, "token_type", "")).lower() == "number":
        text += "; a number is written in backticks, e.g. `90`"
    return text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if isinstance(exc, TypeError) and "not supported between" in text:
        return f"it compares text with a number ({text})"
    return text
