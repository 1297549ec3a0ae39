"""The chat's small parts on their own: history bounds, Markdown, SSE framing, tool
definitions, the scripted API against the real SDK, and the elicitation gate."""

from __future__ import annotations

import json

import anthropic
import mcp_types
import pytest

from agent.chat.agent_loop import ChatTurn, LoopOptions
from agent.chat.cards import ToolCard, cards_for
from agent.chat.history import Conversation, DisplayItem, HistoryStore, Turn, close_failed_turn
from agent.chat.markdown import render_markdown
from agent.chat.mcp_calls import accept_confirmation
from agent.chat.palette import arguments_from_form
from agent.chat.sse import sse_message
from agent.chat.tooldefs import anthropic_tool
from tests.support.fake_anthropic import ApiError, FakeAnthropic, Step, Text, ToolUse
from whitelist import Command, Parameter, ParamType


def turn(question: str, answer_bytes: int = 10) -> Turn:
    return Turn(
        messages=[{"role": "user", "content": question},
                  {"role": "assistant", "content": "x" * answer_bytes}],
        items=[DisplayItem("user", question)],
    )


def test_history_keeps_the_newest_turns_within_its_bounds() -> None:
    conversation = Conversation(max_turns=3, max_bytes=10_000)
    for n in range(5):
        conversation.add(turn(f"q{n}"))
    assert [m["content"] for m in conversation.messages() if m["role"] == "user"] == \
        ["q2", "q3", "q4"]

    conversation = Conversation(max_turns=30, max_bytes=5_000)
    for n in range(5):
        conversation.add(turn(f"q{n}", answer_bytes=2_000))
    questions = [m["content"] for m in conversation.messages() if m["role"] == "user"]
    assert questions == ["q3", "q4"]
    # It always starts with a question and alternates, as the Messages API requires.
    roles = [m["role"] for m in conversation.messages()]
    assert roles == ["user", "assistant"] * 2

    # Command output shown on the page counts too, not only what Claude was sent.
    conversation = Conversation(max_turns=30, max_bytes=5_000)
    for n in range(3):
        shown = turn(f"q{n}")
        shown.items.append(DisplayItem("card", card=ToolCard(tool="t", stdout="o" * 2_000)))
        conversation.add(shown)
    assert [i.text for i in conversation.items() if i.kind == "user"] == ["q1", "q2"]

    # A single huge turn is kept: it is the answer the person just got.
    conversation.add(turn("big", answer_bytes=50_000))
    assert [i.text for i in conversation.items()] == ["big"]


def test_history_is_per_identity_and_new_chat_forgets() -> None:
    store = HistoryStore()
    store.get("tailnet:alice@example.com").add(turn("alice's question"))
    assert store.get("tailnet:bob@example.com").messages() == []
    store.clear("tailnet:alice@example.com")
    assert store.get("tailnet:alice@example.com").messages() == []


def test_markdown_passes_no_raw_html_and_no_javascript_links() -> None:
    html = str(render_markdown(
        "**bold** <script>alert(1)</script> <img src=x onerror=alert(2)> "
        "[a](javascript:alert(3)) ![i](http://example.com/x.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    ))
    assert "<strong>bold</strong>" in html
    assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
    assert "&lt;script&gt;" in html
    assert "<table>" in html


def test_sse_message_puts_each_line_in_its_own_data_field() -> None:
    assert sse_message("seg", "a\nb\r\nc") == b"event: seg\ndata: a\ndata: b\ndata: c\n\n"
    assert sse_message("done", "") == b"event: done\ndata: \n\n"


def test_mcp_tool_becomes_an_anthropic_tool() -> None:
    schema = {"type": "object", "properties": {"host": {"type": "string"}}}
    tool = mcp_types.Tool(name="check_disk", description="df -h", input_schema=schema)
    assert anthropic_tool(tool) == {
        "name": "check_disk", "description": "df -h",
        "input_schema": {"type": "object", "properties": {"host": {"type": "string"}}},
    }
    bare = mcp_types.Tool(name="ping", input_schema={"type": "object"})
    assert anthropic_tool(bare)["input_schema"] == {"type": "object", "properties": {}}


def test_overview_result_becomes_one_card_per_command() -> None:
    one = {"host": "web", "command": "uptime", "rendered": "uptime", "stdout": "up 1 day",
           "stderr": "", "exit_status": 0, "duration_ms": 5.0, "truncated": False}
    overview = {"host": "web", "results": [one, {**one, "command": "uname"}]}
    result = mcp_types.CallToolResult(content=[], structured_content=overview)
    cards = cards_for("system_overview", result)
    assert [c.command for c in cards] == ["uptime", "uname"]
    assert all(c.ok and c.status == "exit 0" for c in cards)
    error = mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text="unknown host 'x'")], is_error=True)
    assert cards_for("check_disk", error)[0].error == "unknown host 'x'"


