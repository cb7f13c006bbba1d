"""The engine against a real HTTP server that counts its limits and injects faults."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from conftest import write_taxonomy_slice
from openai_server import OpenAIServer, window_maxima
from skilltag.generate.engine import Engine, EngineConfig, GenerateError
from skilltag.generate.prompts import PROMPT_VERSION
from skilltag.generate.store import OutputStore
from skilltag.taxonomy import load_taxonomy

# Generous limits unless a test sets its own, so only the server and the faults set the pace.
FAST = dict(backoff_base=0.02, backoff_cap=0.2, flush_interval=0.2, max_tokens=600, rpm=100_000, tpm=100_000_000)


@pytest.fixture(scope="module")
def skills(tmp_path_factory):
    return load_taxonomy(write_taxonomy_slice(tmp_path_factory.mktemp("esco") / "skills_en.csv", 40)).skills


def run(url: str, skills, out_dir, **config):
    engine = Engine(EngineConfig(base_url=url, model="test-model", **{**FAST, **config}))
    store = OutputStore(out_dir)
    stats = asyncio.run(engine.run(skills, store))
    return stats, store


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    "rpm, tpm, n",
    [(10, 1_000_000, 24), (40, 5000, 24)],
    ids=["requests-bound", "tokens-bound"],
)
def test_never_over_the_servers_limits_in_any_window(skills, tmp_path, rpm, tpm, n):
    window = 1.0
    with OpenAIServer(rpm=rpm, tpm=tpm, window=window, latency=0.01) as server:
        stats, store = run(server.url, skills[:n], tmp_path, rpm=rpm, tpm=tpm, period=window, concurrency=8)
        arrivals = server.arrivals()
    assert stats.done == n and len(store.done) == n
    assert server.handler.rate_limited == 0
    most_requests, most_tokens = window_maxima(arrivals, window)
    assert most_requests <= rpm and most_tokens <= tpm
    # The limit that binds is used almost fully; for tokens that needs the usage correction,
    # since each request reserves about twice what it ends up costing.
    used = most_requests / rpm if rpm == 10 else most_tokens / tpm
    assert used >= 0.75


def test_every_skill_finishes_despite_faults(skills, tmp_path):
    faults = ["500", "503", "hang", "drop", "malformed", "short", "foreign", "500", "drop", "hang"]
    rates = {"500": 0.1, "drop": 0.05, "malformed": 0.05}
    with OpenAIServer(faults=faults, fault_rates=rates, hang_seconds=2.0, seed=7) as server:
        stats, store = run(server.url, skills[:25], tmp_path, timeout=0.4, concurrency=6)
        arrivals = server.arrivals()
    records = read_jsonl(store.sentences_path)
    assert not read_jsonl(store.failed_path)
    assert sorted(r["uri"] for r in records) == sorted(s.uri for s in skills[:25])
    for r in records:
        assert len(r["sentences"]) == 10 == len(set(r["sentences"]))
        assert r["model"] == "test-model" and r["prompt_version"] == PROMPT_VERSION
        assert r["usage"]["prompt_tokens"] > 0 and r["usage"]["completion_tokens"] > 0
    assert {"timeout", "connection", "server_error", "malformed"} <= set(stats.retries)
    assert stats.rejected["not_english"] > 0
    assert sum(r["attempts"] for r in records) == len(arrivals)


def test_short_answer_is_asked_again_for_the_missing_sentences(skills, tmp_path):
    with OpenAIServer(faults=["short"]) as server:
        run(server.url, skills[:1], tmp_path, concurrency=1)
        arrivals = server.arrivals()
    assert [a.asked for a in arrivals] == [10, 8]
    (record,) = read_jsonl(tmp_path / "sentences.jsonl")
    assert len(record["sentences"]) == 10 and record["attempts"] == 2


def test_a_429_holds_back_every_task(skills, tmp_path):
    """The engine thinks it may send 10x what the server allows; after each 429 it all waits."""
    with OpenAIServer(rpm=6, window=1.0) as server:
        stats, store = run(server.url, skills[:14], tmp_path, rpm=60, period=1.0, concurrency=6)
        arrivals = sorted(server.arrivals(), key=lambda a: a.t)
    assert len(store.done) == 14
    refusals = [a for a in arrivals if a.status == 429]
    assert refusals and stats.retries["rate_limit"] == len(refusals)
    assert max(a.retry_after for a in refusals) >= 0.3
    for r in refusals:
        # Requests already on the wire may land just after; nothing new until the wait is over.
        during = [a for a in arrivals if r.t + 0.1 < a.t < r.t + r.retry_after - 0.05]
        assert not during, f"{len(during)} requests sent while paused after the 429 at {r.t:.2f}s"
    # A 429 storm would be one refusal per task per try; the pause keeps it to a few.
    assert len(refusals) < 14


def test_wrong_key_stops_the_run_at_once(skills, tmp_path):
    with OpenAIServer(api_key="right-key") as server:
        with pytest.raises(GenerateError, match="HTTP 401") as caught:
            run(server.url, skills[:20], tmp_path, api_key="sk-wrong-SECRET", concurrency=2)
        arrivals = server.arrivals()
    assert "SECRET" not in str(caught.value)
    assert len(arrivals) <= 2  # one per worker, no retries
    assert not read_jsonl(tmp_path / "failed.jsonl")


def test_exhausted_quota_stops_the_run(skills, tmp_path):
    with OpenAIServer(faults=["quota"]) as server:
        with pytest.raises(GenerateError, match="quota is used up"):
            run(server.url, skills[:3], tmp_path, concurrency=1)


def test_a_request_that_keeps_failing_gives_up_after_max_attempts(skills, tmp_path):
    with OpenAIServer(fault_rates={"503": 1.0}) as server:
        stats, store = run(server.url, skills[:1], tmp_path, concurrency=1, max_attempts=3)
        tries = len(server.arrivals())
    assert tries == 3 and stats.retries == {"server_error": 2}
    (failed,) = read_jsonl(store.failed_path)
    assert failed["reason"] == "gave up after 3 tries; last: server_error (HTTP 503: Injected fault 503.)"
    assert failed["attempts"] == 3


def test_unknown_model_stops_the_run_with_a_hint(skills, tmp_path):
    with OpenAIServer(models=("other-model",)) as server:
        with pytest.raises(GenerateError, match=r"404 for model 'test-model'.*--base-url"):
            run(server.url, skills[:3], tmp_path, concurrency=1)


def test_bad_request_fails_that_skill_only_and_is_retried_next_run(skills, tmp_path):
    with OpenAIServer(faults=["400"]) as server:
        stats, store = run(server.url, skills[:3], tmp_path, concurrency=1)
        assert (stats.done, stats.failed) == (2, 1)
        (failed,) = read_jsonl(store.failed_path)
        assert failed["uri"] == skills[0].uri
        assert failed["reason"] == "HTTP 400: Injected fault 400."
        stats, store = run(server.url, skills[:3], tmp_path, concurrency=1)
        labels = [a.label for a in server.arrivals()]
    assert (stats.done, stats.failed) == (1, 0)
    assert labels == [skills[0].label, skills[1].label, skills[2].label, skills[0].label]
    assert not read_jsonl(store.failed_path)
    assert sorted(r["uri"] for r in read_jsonl(store.sentences_path)) == sorted(s.uri for s in skills[:3])


def test_too_few_usable_sentences_fails_with_the_reasons(skills, tmp_path):
    with OpenAIServer(fault_rates={"foreign": 1.0}, style="json") as server:
        stats, store = run(server.url, skills[:2], tmp_path, concurrency=2, max_asks=3)
        asks = Counter(a.label for a in server.arrivals())
    assert stats.failed == 2 and not store.done
    assert asks == {skills[0].label: 3, skills[1].label: 3}
    reasons = {r["reason"] for r in read_jsonl(store.failed_path)}
    assert reasons == {"only 0 usable sentences after 3 asks (need 5; rejected: 30 not_english)"}


def test_api_key_is_sent_but_never_kept(skills, tmp_path):
    with OpenAIServer(api_key="sk-test-SECRET") as server:
        run(server.url, skills[:2], tmp_path, api_key="sk-test-SECRET", concurrency=1)
        headers = server.call(lambda: list(server.handler.auth_headers))
    assert headers == ["Bearer sk-test-SECRET"] * 2
    assert "SECRET" not in repr(EngineConfig(base_url="x", model="m", api_key="sk-test-SECRET"))
    for path in tmp_path.iterdir():
        assert "SECRET" not in path.read_text()


def test_limits_too_small_for_one_request_are_refused_before_any_request(skills, tmp_path):
    with OpenAIServer() as server:
        with pytest.raises(GenerateError, match="--tpm is too small"):
            run(server.url, skills[:2], tmp_path, tpm=500)
        assert not server.arrivals()


def test_an_endpoint_never_reached_stops_after_one_requests_tries(skills, tmp_path):
    with pytest.raises(GenerateError, match="cannot connect .*is the server running and --base-url right"):
        run("http://127.0.0.1:9/v1", skills[:40], tmp_path, concurrency=4, max_attempts=3)
    # Four workers refuse concurrently, yet no skill is given up on before its own tries with backoff ran out.
    assert not read_jsonl(OutputStore(tmp_path).failed_path)


def test_a_server_that_goes_away_stops_the_run_and_keeps_what_is_done(skills, tmp_path):
    server = OpenAIServer().__enter__()
    stopped: list[bool] = []

    def stop_after_first(_record) -> None:
        if not stopped:
            stopped.append(True)
            server.__exit__(None, None, None)

    config = EngineConfig(base_url=server.url, model="test-model",
                          **{**FAST, "concurrency": 1, "max_attempts": 1000, "unreachable_after": 0.5})
    store = OutputStore(tmp_path)
    with pytest.raises(GenerateError, match=r"no connection for 0.5s"):
        asyncio.run(Engine(config, on_result=stop_after_first).run(skills[:5], store))
    assert len(store.done) == 1 and len(read_jsonl(store.sentences_path)) == 1
