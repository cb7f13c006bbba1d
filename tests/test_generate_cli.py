"""``skilltag generate`` as a user runs it: options, exit codes, report, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO, write_taxonomy_slice
from openai_server import OpenAIServer
from skilltag.cli import main
from skilltag.taxonomy import load_taxonomy

KEY = "sk-test-DO-NOT-LEAK-4242"
FAST = ["--backoff", "0.02", "--rpm", "100000", "--tpm", "100000000", "--max-tokens", "600"]


@pytest.fixture(scope="module")
def esco(tmp_path_factory) -> Path:
    return write_taxonomy_slice(tmp_path_factory.mktemp("esco") / "skills_en.csv", 60)


def invoke(url: str, esco: Path, out: Path, *extra: str, key: str | None = KEY):
    env = {"OPENAI_API_KEY": key} if key else {"OPENAI_API_KEY": ""}
    args = ["-o", str(out), "--base-url", url, "--model", "test-model", "--taxonomy", str(esco), *FAST, *extra]
    return CliRunner().invoke(main, ["generate", *args], env=env)


def uris(out: Path) -> list[str]:
    return [json.loads(line)["uri"] for line in (out / "sentences.jsonl").read_text().splitlines()]


def test_run_writes_sentences_and_report(esco, tmp_path):
    with OpenAIServer(api_key=KEY) as server:
        result = invoke(server.url, esco, tmp_path / "out", "--limit", "5", "--price-in", "0.15", "--price-out", "0.6")
    assert result.exit_code == 0, result.output
    assert len(uris(tmp_path / "out")) == 5
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skills_done"] == 5 and report["coverage_pct"] == 100.0 and report["sentences"] == 50
    expected = (report["tokens_in"] * 0.15 + report["tokens_out"] * 0.6) / 1e6
    assert report["cost_usd"] == pytest.approx(expected, abs=1e-6) and report["cost_usd"] > 0
    assert "skills done (this run)" in result.stderr and "coverage of selection" in result.stderr
    assert KEY not in result.output


def test_skills_file_selects_by_uri_or_label(esco, tmp_path):
    skills = load_taxonomy(esco).skills
    wanted = tmp_path / "wanted.txt"
    wanted.write_text(f"# a comment\n{skills[7].uri}\n\n{skills[3].label.upper()}\n{skills[7].label}\n")
    with OpenAIServer() as server:
        result = invoke(server.url, esco, tmp_path / "out", "--skills", str(wanted))
    assert result.exit_code == 0, result.output
    assert sorted(uris(tmp_path / "out")) == sorted([skills[7].uri, skills[3].uri])


def test_unknown_skill_in_file_is_a_clear_error(esco, tmp_path):
    wanted = tmp_path / "wanted.txt"
    wanted.write_text("juggle flaming torches\n")
    result = invoke("http://127.0.0.1:9/v1", esco, tmp_path / "out", "--skills", str(wanted))
    assert result.exit_code == 2
    assert "not in the taxonomy: 'juggle flaming torches'" in result.stderr


def test_named_key_variable_must_exist(esco, tmp_path):
    result = invoke("http://127.0.0.1:9/v1", esco, tmp_path / "out", "--api-key-env", "NO_SUCH_KEY_VAR_XYZ")
    assert result.exit_code == 2
    assert "NO_SUCH_KEY_VAR_XYZ: that environment variable is not set" in result.stderr


def test_wrong_key_exits_2_with_a_clear_message_and_no_key(esco, tmp_path):
    with OpenAIServer(api_key="another-key") as server:
        result = invoke(server.url, esco, tmp_path / "out", "--limit", "5")
    assert result.exit_code == 2
    assert "refused the API key (HTTP 401)" in result.stderr
    assert KEY not in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "HTTP 401" in report["stopped"]


def test_failed_skills_exit_1_and_are_retried_by_the_same_command(esco, tmp_path):
    out = tmp_path / "out"
    with OpenAIServer(faults=["400"]) as server:
        first = invoke(server.url, esco, out, "--limit", "3", "--concurrency", "1")
        second = invoke(server.url, esco, out, "--limit", "3", "--concurrency", "1")
    assert first.exit_code == 1 and "1 skill(s) failed" in first.stderr
    assert second.exit_code == 0, second.output
    assert len(uris(out)) == 3
    report = json.loads((out / "report.json").read_text())
    assert (report["skills_done_before"], report["skills_done"], report["coverage_pct"]) == (2, 1, 100.0)


def _cli(url: str, esco: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "skilltag.generate", "-o", str(out), "--base-url", url, "--model", "test-model",
           "--taxonomy", str(esco), "--limit", "60", "--concurrency", "2", *FAST]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_run_then_rerun_writes_every_skill_exactly_once(esco, tmp_path):
    out = tmp_path / "out"
    sentences = out / "sentences.jsonl"
    with OpenAIServer(latency=0.15) as server:
        proc = _cli(server.url, esco, out)
        deadline = time.monotonic() + 30
        while not (sentences.exists() and sentences.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        _, first_err = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        done_at_kill = set(uris(out))
        assert 0 < len(done_at_kill) < 60
        # As if the kill had landed mid-write: a torn line after the last whole one.
        with sentences.open("ab") as f:
            f.write(b'{"uri": "http://data.europa.eu/esco/skill/torn", "sentences": ["You will')
        asked_before = len(server.arrivals())

        proc = _cli(server.url, esco, out)
        stdout, second_err = proc.communicate(timeout=60)
        asked_after = server.arrivals()[asked_before:]
    assert proc.returncode == 0, second_err
    assert "cut a torn last line" in second_err
    written = uris(out)
    assert len(written) == len(set(written)) == 60
    assert set(written) == {s.uri for s in load_taxonomy(esco).skills[:60]}
    labels = {s.uri: s.label for s in load_taxonomy(esco).skills}
    assert not {labels[u] for u in done_at_kill} & {a.label for a in asked_after}
    for text in (first_err, second_err, stdout, *(p.read_text() for p in out.iterdir())):
        assert KEY not in text
