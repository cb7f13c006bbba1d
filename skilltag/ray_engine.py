"""``skilltag tag --engine ray``: the local job's shards, checks, tagging steps and output, run on Ray Data.

One implementation, two executors. Every step is the function the local engine calls
(``corpus.read_shard``, ``tagger.split_ads``/``unique_texts``/``encode_sentences``/``search_skills``/
``aggregate``, ``job.shard_output``, ``RunDir.write_shard``); Ray only decides where each one runs::

    shards -> read + split (CPU tasks) -> encode + search (actor pool: model and index load once per
           actor, on a GPU when it has one) -> aggregate + write part, rejects, marker (CPU tasks)

A Ray row is one shard, not one ad, so one task writes a shard's part file, rejects and marker, and
the output directory is the local engine's: same file names, same ``_run.json`` fingerprint, same
resume-by-marker. Either engine can finish a job the other started. Inside a shard the ads are cut
into the local engine's ``batch_ads`` slices, so the encoder sees the same inputs as it does locally.

Why not ``ray.data.read_json``/``read_text``: neither gives record numbers; ``read_text`` decodes a
whole file at once (one bad byte fails the file) and also splits lines on U+2028; ``read_json`` fails
a block on one bad line. ``read_shard`` seeks to a shard's offset and rejects per record, for the
same reasons and with the same record numbers as the local engine.

Duplicate ids: the local engine keeps an id's first valid record in input order. A pre-pass here
collects every shard's valid ids and groups them by id (a Ray shuffle), so each shard learns which of
its ids an earlier shard holds; ``read_shard`` then rejects those exactly as a local run would.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from skilltag.corpus import AdBatch, Fields, Reject, Shard, check_fields, discover_inputs, plan_shards, read_shard
from skilltag.encoder import Encoder, EncoderError, default_model_path, model_fingerprint
from skilltag.index import SearchResult, SkillIndex, SkillIndexError
from skilltag.job import TagJob, job_fingerprint, shard_output, summarize, this_run_summary
from skilltag.progress import JobProgress
from skilltag.rundir import RunDir, ShardStats
from skilltag.tagger import (
    Sentences,
    StageTimes,
    TagConfig,
    aggregate,
    encode_sentences,
    search_skills,
    split_ads,
    unique_texts,
)

PAYLOAD = "payload"


@dataclass(frozen=True)
class RayOptions:
    # None starts a private local Ray; "auto" or "ray://head:10001" joins a running cluster.
    address: str | None = None
    # None: one encoder per GPU share, or on a CPU-only cluster one per CPU but one (kept for the CPU stages).
    num_encoders: int | None = None
    # None: 1 when the cluster has GPUs, else 0 (CPU encoders). 0.5 puts two encoders on each GPU.
    gpus_per_encoder: float | None = None
    # Also the encoder's torch threads: Ray sets OMP_NUM_THREADS to an actor's CPU count.
    cpus_per_encoder: float = 1.0


@dataclass(frozen=True)
class EncoderPool:
    size: int
    gpus: float
    cpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"


@dataclass
class _Slice:
    """``batch_ads`` ads of a shard as the encoder sees them: their sentences and the distinct ones."""

    sentences: Sentences
    distinct: list[str]
    inverse: np.ndarray
    hits: SearchResult | None = None


@dataclass
class _ShardWork:
    """One shard on its way through the stages; ``order`` ranks it for the first-occurrence rule."""

    order: int
    shard: Shard
    batch: AdBatch | None = None
    rejects: list[Reject] = field(default_factory=list)
    slices: list[_Slice] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)


@dataclass(frozen=True)
class _ShardDone:
    stats: ShardStats
    distinct: int
    times: StageTimes


def encoder_pool(options: RayOptions, cluster: dict[str, float]) -> EncoderPool:
    """How many encoder actors, and what each one reserves, on a cluster with these resources."""
    gpus = options.gpus_per_encoder
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) else 0.0
    if options.num_encoders:
        size = options.num_encoders
    elif gpus:
        size = max(1, int(cluster.get("GPU", 0) // gpus))
    else:
        size = max(1, int((cluster.get("CPU", 1) - 1) // options.cpus_per_encoder))
    return EncoderPool(size, gpus, options.cpus_per_encoder)


def _map_payloads(batch: dict[str, np.ndarray], fn: Callable) -> dict[str, np.ndarray]:
    # A row carries one pickled shard: Arrow has no type for its nested arrays and dataclasses, and
    # no stage reads it column-wise, so converting it to columns would only cost time.
    out = [pickle.dumps(fn(pickle.loads(raw)), protocol=pickle.HIGHEST_PROTOCOL) for raw in batch[PAYLOAD]]
    return {PAYLOAD: np.array(out, dtype=object)}


def _dataset(ray, items: list):
    """One row per item (pickled), one block per row, so every item gets its own task."""
    rows = [{PAYLOAD: pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)} for item in items]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds.context.enable_progress_bars = False  # JobProgress shows the job; this dataset's context only
    return ds


def _shard_ids(batch: dict[str, np.ndarray], fields: Fields, run: RunDir) -> dict[str, np.ndarray]:
    """Pre-pass: (id, shard order) of every valid id; a finished shard's ids come from its part file."""
    ids: list[str] = []
    orders: list[int] = []
    for raw in batch[PAYLOAD]:
        order, shard = pickle.loads(raw)
        shard_ids = run.done_ids(shard.name) if run.is_done(shard.name) else read_shard(shard, fields, set())[0].ids
        ids.extend(shard_ids)
        orders.extend([order] * len(shard_ids))
    return {"id": np.array(ids, dtype=object), "order": np.array(orders, dtype=np.int64)}


