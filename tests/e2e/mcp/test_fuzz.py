"""Schema-driven fuzzing of the MCP endpoint of a real `tailnet-agent serve --local`.

The tools' JSON schemas come from the official client's list_tools; Hypothesis
generates arguments from them (tests/policy/schema_strategies.py), then wrong types,
huge strings, deep nesting, unknown tools and malformed JSON-RPC sent raw. Every
answer must be well-formed, carry no stack trace and no secret, and the server
must keep answering ping. Examples are bounded so this runs in seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from tests.support.schema_strategies import JSON_VALUES, from_schema
from tests.support.sshd import Sshd
from tests.support.tailnet import free_port
from whitelist import load_catalog

FAKE_API_KEY = "sk-ant-api03-FUZZ-canary-key-0123456789abcdef"
FAKE_PASSPHRASE = "fuzz-canary-passphrase-9f8e7d"
SECRETS = (FAKE_API_KEY, FAKE_PASSPHRASE)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"/|\.py\", line \d+")
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@dataclass
class Agent:
    url: str
    tools: list[dict[str, Any]]
    audit: Path
    proc: subprocess.Popen[str]


@pytest.fixture(scope="module")
def agent(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    work = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **os.environ,
        "REMOTE_HOST": sshd.address,
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(sshd.known_hosts),
        "REMOTE_SSH_KEY_PASSPHRASE": FAKE_PASSPHRASE,
        "ANTHROPIC_API_KEY": FAKE_API_KEY,
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/",  # never reached; no chat in this test
        "TAILNET_AGENT_AUDIT_LOG": str(work / "audit.jsonl"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--local", "--port", str(port),
         "--env-file", "/dev/null"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("Ready."):
            break
    else:
        raise AssertionError("the agent did not start:\n" + "".join(output))
    # Keep reading: the agent logs a line per refused call, and a full pipe would stall it.
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}/mcp"

    async def list_tools() -> list[dict[str, Any]]:
        async with Client(url) as client:
            return [t.model_dump(by_alias=True) for t in (await client.list_tools()).tools]

    try:
        yield Agent(url, anyio.run(list_tools), work / "audit.jsonl", proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
        logged = "".join(output)
        # The agent's own log must not carry the secrets either.
        assert not [s for s in SECRETS if s in logged]


class RawMCP:
    """A Streamable HTTP session spoken by hand, so anything can be sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=60, headers=HEADERS)
        first = self.post(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                      "params": {"protocolVersion": "2025-06-18",
                                                 "capabilities": {},
                                                 "clientInfo": {"name": "fuzz", "version": "1"}}}))
        session = first.headers.get("mcp-session-id")
        if session:
            self.http.headers["mcp-session-id"] = session
        self.post(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))

    def post(self, body: str | bytes) -> httpx.Response:
        return self.http.post(self.url, content=body)


def messages(response: httpx.Response) -> list[Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # SSE lines end at \r\n, \r or \n only (not at U+0085 or U+2028 inside JSON text).
        lines = re.split(r"\r\n|\r|\n", response.text)
        return [json.loads(line[5:]) for line in lines
                if line.startswith("data:") and line[5:].strip()]
    return [response.json()] if response.content else []


def check(response: httpx.Response, *, request_id: object = None) -> list[Any]:
    """Well-formed: no 5xx, JSON-RPC (or a short plain refusal), no trace, no secret."""
    text = response.text
    assert response.status_code < 500, (response.status_code, text[:500])
    assert not TRACEBACK.search(text), text[:2000]
    assert not [s for s in SECRETS if s in text]
    if response.status_code in (202, 204, 413) or response.headers.get(
        "content-type", ""
    ).startswith("text/plain"):
        return []
    if response.status_code >= 400:
        # The SDK answers some transport errors (wrong media type) with a short text.
        try:
            found = messages(response)
        except ValueError:
            assert 0 < len(text) < 2000, text[:2000]
            return []
    else:
        found = messages(response)
    for message in found:
        assert message.get("jsonrpc") == "2.0", message
        assert ("result" in message) != ("error" in message), message
        if "error" in message:
            assert isinstance(message["error"].get("code"), int)
            assert isinstance(message["error"].get("message"), str)
        if request_id is not None:
            assert message.get("id") == request_id, message
    return found


def call(raw: RawMCP, name: str, arguments: Any, request_id: int = 7) -> list[Any]:
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}})
    return check(raw.post(body), request_id=request_id)


@pytest.fixture(scope="module")
def raw(agent: Agent) -> Iterator[RawMCP]:
    session = RawMCP(agent.url)
    yield session
    session.http.close()


