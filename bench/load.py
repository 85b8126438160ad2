"""An asyncio HTTP/1.1 load generator for OpenAI-style chat completions, plain and SSE-streamed.

Why not wrk: wrk counts responses, but a gateway for LLM streams is judged by
time to first token and by the gaps between relayed chunks; measuring those
needs an SSE parser in the client, which wrk only gets through Lua (and wrk is
not installed here). Why not aiohttp: it is not a dependency, and a bare
``asyncio.Protocol`` client with one precomputed request is several times
cheaper per request, which is what keeps the generator from being the
bottleneck.

Modes:

* closed loop: ``--concurrency N`` connections, each sending its next request
  when the previous answer is complete, for ``--requests`` in total or for
  ``--duration`` seconds;
* open loop: ``--rate R`` requests/s for ``--duration`` seconds, sent on a
  fixed schedule whatever the answers do; latency is measured from the
  *scheduled* send time, so a stalled server is charged for the requests it
  delayed (no coordinated omission). Connections are taken from an idle pool
  and opened as needed, up to ``--max-conns``.

``--procs N`` forks N generators that start at the same instant (one shared
monotonic start time) and split the work; their histograms are merged.

Given ``--pid`` (repeatable), the target's CPU seconds (utime+stime from
/proc/PID/stat) are read around the measured window and its peak RSS (VmHWM,
reset at the start through /proc/PID/clear_refs where permitted) at the end.

Every loop is bounded: by the request count, by the duration, and by a
per-request timeout.

    python bench/load.py --url http://127.0.0.1:8080/v1/chat/completions --key sk-... \\
        --model gpt-4o-mini --concurrency 64 --duration 10 --pid $(pgrep -f gateway.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# --------------------------------------------------------------------------- histogram

# 0.01 % wide buckets: a percentile is good to ~3 us at a 56 ms time to first token. (They were 0.5 % wide:
# 0.28 ms steps at 56 ms, so an "added" figure, the difference of two such percentiles, moved in 0.28 ms
# steps and could be off by as much, more than the 0.5 ms it was judged against.)
_STEP = math.log(1.0001)


class Hist:
    """A log-bucketed histogram of seconds (exact min/max/sum), mergeable across processes."""

    __slots__ = ("counts", "n", "total", "lo", "hi")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0.0
        self.lo = math.inf
        self.hi = 0.0

    def add(self, seconds: float) -> None:
        us = seconds * 1e6
        index = int(math.log(us + 1.0) / _STEP) if us > 0 else 0
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.n += 1
        self.total += seconds
        if seconds > self.hi:
            self.hi = seconds
        if seconds < self.lo:
            self.lo = seconds

    def merge(self, other: "Hist") -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.n += other.n
        self.total += other.total
        self.hi = max(self.hi, other.hi)
        self.lo = min(self.lo, other.lo)

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        if q >= 1.0:
            return self.hi
        rank = q * self.n
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                mid = (math.exp(index * _STEP) + math.exp((index + 1) * _STEP)) / 2 - 1.0
                return min(max(mid / 1e6, self.lo), self.hi)
        return self.hi

    def count_above(self, seconds: float) -> int:
        """Samples above ``seconds`` (to bucket precision)."""
        if not self.n:
            return 0
        edge = int(math.log(seconds * 1e6 + 1.0) / _STEP)
        return sum(count for index, count in self.counts.items() if index > edge)

    def summary_ms(self) -> dict[str, float | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)
        return {"n": self.n, "p50": ms(self.quantile(0.5)), "p90": ms(self.quantile(0.9)),
                "p99": ms(self.quantile(0.99)), "max": ms(self.hi if self.n else None),
                "mean": ms(self.total / self.n if self.n else None)}

    def to_json(self) -> dict[str, Any]:
        return {"counts": list(self.counts.items()), "n": self.n, "total": self.total,
                "lo": self.lo if self.n else None, "hi": self.hi}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Hist":
        hist = cls()
        hist.counts = {int(k): int(v) for k, v in data["counts"]}
        hist.n, hist.total, hist.hi = data["n"], data["total"], data["hi"]
        hist.lo = math.inf if data["lo"] is None else data["lo"]
        return hist


# --------------------------------------------------------------------------- /proc


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process, in seconds (children not included)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, name: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, same user); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the client

_CONTENT = re.compile(rb'"content":"[^"]')  # a delta that carries text (the role frame's content is "")


@dataclass
class Spec:
    host: str
    port: int
    request: bytes  # the whole request, precomputed
    stream: bool
    timeout_s: float = 60.0


@dataclass
class Stats:
    latency: Hist = field(default_factory=Hist)  # closed loop: send -> last byte; open loop: scheduled -> last byte
    ttfb: Hist = field(default_factory=Hist)  # response head (streams: first event)
    ttft: Hist = field(default_factory=Hist)  # first event with text in it
    gaps: Hist = field(default_factory=Hist)  # every gap between two reads that completed events
    stream_max_gap: Hist = field(default_factory=Hist)  # the largest gap of each stream
    send_lag: Hist = field(default_factory=Hist)  # open loop: actual send - scheduled send
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    events: int = 0
    body_bytes: int = 0
    connections: int = 0
    first_send: float = math.inf
    last_done: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def to_json(self) -> dict[str, Any]:
        hists = ("latency", "ttfb", "ttft", "gaps", "stream_max_gap", "send_lag")
        out: dict[str, Any] = {name: getattr(self, name).to_json() for name in hists}
        out.update(ok=self.ok, errors=self.errors, events=self.events, body_bytes=self.body_bytes,
                   connections=self.connections, first_send=self.first_send if self.ok or self.errors else None,
                   last_done=self.last_done)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Stats":
        stats = cls()
        for name in ("latency", "ttfb", "ttft", "gaps", "stream_max_gap", "send_lag"):
            setattr(stats, name, Hist.from_json(data[name]))
        stats.ok, stats.errors, stats.events = data["ok"], dict(data["errors"]), data["events"]
        stats.body_bytes, stats.connections = data["body_bytes"], data["connections"]
        stats.first_send = math.inf if data["first_send"] is None else data["first_send"]
        stats.last_done = data["last_done"]
        return stats

    def merge(self, other: "Stats") -> None:
        for name in ("latency", "ttfb", "ttft", "gaps", "stream_max_gap", "send_lag"):
            getattr(self, name).merge(getattr(other, name))
        self.ok += other.ok
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.events += other.events
        self.body_bytes += other.body_bytes
        self.connections += other.connections
        self.first_send = min(self.first_send, other.first_send)
        self.last_done = max(self.last_done, other.last_done)


class _Response:
    __slots__ = ("sent", "status", "head_at", "chunked", "length", "close", "first_event", "last_event",
                 "ttft_at", "max_gap", "events", "done_marker", "nbytes", "tail_nl")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.status = 0
        self.head_at = 0.0
        self.chunked = False
        self.length = -1
        self.close = False
        self.first_event = 0.0
        self.last_event = 0.0
        self.ttft_at = 0.0
        self.max_gap = 0.0
        self.events = 0
        self.done_marker = False
        self.nbytes = 0
        self.tail_nl = False


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (no pipelining)."""

    def __init__(self, stats: Stats, stream: bool) -> None:
        self.stats = stats
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.resp: _Response | None = None
        self.future: asyncio.Future[_Response] | None = None
        self.lost = False
        self.in_head = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail("reset_mid" if self.resp is not None and self.resp.status else "reset")

    def _fail(self, kind: str) -> None:
        future = self.future
        self.future = None
        self.resp = None
        if future is not None and not future.done():
            future.set_exception(_RequestError(kind))

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes, sent: float) -> "asyncio.Future[_Response]":
        self.resp = _Response(sent)
        self.in_head = True
        self.buf.clear()
        self.future = asyncio.get_running_loop().create_future()
        self.transport.write(data)  # type: ignore[union-attr]
        return self.future

    def data_received(self, data: bytes) -> None:
        resp = self.resp
        if resp is None:
            return  # nothing asked: stray bytes (a late answer after a timeout); the conn is dropped anyway
        now = time.perf_counter()
        buf = self.buf
        buf += data
        if self.in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            del buf[:end + 4]
            self.in_head = False
            try:
                resp.status = int(head[9:12])
            except ValueError:
                return self._finish_error("bad_status_line")
            resp.head_at = now
            resp.chunked = b"transfer-encoding: chunked" in head
            resp.close = b"connection: close" in head
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                resp.length = int(head[at + 15:line_end if line_end >= 0 else len(head)])
            elif not resp.chunked:
                resp.length = 0 if resp.status in (204, 304) else -1
        if resp.chunked:
            while True:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(buf[:line_end]).split(b";")[0], 16)
                need = line_end + 2 + size + 2
                if len(buf) < need:
                    return
                if size == 0:
                    del buf[:need]
                    return self._complete(resp, now)
                payload = bytes(buf[line_end + 2:line_end + 2 + size])
                del buf[:need]
                self._payload(resp, payload, now)
        elif resp.length >= 0:
            if len(buf) >= resp.length:
                payload = bytes(buf[:resp.length])
                del buf[:resp.length]
                self._payload(resp, payload, now)
                self._complete(resp, now)
        # else: read-until-close bodies are not produced by the servers under test

    def _payload(self, resp: _Response, payload: bytes, now: float) -> None:
        resp.nbytes += len(payload)
        if not self.stream:
            return
        events = payload.count(b"\n\n") + (1 if resp.tail_nl and payload[:1] == b"\n" else 0)
        resp.tail_nl = payload[-1:] == b"\n"
        if not events:
            return
        if resp.events:
            gap = now - resp.last_event
            self.stats.gaps.add(gap)
            if gap > resp.max_gap:
                resp.max_gap = gap
        else:
            resp.first_event = now
        resp.events += events
        resp.last_event = now
        if not resp.ttft_at and _CONTENT.search(payload):
            resp.ttft_at = now
        if not resp.done_marker and (b"data: [DONE]" in payload or b"event: message_stop" in payload):
            resp.done_marker = True  # chat's end, or Anthropic Messages' (bench/instructions.py --client messages)

    def _complete(self, resp: _Response, now: float) -> None:
        future = self.future
        self.future = None
        self.resp = None
        if resp.close:
            self.close()
        if future is not None and not future.done():
            future.set_result(resp)

    def _finish_error(self, kind: str) -> None:
        self._fail(kind)
        self.close()


