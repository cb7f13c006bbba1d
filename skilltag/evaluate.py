"""Benchmark evaluation: rank every ESCO skill for each sentence and score against gold labels."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from skilltag.encoder import Encoder
from skilltag.index import SkillIndex
from skilltag.metrics import Scores, score_rankings

HNSW_DEPTH = 100  # MRR through HNSW only sees this deep; exact search ranks everything


class BenchmarkError(Exception):
    """A benchmark file is missing or malformed."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    sentences: list[str]
    gold: list[set[int]]


@dataclass(frozen=True)
class BenchmarkResult:
    name: str
    search: str
    scores: Scores


def load_benchmark(path: str | os.PathLike, label_to_id: dict[str, int], uri_to_id: dict[str, int]) -> Benchmark:
    """Read ``{"sentence": ..., "labels": [...]}`` lines; ``uris`` win over labels when present."""
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"benchmark file not found: {p}")
    sentences: list[str] = []
    gold: list[set[int]] = []
    with p.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{p}:{line_no}: not valid JSON ({e.msg})") from e
            sentence = rec.get("sentence") if isinstance(rec, dict) else None
            if not isinstance(sentence, str) or not sentence.strip():
                raise BenchmarkError(f"{p}:{line_no}: missing or empty 'sentence'")
            ids = _gold_ids(rec, label_to_id, uri_to_id, f"{p}:{line_no}")
            sentences.append(sentence)
            gold.append(ids)
    if not sentences:
        raise BenchmarkError(f"{p}: no benchmark sentences")
    return Benchmark(name=p.stem, sentences=sentences, gold=gold)


def _gold_ids(rec: dict, label_to_id: dict[str, int], uri_to_id: dict[str, int], where: str) -> set[int]:
    uris, labels = rec.get("uris"), rec.get("labels")
    if isinstance(uris, list) and uris:
        keys, table, kind = uris, uri_to_id, "URI"
    elif isinstance(labels, list) and labels:
        keys, table, kind = labels, label_to_id, "label"
    else:
        raise BenchmarkError(f"{where}: needs a non-empty 'labels' (ESCO preferred labels) or 'uris' list")
    unknown = [k for k in keys if k not in table]
    if unknown:
        raise BenchmarkError(
            f"{where}: {kind} {unknown[0]!r} is not in the taxonomy in use; evaluate with the ESCO version "
            f"the benchmark was labelled with"
        )
    return {table[k] for k in keys}


def evaluate(index: SkillIndex, encoder: Encoder, benchmark: Benchmark, search: str = "exact") -> BenchmarkResult:
    queries = encoder.encode(benchmark.sentences)
    if search == "exact":
        ranked = index.search_exact(queries, len(index)).skill_ids
    elif search == "hnsw":
        ranked = index.search(queries, HNSW_DEPTH).skill_ids
    else:
        raise ValueError(f"unknown search {search!r}; use 'exact' or 'hnsw'")
    scores = score_rankings([row.tolist() for row in ranked], benchmark.gold)
    return BenchmarkResult(name=benchmark.name, search=search, scores=scores)
