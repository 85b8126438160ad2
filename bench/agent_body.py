"""Added latency and CPU for a coding agent's requests, whose bodies grow with every tool call of a session.

    python bench/agent_body.py                       # a one-line prompt, then sessions of 0, 50, 200 tool calls
    python bench/agent_body.py --compare /tmp/old    # and an older tree's gateway.py, in the same rounds

The other scenarios send a one-line prompt. An agent CLI does not: Claude
Code 2.1.337's first request of a session was a 50 KB Messages body here (a 7 KB
system prompt, 12 tools with their JSON schemas in 32 KB, ``stream: true``),
and every turn after it resends the whole session so far, each tool call and
its result. The gateway parses, validates and re-encodes every such body, and
translates it for a node of another protocol, so its cost grows with the
session, where a plain proxy's does not. The bodies here are synthetic, shaped
like that request (``agent_body``: tools, system prompt, then per tool call an
assistant turn with a ``tool_use`` and a user turn with its ``tool_result``),
so no client's own text is copied.

One connection, one request at a time, 5 streamed tokens per answer; for each
proxy and request the median time to the first byte and to the last byte,
the added time against the mock called directly, and the proxy's CPU per
request, user and system time apart (the system part, copying the body in and
out of the kernel, is what nginx pays too). The one-line prompt is the anchor:
what any streamed request costs before its body does. "pass-through" is a
Messages node (``ev-anthropic``); "translated" is the same body to an OpenAI
node (``ev-openai``), measured against the direct Messages call too, so it
includes the (small) difference between the mock's two wires. The proxies are
pinned to CPU 0, the mock and this client to CPU 1.

Figures for bench/README.md, never pass/fail.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.event_cpu import add_run_arguments, cpu_times, gateway_trees  # noqa: E402
from bench.instructions import add_event_node  # noqa: E402
from bench.peers import start_nginx  # noqa: E402
from bench.run import KEY, Child, free_port, http_call, start_mock, wait_http, write_config  # noqa: E402

TINY = -1  # ``--tool-calls`` entry for a one-line prompt
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
_WORDS = ("the tool reads the file and returns its lines so that the agent can decide what to change next "
          "before it edits anything in the repository").split()


def _text(chars: int, seed: int) -> str:
    words = [_WORDS[(seed + i) % len(_WORDS)] for i in range(chars // 6 + 1)]
    return " ".join(words)[:chars]


def _tool(i: int) -> dict[str, Any]:
    """A tool definition of ~3.5 KB, as an agent's (a long description, a schema of several properties)."""
    properties = {f"arg_{k}": {"type": "string", "description": _text(200, i + k)} for k in range(6)}
    return {"name": f"Tool{i}", "description": _text(2300, i),
            "input_schema": {"type": "object", "properties": properties, "required": ["arg_0"],
                             "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}


def agent_body(tool_calls: int, model: str) -> bytes:
    """A Messages request after ``tool_calls`` tool calls: ~50 KB at 0, ~0.85 KB more per call; ``TINY``: a
    one-line prompt with no tools and no system prompt, the same stream as every other scenario's (the anchor)."""
    if tool_calls == TINY:
        return json.dumps({"model": model, "max_tokens": 1024, "stream": True,
                           "messages": [{"role": "user", "content": "say hi"}]}).encode()
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": _text(400, 1)}]}]
    for i in range(tool_calls):
        call_id = f"toolu_{i:020d}"
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "Let me read that file."},
            {"type": "tool_use", "id": call_id, "name": "Tool1", "input": {"arg_0": f"/src/module_{i}.py"}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call_id, "content": [{"type": "text", "text": _text(600, i)}]}]})
    if tool_calls:  # the user speaks last, so the mock's answer is the same few tokens at every length
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Done."}]})
        messages.append({"role": "user", "content": [{"type": "text", "text": "Now run the tests."}]})
    body = {"model": model, "max_tokens": 32000, "stream": True, "metadata": {"user_id": "bench"},
            "system": [{"type": "text", "text": _text(7000, 0)}], "tools": [_tool(i) for i in range(12)],
            "messages": messages}
    return json.dumps(body).encode()