class _RequestError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


async def _connect(spec: Spec, stats: Stats) -> Conn:
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: Conn(stats, spec.stream), spec.host, spec.port), spec.timeout_s)
    stats.connections += 1
    return conn  # type: ignore[return-value]


async def _exchange(spec: Spec, stats: Stats, conn: Conn, origin: float) -> bool:
    """Send one request on ``conn`` and record it; ``origin`` is when its latency starts. False: drop conn."""
    sent = time.perf_counter()
    if sent < stats.first_send:
        stats.first_send = sent
    try:
        resp = await asyncio.wait_for(conn.send(spec.request, sent), spec.timeout_s)
    except asyncio.TimeoutError:
        stats.error("timeout")
        conn.close()
        stats.last_done = max(stats.last_done, time.perf_counter())
        return False
    except _RequestError as exc:
        stats.error(exc.kind)
        stats.last_done = max(stats.last_done, time.perf_counter())
        return False
    done = time.perf_counter()
    stats.last_done = max(stats.last_done, done)
    if resp.status != 200:
        stats.error(f"http_{resp.status}")
        return not conn.lost
    if spec.stream:
        if not resp.done_marker:
            stats.error("stream_incomplete")
            return not conn.lost
        stats.ttfb.add(resp.first_event - origin)
        if resp.ttft_at:
            stats.ttft.add(resp.ttft_at - origin)
        stats.stream_max_gap.add(resp.max_gap)
        stats.events += resp.events
    else:
        stats.ttfb.add(resp.head_at - origin)
    stats.body_bytes += resp.nbytes
    stats.latency.add(done - origin)
    stats.ok += 1
    return not conn.lost