def test_palette_form_values_become_typed_arguments() -> None:
    command = Command(
        name="lines", description="d", category="Test", template="seq {count} {style}",
        parameters=(
            Parameter("count", ParamType.INTEGER, "n", default=3, minimum=1, maximum=9),
            Parameter("style", ParamType.ENUM, "s", default="a", choices=("a", "b")),
            Parameter("path", ParamType.PATH, "p", roots=("/var",)),
        ),
    )
    assert arguments_from_form(command, {"p.count": "4", "p.style": "", "p.path": "/var/x"}) == \
        {"count": 4, "path": "/var/x"}
    # Not a number: passed on, so the catalog's own validation explains what is wrong.
    assert arguments_from_form(command, {"p.count": "four", "p.path": ""})["count"] == "four"


async def test_the_chat_accepts_only_an_elicitation_the_person_confirmed() -> None:
    async def client() -> anthropic.AsyncAnthropic:
        raise AssertionError("this test never asks Claude")

    chat = ChatTurn(
        id="t", question="q", conversation=Conversation(),
        anthropic_client=client,
        mcp_server=None,  # type: ignore[arg-type]
        default_host=None, system="", identity_token="x",
        options=LoopOptions(model="m"),
    )
    params = mcp_types.ElicitRequestFormParams(
        message="Run destructive command 'reboot'?",
        requested_schema={"type": "object", "properties": {"confirm": {"type": "boolean"}}},
    )
    assert (await chat._elicit(None, params)).action == "decline"  # type: ignore[arg-type]
    # A click confirmed another question (the call prepared again differs): declined.
    chat._confirmed_question = "Run destructive command 'reboot' on host 'web-2'?"
    assert (await chat._elicit(None, params)).action == "decline"  # type: ignore[arg-type]
    chat._confirmed_question = params.message
    accepted = await chat._elicit(None, params)  # type: ignore[arg-type]
    assert accepted.action == "accept" and accepted.content == {"confirm": True}
    # One click, one acceptance: a second elicitation in the same call is declined.
    assert (await chat._elicit(None, params)).action == "decline"  # type: ignore[arg-type]
    url = mcp_types.ElicitRequestURLParams(message="go", url="https://example.com/")
    assert accept_confirmation(url).action == "decline"


async def test_the_scripted_api_speaks_the_messages_api_to_the_real_sdk() -> None:
    with FakeAnthropic([
        Step(when="weather", reply=[Text("Checking."),
                                    ToolUse("check_disk", {"host": "web-1", "depth": 2})]),
        Step(when="denied", reply=ApiError(401, "authentication_error", "invalid x-api-key")),
        Step(when="", reply=[Text("Plain answer.")]),
    ]) as fake:
        client = anthropic.AsyncAnthropic(api_key="k", base_url=fake.base_url, max_retries=0)
        messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "weather?"}]

        async with client.messages.stream(model="m", max_tokens=100, messages=messages) as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.content[0].type == "text" and final.content[0].text == "Checking."
        use = final.content[1]
        assert use.type == "tool_use" and use.input == {"host": "web-1", "depth": 2}
        assert kinds.count("input_json") >= 2  # the JSON arrived in several pieces
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"

        plain = await client.messages.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hello"}])
        assert plain.stop_reason == "end_turn" and plain.content[0].type == "text"

        with pytest.raises(anthropic.AuthenticationError):
            await client.messages.create(
                model="m", max_tokens=100, messages=[{"role": "user", "content": "denied"}])
        assert len(fake.requests) == 3
        sent = fake.headers[0]
        assert sent.get("x-api-key") == "k" or sent.get("authorization") == "Bearer k"
        assert "anthropic-version" in sent
        await client.close()


