"""The async engine: skills in, job-ad sentences out, within the provider's rate limits.

Workers (``concurrency`` of them) take skills from a queue. Every HTTP request first waits out
any engine-wide pause (set by a 429), then takes one unit from the requests bucket and its
estimated tokens (prompt + max_tokens) from the tokens bucket; the tokens bucket is corrected
from the ``usage`` in the reply. Finished skills are batched and fsynced by :class:`_Batcher`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from skilltag.generate.parse import screen, split_answer
from skilltag.generate.prompts import CHARS_PER_TOKEN, PROMPT_VERSION, build_messages, estimate_prompt_tokens
from skilltag.generate.ratelimit import TokenBucket, acquire_together, bucket_for_limit
from skilltag.generate.retry import backoff, retry_after
from skilltag.generate.store import FailedRecord, OutputStore, SkillRecord
from skilltag.taxonomy import Skill

log = logging.getLogger("skilltag.generate")

# A 429 is the provider pacing us, not the request failing, and the engine-wide pause answers
# it; so 429s get this many times --max-attempts, still finite in case they never stop.
RATE_LIMIT_TRIES = 5


class GenerateError(Exception):
    """A problem the user must fix (bad options, credentials, endpoint); the run stops."""


class _SkillError(Exception):
    """This skill cannot be finished in this run (the request was refused or kept failing)."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True)
class EngineConfig:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    per_skill: int = 10
    min_sentences: int = 5
    max_asks: int = 3
    concurrency: int = 16
    max_tokens: int = 1024
    temperature: float = 0.7
    timeout: float = 120.0
    max_attempts: int = 6
    rpm: float = 500.0
    tpm: float = 200_000.0
    # Seconds the rpm/tpm limits apply to: 60 in production; tests shrink it to run fast.
    period: float = 60.0
    # Share of each limit that may go out as a burst; the steady rate is lowered by as much.
    burst: float = 0.02
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    max_pause: float = 300.0
    # A server that answered earlier and now refuses every connection this long is down: stop, keep what is done.
    unreachable_after: float = 120.0
    batch_size: int = 32
    flush_interval: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_sentences <= self.per_skill:
            raise GenerateError(f"--min-sentences must be between 1 and --per-skill ({self.per_skill})")
        for name in ("concurrency", "max_tokens", "max_attempts", "max_asks", "rpm", "tpm", "timeout", "period"):
            if getattr(self, name) <= 0:
                raise GenerateError(f"--{name.replace('_', '-')} must be positive")

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


@dataclass
class RunStats:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    done: int = 0
    failed: int = 0
    sentences: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


@dataclass(frozen=True)
class _Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int


