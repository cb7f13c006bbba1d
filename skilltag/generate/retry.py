"""When to try a failed request again: the server's own hint, else exponential backoff with jitter."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str) -> float | None:
    """Seconds in '1.5', '20ms', '6m0s' or '1h2m3.5s' (the forms of x-ratelimit-reset-*), else None."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from Retry-After(-ms) or the x-ratelimit-reset-* headers."""
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        ms = parse_duration(h["retry-after-ms"])
        if ms is not None:
            return ms / 1000.0
    if "retry-after" in h:
        seconds = parse_duration(h["retry-after"])
        if seconds is not None:
            return seconds
        try:
            when = parsedate_to_datetime(h["retry-after"]).timestamp()
        except (TypeError, ValueError):
            pass
        else:
            return max(0.0, when - (time.time() if now is None else now))
    # Only the limit that ran out matters: a tokens reset is irrelevant while tokens remain.
    waits = []
    for kind in ("requests", "tokens"):
        reset = h.get(f"x-ratelimit-reset-{kind}")
        if reset is None or h.get(f"x-ratelimit-remaining-{kind}", "0").strip() not in ("0", "0.0"):
            continue
        seconds = parse_duration(reset)
        if seconds is not None:
            waits.append(seconds)
    return max(waits) if waits else None


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before try ``attempt + 1``: doubling from ``base`` up to ``cap``, uniformly jittered in its upper half.

    The jitter spreads the retries of many tasks that failed together; keeping the lower half
    out stops a retry from coming back at once.
    """
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())
