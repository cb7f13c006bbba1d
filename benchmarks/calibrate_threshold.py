"""Pick `tag --threshold` on the dev benchmarks: precision/recall/F1 of each sentence's skills above t.

A sentence's prediction is what `tag` would keep for a one-sentence ad: its top-k skills (k = --top-k)
with cosine >= t. Usage: python benchmarks/calibrate_threshold.py [--model DIR] [--index DIR]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from skilltag.encoder import Encoder
from skilltag.evaluate import load_benchmark
from skilltag.index import SkillIndex
from skilltag.tagger import DEFAULT_TOP_K
from skilltag.taxonomy import load_taxonomy

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
DEV = [os.path.join(SHARED, f"data/benchmarks/skill_extraction_benchmark/{n}_dev.jsonl") for n in ("tech", "house")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--index")
    ap.add_argument("--taxonomy", default=os.path.join(SHARED, "data/esco/v1.1.0/skills_en.csv"))
    ap.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    args = ap.parse_args()
    encoder = Encoder(args.model)
    index = (SkillIndex.load(args.index, model_sha256=encoder.info.sha256) if args.index
             else SkillIndex.build(load_taxonomy(args.taxonomy), encoder))
    labels = {label: i for i, label in enumerate(index.labels)}
    uris = {u: i for i, u in enumerate(index.uris)}
    golds, ids, scores = [], [], []
    for path in DEV:
        bench = load_benchmark(path, labels, uris)
        hits = index.search(encoder.encode(bench.sentences), args.top_k)
        golds += bench.gold
        ids.append(hits.skill_ids)
        scores.append(hits.scores)
    ids, scores = np.vstack(ids), np.vstack(scores)
    print(f"model {encoder.info.name}, {len(golds)} dev sentences, top-k {args.top_k}")
    print(" t     precision recall  F1")
    best = (0.0, 0.0)
    for t in np.arange(0.30, 0.80, 0.025):
        tp = pred = 0
        for g, row_ids, row_scores in zip(golds, ids, scores):
            chosen = set(row_ids[row_scores >= t].tolist())
            tp += len(chosen & g)
            pred += len(chosen)
        n_gold = sum(len(g) for g in golds)
        p, r = tp / pred if pred else 0.0, tp / n_gold
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        best = max(best, (f1, t))
        print(f"{t:.3f}  {p:8.3f}  {r:6.3f}  {f1:.3f}")
    print(f"best F1 {best[0]:.3f} at threshold {best[1]:.3f}")


if __name__ == "__main__":
    main()
