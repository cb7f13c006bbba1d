"""An OpenAI-compatible chat server for tests and benchmarks, with its own rate limits and faults.

It enforces requests- and tokens-per-window limits over a sliding window (60 s like a real
provider, shorter in tests), answers 429 with Retry-After when a request would break them, and
logs every arrival so a test can check that no window ever held more than the limit. Faults can
be scripted per request (``faults``, in order) or drawn at random (``fault_rates``):

    500, 503   an error status          hang       answer only after ``hang_seconds``
    drop       close the connection     malformed  200 with a body that is not a completion
    short      two sentences only       foreign    sentences that are not English
    400        a refused request        quota      429 insufficient_quota

Run it in a thread (``with OpenAIServer(...) as server: server.url``) or as a process:
``python tests/openai_server.py --rpm 1200 --tpm 200000 --latency 0.02`` prints its URL;
GET /stats returns the arrival log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

FAULTS = ("500", "503", "hang", "drop", "malformed", "short", "foreign", "400", "quota")

_OPENERS = (
    "You will {label} as part of our growing team",
    "Experience in the area of {label} is essential for this role",
    "The successful candidate must be able to {label} with little supervision",
    "Our team expects you to {label} every day",
    "We are looking for someone who can {label} reliably",
    "In this position you will regularly {label} for our clients",
    "Applicants should show they can {label} under pressure",
    "This job requires you to {label} to a high standard",
)
_CLOSERS = (
    "in a friendly office", "across several departments", "within tight deadlines", "for demanding customers",
    "in a fast moving market", "with modern tools", "alongside senior colleagues", "at our main site",
    "during busy seasons", "for international projects", "in a regulated industry", "within a small company",
)
_LABEL = re.compile(r"^Skill: (.+)$", re.M)
_COUNT = re.compile(r"Write (\d+) different sentences")


def count_tokens(text: str) -> int:
    """The server's own token count: about four characters a token, as real tokenizers give for English."""
    return math.ceil(len(text) / 4)


def max_in_window(times: list[float], weights: list[float], window: float) -> float:
    """The largest total weight of arrivals inside any half-open window (t - window, t]."""
    order = sorted(range(len(times)), key=times.__getitem__)
    best = running = 0.0
    start = 0
    for i in order:
        running += weights[i]
        while times[order[start]] <= times[i] - window:
            running -= weights[order[start]]
            start += 1
        best = max(best, running)
    return best


@dataclass
class Arrival:
    t: float
    tokens: int
    status: int
    fault: str
    label: str
    asked: int
    retry_after: float | None = None


@dataclass
class ServerConfig:
    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0
    latency: float = 0.0
    api_key: str | None = None
    models: tuple[str, ...] | None = None
    faults: list[str] = field(default_factory=list)
    fault_rates: dict[str, float] = field(default_factory=dict)
    hang_seconds: float = 30.0
    style: str = "mixed"  # json | list | fenced | mixed
    seed: int = 0