# --------------------------------------------------------------------------- the two loops


async def closed_loop(spec: Spec, stats: Stats, concurrency: int, requests: int | None, duration: float | None,
                      start_at: float) -> None:
    remaining = [requests if requests is not None else 1 << 62]
    deadline = start_at + (duration if duration is not None else 24 * 3600)

    async def worker() -> None:
        conn: Conn | None = None
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            origin = time.perf_counter()
            if conn is None or conn.lost:
                try:
                    conn = await _connect(spec, stats)
                except (OSError, asyncio.TimeoutError):
                    stats.error("connect")
                    conn = None
                    await asyncio.sleep(0.01)  # do not spin on a refused port
                    continue
            if not await _exchange(spec, stats, conn, origin):
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    await _sleep_until(start_at)
    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_loop(spec: Spec, stats: Stats, rate: float, duration: float, start_at: float, phase: float,
                    max_conns: int) -> None:
    """Send at ``start_at + (i + phase) / rate``; each request's latency counts from that instant."""
    idle: list[Conn] = []
    opened = [0]
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        conn: Conn | None = idle.pop() if idle else None
        while conn is not None and conn.lost:
            opened[0] -= 1
            conn = idle.pop() if idle else None
        if conn is None:
            if opened[0] < max_conns:
                opened[0] += 1
                try:
                    conn = await _connect(spec, stats)
                except (OSError, asyncio.TimeoutError):
                    opened[0] -= 1
                    stats.error("connect")
                    return
            else:
                stats.error("no_free_connection")  # the generator's own limit: raise --max-conns
                return
        stats.send_lag.add(time.perf_counter() - due)
        keep = await _exchange(spec, stats, conn, due)
        if keep and not conn.lost:
            idle.append(conn)
        else:
            conn.close()
            opened[0] -= 1

    count = int(rate * duration)
    await _sleep_until(start_at)
    for i in range(count):
        due = start_at + (i + phase) / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=spec.timeout_s + 5)
    for conn in idle:
        conn.close()