def first_holders(ray, shards: list[Shard], fields: Fields, run: RunDir) -> dict[str, int]:
    """For each id that is valid in more than one shard, the order of the first such shard."""
    from ray.data.aggregate import Count, Min

    if len(shards) < 2:
        return {}
    ids = _dataset(ray, list(enumerate(shards)))
    # Task-based sort shuffle: the hash shuffle starts aggregator actors first (4-7 s measured on 2 CPUs),
    # and the (id, order) rows are small.
    ids.context.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ids = ids.map_batches(_shard_ids, batch_size=1, fn_kwargs={"fields": fields, "run": run})
    # Ray's default of 200 hash partitions is sized for big clusters; one per CPU keeps small runs quick.
    partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    held = ids.groupby("id", num_partitions=partitions).aggregate(
        Count(alias_name="shards"), Min("order", alias_name="first")
    )
    return {row["id"]: int(row["first"]) for row in held.filter(expr="shards > 1").iter_rows()}


def _read_and_split(
    work: _ShardWork, fields: Fields, cfg: TagConfig, batch_ads: int, first_holder: dict[str, int]
) -> _ShardWork:
    held_earlier = {ad_id for ad_id, first in first_holder.items() if first < work.order}
    batch, work.rejects = read_shard(work.shard, fields, held_earlier)
    started = time.perf_counter()
    for start in range(0, len(batch), batch_ads):
        sentences = split_ads(batch.texts[start : start + batch_ads], cfg)
        distinct, inverse = unique_texts(sentences.text)
        work.slices.append(_Slice(sentences, distinct, inverse))
    work.times.split = time.perf_counter() - started
    # Texts are not needed past splitting (evidence comes from the sentences); don't ship them on.
    work.batch = replace(batch, texts=[])
    return work


def _read_and_split_batch(batch, fields, cfg, batch_ads, first_holder):
    return _map_payloads(batch, lambda work: _read_and_split(work, fields, cfg, batch_ads, first_holder))


class EncodeSearch:
    """Actor: loads the model and the index once, by path, then embeds and searches shard after shard."""

    def __init__(self, model: str, index_dir: str, device: str, batch_size: int | None, top_k: int):
        self.encoder = Encoder(model, device=device, batch_size=batch_size)
        self.index = SkillIndex.load(index_dir, model_sha256=self.encoder.info.sha256)
        self.top_k = top_k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _map_payloads(batch, self._encode_search)

    def _encode_search(self, work: _ShardWork) -> _ShardWork:
        for s in work.slices:
            t0 = time.perf_counter()
            vectors = encode_sentences(self.encoder, s.distinct)
            t1 = time.perf_counter()
            s.hits = search_skills(self.index, vectors, self.top_k)
            work.times.encode += t1 - t0
            work.times.search += time.perf_counter() - t1
        return work


@lru_cache(maxsize=2)
def _label_space(index_dir: str) -> tuple[list[str], list[str]]:
    index = SkillIndex.load(index_dir)
    return index.uris, index.labels


def _aggregate_and_write(work: _ShardWork, cfg: TagConfig, keep: tuple[str, ...], run: RunDir, index_dir: str):
    uris, labels = _label_space(index_dir)
    started = time.perf_counter()
    skills, n_sentences, truncated = [], [], []
    for s in work.slices:
        hits = SearchResult(s.hits.skill_ids[s.inverse], s.hits.scores[s.inverse])
        skills.extend(aggregate(s.sentences, hits, len(s.sentences.per_ad), uris, labels, cfg))
        n_sentences.extend(s.sentences.per_ad.tolist())
        truncated.extend(s.sentences.truncated.tolist())
    work.times.aggregate = time.perf_counter() - started
    frame, stats = shard_output(work.shard, work.batch, work.rejects, skills, n_sentences, truncated, keep)
    # Atomic, marker last: a task Ray retries after a crash rewrites the same names.
    run.write_shard(stats, frame, work.rejects)
    return _ShardDone(stats, sum(len(s.distinct) for s in work.slices), work.times)