def test_a_turn_that_fails_part_way_leaves_a_valid_history() -> None:
    asked = {"role": "user", "content": "q"}
    uses = {"role": "assistant", "content": [
        {"type": "text", "text": "checking"},
        {"type": "tool_use", "id": "toolu_1", "name": "check_disk", "input": {}},
        {"type": "tool_use", "id": "toolu_2", "name": "check_memory", "input": {}},
    ]}
    failed = Turn(messages=[asked, uses])
    close_failed_turn(failed, "529")
    assert [m["role"] for m in failed.messages] == ["user", "assistant", "user", "assistant"]
    answered = {b["tool_use_id"] for b in failed.messages[2]["content"]}
    assert answered == {"toolu_1", "toolu_2"}

    before_any_answer = Turn(messages=[asked])
    close_failed_turn(before_any_answer, "401")
    assert [m["role"] for m in before_any_answer.messages] == ["user", "assistant"]
    assert "401" in before_any_answer.messages[-1]["content"]

    done = {"role": "assistant", "content": [{"type": "text", "text": "all good"}]}
    after_the_answer = Turn(messages=[asked, done])
    close_failed_turn(after_the_answer, "late")
    assert after_the_answer.messages == [asked, done]


def test_a_fan_out_card_lists_the_failures_first() -> None:
    from agent.chat import views

    def host(name: str, status: str, **extra: object) -> dict[str, object]:
        return {"host": name, "status": status, "exit_status": extra.get("exit", 0),
                "stdout": extra.get("out", ""), "stderr": "", "duration_ms": 12.0,
                "truncated": False, "timed_out": False, "error": extra.get("error", "")}

    result = mcp_types.CallToolResult(content=[], structured_content={
        "fanout": "fan-1", "command": "hostname", "rendered": "hostname", "duration_ms": 40.0,
        "summary": {"total": 4, "ok": 2, "failed": 1, "offline": 1, "refused": 0},
        "hosts": [host("a-ok", "ok", out="a-ok"), host("b-off", "offline", exit=None,
                                                          error="host b-off is offline"),
                  host("c-bad", "failed", exit=1, error="<b>nope</b>"),
                  host("d-ok", "ok", out="d-ok")],
    })
    (card,) = cards_for("run_on_hosts", result)
    assert [r.host for r in card.fanout] == ["c-bad", "b-off", "a-ok", "d-ok"]
    assert card.status == "2 of 4 hosts ok" and not card.ok
    html = views.cards([card])
    rows = html.split('<tr class="fanout-row ')[1:]
    assert [r.split('"')[0] for r in rows] == ["failed", "offline", "ok", "ok"]
    assert "&lt;b&gt;nope&lt;/b&gt;" in html and "<b>nope" not in html  # escaped


