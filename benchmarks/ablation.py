"""The paper's training ablation on the dev benchmarks: which pair source helps, and does augmentation.

Every trained row runs `skilltag train` (the click command, in this process) with the same
--max-steps, seed and paper defaults; the stock row scores the untrained base model with the same
evaluate protocol (exact search over every ESCO skill). Rows whose output already holds a
training.json are read, not retrained, so an interrupted run resumes.

    python benchmarks/ablation.py --out /tmp/ablation --max-steps 60            # all rows
    python benchmarks/ablation.py --out /tmp/ablation --max-steps 60 --rows synthetic,all

Prints a Markdown table (RP@5, RP@10, MRR on TECH-dev and HOUSE-dev) plus the command of each row.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import click

from skilltag.taxonomy import load_taxonomy
from skilltag.encoder import stock_model_path
from skilltag.train import MANIFEST, evaluate_dev, hardware
from skilltag.train_command import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BENCH = SHARED / "benchmarks" / "skill_extraction_benchmark"
DEV = (str(BENCH / "tech_dev.jsonl"), str(BENCH / "house_dev.jsonl"))
SYNTHETIC = str(SHARED / "synthetic" / "esco_v1.1.0_llm_sentences.jsonl")
DISTANT = (str(SHARED / "benchmarks" / "skillspan" / "train.jsonl"),
           str(SHARED / "benchmarks" / "skillspan" / "dev.jsonl"), str(SHARED / "jobads"))


def _distant_args() -> list[str]:
    return [arg for path in DISTANT for arg in ("--distant", path)]


# name -> (table label, source arguments of `skilltag train`); None = the untrained base model.
ROWS: dict[str, tuple[str, list[str] | None]] = {
    "stock": ("stock all-MiniLM-L6-v2 (no training)", None),
    "descriptions": ("+ ESCO descriptions", ["--descriptions"]),
    "alt-labels": ("+ ESCO alt labels", ["--alt-labels"]),
    "distant": ("+ distant supervision (ads)", _distant_args()),
    "synthetic-noaug": ("+ synthetic sentences, no augmentation", ["--synthetic", SYNTHETIC, "--augment-p", "0"]),
    "synthetic": ("+ synthetic sentences, augmentation p=0.5", ["--synthetic", SYNTHETIC]),
    "all": ("all sources, augmentation p=0.5",
            ["--synthetic", SYNTHETIC, "--descriptions", "--alt-labels", *_distant_args()]),
}


def row_command(name: str, out: Path, max_steps: int) -> list[str]:
    args = ["-o", str(out / name), *ROWS[name][1], "--max-steps", str(max_steps)]
    return args + [arg for path in DEV for arg in ("--dev", path)]


def run_row(name: str, out: Path, max_steps: int, taxonomy_path: str) -> dict:
    """Scores of one row, trained now unless its training.json is already there."""
    manifest_path = out / name / MANIFEST
    if ROWS[name][1] is None:
        result_path = out / name / "result.json"
        if not result_path.is_file():
            start = time.perf_counter()
            results = evaluate_dev(stock_model_path(), load_taxonomy(taxonomy_path), DEV, device="auto")
            result_path.parent.mkdir(parents=True, exist_ok=True)
            result_path.write_text(json.dumps({
                "dev": [{"benchmark": r.name, "n": r.scores.n, "rp5": r.scores.rp5, "rp10": r.scores.rp10,
                         "mrr": r.scores.mrr} for r in results],
                "eval_seconds": round(time.perf_counter() - start, 1), "hardware": hardware("cpu"),
            }, indent=2) + "\n")
        return json.loads(result_path.read_text())
    if not manifest_path.is_file():
        train.main(args=row_command(name, out, max_steps), standalone_mode=False)
    return json.loads(manifest_path.read_text())


def table(results: dict[str, dict]) -> str:
    lines = [
        "| row | TECH RP@5 | TECH RP@10 | TECH MRR | HOUSE RP@5 | HOUSE RP@10 | HOUSE MRR | pairs | steps | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        by = {d["benchmark"]: d for d in res["dev"]}
        t, h = by["tech_dev"], by["house_dev"]
        lines.append(
            f"| {ROWS[name][0]} | {t['rp5']:.2f} | {t['rp10']:.2f} | {t['mrr']:.2f} | {h['rp5']:.2f} | "
            f"{h['rp10']:.2f} | {h['mrr']:.2f} | {res.get('pairs', '–')} | {res.get('steps', '–')} | "
            f"{res.get('train_seconds', '–')} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for one model per row.")
@click.option("--max-steps", required=True, type=click.IntRange(1), help="Training steps of every trained row.")
@click.option("--rows", default=",".join(ROWS), show_default=True, help="Comma-separated rows to run, in order.")
@click.option("--taxonomy", default=lambda: os.environ.get("SKILLTAG_ESCO", str(SHARED / "esco/v1.1.0/skills_en.csv")))
def main(out, max_steps, rows, taxonomy):
    os.environ["SKILLTAG_ESCO"] = taxonomy
    out = Path(out)
    names = [r.strip() for r in rows.split(",") if r.strip()]
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        raise click.UsageError(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_row(name, out, max_steps, taxonomy)
        click.echo(f"[{name}] done in {time.perf_counter() - start:.0f}s", err=True)
    click.echo(table({n: results[n] for n in ROWS if n in results}))
    click.echo()
    for name in (n for n in ROWS if n in results and ROWS[n][1] is not None):
        click.echo(f"{name}: skilltag train {shlex.join(row_command(name, out, max_steps))}")


if __name__ == "__main__":
    main()
