"""Local Ray vs the local engine on this machine, same ads, same model and index, in one run.

    python benchmarks/bench_ray.py --index runs/index [--ads 198] [--shard-size 25]

Prints one JSON object: ads/s and sentences/s of each engine, Ray's start-up (``ray.init``) and
duplicate-id pre-pass seconds, and the load average, since on a shared box it moves every figure.
The local engine runs twice, with torch's default threads and with one; Ray twice, with its
default of one CPU (so one torch thread) per encoder actor, and with one encoder given every core
(``num_cpus`` declared one above the real count so the CPU stages can still be scheduled). Together
they tell the cost of threads apart from the cost of Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch

from skilltag.corpus import Fields
from skilltag.encoder import Encoder
from skilltag.index import SkillIndex
from skilltag.job import TagJob, run_tag_job
from skilltag.ray_engine import RayOptions, run_tag_job_ray
from skilltag.tagger import TagConfig, Tagger

JOBADS = Path(__file__).resolve().parents[2] / "shared/data/jobads/skillspan_postings_train_dev.jsonl"


def _figures(summary: dict) -> dict:
    run = summary["this_run"]
    keys = ("seconds", "ads_per_s", "sentences_per_s", "stage_seconds")
    return {"ads": run["ads"], "sentences": run["sentences"], **{k: run[k] for k in keys}}


def bench_local(job: TagJob, model: str | None, index_dir: str, threads: int) -> dict:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    tagger = Tagger(Encoder(model, device="cpu"), SkillIndex.load(index_dir), TagConfig())
    load = time.perf_counter() - started
    return {
        "engine": "local",
        "torch_threads": threads,
        "model_load_seconds": round(load, 3),
        **_figures(run_tag_job(job, tagger)),
    }


def bench_ray(job: TagJob, model: str | None, index_dir: str, num_cpus: int, options: RayOptions) -> dict:
    started = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False)
    startup = time.perf_counter() - started
    try:
        summary = run_tag_job_ray(job, model, index_dir, TagConfig(), options)
    finally:
        ray.shutdown()
    return {
        "engine": "ray",
        "ray_num_cpus": num_cpus,
        "encoders": summary["ray"]["encoders"],
        "cpus_per_encoder": summary["ray"]["cpus_per_encoder"],
        "ray_init_seconds": round(startup, 3),
        "dedupe_seconds": summary["ray"]["dedupe_seconds"],
        **_figures(summary),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="saved skill index directory")
    parser.add_argument("--model", default=None, help="model directory (default: the packaged model)")
    parser.add_argument("--ads", type=int, default=198, help="first N postings of the shared job ads")
    parser.add_argument("--shard-size", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each round rotates the order of the set-ups")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        ads = Path(tmp) / "ads.jsonl"
        ads.write_text("".join(JOBADS.read_text(encoding="utf-8").splitlines(keepends=True)[: args.ads]))

        def job(name: str) -> TagJob:
            return TagJob(str(ads), str(Path(tmp) / name), Fields(), shard_size=args.shard_size)

        setups = {
            "local": lambda name: bench_local(job(name), args.model, args.index, threads),
            # What a Ray encoder actor with one CPU gets: tells threads apart from Ray's own cost.
            "local_one_thread": lambda name: bench_local(job(name), args.model, args.index, 1),
            "ray_default": lambda name: bench_ray(job(name), args.model, args.index, cpus, RayOptions()),
            "ray_one_wide_encoder": lambda name: bench_ray(
                job(name), args.model, args.index, cpus + 1, RayOptions(num_encoders=1, cpus_per_encoder=cpus)
            ),
        }
        runs: dict[str, list[dict]] = {key: [] for key in setups}
        results: dict = {"cpus": cpus, "ads": args.ads, "load_before": os.getloadavg()}
        keys = list(setups)
        for r in range(args.repeat):
            # Rotating the order spreads the shared box's changing load over every set-up.
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                runs[key].append(setups[key](f"{key}-{r}"))
        results["load_after"] = os.getloadavg()
    local_rate = statistics.median(run["sentences_per_s"] for run in runs["local"])
    for key, done in runs.items():
        rate = statistics.median(run["sentences_per_s"] for run in done)
        results[key] = {"median_sentences_per_s": rate, "vs_local": round(rate / local_rate, 3), "runs": done}
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
