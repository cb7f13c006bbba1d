"""The whole `tag` pipeline on a GPU: sentences/s, ads/s and the share of time the GPU is busy.

    python benchmarks/bench_gpu.py                      # CUDA, 200k synthetic ads (< 5 min on an H100)
    python benchmarks/bench_gpu.py --device cpu --ads 300   # the same code path, small, on a CPU

Self-contained: builds its corpus from the shared real ads. Each synthetic ad takes 15 real
sentences, and each sentence is the first half of one real sentence glued to the second half of
another, so almost every sentence is new: the run measures the encoder path, not the sentence
cache (which is on, as in production). Goal on one H100: >= 17k sentences/s end to end
(1M ads of ~15 sentences in < 15 min).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path

from corpus import SHARED, real_ads

from skilltag.encoder import Encoder
from skilltag.index import SkillIndex
from skilltag.job import TagJob, run_tag_job
from skilltag.split import split_sentences
from skilltag.tagger import TagConfig, Tagger
from skilltag.taxonomy import load_taxonomy

SENTENCES_PER_AD = 15


def synthetic_corpus(path: Path, n_ads: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    pool = [s.text.split() for ad in real_ads() for s in split_sentences(ad["text"])[0]]
    pool = [words for words in pool if len(words) >= 4]
    with path.open("w") as fh:
        for i in range(n_ads):
            lines = []
            for _ in range(SENTENCES_PER_AD):
                a, b = rng.choice(pool), rng.choice(pool)
                lines.append(" ".join(a[: len(a) // 2] + b[len(b) // 2 :]))
            fh.write(json.dumps({"id": f"syn-{i}", "text": "\n".join(lines)}) + "\n")
    return n_ads


class GpuSampler:
    """Samples NVML utilisation every 200 ms when pynvml is present (else reports None)."""

    def __init__(self):
        self.samples: list[int] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:
            self._nvml = None

    def __enter__(self):
        if self._nvml:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.2):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()

    def busy(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ads", type=int, default=200_000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--search", choices=["exact", "hnsw"], default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    encoder = Encoder(args.model, device=args.device, batch_size=args.batch_size)
    index = SkillIndex.build(load_taxonomy(SHARED / "data/esco/v1.1.0/skills_en.csv"), encoder)
    search = args.search or ("exact" if encoder.device.startswith("cuda") else "hnsw")
    tagger = Tagger(encoder, index, TagConfig(search=search))
    setup = time.perf_counter() - t0
    device_name = encoder.device
    if encoder.device.startswith("cuda"):
        import torch

        device_name = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ads.jsonl"
        t0 = time.perf_counter()
        synthetic_corpus(src, args.ads)
        build = time.perf_counter() - t0
        with GpuSampler() as sampler:
            summary = run_tag_job(TagJob(str(src), str(Path(tmp) / "out"), shard_size=20_000, batch_ads=2_000),
                                  tagger, "gpu bench")
    run = summary["this_run"]
    stages = run["stage_seconds"]
    device_share = (stages["encode"] + stages["search"]) / run["seconds"]
    print(f"device: {device_name}; model {encoder.info.name}; fp16 {encoder.fp16}; search {search}; "
          f"batch {encoder.batch_size}")
    print(f"setup {setup:.1f} s (model + index), corpus build {build:.1f} s")
    print(f"{summary['ads']} ads, {summary['sentences']} sentences in {run['seconds']:.1f} s: "
          f"{run['sentences_per_s']:,.0f} sentences/s, {run['ads_per_s']:,.0f} ads/s "
          f"(encoded {run['encoded_sentences']}, cache hit rate {run.get('cache_hit_rate', 0):.1%})")
    print(f"stage seconds {stages}; encoder+search share of wall time {device_share:.0%}")
    busy = sampler.busy()
    print(f"GPU busy (NVML mean utilisation): {busy:.0%}" if busy is not None else "GPU busy: n/a (no NVML)")
    print(f"projection: 1M ads x {SENTENCES_PER_AD} sentences in "
          f"{1_000_000 * SENTENCES_PER_AD / max(run['sentences_per_s'], 1e-9) / 60:.1f} min")


if __name__ == "__main__":
    main()
