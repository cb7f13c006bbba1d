"""The ``skilltag generate`` command: options in, :func:`run_job` called, report shown."""

from __future__ import annotations

import logging
import os
import sys

import click
from rich.console import Console
from rich.logging import RichHandler

from skilltag.generate.engine import EngineConfig, GenerateError, log
from skilltag.generate.job import run_job
from skilltag.generate.prompts import PROMPT_VERSION
from skilltag.generate.report import report_table
from skilltag.generate.select import read_wanted, select_skills
from skilltag.generate.store import OutputStore
from skilltag.progress import JobProgress
from skilltag.taxonomy import load_taxonomy

DEFAULT_KEY_ENV = "OPENAI_API_KEY"


def _api_key(env_name: str | None) -> str | None:
    """The key from the named variable; a missing default one is allowed (local servers need none)."""
    name = env_name or DEFAULT_KEY_ENV
    key = os.environ.get(name, "").strip()
    if not key and env_name:
        raise GenerateError(f"--api-key-env {env_name}: that environment variable is not set")
    if not key:
        log.warning("no API key in $%s; sending requests without one", DEFAULT_KEY_ENV)
    return key or None


def _log_handler(console: Console) -> logging.Handler:
    if console.is_terminal:
        return RichHandler(console=console, show_path=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


@click.command("generate")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory (sentences.jsonl, failed.jsonl, report.json); rerun to resume.")
@click.option("--base-url", required=True,
              help="OpenAI-compatible API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1.")
@click.option("--model", required=True, help="Model name as the server knows it.")
@click.option("--taxonomy", type=click.Path(dir_okay=False), default=None,
              help="ESCO skills_en.csv (default: $SKILLTAG_ESCO).")
@click.option("--api-key-env", default=None, metavar="NAME",
              help=f"Environment variable holding the API key [default: {DEFAULT_KEY_ENV}].")
@click.option("--skills", "skills_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Only these skills: a file of ESCO URIs or labels, one a line.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the first N selected skills.")
@click.option("--per-skill", default=10, show_default=True, type=click.IntRange(min=1),
              help="Sentences per skill.")
@click.option("--min-sentences", type=click.IntRange(min=1), default=None,
              help="Fewest usable sentences for a skill to count as done (default: half of --per-skill).")
@click.option("--max-asks", default=3, show_default=True, type=click.IntRange(min=1),
              help="Prompts per skill when too few sentences survive screening.")
@click.option("--rpm", default=500.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Requests per minute allowed by the provider.")
@click.option("--tpm", default=200_000.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Tokens per minute allowed by the provider.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(min=1),
              help="Requests in flight at once.")
@click.option("--max-tokens", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Completion tokens per request.")
@click.option("--temperature", default=0.7, show_default=True, type=click.FloatRange(min=0))
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds per request before it is retried.")
@click.option("--max-attempts", default=6, show_default=True, type=click.IntRange(min=1),
              help="Tries per request (429, 5xx, timeouts, dropped connections).")
@click.option("--price-in", type=click.FloatRange(min=0), default=None, help="USD per 1M prompt tokens, for the cost estimate.")
@click.option("--price-out", type=click.FloatRange(min=0), default=None, help="USD per 1M completion tokens.")
@click.option("--rate-period", default=60.0, type=click.FloatRange(min=0, min_open=True), hidden=True,
              help="Seconds that --rpm/--tpm apply to (tests shrink it).")
@click.option("--backoff", default=1.0, type=click.FloatRange(min=0, min_open=True), hidden=True,
              help="First retry delay in seconds (tests shrink it).")
def generate(**opts) -> None:
    """Ask an LLM for job-ad sentences expressing each ESCO skill (resumable; safe to rerun)."""
    console = Console(stderr=True)
    handler = _log_handler(console)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        code = _generate(console, **opts)
    finally:
        log.removeHandler(handler)
    sys.exit(code)


def _generate(console: Console, *, out_dir, model, taxonomy, api_key_env, skills_file, limit, per_skill,
              min_sentences, rpm, tpm, price_in, price_out, rate_period, backoff, **engine_opts) -> int:
    config = EngineConfig(
        model=model,
        api_key=_api_key(api_key_env),
        per_skill=per_skill,
        min_sentences=min_sentences or max(1, per_skill // 2),
        rpm=rpm * rate_period / 60.0,
        tpm=tpm * rate_period / 60.0,
        period=rate_period,
        backoff_base=backoff,
        **engine_opts,
    )
    tax = load_taxonomy(taxonomy)
    skills = select_skills(tax.skills, read_wanted(skills_file) if skills_file else None, limit)
    with OutputStore(out_dir, exclusive=True) as store:
        return _run(console, config, skills, store, price_in, price_out)


def _run(console: Console, config: EngineConfig, skills, store: OutputStore, price_in, price_out) -> int:
    if store.repaired_bytes:
        log.warning("cut a torn last line (%d bytes) from %s", store.repaired_bytes, store.sentences_path)
    others = {k: n for k, n in store.made_by.items() if k != (config.model, PROMPT_VERSION)}
    for (other_model, version), n in others.items():
        log.warning("%s already holds %d skills from model %s, prompt %s; they are kept and skipped",
                    store.sentences_path, n, other_model, version)
    before = sum(1 for s in skills if s.uri in store.done)
    log.info("%d skills selected, %d already done; generating %d with %s at %s",
             len(skills), before, len(skills) - before, config.model, config.base_url)
    with JobProgress(len(skills), "skills", "generate", console=console) as progress:
        progress.advance(before, skipped=True)
        result = run_job(config, skills, store, price_in=price_in, price_out=price_out,
                         on_result=lambda _record: progress.advance(1))
    console.print(report_table(result.report))
    if result.error is not None:
        raise result.error
    failed = result.report["skills_failed"]
    if failed:
        console.print(f"{failed} skill(s) failed; reasons in {store.failed_path}. Rerun the same command to retry them.")
        return 1
    return 0
