"""Asyncio token buckets for provider rate limits (requests and tokens per period)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

# Units count as taken once at most this little is missing, so float rounding never costs an extra wait.
_EPSILON = 1e-9


class TokenBucket:
    """Admits at most ``capacity + rate * t / period`` units in any span of ``t`` seconds.

    So a provider's limit of L units per sliding window of ``period`` seconds holds when
    ``capacity + rate <= L``; :func:`bucket_for_limit` picks such a pair. Waiters are served first
    come, first served, and each wait is one timed sleep, cut short when :meth:`adjust` hands
    units back.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or capacity <= 0 or period <= 0:
            raise ValueError(f"rate, capacity and period must be positive (got {rate}, {capacity}, {period})")
        self.rate = rate
        self.capacity = capacity
        self.period = period
        self.clock = clock
        self._level = capacity
        self._stamp = clock()
        self._turn = asyncio.Lock()
        self._refunded = asyncio.Event()

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self.clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate / self.period)
        self._stamp = now

    def wait_time(self, n: float) -> float:
        """Seconds until ``n`` units can be taken (more than ``capacity`` wait for a full bucket)."""
        self._refill()
        missing = min(n, self.capacity) - self._level
        return 0.0 if missing <= _EPSILON else missing * self.period / self.rate

    async def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` units, waiting as long as needed; returns the seconds waited."""
        return await acquire_together((self, n))

    def adjust(self, delta: float) -> None:
        """Charge ``delta`` more units (or hand ``-delta`` back) once the true cost is known.

        The level may go below zero: a request that cost more than estimated is paid for by the
        ones after it.
        """
        self._refill()
        self._level = min(self.capacity, self._level - delta)
        if delta < 0:
            self._refunded.set()

    def drain(self) -> None:
        """Forget any saved-up burst, so the next units flow at the steady rate (after a 429)."""
        self._refill()
        self._level = min(self._level, 0.0)


async def acquire_together(*wants: tuple[TokenBucket, float]) -> float:
    """Take units from several buckets at one instant, once all of them have enough.

    Taking them one after another would spend the first bucket's units while waiting on the
    second, and the request would then reach the server later than its first bucket had it.
    """
    clock = wants[0][0].clock
    start = clock()
    async with AsyncExitStack() as stack:
        for bucket, _ in wants:
            await stack.enter_async_context(bucket._turn)
        while True:
            wait, slowest = max(((b.wait_time(n), b) for b, n in wants), key=lambda pair: pair[0])
            if wait == 0.0:
                for bucket, n in wants:
                    bucket._refill()
                    bucket._level -= n
                return clock() - start
            slowest._refunded.clear()
            try:
                await asyncio.wait_for(slowest._refunded.wait(), timeout=wait)
            except TimeoutError:
                pass


def bucket_for_limit(
    limit: float, period: float, burst: float, largest: float = 1.0, skew: float = 0.05
) -> TokenBucket:
    """A bucket that keeps under ``limit`` units per sliding ``period`` as the server counts them.

    ``burst`` is the share of the limit that may go out at once (never less than the ``largest``
    single take); the refill rate is what remains, slowed so that requests reaching the server up
    to ``skew`` seconds out of step with our clock still fit its window.
    """
    capacity = max(largest, burst * limit)
    if capacity >= limit:
        raise ValueError(f"one request may need {largest:g} of the {limit:g} allowed per {period:g}s")
    return TokenBucket(rate=(limit - capacity) * period / (period + skew), capacity=capacity, period=period)
