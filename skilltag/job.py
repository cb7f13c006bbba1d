"""A tagging job over a corpus: shards in, one part file + marker per shard out, resumable.

The per-ad work is ``skilltag.tagger``; this module adds what a nightly batch needs around it:
fixed shards, skip-what-is-done on rerun, reject files, a refusal to mix two different jobs in
one output directory, progress, and a summary.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import polars as pl

from skilltag import __version__
from skilltag.corpus import (
    AdBatch, CorpusError, Fields, InputFile, Reject, Shard, find_inputs, plan_shards, read_shard,
)
from skilltag.index import IndexManifest
from skilltag.progress import JobProgress
from skilltag.rundir import RunDir, ShardStats
from skilltag.cache import SentenceCache
from skilltag.tagger import Sentences, SkillHit, StageTimes, TagConfig, Tagger

DEFAULT_SHARD_SIZE = 5000
# Bumped when part files of the same inputs and options change content, so no resume mixes two versions.
OUTPUT_VERSION = 2
DEFAULT_BATCH_ADS = 256

SKILL_STRUCT = pl.Struct(
    {"uri": pl.String, "label": pl.String, "score": pl.Float32, "evidence": pl.String, "sentence_index": pl.Int32}
)


@dataclass(frozen=True)
class TagJob:
    inputs: str
    output: str
    fields: Fields = Fields()
    fmt: str = "parquet"
    shard_size: int = DEFAULT_SHARD_SIZE
    batch_ads: int = DEFAULT_BATCH_ADS
    overwrite: bool = False  # start afresh instead of resuming or refusing
    sentence_cache: bool = True  # encode each distinct sentence once per run (see skilltag.cache)


def job_fields(id_field: str, text_field: str, keep: list[str]) -> Fields:
    """Input field names, with ``keep`` deduplicated and checked against the output's own columns."""
    if id_field == text_field:
        raise CorpusError(f"--id-field and --text-field are both {id_field!r}; an ad's id and text are two fields")
    keep_fields = tuple(dict.fromkeys(k for k in keep if k))
    clash = sorted(set(keep_fields) & set(output_schema(())))
    if clash:
        raise CorpusError(f"--keep {', '.join(clash)}: the output already has such a column; "
                          f"rename the field in the input, or drop it from --keep")
    return Fields(id=id_field, text=text_field, keep=keep_fields)


def output_schema(keep: tuple[str, ...]) -> dict:
    return {
        "id": pl.String,
        **{k: pl.String for k in keep},
        "skills": pl.List(SKILL_STRUCT),
        "n_sentences": pl.Int32,
        "truncated": pl.Boolean,
    }


def fingerprint(job: TagJob, files: list[InputFile], tagger: Tagger) -> dict:
    return job_fingerprint(
        job, files, tagger.cfg, tagger.encoder.info.sha256, tagger.index.manifest, tagger.encoder.backend
    )


def job_fingerprint(
    job: TagJob,
    files: list[InputFile],
    cfg: TagConfig,
    model_sha256: str,
    index_manifest: IndexManifest,
    backend: str,
) -> dict:
    """Everything that changes a part file's content; a resume must match it exactly.

    Takes hashes, not a loaded model, so an engine whose driver never loads the model (Ray) writes
    the same fingerprint and either engine can resume the other's output directory.
    """
    manifest = asdict(index_manifest)
    manifest.pop("build_seconds", None)
    return {
        "output_version": OUTPUT_VERSION,
        "inputs": [[f.path, f.size, f.mtime_ns] for f in files],
        # As _run.json reads it back (a list, not a tuple), or a rerun with --keep is refused as another job.
        "fields": {**asdict(job.fields), "keep": list(job.fields.keep)},
        "format": job.fmt,
        "shard_size": job.shard_size,
        "tag_config": asdict(cfg),
        "sentence_cache": job.sentence_cache,
        "model_sha256": model_sha256,
        # onnx-int8 vectors differ from torch's in the third decimal: a resume must not mix them.
        "backend": backend,
        "index": hashlib.sha256(repr(sorted(manifest.items())).encode()).hexdigest(),
    }


def to_frame(batch: AdBatch, skills: list[list[SkillHit]], n_sentences, truncated, keep) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": batch.ids,
            **{k: batch.keep[k] for k in keep},
            "skills": [[asdict(h) for h in ad] for ad in skills],
            "n_sentences": n_sentences,
            "truncated": truncated,
        },
        schema=output_schema(keep),
    )


@dataclass
class PreparedShard:
    """A shard read and split ahead of the encoder, or one an earlier run finished."""

    shard: Shard
    done: bool
    batch: AdBatch | None = None
    rejects: list[Reject] = field(default_factory=list)
    slices: list[tuple[Sentences, float]] = field(default_factory=list)


def prepare_shards(shards: list[Shard], run: RunDir, job: TagJob, tagger: Tagger) -> Iterator[PreparedShard]:
    """Read, validate and split shard after shard (CPU work that can run beside the encoder)."""
    seen_ids: set[str] = set()
    for shard in shards:
        if run.is_done(shard.name):
            seen_ids.update(run.done_ids(shard.name))
            yield PreparedShard(shard, done=True)
            continue
        batch, rejects = read_shard(shard, job.fields, seen_ids)
        slices = [tagger.prepare(batch.texts[s : s + job.batch_ads]) for s in range(0, len(batch), job.batch_ads)]
        yield PreparedShard(shard, False, batch, rejects, slices)


def prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Run an iterator in a thread, ``depth`` items ahead; its errors surface in the consumer.

    Splitting is pure Python while the encoder runs in torch with the GIL released, so one
    thread is enough to keep the next shard ready.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((None, None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            put((None, e))

    thread = threading.Thread(target=work, name="skilltag-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is None:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def tag_prepared(tagger: Tagger, prepared: PreparedShard, times: StageTimes):
    """Encode, search and aggregate a prepared shard: skills, sentence counts, truncation, sentences encoded."""
    skills: list[list[SkillHit]] = []
    n_sentences: list[int] = []
    truncated: list[bool] = []
    encoded = 0
    for sentences, split_seconds in prepared.slices:
        tagged = tagger.finish(sentences, split_seconds)
        skills.extend(tagged.skills)
        n_sentences.extend(tagged.n_sentences.tolist())
        truncated.extend(tagged.truncated.tolist())
        encoded += tagged.n_encoded
        times.add(tagged.times)
    return skills, n_sentences, truncated, encoded


def run_tag_job(job: TagJob, tagger: Tagger, description: str = "tagging") -> dict:
    files = find_inputs(job.inputs, job.fields, job.output)
    shards, blank_lines = plan_shards(files, job.shard_size)
    run = RunDir(job.output, job.fmt)
    run.open(fingerprint(job, files, tagger), overwrite=job.overwrite)
    cache = SentenceCache(min(tagger.cfg.top_k, len(tagger.index))) if job.sentence_cache else None
    tagger = Tagger(tagger.encoder, tagger.index, tagger.cfg, cache)

    stats: list[ShardStats] = []
    times = StageTimes()
    fresh_ads = fresh_sentences = fresh_encoded = skipped = 0
    started = time.perf_counter()
    with JobProgress(sum(s.count for s in shards), "ads", description) as progress:
        for prepared in prefetched(prepare_shards(shards, run, job, tagger)):
            shard = prepared.shard
            if cache is not None:
                cache.start_shard()
            if prepared.done:
                entries = run.cache_entries(shard.name) if cache is not None else None
                if entries is not None:
                    cache.add(*entries)
                stats.append(run.stats(shard.name))
                progress.advance(shard.count, skipped=True)
                skipped += 1
                continue
            skills, n_sentences, truncated, encoded = tag_prepared(tagger, prepared, times)
            frame, shard_stats = shard_output(
                shard, prepared.batch, prepared.rejects, skills, n_sentences, truncated, job.fields.keep
            )
            run.write_shard(shard_stats, frame, prepared.rejects, cache.shard_entries() if cache else None)
            stats.append(shard_stats)
            fresh_ads += len(prepared.batch)
            fresh_sentences += shard_stats.sentences
            fresh_encoded += encoded
            progress.advance(shard.count)
    elapsed = time.perf_counter() - started
    this_run = this_run_summary(fresh_ads, fresh_sentences, fresh_encoded, elapsed, times)
    if cache is not None:
        this_run["cache_hit_rate"] = round(cache.hit_rate(), 4)
    summary = summarize(job, run, files, len(shards), blank_lines, stats, skipped, tagger.encoder.info.name,
                        tagger.encoder.device, this_run)
    run.write_summary(summary)
    return summary


def shard_output(
    shard: Shard, batch: AdBatch, rejects: list[Reject], skills: list[list[SkillHit]], n_sentences, truncated, keep
) -> tuple[pl.DataFrame, ShardStats]:
    """A tagged shard's part frame and marker stats, checked to account for every record."""
    frame = to_frame(batch, skills, n_sentences, truncated, keep)
    shard_stats = ShardStats(
        name=shard.name,
        records=shard.count,
        ads=len(batch),
        rejects=len(rejects),
        sentences=sum(n_sentences),
        skills=sum(len(s) for s in skills),
        truncated_ads=sum(truncated),
        reject_reasons=dict(Counter(r.reason for r in rejects)),
    )
    if shard_stats.ads + shard_stats.rejects != shard.count:
        raise AssertionError(f"{shard.name}: {shard.count} records but {shard_stats} accounted")
    return frame, shard_stats


def this_run_summary(ads: int, sentences: int, encoded: int, elapsed: float, times: StageTimes) -> dict:
    return {
        "ads": ads,
        "sentences": sentences,
        "encoded_sentences": encoded,
        "seconds": round(elapsed, 3),
        "ads_per_s": round(ads / elapsed, 2) if elapsed else 0.0,
        "sentences_per_s": round(sentences / elapsed, 2) if elapsed else 0.0,
        "stage_seconds": {k: round(v, 3) for k, v in asdict(times).items()},
    }


def summarize(
    job: TagJob,
    run: RunDir,
    files: list[InputFile],
    n_shards: int,
    blank_lines: int,
    stats: list[ShardStats],
    skipped: int,
    model: str,
    device: str,
    this_run: dict,
) -> dict:
    """The job's _summary.json: totals over every shard (done before or now) plus this run's work."""
    reasons: Counter = Counter()
    for s in stats:
        reasons.update(s.reject_reasons)
    return {
        "output": str(run.root),
        "format": job.fmt,
        "skilltag_version": __version__,
        "model": model,
        "device": device,
        "input_files": len(files),
        "shards": n_shards,
        "shards_skipped": skipped,
        "records": sum(s.records for s in stats),
        "ads": sum(s.ads for s in stats),
        "rejects": sum(s.rejects for s in stats),
        "reject_reasons": dict(sorted(reasons.items())),
        "blank_lines": blank_lines,
        "sentences": sum(s.sentences for s in stats),
        "skills": sum(s.skills for s in stats),
        "truncated_ads": sum(s.truncated_ads for s in stats),
        "this_run": this_run,
    }