def _aggregate_and_write_batch(batch, cfg, keep, run, index_dir):
    return _map_payloads(batch, lambda work: _aggregate_and_write(work, cfg, keep, run, index_dir))


def _connect(ray, address: str | None) -> bool:
    """Join the given cluster, or start a local Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    ray.init(address=address)
    return True


def run_tag_job_ray(
    job: TagJob,
    model: str | os.PathLike | None,
    index_dir: str | os.PathLike | None,
    tag_config: TagConfig = TagConfig(),
    ray_options: RayOptions = RayOptions(),
    *,
    batch_size: int | None = None,
    taxonomy_sha256: str | None = None,
    description: str = "tagging on ray",
) -> dict:
    """``run_tag_job`` on Ray: same inputs, output directory and summary keys (plus ``engine``, ``ray``).

    Paths (inputs, output, model, index) must name the same files on every node of the cluster.
    """
    import ray  # the optional extra skilltag[ray]; the local engine never imports it

    if index_dir is None:
        raise SkillIndexError("--engine ray needs --index DIR, a saved index every Ray node can read "
                              "(build one with `skilltag index`)")
    model_dir = (Path(model) if model else default_model_path()).resolve()
    if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
        raise EncoderError(f"No sentence-transformers model at {model_dir}; pass --model with a local model directory")
    index_dir = str(Path(index_dir).resolve())
    model_sha256 = model_fingerprint(str(model_dir))
    # Checked here, before Ray starts, so a wrong index fails in a second, not in every actor.
    manifest = SkillIndex.load(index_dir, model_sha256=model_sha256, taxonomy_sha256=taxonomy_sha256).manifest

    files = discover_inputs(job.inputs)
    for f in files:
        check_fields(f, job.fields)
    shards, blank_lines = plan_shards(files, job.shard_size)
    run = RunDir(Path(job.output).resolve(), job.fmt)
    run.open(job_fingerprint(job, files, tag_config, model_sha256, manifest))
    done = [s for s in shards if run.is_done(s.name)]
    pending = [(order, s) for order, s in enumerate(shards) if not run.is_done(s.name)]
    stats = [run.stats(s.name) for s in done]
    fresh: list[_ShardDone] = []
    ray_info: dict = {"address": ray_options.address}
    started = time.perf_counter()
    with JobProgress(sum(s.count for s in shards), "ads", description) as progress:
        progress.advance(sum(s.count for s in done), skipped=True)
        if pending:
            t0 = time.perf_counter()
            started_ray = _connect(ray, ray_options.address)
            ray_info["startup_seconds"] = round(time.perf_counter() - t0, 3)
            try:
                pool = encoder_pool(ray_options, ray.cluster_resources())
                ray_info.update(asdict(pool), device=pool.device)
                t0 = time.perf_counter()
                first_holder = first_holders(ray, shards, job.fields, run)
                ray_info["dedupe_seconds"] = round(time.perf_counter() - t0, 3)
                started = time.perf_counter()
                for row in _pipeline(ray, job, pending, first_holder, model_dir, index_dir, tag_config, pool,
                                     batch_size, run).iter_rows():
                    shard_done: _ShardDone = pickle.loads(row[PAYLOAD])
                    fresh.append(shard_done)
                    stats.append(shard_done.stats)
                    progress.advance(shard_done.stats.records)
            finally:
                if started_ray:
                    ray.shutdown()
    elapsed = time.perf_counter() - started
    times = StageTimes()
    for d in fresh:
        times.add(d.times)
    this_run = this_run_summary(
        sum(d.stats.ads for d in fresh),
        sum(d.stats.sentences for d in fresh),
        sum(d.distinct for d in fresh),
        elapsed,
        times,
    )
    summary = summarize(job, run, files, len(shards), blank_lines, stats, len(done), manifest.model_name,
                        ray_info.get("device", "none"), this_run)
    summary["engine"] = "ray"
    summary["ray"] = ray_info
    run.write_summary(summary)
    return summary


def _pipeline(ray, job, pending, first_holder, model_dir, index_dir, cfg, pool: EncoderPool, batch_size, run):
    tasks = [_ShardWork(order, shard) for order, shard in pending]
    return (
        _dataset(ray, tasks)
        .map_batches(
            _read_and_split_batch,
            batch_size=1,
            fn_kwargs={"fields": job.fields, "cfg": cfg, "batch_ads": job.batch_ads, "first_holder": first_holder},
        )
        .map_batches(
            EncodeSearch,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=pool.size),
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
            fn_constructor_kwargs={
                "model": str(model_dir),
                "index_dir": index_dir,
                "device": pool.device,
                "batch_size": batch_size,
                "top_k": cfg.top_k,
            },
        )
        .map_batches(
            _aggregate_and_write_batch,
            batch_size=1,
            fn_kwargs={"cfg": cfg, "keep": job.fields.keep, "run": run, "index_dir": index_dir},
        )
    )
