"""Throughput of `skilltag tag` on real ads, its efficiency against the bare encoder, and its memory.

    python benchmarks/bench_tag.py [--ads 5000] [--efficiency-ads 150] [--index DIR] [--device cpu]

1. Throughput: the shared real ads repeated to --ads ads, the default pipeline (sentence cache on):
   ads/s, sentences/s, time by stage, cache hit rate.
2. Efficiency: on the first --efficiency-ads ads, the pipeline with the run-wide cache off against a
   bare `SentenceTransformer.encode` of exactly the sentences the pipeline produced, in one run,
   alternating, --repeats rounds. Ratio = pipeline sentences/s / bare sentences/s (median reported).
3. Memory: peak RSS of a whole tag run (own process) on 1x and 10x the same real corpus.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from pathlib import Path

from corpus import SHARED, real_ads, write_corpus

from skilltag.encoder import Encoder
from skilltag.index import SkillIndex
from skilltag.job import TagJob, run_tag_job
from skilltag.tagger import TagConfig, Tagger, split_ads
from skilltag.taxonomy import load_taxonomy

ESCO = SHARED / "data/esco/v1.1.0/skills_en.csv"


def load_tagger(args) -> Tagger:
    encoder = Encoder(args.model, device=args.device)
    index = (SkillIndex.load(args.index, model_sha256=encoder.info.sha256) if args.index
             else SkillIndex.build(load_taxonomy(ESCO), encoder))
    return Tagger(encoder, index, TagConfig())


def throughput(tagger: Tagger, n_ads: int, work: Path) -> dict:
    src = write_corpus(work / "corpus.jsonl", n_ads)
    summary = run_tag_job(TagJob(str(src), str(work / "out-throughput"), overwrite=True), tagger, "throughput")
    return summary


def efficiency(tagger: Tagger, n_ads: int, work: Path, repeats: int) -> dict:
    src = write_corpus(work / "eff.jsonl", n_ads)
    texts = [json.loads(line)["text"] for line in src.open()]
    sentences = split_ads(texts, tagger.cfg).text
    rows = []
    for rep in range(repeats):
        t0 = time.perf_counter()
        summary = run_tag_job(TagJob(str(src), str(work / f"out-eff-{rep}"), sentence_cache=False, overwrite=True),
                              tagger, "efficiency")
        pipeline_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tagger.encoder.model.encode(sentences, batch_size=64, normalize_embeddings=True)
        bare_s = time.perf_counter() - t0
        rows.append({
            "sentences": len(sentences),
            "encoded_by_pipeline": summary["this_run"]["encoded_sentences"],
            "pipeline_sentences_per_s": len(sentences) / pipeline_s,
            "bare_encode_sentences_per_s": len(sentences) / bare_s,
            "ratio": bare_s / pipeline_s,
        })
    ratios = sorted(r["ratio"] for r in rows)
    return {"runs": rows, "ratio_median": ratios[len(ratios) // 2]}


def _tag_and_report_rss(args, n_ads: int, work: str, queue) -> None:
    tagger = load_tagger(args)
    src = write_corpus(Path(work) / f"mem-{n_ads}.jsonl", n_ads)
    run_tag_job(TagJob(str(src), str(Path(work) / f"out-mem-{n_ads}"), overwrite=True), tagger, f"memory {n_ads}")
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_rss(args, n_ads: int, work: Path) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_tag_and_report_rss, args=(args, n_ads, str(work), queue))
    proc.start()
    mib = queue.get()
    proc.join()
    return mib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ads", type=int, default=5000)
    ap.add_argument("--efficiency-ads", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3, help="efficiency rounds (pipeline, then bare)")
    ap.add_argument("--model")
    ap.add_argument("--index")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "efficiency", "memory"])
    args = ap.parse_args()
    tagger = load_tagger(args)
    print(f"machine: {platform.processor() or platform.machine()}, {mp.cpu_count()} cores; "
          f"device {tagger.encoder.device}; model {tagger.encoder.info.name}; {len(real_ads())} real ads")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "throughput" not in args.skip:
            s = throughput(tagger, args.ads, work)
            run = s["this_run"]
            print(f"[throughput] {s['ads']} ads, {s['sentences']} sentences in {run['seconds']:.1f} s: "
                  f"{run['ads_per_s']:.1f} ads/s, {run['sentences_per_s']:.1f} sentences/s; "
                  f"encoded {run['encoded_sentences']} (cache hit rate {run.get('cache_hit_rate', 0):.1%})")
            print(f"[throughput] stage seconds: {run['stage_seconds']}")
        if "efficiency" not in args.skip:
            e = efficiency(tagger, args.efficiency_ads, work, args.repeats)
            for r in e["runs"]:
                print(f"[efficiency] {r['sentences']} sentences ({r['encoded_by_pipeline']} encoded): pipeline "
                      f"{r['pipeline_sentences_per_s']:.1f}/s vs bare encode {r['bare_encode_sentences_per_s']:.1f}/s"
                      f" -> ratio {r['ratio']:.2f}")
            print(f"[efficiency] median ratio pipeline/bare: {e['ratio_median']:.2f}")
        if "memory" not in args.skip:
            n = len(real_ads())
            one, ten = peak_rss(args, n, work), peak_rss(args, 10 * n, work)
            print(f"[memory] peak RSS: 1x ({n} ads) {one:.0f} MiB, 10x ({10 * n} ads) {ten:.0f} MiB")


if __name__ == "__main__":
    main()
