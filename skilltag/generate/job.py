"""One run of ``skilltag generate`` as a library call: store, engine and report together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skilltag.generate.engine import Engine, EngineConfig, GenerateError
from skilltag.generate.report import build_report, write_report
from skilltag.generate.store import FailedRecord, OutputStore, SkillRecord
from skilltag.taxonomy import Skill


@dataclass(frozen=True)
class JobResult:
    report: dict
    error: GenerateError | None


def run_job(
    config: EngineConfig,
    skills: Sequence[Skill],
    store: OutputStore,
    *,
    price_in: float | None = None,
    price_out: float | None = None,
    on_result: Callable[[SkillRecord | FailedRecord], None] | None = None,
) -> JobResult:
    """Generate the skills of ``skills`` missing from ``store``; the report is written even when the run stops early."""
    selected = {s.uri for s in skills}
    done_before = len(selected & store.done.keys())
    engine = Engine(config, on_result=on_result)
    error = None
    try:
        asyncio.run(engine.run(skills, store))
    except GenerateError as e:
        error = e
    except KeyboardInterrupt:
        error = GenerateError("interrupted; finished skills are saved, rerun the same command to resume")
    report = build_report(
        engine.stats,
        config,
        selected=len(selected),
        done_before=done_before,
        done_now=len(selected & store.done.keys()),
        price_in=price_in,
        price_out=price_out,
        stopped=str(error) if error else None,
    )
    write_report(report, store.dir)
    return JobResult(report, error)