async def _sleep_until(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# --------------------------------------------------------------------------- one process, several


@dataclass
class LoadConfig:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    concurrency: int = 1
    requests: int | None = None
    duration: float | None = None
    rate: float | None = None
    procs: int = 1
    max_conns: int = 2048
    timeout_s: float = 60.0
    pids: list[int] = field(default_factory=list)
    reset_peak_rss: bool = True


def build_spec(config: LoadConfig) -> Spec:
    parts = urlsplit(config.url)
    if parts.scheme != "http":
        raise ValueError("only http:// URLs")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(config.body)}"]
    lines += [f"{name}: {value}" for name, value in config.headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + config.body
    return Spec(host, port, request, config.stream, config.timeout_s)


def _share(total: int | None, procs: int, index: int) -> int | None:
    if total is None:
        return None
    return total // procs + (1 if index < total % procs else 0)


async def _run_one(config: LoadConfig, index: int, start_at: float) -> Stats:
    spec = build_spec(config)
    stats = Stats()
    procs = config.procs
    if config.rate is not None:
        await open_loop(spec, stats, config.rate / procs, config.duration or 10.0, start_at,
                        index / procs, max(1, config.max_conns // procs))
    else:
        await closed_loop(spec, stats, _share(config.concurrency, procs, index) or 0,
                          _share(config.requests, procs, index), config.duration, start_at)
    return stats


def run_load(config: LoadConfig) -> dict[str, Any]:
    """Run the load (forking ``procs`` generators if > 1) and return the merged report."""
    if config.procs > 1 and config.concurrency < config.procs and config.rate is None:
        config.procs = max(1, config.concurrency)
    pids = list(config.pids)
    if config.reset_peak_rss:
        for pid in pids:
            reset_peak_rss(pid)
    start_at = time.perf_counter() + 0.2 + 0.05 * config.procs
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    kids_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if config.procs <= 1:
        cpu_before = {pid: proc_cpu_s(pid) for pid in pids}
        stats = asyncio.run(_run_one(config, 0, start_at))
        merged = stats
    else:
        children: list[tuple[int, int]] = []
        for index in range(config.procs):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: run, write the result, leave without cleanup of the parent's state
                code = 0
                try:
                    os.close(read_fd)
                    stats = asyncio.run(_run_one(config, index, start_at))
                    data = json.dumps(stats.to_json()).encode()
                    with os.fdopen(write_fd, "wb") as out:
                        out.write(data)
                except BaseException:  # noqa: BLE001 - report and exit, never return into the parent's code
                    import traceback
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            os.close(write_fd)
            children.append((pid, read_fd))
        _sleep_precise(start_at)
        cpu_before = {pid: proc_cpu_s(pid) for pid in pids}
        merged = Stats()
        for pid, read_fd in children:
            with os.fdopen(read_fd, "rb") as source:
                data = source.read()
            os.waitpid(pid, 0)
            if data:
                merged.merge(Stats.from_json(json.loads(data)))
            else:
                merged.error("generator_crashed")
    cpu_after = {pid: proc_cpu_s(pid) for pid in pids}
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen_cpu = (self_after.ru_utime + self_after.ru_stime - self_before.ru_utime - self_before.ru_stime
               + kids_after.ru_utime + kids_after.ru_stime - kids_before.ru_utime - kids_before.ru_stime)
    return report(config, merged, cpu_before, cpu_after, gen_cpu)


def _sleep_precise(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def report(config: LoadConfig, stats: Stats, cpu_before: dict[int, float | None],
           cpu_after: dict[int, float | None], gen_cpu_s: float) -> dict[str, Any]:
    elapsed = max(0.0, stats.last_done - stats.first_send) if stats.first_send < math.inf else 0.0
    out: dict[str, Any] = {
        "mode": "open" if config.rate is not None else "closed",
        "stream": config.stream, "procs": config.procs,
        "concurrency": config.concurrency if config.rate is None else None, "rate": config.rate,
        "ok": stats.ok, "errors": stats.errors, "error_count": sum(stats.errors.values()),
        "elapsed_s": round(elapsed, 3), "rps": round(stats.ok / elapsed, 1) if elapsed else None,
        "connections": stats.connections,
        "latency_ms": stats.latency.summary_ms(), "ttfb_ms": stats.ttfb.summary_ms(),
        "slow_over_250ms": stats.latency.count_above(0.25),
        "generator_cpu_s": round(gen_cpu_s, 3),
    }
    if config.rate is not None:
        out["send_lag_ms"] = stats.send_lag.summary_ms()
    if config.stream:
        out.update(events=stats.events, ttft_ms=stats.ttft.summary_ms(), gap_ms=stats.gaps.summary_ms(),
                   stream_max_gap_ms=stats.stream_max_gap.summary_ms())
    targets = {}
    for pid in config.pids:
        before, after = cpu_before.get(pid), cpu_after.get(pid)
        cpu = None if before is None or after is None else round(after - before, 3)
        target: dict[str, Any] = {"cpu_s": cpu, "peak_rss_mib": _mib(proc_status_kib(pid, "VmHWM")),
                                  "rss_mib": _mib(proc_status_kib(pid, "VmRSS"))}
        if cpu is not None and stats.ok:
            target["cpu_us_per_request"] = round(cpu / stats.ok * 1e6, 1)
            if config.stream and stats.events:
                target["cpu_us_per_event"] = round(cpu / stats.events * 1e6, 2)
            if elapsed:
                target["cpu_share_of_core"] = round(cpu / elapsed, 3)
        targets[str(pid)] = target
    out["targets"] = targets
    return out


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def chat_body(model: str, stream: bool, prompt: str = "Say hello to the benchmark.") -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def messages_body(model: str, stream: bool, prompt: str = "Say hello to the benchmark.") -> bytes:
    """The same one-line request as ``chat_body``, as an Anthropic Messages client sends it."""
    body: dict[str, Any] = {"model": model, "max_tokens": 8192, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


# A bench's client protocol: the gateway's path, and the body (see bench/instructions.py and bench/event_cpu.py)
CLIENT_PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}


def client_body(client: str, model: str, stream: bool) -> bytes:
    """``chat_body`` or ``messages_body``, for ``client`` ("chat" or "messages")."""
    return messages_body(model, stream) if client == "messages" else chat_body(model, stream)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--url", required=True, help="http://host:port/path (POST)")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--key", help="sent as Authorization: Bearer KEY")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="extra request header, e.g. x-mock-tokens:200 (repeatable)")
    parser.add_argument("--body", help="raw JSON body (default: a one-message chat request for --model)")
    parser.add_argument("--stream", action="store_true", help="ask for an SSE stream and measure its events")
    parser.add_argument("--concurrency", "-c", type=int, default=1, help="closed loop: connections")
    parser.add_argument("--requests", "-n", type=int, help="closed loop: total requests")
    parser.add_argument("--duration", "-d", type=float, help="seconds (closed loop: stop sending after it)")
    parser.add_argument("--rate", type=float, help="open loop: requests per second (with --duration)")
    parser.add_argument("--procs", type=int, default=1, help="fork this many generators and merge (default 1)")
    parser.add_argument("--max-conns", type=int, default=2048, help="open loop: connection limit (all procs)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument("--pid", type=int, action="append", default=[],
                        help="measure this process's CPU seconds and peak RSS (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args(argv)
    if args.requests is None and args.duration is None:
        parser.error("give --requests or --duration (every run is bounded)")
    if args.rate is not None and args.duration is None:
        parser.error("--rate needs --duration")
    headers = {}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    body = args.body.encode() if args.body else chat_body(args.model, args.stream)
    config = LoadConfig(url=args.url, body=body, headers=headers, stream=args.stream, concurrency=args.concurrency,
                        requests=args.requests, duration=args.duration, rate=args.rate, procs=args.procs,
                        max_conns=args.max_conns, timeout_s=args.timeout, pids=args.pid)
    result = run_load(config)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(human(result))
    return 0 if not result["error_count"] else 1


def human(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    lines = [f"{result['mode']}-loop{' stream' if result['stream'] else ''}: {result['ok']} ok, "
             f"{result['error_count']} errors {result['errors'] or ''} in {result['elapsed_s']} s "
             f"= {result['rps']} req/s",
             f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}"]
    if result["stream"]:
        ttft, gap = result["ttft_ms"], result["stream_max_gap_ms"]
        lines.append(f"ttft ms: p50 {ttft['p50']}  p99 {ttft['p99']}   events {result['events']}   "
                     f"per-stream max gap ms: p50 {gap['p50']}  p99 {gap['p99']}  max {gap['max']}")
    if result.get("send_lag_ms"):
        lines.append(f"send lag ms (generator behind schedule): p99 {result['send_lag_ms']['p99']}")
    lines.append(f"generator CPU: {result['generator_cpu_s']} s")
    for pid, target in result["targets"].items():
        lines.append(f"pid {pid}: {target}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