def test_a_filtered_fan_out_card_shows_what_matched_and_what_was_left_out() -> None:
    from agent.chat import views

    rows = [{"filesystem": "/dev/vda1", "use_percent": 95, "mounted_on": "/"}]
    result = mcp_types.CallToolResult(content=[], structured_content={
        "fanout": "fan-2", "command": "disk_usage", "rendered": "df -hP", "duration_ms": 40.0,
        "strategy": {"name": "parallel", "batches": 1, "ran_batches": 1},
        "summary": {"total": 300, "ok": 300, "failed": 0, "offline": 0, "refused": 0},
        "filter": {"expression": "use_percent >= `90`", "matched": 2, "not_matched": 297,
                   "undetermined": 1, "note": ""},
        "groups": [
            {"hosts": "web-[008,058]", "count": 2, "status": "ok", "exit_status": 0,
             "data": rows, "matched": True, "audit_id": "a1b2", "audit_host": "web-008"}],
        "hosts": [
            {"host": "web-009", "status": "ok", "exit_status": 0, "stdout": "<odd output>",
             "duration_ms": 9.0, "audit_id": "c3d4",
             "note": "could not parse the output as df (...)"}],
    })
    (card,) = cards_for("run_on_hosts", result)
    assert card.status == "2 of 300 hosts match"
    by_host = {row.host: row for row in card.fanout}
    assert by_host["web-009"].data == ""  # it has text: shown as it is
    assert '"use_percent": 95' in by_host["web-[008,058]"].data
    # A group links to its first host's recording; a host on its own to its own.
    assert card.audit_ids == ["a1b2", "c3d4"]
    html = views.cards([card])
    assert "Hosts whose rows match <code>use_percent &gt;= `90`</code>: 2 of 300 hosts" in html
    assert "could not parse the output as df" in html and "&lt;odd output&gt;" in html
    assert "2 hosts, same rows" in html
    assert 'href="/audit/a1b2/replay" aria-label="Replay web-008: the recording of ' in html
    assert ">Replay web-008</a>" in html and 'href="/audit/c3d4/replay"' in html


def test_a_command_s_rows_are_clipped_for_the_model_like_its_text() -> None:
    from agent.chat.mcp_calls import MODEL_OUTPUT_LIMIT, tool_result_for_model

    rows = [{"pid": n, "user": "www-data", "command": "nginx: worker process"}
            for n in range(2000)]
    result = mcp_types.CallToolResult(content=[], structured_content={
        "host": "web-1", "command": "top_processes", "rendered": "ps", "stdout": "x" * 40_000,
        "data": rows})
    text = tool_result_for_model(result)
    shown = json.loads(text)
    assert len(text) < 3 * MODEL_OUTPUT_LIMIT
    assert shown["data"][0] == rows[0] and shown["data"][-1].endswith(
        "more rows not shown to the model]")
    assert len(shown["data"]) < len(rows)


def test_a_fan_out_card_shows_the_results_groups_with_the_failures_first() -> None:
    from agent.chat import views

    result = mcp_types.CallToolResult(content=[], structured_content={
        "fanout": "fan-2", "command": "disk_usage", "rendered": "df -h", "duration_ms": 90.0,
        "strategy": {"name": "canary", "batches": 2, "ran_batches": 1,
                     "stopped": "the canary host web-001 failed"},
        "summary": {"total": 300, "ok": 0, "failed": 1, "offline": 0, "refused": 0,
                    "skipped": 299},
        "groups": [{"hosts": "web-[002-180], app-[001-120]", "count": 299,
                    "status": "skipped", "error": "not run: <b>canary</b>"}],
        "hosts": [{"host": "web-001", "status": "failed", "exit_status": 1,
                   "stderr": "no\n"}],
        "listing": {"handle": "out-abc", "read": "..."},
        "not_shown": {"groups": 0, "alone": 0, "hosts": 0, "by_status": {}},
    })
    (card,) = cards_for("run_on_hosts", result)
    assert [(r.host, r.count, r.status) for r in card.fanout] == [
        ("web-001", 1, "failed"), ("web-[002-180], app-[001-120]", 299, "skipped")]
    assert card.status == "0 of 300 hosts ok" and card.kind == "bad"
    html = views.cards([card])
    assert 'data-count="299"' in html and "299 hosts, same output" in html
    assert html.count('<code class="part">') == 2  # a line per prefix
    assert "Strategy: canary; stopped: the canary host web-001 failed" in html
    assert "&lt;b&gt;canary&lt;/b&gt;" in html and "<b>canary" not in html