class ChatServer:
    """The request handler and its bookkeeping (one event loop, no locks needed inside it)."""

    def __init__(self, config: ServerConfig) -> None:
        unknown = {*config.faults, *config.fault_rates} - {*FAULTS, "ok"}
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
        self.config = config
        self.faults = deque(config.faults)
        self.rng = random.Random(config.seed)
        self.arrivals: list[Arrival] = []
        self.rate_limited = 0
        self.auth_headers: list[str] = []
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._written: dict[str, int] = {}
        self.t0 = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/stats", self.stats)
        return app

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    def snapshot(self) -> dict:
        return {
            "arrivals": [[a.t, a.tokens, a.status, a.fault, a.label] for a in self.arrivals],
            "rate_limited": self.rate_limited,
            "window": self.config.window,
        }

    def _admit(self, now: float, tokens: int) -> float | None:
        """None when the request fits the window's limits, else the seconds until it would."""
        cfg = self.config
        while self._window and self._window[0][0] <= now - cfg.window:
            self._window_tokens -= self._window.popleft()[1]
        over_requests = cfg.rpm is not None and len(self._window) + 1 > cfg.rpm
        over_tokens = cfg.tpm is not None and self._window_tokens + tokens > cfg.tpm
        if not (over_requests or over_tokens):
            self._window.append((now, tokens))
            self._window_tokens += tokens
            return None
        # Wait until enough of the oldest arrivals have left the window.
        freed_tokens, wait = 0, cfg.window
        for i, (t, n) in enumerate(self._window):
            freed_tokens += n
            requests_ok = not over_requests or len(self._window) - (i + 1) + 1 <= cfg.rpm
            tokens_ok = not over_tokens or self._window_tokens - freed_tokens + tokens <= cfg.tpm
            if requests_ok and tokens_ok:
                wait = t + cfg.window - now
                break
        return max(wait, 0.001)

    def _next_fault(self) -> str:
        if self.faults:
            return self.faults.popleft()
        for fault, rate in self.config.fault_rates.items():
            if self.rng.random() < rate:
                return fault
        return "ok"

    def _sentences(self, label: str, n: int, fault: str) -> list[str]:
        if fault == "foreign":
            return [f"Sie werden {label} und das Team leiten, Nummer {i}." for i in range(n)]
        start = self._written.get(label, 0)
        self._written[label] = start + n
        out = []
        for k in range(start, start + n):
            opener = _OPENERS[k % len(_OPENERS)].format(label=label)
            closer = _CLOSERS[(k // len(_OPENERS)) % len(_CLOSERS)]
            out.append(f"{opener} {closer}.")
        return out

    def _render(self, sentences: list[str]) -> str:
        style = self.config.style
        if style == "mixed":
            style = self.rng.choice(("json", "list", "fenced"))
        if style == "list":
            return "Here are the sentences:\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, 1))
        text = json.dumps(sentences, indent=1)
        return f"```json\n{text}\n```" if style == "fenced" else text

    async def chat(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        cfg = self.config
        self.auth_headers.append(request.headers.get("Authorization", ""))
        if cfg.api_key is not None and request.headers.get("Authorization") != f"Bearer {cfg.api_key}":
            return _error(401, "Incorrect API key provided.")
        try:
            body = await request.json()
            messages = body["messages"]
            prompt = "\n".join(m["content"] for m in messages)
            max_tokens = int(body.get("max_tokens") or 4096)
        except (ValueError, KeyError, TypeError):
            return _error(400, "Request body is not a chat completion request.")
        if cfg.models is not None and body.get("model") not in cfg.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        fault = self._next_fault()
        label_match, count_match = _LABEL.search(prompt), _COUNT.search(prompt)
        label = label_match.group(1) if label_match else "work"
        n = int(count_match.group(1)) if count_match else 10
        sentences = self._sentences(label, 2 if fault == "short" else n, fault)
        content = self._render(sentences)[: max_tokens * 4]
        prompt_tokens = sum(count_tokens(m["content"]) + 4 for m in messages)
        completion_tokens = count_tokens(content)
        charged = prompt_tokens + (completion_tokens if fault in ("ok", "short", "foreign", "hang") else 0)
        wait = self._admit(now, charged)
        if wait is not None:
            self.rate_limited += 1
            self.arrivals.append(Arrival(now - self.t0, charged, 429, fault, label, n, wait))
            return _error(
                429,
                "Rate limit reached.",
                {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))},
            )
        status = {"500": 500, "503": 503, "400": 400, "quota": 429}.get(fault, 200)
        self.arrivals.append(Arrival(now - self.t0, charged, status, fault, label, n))
        if fault == "hang":
            await asyncio.sleep(cfg.hang_seconds)
        elif cfg.latency:
            await asyncio.sleep(cfg.latency)
        if fault == "quota":
            return web.json_response(
                {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                           "code": "insufficient_quota"}},
                status=429,
            )
        if fault == "drop":
            request.transport.abort()
            return web.Response()
        if status != 200:
            return _error(status, f"Injected fault {fault}.")
        if fault == "malformed":
            return web.Response(text='{"choices": [', content_type="application/json")
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.arrivals)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "test", "code": status}}, status=status, headers=headers)


class OpenAIServer:
    """A :class:`ChatServer` on 127.0.0.1 at a free port, in a thread of its own."""

    def __init__(self, **config) -> None:
        self.handler = ChatServer(ServerConfig(**config))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def _start(self) -> int:
        self._runner = web.AppRunner(self.handler.app(), handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    def __exit__(self, *exc) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def call(self, fn):
        """Run ``fn()`` on the server's loop (so it sees a consistent state) and return its result."""
        async def wrapped():
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout=10)

    def arrivals(self) -> list[Arrival]:
        return self.call(lambda: list(self.handler.arrivals))


def window_maxima(arrivals: list[Arrival], window: float) -> tuple[float, float]:
    """The most requests and tokens that reached the server (refused ones included) in any window."""
    times = [a.t for a in arrivals]
    return max_in_window(times, [1.0] * len(times), window), max_in_window(times, [a.tokens for a in arrivals], window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--tpm", type=int)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--style", default="json")
    args = parser.parse_args()
    handler = ChatServer(ServerConfig(rpm=args.rpm, tpm=args.tpm, window=args.window, latency=args.latency, style=args.style))

    async def serve() -> None:
        runner = web.AppRunner(handler.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        print(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