def probe(port: int, path: str, body: bytes, requests: int, pid: int) -> dict[str, float]:
    """``requests`` sequential requests on one connection (after 20 of warm-up): medians in ms, CPU µs per
    request of process ``pid`` (user and system)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    first: list[float] = []
    last: list[float] = []
    cpu_before = (0.0, 0.0)
    try:
        for i in range(requests + 20):
            if i == 20:
                cpu_before = cpu_times(pid)
            started = time.perf_counter()
            conn.request("POST", path, body, HEADERS)
            response = conn.getresponse()
            response.read(1)
            got_first = time.perf_counter()
            response.read()
            done = time.perf_counter()
            if response.status != 200:
                raise RuntimeError(f"{path}: HTTP {response.status}")
            if i >= 20:
                first.append(got_first - started)
                last.append(done - started)
        cpu_after = cpu_times(pid)
    finally:
        conn.close()
    user, system = (cpu_after[0] - cpu_before[0]) / requests, (cpu_after[1] - cpu_before[1]) / requests
    return {"first_ms": statistics.median(first) * 1e3, "last_ms": statistics.median(last) * 1e3,
            "cpu_us": (user + system) * 1e6, "user_us": user * 1e6, "system_us": system * 1e6}


def run(lengths: list[int], requests: int, rounds: int, trees: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    os.sched_setaffinity(0, {1})  # this client beside the mock, away from the proxies
    work = Path(tempfile.mkdtemp(prefix="infermesh-agent-body-"))
    children: list[Child] = []
    rows: list[dict[str, Any]] = []
    try:
        mock, mock_port = start_mock(work, pin=True)
        children.append(mock)
        for node in ("ev-anthropic", "ev-openai"):
            http_call(mock_port, "POST", f"/_control/{node}", {"tokens": 5, "chunk_delay_ms": 0})
        nginx_port = free_port()
        nginx, nginx_worker = start_nginx(Child, work, mock_port, nginx_port, pin=True)
        children.append(nginx)
        gateways = []
        for label, tree in trees:
            config = work / f"gateway-{len(gateways)}.yaml"
            write_config(config, mock_port, free_port(), work / f"state-{len(gateways)}")
            for node in ("anthropic", "openai"):
                add_event_node(config, node, mock_port)
            port = free_port()
            gateway = Child(f"gateway-{len(gateways)}", [sys.executable, str(tree / "gateway.py"), "--config",
                                                          str(config), "--port", str(port)], work, 0)
            children.append(gateway)
            wait_http(port, "/healthz", 60, gateway)
            gateways.append((label, port, gateway.pid))
        for round_no in range(1, rounds + 1):
            for calls in lengths:
                direct_body = agent_body(calls, "claude-mock")
                direct = probe(mock_port, "/n/ev-anthropic/v1/messages", direct_body, requests, mock.pid)
                measured = [("nginx", probe(nginx_port, "/n/ev-anthropic/v1/messages", direct_body, requests,
                                            nginx_worker))]
                for label, port, pid in gateways:
                    for route, model in (("pass-through", "bench-ev-anthropic"), ("translated", "bench-ev-openai")):
                        measured.append((f"{label}, {route}",
                                         probe(port, "/v1/messages", agent_body(calls, model), requests, pid)))
                row = {"round": round_no, "tool_calls": calls, "body_kb": round(len(direct_body) / 1024, 1),
                       "direct": direct,
                       "proxies": {name: {**figures, "added_first_ms": figures["first_ms"] - direct["first_ms"],
                                          "added_last_ms": figures["last_ms"] - direct["last_ms"]}
                                   for name, figures in measured}}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for child in reversed(children):
            child.stop()
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """Medians over the rounds: per session length, the direct call and each proxy's added times and CPU."""
    lines = ["| request (body) | proxy | first byte | last byte | CPU / request (user + system) |",
             "|---|---|---|---|---|"]
    for calls in sorted({row["tool_calls"] for row in rows}):
        same = [row for row in rows if row["tool_calls"] == calls]
        direct = {key: statistics.median(row["direct"][key] for row in same) for key in ("first_ms", "last_ms")}
        label = "one-line prompt" if calls == TINY else f"{calls} tool calls"
        lines.append(f"| {label} ({same[0]['body_kb']:.1f} KB) | direct | {direct['first_ms']:.2f} ms | "
                     f"{direct['last_ms']:.2f} ms | |")
        for name in same[0]["proxies"]:
            figures = {key: statistics.median(row["proxies"][name][key] for row in same)
                       for key in ("added_first_ms", "added_last_ms", "user_us", "system_us")}
            lines.append(f"| | {name} | {figures['added_first_ms']:+.2f} ms | {figures['added_last_ms']:+.2f} ms | "
                         f"{figures['user_us']:,.0f} + {figures['system_us']:,.0f} µs |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool-calls", default="tiny,0,50,200",
                        help="session lengths (tool calls so far), comma-separated; tiny: a one-line prompt")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per proxy, length and round")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    trees = gateway_trees(args.compare)
    lengths = [TINY if n == "tiny" else int(n) for n in args.tool_calls.split(",")]
    rows = run(lengths, args.requests, args.rounds, trees)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
