"""Benchmark evaluation: rank every ESCO skill for each sentence and score against gold labels."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from skilltag.corpus import is_utf8
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
    """Read ``{"sentence": ..., "labels": [...]}`` lines; ``uris`` win over labels when present.

    A benchmark must be exact, so any bad line is an error naming it, never a skip.
    """
    p = Path(path)
    if not p.exists():
        raise BenchmarkError(f"benchmark file not found: {p}")
    if not p.is_file():
        raise BenchmarkError(f"benchmark {p} is not a regular file")
    sentences: list[str] = []
    gold: list[set[int]] = []
    with p.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            where = f"{p}:{line_no}"
            rec = _parse_line(raw.removeprefix(b"\xef\xbb\xbf") if line_no == 1 else raw, where)
            if rec is None:
                continue
            sentence = rec.get("sentence")
            if not isinstance(sentence, str) or not sentence.strip():
                raise BenchmarkError(f"{where}: missing or empty 'sentence'")
            if not is_utf8(sentence):
                raise BenchmarkError(f"{where}: 'sentence' holds a lone UTF-16 surrogate (not valid Unicode text)")
            ids = _gold_ids(rec, label_to_id, uri_to_id, where)
            sentences.append(sentence)
            gold.append(ids)
    if not sentences:
        raise BenchmarkError(f"{p}: no benchmark sentences")
    return Benchmark(name=p.stem, sentences=sentences, gold=gold)


def _parse_line(raw: bytes, where: str) -> dict | None:
    """The line's JSON object, None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BenchmarkError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from e
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)[:200]
        raise BenchmarkError(f"{where}: not valid JSON ({msg})") from e
    if not isinstance(rec, dict):
        raise BenchmarkError(f"{where}: a JSON {type(rec).__name__}, not an object with 'sentence' and 'labels'")
    return rec


def _gold_ids(rec: dict, label_to_id: dict[str, int], uri_to_id: dict[str, int], where: str) -> set[int]:
    uris, labels = rec.get("uris"), rec.get("labels")
    if isinstance(uris, list) and uris:
        keys, table, kind = uris, uri_to_id, "URI"
    elif isinstance(labels, list) and labels:
        keys, table, kind = labels, label_to_id, "label"
    else:
        raise BenchmarkError(f"{where}: needs a non-empty 'labels' (ESCO preferred labels) or 'uris' list")
    if not all(isinstance(k, str) for k in keys):
        raise BenchmarkError(f"{where}: every {kind} must be a string")
    unknown = [k for k in keys if k not in table]
    if unknown and kind == "label" and unknown[0] in uri_to_id:
        raise BenchmarkError(f"{where}: {unknown[0]!r} is an ESCO URI; list URIs under 'uris', labels under 'labels'")
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
