"""Benchmark corpora built from the real ads in ../shared/data/jobads (never copied into the repo)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

SHARED = Path(__file__).resolve().parents[2] / "shared"
JOBADS = SHARED / "data/jobads"


def real_ads() -> list[dict]:
    """All ~740 shared ads as {"id", "text", "source"}: SkillSpan postings and the hahu sample."""
    ads = []
    with (JOBADS / "skillspan_postings_train_dev.jsonl").open() as fh:
        for line in fh:
            rec = json.loads(line)
            ads.append({"id": rec["id"], "text": rec["text"], "source": "skillspan"})
    hahu = pl.read_csv(JOBADS / "hahu_test_redacted.csv")
    for row in hahu.iter_rows(named=True):
        ads.append({"id": f"hahu-{row['ID']}", "text": f"{row['title']}\n{row['description']}", "source": "hahu"})
    return ads


def write_corpus(path: Path, n_ads: int) -> Path:
    """``n_ads`` ads as JSONL: the real ads repeated as often as needed, each copy with its own id."""
    ads = real_ads()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for i in range(n_ads):
            ad = ads[i % len(ads)]
            fh.write(json.dumps({**ad, "id": f"{ad['id']}-r{i // len(ads)}"}) + "\n")
    return path
