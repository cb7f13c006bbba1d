"""torch vs onnx-int8 encoder: dev-set quality and sentences/s on real ad sentences, in one run.

    nice python benchmarks/bench_onnx.py                  # both parts
    nice python benchmarks/bench_onnx.py --skip-quality   # speed only (a minute or two)

Quality: RP@5 / RP@10 / MRR with exact search over the full ESCO taxonomy, for three set-ups: torch
index + torch queries (the reference), onnx index + onnx queries, and torch index + onnx queries (what
happens when a saved torch index is tagged with ``--backend onnx``; allowed, since both share the
model's sha256). Speed: the shared ads, split and deduplicated as ``skilltag tag`` does, encoded by
each contender in alternation on the same sentences; the median of the rounds is reported, so a
burst of load from other jobs on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from skilltag.encoder import Encoder
from skilltag.evaluate import Benchmark, load_benchmark
from skilltag.index import SkillIndex
from skilltag.metrics import r_precision_at_k, score_rankings
from skilltag.onnx_encoder import OnnxEncoder
from skilltag.tagger import TagConfig, split_ads, unique_texts
from skilltag.taxonomy import load_taxonomy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ADS = SHARED / "jobads" / "skillspan_postings_train_dev.jsonl"
TAXONOMY = SHARED / "esco" / "v1.1.0" / "skills_en.csv"
DEV_SETS = [SHARED / "benchmarks" / "skill_extraction_benchmark" / f"{name}_dev.jsonl" for name in ("tech", "house")]


def load_ads(path: Path, limit: int | None = None) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    return texts[:limit]


def ad_sentences(ads: list[str]) -> list[str]:
    """The distinct sentences ``skilltag tag`` would encode for these ads."""
    return unique_texts(split_ads(ads, TagConfig()).text)[0]


def rankings(index: SkillIndex, encoder, bench: Benchmark) -> list[list[int]]:
    """Every skill ranked for every sentence, exact search (what ``skilltag evaluate`` scores)."""
    return index.search_exact(encoder.encode(bench.sentences), len(index)).skill_ids.tolist()


def agreement(index: SkillIndex, torch_enc, onnx_enc, sentences: list[str], k: int = 5) -> dict:
    """How often onnx queries get torch's skills from the same index: same top-1, shared top-k."""
    a = index.search_exact(torch_enc.encode(sentences), k).skill_ids
    b = index.search_exact(onnx_enc.encode(sentences), k).skill_ids
    shared = [len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())]
    return {"sentences": len(sentences), "top1_same": round(float((a[:, 0] == b[:, 0]).mean()), 4),
            f"top{k}_shared": round(statistics.mean(shared), 4)}


def quality(torch_enc, onnx_enc, sentences: list[str]) -> tuple[list[dict], dict]:
    """Scores per set-up and dev set, plus both sets pooled, and how many sentences moved at RP@5;
    then top-k agreement on the ad sentences."""
    taxonomy = load_taxonomy(TAXONOMY)
    indexes = {"torch": SkillIndex.build(taxonomy, torch_enc), "onnx": SkillIndex.build(taxonomy, onnx_enc)}
    encoders = {"torch": torch_enc, "onnx": onnx_enc}
    label_to_id = {label: i for i, label in enumerate(taxonomy.labels)}
    uri_to_id = {s.uri: i for i, s in enumerate(taxonomy.skills)}
    benches = [load_benchmark(path, label_to_id, uri_to_id) for path in DEV_SETS]
    rows = []
    for setup in (("torch", "torch"), ("onnx", "onnx"), ("torch", "onnx")):
        ranked = {b.name: rankings(indexes[setup[0]], encoders[setup[1]], b) for b in benches}
        ranked["pooled"] = [r for b in benches for r in ranked[b.name]]
        golds = {b.name: b.gold for b in benches}
        golds["pooled"] = [g for b in benches for g in b.gold]
        for name in ranked:
            s = score_rankings(ranked[name], golds[name])
            rows.append({"benchmark": name, "index": setup[0], "queries": setup[1], "n": s.n,
                         "rp5": round(s.rp5, 2), "rp10": round(s.rp10, 2), "mrr": round(s.mrr, 2),
                         "rp5_each": [r_precision_at_k(r, g, 5) for r, g in zip(ranked[name], golds[name])]})
    reference = {r["benchmark"]: r["rp5_each"] for r in rows if r["queries"] == "torch"}
    for row in rows:
        deltas = [a - b for a, b in zip(row.pop("rp5_each"), reference[row["benchmark"]])]
        row["rp5_sentences_up"] = sum(d > 0 for d in deltas)
        row["rp5_sentences_down"] = sum(d < 0 for d in deltas)
    return rows, agreement(indexes["torch"], torch_enc, onnx_enc, sentences)


def speed(encoders: dict, sentences: list[str], rounds: int) -> dict:
    """Seconds per round for each encoder, contenders alternating inside every round."""
    for enc in encoders.values():
        enc.encode(sentences[:64])  # warm-up: thread pools, allocator, lazy init
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, enc in encoders.items():
            start = time.perf_counter()
            enc.encode(sentences)
            seconds[name].append(time.perf_counter() - start)
    return {
        name: {"sentences_per_s": round(len(sentences) / statistics.median(ts), 1), "seconds": [round(t, 2) for t in ts]}
        for name, ts in seconds.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: skilltag's default model)")
    ap.add_argument("--ads", type=int, default=None, help="first N shared ads for the speed part (default all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    torch_enc = Encoder(args.model, device="cpu")
    onnx_enc = OnnxEncoder(args.model)
    result: dict = {"model": torch_enc.info.name, "torch_threads": torch.get_num_threads()}
    sentences = ad_sentences(load_ads(ADS, args.ads))
    result["sentences"] = len(sentences)
    result["speed"] = speed({"torch": torch_enc, "onnx-int8": onnx_enc}, sentences, args.rounds)
    t, o = (result["speed"][k]["sentences_per_s"] for k in ("torch", "onnx-int8"))
    result["speedup"] = round(o / t, 2)
    print(f"{len(sentences)} distinct sentences: torch {t}/s, onnx-int8 {o}/s, x{result['speedup']}")
    if not args.skip_quality:
        result["quality"], result["agreement"] = quality(torch_enc, onnx_enc, sentences)
        print("agreement on ad sentences, torch index:", json.dumps(result["agreement"]))
        for row in result["quality"]:
            print(f"{row['benchmark']:10s} index={row['index']:5s} queries={row['queries']:5s} "
                  f"RP@5 {row['rp5']:6.2f}  RP@10 {row['rp10']:6.2f}  MRR {row['mrr']:6.2f}  "
                  f"RP@5 up/down {row['rp5_sentences_up']}/{row['rp5_sentences_down']} sentences")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
