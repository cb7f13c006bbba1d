"""How close ``skilltag generate`` runs to a provider's rate limits without ever breaking them.

The test server (tests/openai_server.py) runs as its own process with a real 60-second sliding
window, RPM 1200 and TPM 200k, and 20 ms latency; the engine runs here with the same limits
(period 60 s, as in production) for ``--duration`` seconds over real ESCO skills.

    python benchmarks/bench_generate.py [--duration 75] [--rpm 1200] [--tpm 200000]

Prints one JSON object. ``allowed_rpm`` is the request rate the limits permit for requests of
the size seen (min of RPM and TPM / tokens per request); ``request_ratio`` is the achieved rate
over it (goal >= 0.95), ``busiest_window_*`` the fullest 60 s window as a share of each limit, and
``violations`` the 429s plus any window over a limit, as the server counted them (goal 0).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from openai_server import max_in_window  # noqa: E402

from skilltag.generate.engine import Engine, EngineConfig  # noqa: E402
from skilltag.generate.store import OutputStore  # noqa: E402
from skilltag.taxonomy import load_taxonomy  # noqa: E402

ESCO = REPO.parent / "shared" / "data" / "esco" / "v1.1.0" / "skills_en.csv"
WINDOW = 60.0


def start_server(rpm: int, tpm: int, latency: float) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(REPO / "tests" / "openai_server.py"), "--rpm", str(rpm), "--tpm", str(tpm),
           "--latency", str(latency), "--window", str(WINDOW), "--style", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


async def run_for(engine: Engine, skills, store: OutputStore, duration: float) -> None:
    try:
        await asyncio.wait_for(engine.run(skills, store), timeout=duration)
    except TimeoutError:
        pass


@click.command()
@click.option("--duration", default=75.0, show_default=True, help="Seconds to run the engine.")
@click.option("--rpm", default=1200, show_default=True)
@click.option("--tpm", default=200_000, show_default=True)
@click.option("--latency", default=0.02, show_default=True, help="Server latency per request, seconds.")
@click.option("--taxonomy", default=str(ESCO), show_default=True)
def main(duration: float, rpm: int, tpm: int, latency: float, taxonomy: str) -> None:
    skills = load_taxonomy(taxonomy).skills
    server, url = start_server(rpm, tpm, latency)
    try:
        config = EngineConfig(base_url=url, model="bench", rpm=rpm, tpm=tpm, period=WINDOW, concurrency=16)
        engine = Engine(config)
        with tempfile.TemporaryDirectory() as out:
            started = time.monotonic()
            asyncio.run(run_for(engine, skills, OutputStore(out), duration))
            wall = time.monotonic() - started
        with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as resp:
            stats = json.load(resp)
    finally:
        server.terminate()
        server.wait(timeout=10)
    arrivals = stats["arrivals"]
    times = [a[0] for a in arrivals]
    tokens = [a[1] for a in arrivals]
    served = [a for a in arrivals if a[2] == 200]
    span = max(times) - min(times)
    per_request = sum(a[1] for a in served) / len(served)
    allowed_rpm = min(rpm, tpm / per_request)
    achieved_rpm = len(arrivals) / span * 60.0
    busiest_requests = max_in_window(times, [1.0] * len(times), WINDOW)
    busiest_tokens = max_in_window(times, tokens, WINDOW)
    violations = stats["rate_limited"] + (busiest_requests > rpm) + (busiest_tokens > tpm)
    print(json.dumps({
        "duration_s": round(wall, 1),
        "skills_done": engine.stats.done,
        "requests": len(arrivals),
        "tokens_per_request": round(per_request, 1),
        "binding_limit": "rpm" if rpm <= tpm / per_request else "tpm",
        "allowed_rpm": round(allowed_rpm, 1),
        "achieved_rpm": round(achieved_rpm, 1),
        "request_ratio": round(achieved_rpm / allowed_rpm, 4),
        "achieved_tpm": round(sum(tokens) / span * 60.0, 1),
        "busiest_window_requests": f"{busiest_requests:.0f} / {rpm}",
        "busiest_window_tokens": f"{busiest_tokens:.0f} / {tpm}",
        "server_429s": stats["rate_limited"],
        "violations": violations,
        "engine_retries": dict(engine.stats.retries),
    }, indent=2))


if __name__ == "__main__":
    main()
