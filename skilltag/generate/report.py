"""The end-of-run report: one dict, written as report.json and shown as a rich table."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.table import Table

from skilltag.generate.engine import EngineConfig, RunStats
from skilltag.generate.prompts import PROMPT_VERSION

REPORT_FILE = "report.json"


def build_report(
    stats: RunStats,
    config: EngineConfig,
    *,
    selected: int,
    done_before: int,
    done_now: int,
    price_in: float | None = None,
    price_out: float | None = None,
    stopped: str | None = None,
) -> dict:
    """Figures of this run; ``done_now`` counts selected skills on disk after it (earlier runs included)."""
    minutes = stats.elapsed / 60.0
    per_minute = 60.0 / config.period
    cost = None
    if price_in is not None or price_out is not None:
        cost = round((stats.tokens_in * (price_in or 0.0) + stats.tokens_out * (price_out or 0.0)) / 1e6, 6)
    return {
        "model": config.model,
        "base_url": config.base_url,
        "prompt_version": PROMPT_VERSION,
        "skills_selected": selected,
        "skills_done_before": done_before,
        "skills_done": stats.done,
        "skills_failed": stats.failed,
        "coverage_pct": round(100.0 * done_now / selected, 2) if selected else 100.0,
        "sentences": stats.sentences,
        "requests": stats.requests,
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "cost_usd": cost,
        "elapsed_s": round(stats.elapsed, 3),
        "achieved_rpm": round(stats.requests / minutes, 1) if minutes > 0 else 0.0,
        "achieved_tpm": round((stats.tokens_in + stats.tokens_out) / minutes, 1) if minutes > 0 else 0.0,
        "rpm_limit": config.rpm * per_minute,
        "tpm_limit": config.tpm * per_minute,
        "retries": dict(stats.retries.most_common()),
        "rejected_sentences": dict(stats.rejected.most_common()),
        "stopped": stopped,
    }


def write_report(report: dict, out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir) / REPORT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def report_table(report: dict) -> Table:
    table = Table(title=f"skilltag generate: {report['model']} ({report['prompt_version']})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("skills done (this run)", f"{report['skills_done']:,}"),
        ("skills failed", f"{report['skills_failed']:,}"),
        ("skills done before", f"{report['skills_done_before']:,}"),
        ("coverage of selection", f"{report['coverage_pct']:.1f}% of {report['skills_selected']:,}"),
        ("sentences", f"{report['sentences']:,}"),
        ("requests", f"{report['requests']:,}"),
        ("tokens in / out", f"{report['tokens_in']:,} / {report['tokens_out']:,}"),
        ("estimated cost", "-" if report["cost_usd"] is None else f"${report['cost_usd']:,.4f}"),
        ("time", f"{report['elapsed_s']:,.1f} s"),
        ("requests / min", f"{report['achieved_rpm']:,.0f} (limit {report['rpm_limit']:,.0f})"),
        ("tokens / min", f"{report['achieved_tpm']:,.0f} (limit {report['tpm_limit']:,.0f})"),
        ("retries", _counts(report["retries"])),
        ("rejected sentences", _counts(report["rejected_sentences"])),
    ]
    if report["stopped"]:
        rows.append(("stopped", report["stopped"]))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"
