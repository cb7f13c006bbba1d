"""``skilltag tag --engine ray``: the local job's shards, checks, tagging steps and output, run on Ray Data.

One implementation, two executors. Every step is the code the local engine runs
(``corpus.read_shard``, ``tagger.split_ads``, ``job.tag_prepared`` -> ``Tagger.finish``: distinct
sentences, encode, search, ``aggregate``; ``job.shard_output``, ``RunDir.write_shard``); Ray only
decides where each one runs::

    shards -> read + split (CPU tasks) -> encode, search, aggregate (actor pool: model and index
           load once per actor, on a GPU when it has one) -> write part, rejects, marker (CPU tasks)

(With CPU-only encoders Ray fuses read + split into the encoder actor: it would run on the same
cores either way, and one hand-over of the shard is saved.)

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from skilltag.cache import SentenceCache
from skilltag.corpus import CorpusError, Fields, Shard, find_inputs, plan_shards, read_shard
from skilltag.encoder import Encoder, EncoderError, model_fingerprint, resolve_model
from skilltag.index import IndexManifest, SkillIndex, SkillIndexError
from skilltag.job import (
    PreparedShard,
    TagJob,
    job_fingerprint,
    shard_output,
    summarize,
    tag_prepared,
    this_run_summary,
)
from skilltag.progress import JobProgress
from skilltag.rundir import RunDir, RunMismatchError, ShardStats
from skilltag.tagger import StageTimes, TagConfig, Tagger, split_ads

PAYLOAD = "payload"


@dataclass(frozen=True)
class RayOptions:
    # Passed to ray.init. None: the cluster in $RAY_ADDRESS (set by `ray job submit`) or one `ray start`
    # began on this machine, else a new local Ray for this job; "local" always starts a new one;
    # "auto" only joins; "ray://head:10001" joins through Ray Client.
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
class _ShardWork:
    """One shard on its way through the stages; ``order`` ranks it for the first-occurrence rule."""

    order: int
    shard: Shard
    prepared: PreparedShard | None = None
    tagged: tuple | None = None  # tag_prepared's (skills, n_sentences, truncated, encoded)
    times: StageTimes = field(default_factory=StageTimes)
    cache_lookups: int = 0
    cache_hits: int = 0


@dataclass(frozen=True)
class _ShardDone:
    stats: ShardStats
    encoded: int
    times: StageTimes
    cache_lookups: int
    cache_hits: int


@dataclass(frozen=True)
class _Plan:
    """What the stages need besides the shard itself; every path absolute, as workers run elsewhere."""

    job: TagJob
    cfg: TagConfig
    model_dir: str
    index_dir: str
    batch_size: int | None
    run: RunDir


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
    # Our errors (a broken input file) reach the driver as themselves, not as Ray's UserCodeException,
    # whose pickled form drops the original.
    ds.context.raise_original_map_exception = True
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
    from ray.data.expressions import col

    if len(shards) < 2:
        return {}
    ids = _dataset(ray, list(enumerate(shards)))
    # Task-based sort shuffle: the hash shuffle starts aggregator actors first (4-7 s measured on 2 CPUs),
    # and the (id, order) rows are small.
    ids.context.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ids = ids.map_batches(_shard_ids, batch_size=1, fn_kwargs={"fields": fields, "run": run})
    # Ray's default of 200 partitions is sized for big clusters; one per CPU keeps small runs quick.
    partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    held = ids.groupby("id", num_partitions=partitions).aggregate(
        Count(alias_name="shards"), Min("order", alias_name="first")
    )
    return {row["id"]: int(row["first"]) for row in held.filter(expr=col("shards") > 1).iter_rows()}


def _read_and_split(work: _ShardWork, plan: _Plan, first_holder: dict[str, int]) -> _ShardWork:
    held_earlier = {ad_id for ad_id, first in first_holder.items() if first < work.order}
    batch, rejects = read_shard(work.shard, plan.job.fields, held_earlier)
    step = plan.job.batch_ads
    slices = []
    for start in range(0, len(batch), step):
        t0 = time.perf_counter()
        slices.append((split_ads(batch.texts[start : start + step], plan.cfg), time.perf_counter() - t0))
    # Texts are not needed past splitting (evidence comes from the sentences); don't ship them on.
    work.prepared = PreparedShard(work.shard, False, replace(batch, texts=[]), rejects, slices)
    return work


def _read_and_split_batch(batch: dict[str, np.ndarray], plan: _Plan, first_holder: dict[str, int]):
    return _map_payloads(batch, lambda work: _read_and_split(work, plan, first_holder))


class TagShards:
    """Actor: loads the model and the index once, by path, then tags shard after shard.

    Its sentence cache spans the shards this actor sees. Which shards those are is up to Ray, so
    unlike the local engine's cache it is not saved for replay; a cached hit equals a fresh one up
    to float rounding.
    """

    def __init__(self, plan: _Plan, device: str):
        encoder = Encoder(plan.model_dir, device=device, batch_size=plan.batch_size)
        index = SkillIndex.load(plan.index_dir, model_sha256=encoder.info.sha256)
        self.cache = SentenceCache(min(plan.cfg.top_k, len(index))) if plan.job.sentence_cache else None
        self.tagger = Tagger(encoder, index, plan.cfg, self.cache)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _map_payloads(batch, self._tag)

    def _tag(self, work: _ShardWork) -> _ShardWork:
        if self.cache is not None:
            self.cache.start_shard()
            lookups, hits = self.cache.lookups, self.cache.hits
        work.tagged = tag_prepared(self.tagger, work.prepared, work.times)
        if self.cache is not None:
            work.cache_lookups, work.cache_hits = self.cache.lookups - lookups, self.cache.hits - hits
        work.prepared.slices = []  # the sentences stay here; only the results travel on
        return work


def _write(work: _ShardWork, plan: _Plan) -> _ShardDone:
    skills, n_sentences, truncated, encoded = work.tagged
    p = work.prepared
    frame, stats = shard_output(p.shard, p.batch, p.rejects, skills, n_sentences, truncated, plan.job.fields.keep)
    # Atomic, marker last: a task that Ray retries after a crash rewrites the same names.
    plan.run.write_shard(stats, frame, p.rejects)
    return _ShardDone(stats, encoded, work.times, work.cache_lookups, work.cache_hits)


def _write_batch(batch: dict[str, np.ndarray], plan: _Plan):
    return _map_payloads(batch, lambda work: _write(work, plan))


def _pipeline(ray, plan: _Plan, pending: list[_ShardWork], first_holder: dict[str, int], pool: EncoderPool):
    # Ray Data's defaults retry a killed worker: tasks max_retries=-1, actors max_restarts=-1 and
    # max_task_retries=-1 (set in ActorPoolMapOperator); exceptions from our code are not retried.
    return (
        _dataset(ray, pending)
        .map_batches(_read_and_split_batch, batch_size=1, fn_kwargs={"plan": plan, "first_holder": first_holder})
        .map_batches(
            TagShards,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=pool.size),
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
            fn_constructor_kwargs={"plan": plan, "device": pool.device},
        )
        .map_batches(_write_batch, batch_size=1, fn_kwargs={"plan": plan})
    )


def _connect(ray, address: str | None) -> bool:
    """Connect unless this process already has (tests, notebooks); True when the caller must disconnect."""
    if ray.is_initialized():
        return False
    ray.init(address=address)
    return True


def _run_pending(
    ray, plan: _Plan, shards: list[Shard], pending: list[_ShardWork], options: RayOptions, progress: JobProgress
) -> tuple[list[_ShardDone], float, dict]:
    """Tag the unfinished shards on Ray: (their results, seconds without Ray's start-up, Ray facts)."""
    t0 = time.perf_counter()
    started_ray = _connect(ray, options.address)
    started = time.perf_counter()
    info: dict = {"address": options.address, "startup_seconds": round(started - t0, 3)}
    done: list[_ShardDone] = []
    try:
        pool = encoder_pool(options, ray.cluster_resources())
        info.update(encoders=pool.size, gpus_per_encoder=pool.gpus, cpus_per_encoder=pool.cpus)
        first_holder = first_holders(ray, shards, plan.job.fields, plan.run)
        info["dedupe_seconds"] = round(time.perf_counter() - started, 3)
        for row in _pipeline(ray, plan, pending, first_holder, pool).iter_rows():
            shard_done: _ShardDone = pickle.loads(row[PAYLOAD])
            done.append(shard_done)
            progress.advance(shard_done.stats.records)
    except ray.exceptions.RayError as e:
        raise _input_error(e) or e
    finally:
        if started_ray:
            ray.shutdown()
    return done, time.perf_counter() - started, info


def _input_error(error: BaseException) -> Exception | None:
    """The CorpusError or RunMismatchError a worker raised, unwrapped from Ray's exceptions, so the CLI
    reports it in one line as the local engine does."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (CorpusError, RunMismatchError)) and not type(e).__module__.startswith("ray"):
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


def _model_and_index(model, index_dir, taxonomy_sha256: str | None) -> tuple[Path, str, str, IndexManifest]:
    """Model directory, its hash, the index directory and its manifest, checked before Ray starts."""
    if index_dir is None:
        raise SkillIndexError(
            "--engine ray needs --index DIR, a saved index every Ray node can read (build one with `skilltag index`)"
        )
    model_dir = resolve_model(model).resolve()
    if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
        raise EncoderError(f"No sentence-transformers model at {model_dir}; pass --model with a local model directory")
    model_sha256 = model_fingerprint(str(model_dir))
    index_dir = Path(index_dir).resolve()
    # A wrong index fails here in a second, not in every actor after Ray's start-up.
    manifest = SkillIndex.load(index_dir, model_sha256=model_sha256, taxonomy_sha256=taxonomy_sha256).manifest
    return model_dir, model_sha256, str(index_dir), manifest


def run_tag_job_ray(
    job: TagJob,
    model: str | os.PathLike | None,
    index_dir: str | os.PathLike | None,
    tag_config: TagConfig,
    ray_options: RayOptions = RayOptions(),
    *,
    batch_size: int | None = None,
    taxonomy_sha256: str | None = None,
    description: str = "tagging on ray",
) -> dict:
    """``run_tag_job`` on Ray: same inputs, output directory and summary (plus ``engine`` and ``ray``).

    Inputs, output, model and index must be paths that name the same files on every Ray node.
    Ray is started (or joined) only when some shard is unfinished.
    """
    import ray  # the optional extra skilltag[ray]; the local engine never imports it

    model_dir, model_sha256, index_dir, manifest = _model_and_index(model, index_dir, taxonomy_sha256)
    files = find_inputs(job.inputs, job.fields, job.output)
    shards, blank_lines = plan_shards(files, job.shard_size)
    run = RunDir(Path(job.output).resolve(), job.fmt)
    fingerprint = job_fingerprint(job, files, tag_config, model_sha256, manifest, Encoder.backend)
    run.open(fingerprint, overwrite=job.overwrite)
    plan = _Plan(job, tag_config, str(model_dir), index_dir, batch_size, run)

    done = [s for s in shards if run.is_done(s.name)]
    pending = [_ShardWork(order, s) for order, s in enumerate(shards) if not run.is_done(s.name)]
    fresh: list[_ShardDone] = []
    elapsed = 0.0
    ray_info: dict = {"address": ray_options.address}
    with JobProgress(sum(s.count for s in shards), "ads", description) as progress:
        progress.advance(sum(s.count for s in done), skipped=True)
        if pending:
            fresh, elapsed, ray_info = _run_pending(ray, plan, shards, pending, ray_options, progress)

    times = StageTimes()
    for d in fresh:
        times.add(d.times)
    ads, sentences = sum(d.stats.ads for d in fresh), sum(d.stats.sentences for d in fresh)
    this_run = this_run_summary(ads, sentences, sum(d.encoded for d in fresh), elapsed, times)
    lookups = sum(d.cache_lookups for d in fresh)
    if lookups:
        this_run["cache_hit_rate"] = round(sum(d.cache_hits for d in fresh) / lookups, 4)
    stats = [run.stats(s.name) for s in done] + [d.stats for d in fresh]
    device = ("cuda" if ray_info["gpus_per_encoder"] else "cpu") if pending else "none"
    summary = summarize(job, run, files, len(shards), blank_lines, stats, len(done), manifest.model_name, device,
                        this_run)
    summary.update(engine="ray", ray=ray_info)
    run.write_summary(summary)
    return summary
