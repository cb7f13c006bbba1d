"""The token bucket: burst then steady rate, usage corrections, joint acquisition, and the 60 s config math."""

from __future__ import annotations

import asyncio
import time

import pytest

from skilltag.generate.ratelimit import TokenBucket, acquire_together, bucket_for_limit
from openai_server import max_in_window


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_steady_rate():
    async def main() -> float:
        bucket = TokenBucket(rate=20, capacity=4, period=1.0)
        start = time.monotonic()
        for _ in range(4):
            assert await bucket.acquire() < 0.01  # the burst needs no wait
        for _ in range(10):
            await bucket.acquire()
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert 0.45 <= elapsed <= 0.9  # 10 units after the burst at 20 per second


def test_concurrent_takers_never_exceed_the_window_limit():
    limit, period = 16, 0.5
    times: list[float] = []

    async def worker(bucket: TokenBucket) -> None:
        for _ in range(4):
            await bucket.acquire()
            times.append(time.monotonic())

    async def main() -> TokenBucket:
        bucket = bucket_for_limit(limit, period, burst=0.25)
        await asyncio.gather(*(worker(bucket) for _ in range(8)))
        return bucket

    bucket = asyncio.run(main())
    assert len(times) == 32
    assert max_in_window(times, [1.0] * len(times), period) <= limit
    # and not by crawling: after the burst, the rest at the steady rate
    steady = (32 - bucket.capacity) * period / bucket.rate
    assert times[-1] - times[0] < 1.1 * steady


def test_fifo_order():
    order: list[int] = []

    async def taker(bucket: TokenBucket, i: int) -> None:
        await bucket.acquire()
        order.append(i)

    async def main() -> None:
        bucket = TokenBucket(rate=100, capacity=1, period=1.0)
        tasks = []
        for i in range(10):
            tasks.append(asyncio.create_task(taker(bucket, i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(range(10))


def test_refund_wakes_a_waiter_early():
    async def main() -> float:
        bucket = TokenBucket(rate=1, capacity=100, period=10.0)  # refills one unit per 10 s
        await bucket.acquire(100)
        waiter = asyncio.create_task(bucket.acquire(60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        bucket.adjust(-70)  # the request cost 30, not 100
        return await asyncio.wait_for(waiter, timeout=1.0)

    assert asyncio.run(main()) < 0.5


def test_extra_charge_puts_the_bucket_in_debt():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=10, period=1.0, clock=clock)
    bucket.adjust(15)  # took 10 too few earlier: the level is now -5
    assert bucket.level == pytest.approx(-5)
    assert bucket.wait_time(1) == pytest.approx(0.6)
    clock.now = 0.6
    assert bucket.wait_time(1) == 0.0


def test_refund_never_overfills():
    bucket = TokenBucket(rate=10, capacity=10, period=1.0, clock=FakeClock())
    bucket.adjust(-50)
    assert bucket.level == 10


def test_drain_spends_the_saved_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=10, period=1.0, clock=clock)
    assert bucket.wait_time(10) == 0.0
    bucket.drain()
    assert bucket.wait_time(1) == pytest.approx(0.1)


def test_more_than_capacity_waits_for_a_full_bucket_then_owes_the_rest():
    async def main() -> tuple[float, float]:
        bucket = TokenBucket(rate=10, capacity=2, period=1.0)
        await bucket.acquire(2)
        waited = await bucket.acquire(5)
        return waited, bucket.level

    waited, level = asyncio.run(main())
    assert 0.15 <= waited <= 0.4  # two units refill in 0.2 s
    assert level == pytest.approx(-3, abs=0.3)


def test_acquire_together_takes_both_at_once_when_the_slower_is_ready():
    async def main() -> tuple[float, float, float]:
        requests = TokenBucket(rate=1, capacity=1, period=1.0)
        tokens = TokenBucket(rate=1000, capacity=1000, period=1.0)
        await tokens.acquire(1000)
        waited = await acquire_together((requests, 1), (tokens, 300))
        return waited, requests.level, tokens.level

    waited, requests_left, tokens_left = asyncio.run(main())
    assert 0.28 <= waited <= 0.8  # the tokens bucket needs 0.3 s
    # The requests unit was taken at the end of the wait: taken at its start, 0.3 would have refilled.
    assert requests_left < 0.1
    assert tokens_left < 50


@pytest.mark.parametrize("limit", [1200, 60, 200_000])
def test_sixty_second_config_math(limit):
    """Greedy taking from a 60 s bucket for 5 simulated minutes: never over the limit, little lost."""
    clock = FakeClock()
    bucket = bucket_for_limit(limit, period=60.0, burst=0.02, largest=1)
    bucket.clock = clock
    bucket._stamp = 0.0
    assert bucket.capacity + bucket.rate <= limit
    unit = max(1, limit // 1200)
    times: list[float] = []
    while clock.now < 300.0:
        wait = bucket.wait_time(unit)
        if wait:
            clock.now += wait
            continue
        bucket.adjust(unit)
        times.append(clock.now)
    assert max_in_window(times, [unit] * len(times), 60.0) <= limit
    achieved = len(times) * unit / 5.0
    assert achieved >= 0.97 * limit


def test_limit_too_small_for_one_request_is_refused():
    with pytest.raises(ValueError, match="may need 5000"):
        bucket_for_limit(4000, 60.0, 0.02, largest=5000)