def parse_completion(body: bytes) -> tuple[str, dict | None]:
    """The answer text and usage of a chat completion body; ValueError when it is not one."""
    data = json.loads(body)
    content = data["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise ValueError("message content is not text")
    usage = data.get("usage")
    return content, usage if isinstance(usage, dict) else None


def _error_fields(body: bytes) -> tuple[str, str | None]:
    """The message (one line, cut short) and code of an error body, whatever its shape."""
    try:
        data = json.loads(body)
        error = data.get("error", data)
        message, code = (error.get("message", error), error.get("code")) if isinstance(error, dict) else (error, None)
    except (ValueError, AttributeError):
        message, code = body.decode("utf-8", "replace"), None
    return " ".join(str(message).split())[:300], code if isinstance(code, str) else None


class _Batcher:
    """Collects finished skills and fsyncs them in batches: every ``size`` results or ``interval`` seconds."""

    def __init__(self, store: OutputStore, size: int, interval: float) -> None:
        self.store = store
        self.size = size
        self.interval = interval
        self._done: list[SkillRecord] = []
        self._failed: list[FailedRecord] = []
        self._full = asyncio.Event()
        # One writer thread: a flush cancelled mid-write still finishes before the next one starts.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skilltag-store")

    def add(self, record: SkillRecord | FailedRecord) -> None:
        (self._done if isinstance(record, SkillRecord) else self._failed).append(record)
        if len(self._done) + len(self._failed) >= self.size:
            self._full.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._full.clear()
            await self.flush()

    async def flush(self) -> None:
        done, self._done = self._done, []
        failed, self._failed = self._failed, []
        # Off the event loop: fsync must not stall the requests in flight.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self.store.append_done, done)
        await loop.run_in_executor(self._writer, self.store.append_failed, failed)

    def close(self) -> None:
        self._writer.shutdown(wait=True)


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        on_result: Callable[[SkillRecord | FailedRecord], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.on_result = on_result or (lambda _record: None)
        self.rng = rng or random.Random()
        self.stats = RunStats()
        self._resume_at = 0.0
        self._answered = False  # any HTTP answer this run, even an error: the endpoint exists
        self._refused = 0  # connection failures since the last answer
        self._refused_since = 0.0
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None

    async def run(self, skills: Sequence[Skill], store: OutputStore) -> RunStats:
        """Generate sentences for every skill in ``skills`` not yet in ``store``."""
        cfg = self.config
        todo = [s for s in skills if s.uri not in store.done]
        self.stats = RunStats()
        if not todo:
            self.stats.finished = time.monotonic()
            return self.stats
        largest = max(estimate_prompt_tokens(build_messages(s, cfg.per_skill)) for s in todo) + cfg.max_tokens
        try:
            self.requests = bucket_for_limit(cfg.rpm, cfg.period, cfg.burst)
        except ValueError as e:
            raise GenerateError(f"--rpm is too small to leave room for a steady rate ({e})") from e
        try:
            self.tokens = bucket_for_limit(cfg.tpm, cfg.period, cfg.burst, largest=largest)
        except ValueError as e:
            raise GenerateError(f"--tpm is too small for these requests ({e}); raise it or lower --max-tokens") from e
        store.forget_failures({s.uri for s in todo})
        queue: asyncio.Queue[Skill] = asyncio.Queue()
        for s in todo:
            queue.put_nowait(s)
        batcher = _Batcher(store, cfg.batch_size, cfg.flush_interval)
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        connector = aiohttp.TCPConnector(limit=cfg.concurrency)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            flusher = asyncio.create_task(batcher.run())
            workers = [asyncio.create_task(self._worker(session, queue, batcher)) for _ in range(cfg.concurrency)]
            try:
                # The first failing worker (a GenerateError) stops the run; finished skills are kept.
                done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in (*workers, flusher):
                    task.cancel()
                await asyncio.gather(*workers, flusher, return_exceptions=True)
                await batcher.flush()
                batcher.close()
                self.stats.finished = time.monotonic()
        return self.stats

    async def _worker(self, session: aiohttp.ClientSession, queue: asyncio.Queue[Skill], batcher: _Batcher) -> None:
        while not queue.empty():
            skill = queue.get_nowait()
            record = await self._skill(session, skill)
            if isinstance(record, SkillRecord):
                self.stats.done += 1
                self.stats.sentences += len(record.sentences)
            else:
                self.stats.failed += 1
                log.warning("skill failed: %s (%s): %s", skill.label, skill.uri, record.reason)
            batcher.add(record)
            self.on_result(record)

    async def _skill(self, session: aiohttp.ClientSession, skill: Skill) -> SkillRecord | FailedRecord:
        cfg = self.config
        kept: list[str] = []
        seen: set[str] = set()
        usage = Counter(prompt_tokens=0, completion_tokens=0)
        attempts = 0
        rejected: Counter[str] = Counter()
        problem = ""
        for _ask in range(cfg.max_asks):
            need = cfg.per_skill - len(kept)
            try:
                reply = await self._complete(session, build_messages(skill, need, kept))
            except _SkillError as e:
                attempts += e.attempts
                problem = e.reason
                break
            attempts += reply.attempts
            usage.update(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
            screened = screen(split_answer(reply.text), seen)
            rejected.update(screened.rejected)
            kept.extend(screened.kept[:need])
            if len(kept) >= cfg.per_skill:
                break
        self.stats.rejected.update(rejected)
        if len(kept) >= cfg.min_sentences:
            return SkillRecord(skill.uri, skill.label, kept, cfg.model, PROMPT_VERSION, dict(usage), attempts)
        if not problem:
            why = ", ".join(f"{n} {reason}" for reason, n in rejected.most_common()) or "none offered"
            problem = (
                f"only {len(kept)} usable sentences after {cfg.max_asks} asks "
                f"(need {cfg.min_sentences}; rejected: {why})"
            )
        return FailedRecord(skill.uri, skill.label, problem, cfg.model, PROMPT_VERSION, attempts)

    async def _complete(self, session: aiohttp.ClientSession, messages: list[dict[str, str]]) -> _Completion:
        """One chat completion, retried; raises _SkillError(reason, attempts) or GenerateError."""
        cfg = self.config
        assert self.requests is not None and self.tokens is not None
        estimated_prompt = estimate_prompt_tokens(messages)
        estimate = estimated_prompt + cfg.max_tokens
        payload = {
            "model": cfg.model,
            "messages": messages,
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
        }
        tries = failures = throttled = refused = 0
        while True:
            tries += 1
            await self._wait_out_pause()
            await acquire_together((self.requests, 1), (self.tokens, estimate))
            await self._wait_out_pause()
            self.stats.requests += 1
            try:
                async with session.post(
                    cfg.chat_url, json=payload, timeout=aiohttp.ClientTimeout(total=cfg.timeout)
                ) as resp:
                    status, headers, body = resp.status, resp.headers, await resp.read()
            except TimeoutError:
                cause, detail = "timeout", f"no answer within {cfg.timeout:g}s"
            except aiohttp.ClientError as e:
                cause, detail = "connection", f"{type(e).__name__}: {e}"
                if isinstance(e, aiohttp.ClientConnectorError):
                    refused += 1
                    self._check_reachable(detail, refused)
            else:
                self._answered, self._refused = True, 0
                message, code = _error_fields(body) if status != 200 else ("", None)
                if status == 200:
                    try:
                        text, usage = parse_completion(body)
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        cause, detail = "malformed", f"unreadable completion ({type(e).__name__})"
                    else:
                        return self._account(text, usage, estimated_prompt, estimate, tries)
                elif status == 429 and code == "insufficient_quota":
                    raise GenerateError(f"{cfg.chat_url}: the account's quota is used up (HTTP 429): {message}")
                elif status == 429:
                    cause, detail = "rate_limit", message
                    throttled += 1
                    self.tokens.adjust(-estimate)  # refused unserved: its tokens were not spent
                    hint = retry_after(headers)
                    if hint is None:
                        hint = backoff(throttled, cfg.backoff_base, cfg.backoff_cap, self.rng)
                    self._pause(hint)
                elif status in (401, 403):
                    raise GenerateError(
                        f"{cfg.chat_url} refused the API key (HTTP {status}): {message}. "
                        "Check the key in the environment variable given by --api-key-env."
                    )
                elif status == 404:
                    raise GenerateError(
                        f"{cfg.chat_url} answered 404 for model {cfg.model!r}: {message}. "
                        "Check --model, and that --base-url ends where the API's /chat/completions lives (often /v1)."
                    )
                elif status >= 500 or status in (408, 409):
                    cause, detail = "server_error", f"HTTP {status}: {message}"
                else:
                    self.tokens.adjust(-estimate)
                    raise _SkillError(f"HTTP {status}: {message}", tries)
            if cause != "rate_limit":
                failures += 1
            if failures >= cfg.max_attempts or throttled > RATE_LIMIT_TRIES * cfg.max_attempts:
                raise _SkillError(f"gave up after {tries} tries; last: {cause} ({detail})", tries)
            self.stats.retries[cause] += 1
            log.debug("try %d failed (%s: %s); retrying", tries, cause, detail)
            if cause != "rate_limit":
                await asyncio.sleep(backoff(failures, cfg.backoff_base, cfg.backoff_cap, self.rng))

    def _check_reachable(self, detail: str, refused_here: int) -> None:
        """Stop on an endpoint that cannot be reached rather than fail skill after skill for hours.

        Never answered: a wrong --base-url or a server not started, known once one request has spent
        all its tries (with backoff, ~30 s by default: time for a server that is just starting).
        Answered before: down only once every connection has failed for ``unreachable_after`` seconds.
        """
        cfg = self.config
        now = time.monotonic()
        if not self._refused:
            self._refused_since = now
        self._refused += 1
        never = not self._answered and refused_here >= cfg.max_attempts
        down = self._answered and now - self._refused_since >= cfg.unreachable_after
        if never or down:
            how = "cannot connect" if never else f"no connection for {cfg.unreachable_after:g}s"
            raise GenerateError(f"{cfg.chat_url}: {how} ({detail}); is the server running and --base-url right?")

    def _account(
        self, text: str, usage: dict | None, estimated_prompt: int, estimate: int, attempts: int
    ) -> _Completion:
        assert self.tokens is not None
        usage = usage or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        prompt = prompt if isinstance(prompt, int) else estimated_prompt
        completion = completion if isinstance(completion, int) else math.ceil(len(text) / CHARS_PER_TOKEN)
        self.tokens.adjust(prompt + completion - estimate)
        self.stats.tokens_in += prompt
        self.stats.tokens_out += completion
        return _Completion(text, prompt, completion, attempts)

    def _pause(self, seconds: float) -> None:
        """A 429 holds back every task, not just the one refused, and spends any saved-up burst."""
        assert self.requests is not None and self.tokens is not None
        seconds = min(seconds, self.config.max_pause)
        until = time.monotonic() + seconds
        if until > self._resume_at:
            self._resume_at = until
            log.warning("rate limited by the server; pausing all requests for %.1fs", seconds)
        self.requests.drain()
        self.tokens.drain()

    async def _wait_out_pause(self) -> None:
        while (wait := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(wait)