# Known-good values, so some generated calls pass validation and really run.
HINTS: dict[str, list[Any]] = {
    "command": [c.name for c in load_catalog()],
    "host": ["test", "default"],
    "unit": ["ssh.service", "nginx"],
    "path": ["/etc", "/var/log", "/tmp"],
    "category": ["Disk", "Memory", "System"],
    "parameters.keys": ["path", "unit", "count", "lines", "priority", "container"],
    "parameters.values": ["/etc", "ssh.service", 5, "err", "web"],
}
JSON = JSON_VALUES


def tool_calls(tools: list[dict[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(*(
        st.tuples(st.just(t["name"]), from_schema(t["inputSchema"], HINTS)) for t in tools
    ))


def test_arguments_generated_from_the_tool_schemas(agent: Agent, raw: RawMCP) -> None:
    assert {t["name"] for t in agent.tools} >= {"execute_command", "check_service", "ping"}

    @FUZZ
    @given(tool_calls(agent.tools))
    def run(example: tuple[str, Any]) -> None:
        for message in call(raw, *example):
            if "result" in message and message["result"].get("isError"):
                text = message["result"]["content"][0]["text"]
                assert text.strip() and len(text) < 5000

    run()


def test_wrong_types_and_unknown_parameters(agent: Agent, raw: RawMCP) -> None:
    names = [t["name"] for t in agent.tools]

    @FUZZ
    @given(st.sampled_from(names), JSON)
    def run(name: str, arguments: Any) -> None:
        call(raw, name, arguments)

    run()

    @FUZZ
    @given(st.sampled_from(names), st.dictionaries(
        st.sampled_from(["command", "parameters", "host", "unit", "path", "category", "x"]),
        JSON, max_size=4))
    def run_fields(name: str, arguments: dict[str, Any]) -> None:
        call(raw, name, arguments)

    run_fields()


def test_unknown_tools(raw: RawMCP) -> None:
    @FUZZ
    @given(st.text(max_size=300), JSON)
    def run(name: str, arguments: Any) -> None:
        found = call(raw, name, arguments)
        assert found and ("error" in found[0] or found[0]["result"].get("isError")), found

    run()


def test_huge_strings_and_deep_nesting(raw: RawMCP) -> None:
    huge = "A" * 900_000
    for name, arguments in (
        ("execute_command", {"command": huge}),
        ("execute_command", {"command": "disk_usage_path", "parameters": {"path": "/" + huge}}),
        ("check_service", {"unit": huge, "host": huge[:5000]}),
        ("list_commands", {"category": huge}),
    ):
        call(raw, name, arguments)
    for depth in (50, 500, 5000, 50_000):
        nested = "[" * depth + "]" * depth
        body = ('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":'
                '"execute_command","arguments":{"command":"hostname","parameters":'
                f'{{"p":{nested}}}}}}}}}')
        check(raw.post(body))
        body = '{"jsonrpc":"2.0","id":9,"method":"ping","params":' + "{\"a\":" * depth + \
            "1" + "}" * depth + "}"
        check(raw.post(body))


MALFORMED = [
    b"", b"{", b"null", b"[]", b"[1, 2]", b"42", b'"text"', b"\xff\xfe\x00garbage",
    b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": 5}',
    b'{"jsonrpc": "2.0", "id": 1}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": null}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "no/such/method", "params": {}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}',
    b'{"jsonrpc": "2.0", "id": 1e400, "method": "ping"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": '
    b'{"tailnet-agent/identity": "forged-token"}}}',
    b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, '
    b'"method": "ping"}]',
]


def test_malformed_json_rpc_sent_raw(agent: Agent, raw: RawMCP) -> None:
    for body in MALFORMED:
        check(raw.post(body))
    # The same without a session, with wrong media types, and with other methods.
    with httpx.Client(timeout=30) as http:
        for headers in ({}, {"Accept": "text/html"}, {"Content-Type": "text/plain"},
                        {**HEADERS, "mcp-session-id": "not-a-session"}):
            for body in [*MALFORMED[:6], b'{"jsonrpc":"2.0","id":1,"method":"ping"}']:
                check(http.post(agent.url, content=body, headers=headers))
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response = http.request(method, agent.url, headers={"Accept": "text/html"})
            assert response.status_code < 500 and not TRACEBACK.search(response.text)

    @FUZZ
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    def run(body: bytes) -> None:
        check(raw.post(body))

    run()


def test_the_server_still_answers_and_recorded_no_secret(agent: Agent) -> None:
    async def ping() -> dict[str, Any]:
        async with Client(agent.url) as client:
            result = await client.call_tool("ping", {})
            disk = await client.call_tool("check_disk", {})
            assert not disk.is_error
            return dict(result.structured_content or {})

    assert anyio.run(ping)["pong"] is True
    assert agent.proc.poll() is None
    text = agent.audit.read_text()
    assert text and not [s for s in SECRETS if s in text]
    # The fuzzing reached the hosts too, not only the validators.
    outcomes = {json.loads(line).get("outcome") for line in text.splitlines()}
    assert {"ran", "invalid"} <= outcomes, outcomes
