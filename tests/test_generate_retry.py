"""Retry timing: the server's hints and exponential backoff with jitter."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from skilltag.generate.retry import backoff, parse_duration, retry_after


@pytest.mark.parametrize(
    "text, seconds",
    [("2", 2.0), ("0.5", 0.5), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("1s", 1.0),
     ("soon", None), ("5x", None), ("", None)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_retry_after_prefers_milliseconds_then_seconds():
    assert retry_after({"Retry-After": "3", "retry-after-ms": "1500"}) == 1.5
    assert retry_after({"Retry-After": "3"}) == 3.0


def test_retry_after_http_date():
    now = 1_800_000_000.0
    assert retry_after({"Retry-After": formatdate(now + 30, usegmt=True)}, now=now) == pytest.approx(30, abs=1)


def test_ratelimit_reset_headers_count_only_the_exhausted_limit():
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "5000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert retry_after(headers) == 1.0
    headers["x-ratelimit-remaining-tokens"] = "0"
    assert retry_after(headers) == 360.0


def test_no_hint():
    assert retry_after({"Content-Type": "application/json"}) is None


def test_backoff_doubles_caps_and_jitters_in_the_upper_half():
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (20, 30.0)]:
        delays = [backoff(attempt, base=1.0, cap=30.0, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed
