"""Command line: thin click wrappers that parse options and call the library."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from skilltag.corpus import CorpusError, find_inputs
from skilltag.encoder import Encoder, EncoderError
from skilltag.evaluate import BenchmarkError, evaluate, load_benchmark
from skilltag.fsutil import OutputDirError, check_replaceable
from skilltag.generate.command import generate
from skilltag.generate.engine import GenerateError
from skilltag.generate.store import StoreError
from skilltag.index import MANIFEST_FILE, MANIFEST_KEYS, HnswParams, SkillIndex, SkillIndexError
from skilltag.job import DEFAULT_BATCH_ADS, DEFAULT_SHARD_SIZE, TagJob, job_fields, run_tag_job
from skilltag.onnx_encoder import BACKENDS, OnnxEncoder, make_encoder
from skilltag.rundir import RunMismatchError
from skilltag.tagger import TagConfig, Tagger
from skilltag.taxonomy import ENV_VAR as TAXONOMY_ENV_VAR
from skilltag.pairs import PairsError
from skilltag.taxonomy import TaxonomyError, load_taxonomy
from skilltag.train import TrainError
from skilltag.train_command import train

USER_ERRORS = (TaxonomyError, EncoderError, SkillIndexError, BenchmarkError, CorpusError, RunMismatchError,
               OutputDirError, PairsError, TrainError, GenerateError, StoreError,
               # A file that cannot be read or written (permissions, a full disk) names itself in the message.
               OSError)

POSITIVE = click.IntRange(min=1)

taxonomy_option = click.option(
    "--taxonomy",
    type=click.Path(dir_okay=False),
    default=None,
    help="ESCO skills_en.csv (default: $SKILLTAG_ESCO).",
)
model_option = click.option(
    "--model",
    type=click.Path(file_okay=False),
    default=None,
    help="Local sentence-transformers model directory, or a name: minilm-esco-v1 (packaged, fine-tuned) or "
         "all-MiniLM-L6-v2 (stock). Default: $SKILLTAG_MODEL, else minilm-esco-v1.",
)
device_option = click.option(
    "--device", default="auto", show_default=True, help="cuda, cpu, mps, cuda:1 ... (auto: CUDA with fp16 if present)."
)

backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
    help="torch (any device, fp16 on CUDA) or onnx: int8 on the CPU, ~2x faster there "
         "(pip install 'skilltag[onnx]'; exported once per model and cached).",
)


class SkilltagGroup(click.Group):
    """Turns the library's expected failures into one clear line and exit code 2, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            # A closed pipe (`skilltag evaluate --json | head`) is the reader's choice, not an error;
            # SKILLTAG_DEBUG=1 shows the traceback of anything else.
            if isinstance(e, BrokenPipeError) or os.environ.get("SKILLTAG_DEBUG"):
                raise
            Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            sys.exit(2)


@click.group(cls=SkilltagGroup)
@click.version_option(package_name="skilltag")
def main() -> None:
    """Tag job ads with ESCO skills: generate -> train -> index -> tag -> evaluate."""


@main.command("index")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False), help="Index directory.")
@taxonomy_option
@model_option
@device_option
@backend_option
@click.option("--alt-labels/--no-alt-labels", default=False, show_default=True,
              help="Also embed ESCO alt labels as extra vectors of their skill.")
@click.option("--hnsw-m", default=HnswParams.M, type=POSITIVE, show_default=True, help="HNSW graph degree.")
@click.option("--ef-construction", default=HnswParams.ef_construction, type=POSITIVE, show_default=True)
@click.option("--ef", default=HnswParams.ef, type=POSITIVE, show_default=True, help="HNSW search breadth (recall vs speed).")
def index_cmd(output, taxonomy, model, device, backend, alt_labels, hnsw_m, ef_construction, ef):
    """Embed every ESCO skill and build an HNSW skill index."""
    check_replaceable(Path(output), MANIFEST_FILE, "skilltag index", MANIFEST_KEYS)
    tax = load_taxonomy(taxonomy)
    encoder = make_encoder(model, device, backend)
    params = HnswParams(M=hnsw_m, ef_construction=ef_construction, ef=ef)
    Console(stderr=True).print(f"embedding {len(tax)} ESCO skills with {encoder.info.name} on {encoder.device} ...")
    idx = SkillIndex.build(tax, encoder, alt_labels=alt_labels, params=params)
    path = idx.save(output)
    m = idx.manifest
    Console(stderr=True).print(
        f"index {path}: {m.n_skills} skills, {m.n_vectors} vectors, dim {m.dim}, "
        f"ESCO {m.taxonomy_version}, built in {m.build_seconds:.1f}s"
    )


def load_or_build_index(index_dir, taxonomy, encoder: Encoder | OnnxEncoder) -> SkillIndex:
    """The saved index if given (checked against model and taxonomy), else one built in memory."""
    if index_dir:
        given = taxonomy or os.environ.get(TAXONOMY_ENV_VAR)
        tax_sha = load_taxonomy(given).sha256 if given else None
        return SkillIndex.load(index_dir, model_sha256=encoder.info.sha256, taxonomy_sha256=tax_sha)
    tax = load_taxonomy(taxonomy)
    Console(stderr=True).print(f"no --index: embedding {len(tax)} ESCO skills with {encoder.info.name} ...")
    return SkillIndex.build(tax, encoder)


@main.command("evaluate")
@click.argument("benchmarks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@taxonomy_option
@model_option
@device_option
@backend_option
@click.option("--index", "index_dir", type=click.Path(file_okay=False), default=None,
              help="Use a saved index (default: embed the taxonomy now).")
@click.option("--search", type=click.Choice(["exact", "hnsw"]), default="exact", show_default=True,
              help="exact ranks all skills (paper protocol); hnsw ranks the index's top 100.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def evaluate_cmd(benchmarks, taxonomy, model, device, backend, index_dir, search, as_json):
    """Rank all ESCO skills for each benchmark sentence; report RP@5, RP@10 and MRR."""
    encoder = make_encoder(model, device, backend)
    idx = load_or_build_index(index_dir, taxonomy, encoder)
    label_to_id = {label: i for i, label in enumerate(idx.labels)}
    uri_to_id = {uri: i for i, uri in enumerate(idx.uris)}
    loaded = [load_benchmark(path, label_to_id, uri_to_id) for path in benchmarks]  # all checked before scoring
    results = [evaluate(idx, encoder, benchmark, search=search) for benchmark in loaded]
    if as_json:
        click.echo(json.dumps({
            "model": encoder.info.name, "model_sha256": encoder.info.sha256, "backend": encoder.backend,
            "search": search,
            "results": [{"benchmark": r.name, "n": r.scores.n, "rp5": r.scores.rp5, "rp10": r.scores.rp10,
                         "mrr": r.scores.mrr} for r in results],
        }, indent=2))
        return
    table = Table(title=f"{encoder.info.name} · {encoder.backend} · {search} search · {len(idx)} skills")
    for col in ("benchmark", "sentences", "RP@5", "RP@10", "MRR"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for r in results:
        s = r.scores
        table.add_row(r.name, str(s.n), f"{s.rp5:.2f}", f"{s.rp10:.2f}", f"{s.mrr:.2f}")
    Console().print(table)


@main.command("tag")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output directory: one part file per shard, rejects/, _summary.json.")
@click.option("--index", "index_dir", type=click.Path(file_okay=False), default=None,
              help="Saved skill index (default: embed the taxonomy now, ~20 s on CPU).")
@taxonomy_option
@model_option
@device_option
@backend_option
@click.option("--id-field", default="id", show_default=True)
@click.option("--text-field", default="text", show_default=True)
@click.option("--keep", default="", help="Comma-separated input fields copied to the output (as strings).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True)
@click.option("--threshold", default=TagConfig.threshold, type=click.FloatRange(-1, 1), show_default=True, help="Minimum cosine for a skill.")
@click.option("--max-skills", default=TagConfig.max_skills, type=POSITIVE, show_default=True, help="Skills kept per ad.")
@click.option("--top-k", default=TagConfig.top_k, type=POSITIVE, show_default=True, help="Skills looked up per sentence.")
@click.option("--shard-size", default=DEFAULT_SHARD_SIZE, type=POSITIVE, show_default=True,
              help="Records per shard (the unit of output files and resume).")
@click.option("--batch-ads", default=DEFAULT_BATCH_ADS, type=POSITIVE, show_default=True,
              help="Ads whose sentences are encoded together.")
@click.option("--batch-size", default=None, type=POSITIVE, help="Encoder batch size (default 64 on CPU, 512 on CUDA).")
@click.option("--search", type=click.Choice(["auto", "hnsw", "exact"]), default="auto", show_default=True,
              help="Skill search: HNSW, or exact on the encoder's device (auto: exact on CUDA, else HNSW).")
@click.option("--sentence-cache/--no-sentence-cache", default=True, show_default=True,
              help="Encode each distinct sentence once per run (ads repeat boilerplate).")
@click.option("--overwrite", is_flag=True, help="Delete an earlier tag output in OUTPUT instead of resuming it.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster (pip install 'skilltag[ray]'; needs --index).")
@click.option("--ray-address", default=None,
              help="Ray cluster to join (default: $RAY_ADDRESS or a running local cluster, else start one; "
                   "'local' always starts a fresh one).")
@click.option("--num-encoders", type=POSITIVE, default=None, help="Ray encoder actors (default: one per GPU, or CPUs-1).")
@click.option("--gpus-per-encoder", type=click.FloatRange(min=0), default=None,
              help="GPU share per Ray encoder actor (default: 1 if the cluster has GPUs, else 0).")
def tag_cmd(input_path, output, index_dir, taxonomy, model, device, backend, id_field, text_field, keep, fmt,
            threshold, max_skills, top_k, shard_size, batch_ads, batch_size, search, sentence_cache, overwrite, engine,
            ray_address, num_encoders, gpus_per_encoder):
    """Tag a corpus of job ads (JSONL/Parquet file, directory or glob) with ESCO skills.

    Rerunning the same command resumes: finished shards are skipped.
    """
    fields = job_fields(id_field, text_field, [k.strip() for k in keep.split(",")])
    job = TagJob(input_path, output, fields, fmt, shard_size, batch_ads, overwrite, sentence_cache)
    find_inputs(input_path, fields, output)  # a wrong INPUT fails now, not after the model and index have loaded
    if engine == "ray":
        if backend != "torch":
            raise click.UsageError("--engine ray runs the torch backend; drop --backend onnx")
        if search == "auto":
            search = "exact" if (gpus_per_encoder or 0) > 0 else "hnsw"
        cfg = TagConfig(top_k=top_k, threshold=threshold, max_skills=max_skills, search=search)
        print_tag_summary(run_on_ray(job, model, index_dir, taxonomy, cfg, ray_address, num_encoders,
                                     gpus_per_encoder, batch_size))
        return
    encoder = make_encoder(model, device, backend, batch_size)
    idx = load_or_build_index(index_dir, taxonomy, encoder)
    if search == "auto":
        search = "exact" if encoder.device.startswith("cuda") else "hnsw"
    tagger = Tagger(encoder, idx, TagConfig(top_k=top_k, threshold=threshold, max_skills=max_skills, search=search))
    print_tag_summary(run_tag_job(job, tagger))


def run_on_ray(job, model, index_dir, taxonomy, cfg, address, num_encoders, gpus_per_encoder, batch_size) -> dict:
    from skilltag.ray_engine import RayOptions, run_tag_job_ray

    if importlib.util.find_spec("ray") is None:
        raise click.ClickException("--engine ray needs Ray: pip install 'skilltag[ray]'")
    given = taxonomy or os.environ.get(TAXONOMY_ENV_VAR)
    options = RayOptions(address=address, num_encoders=num_encoders, gpus_per_encoder=gpus_per_encoder)
    return run_tag_job_ray(job, model, index_dir, cfg, options, batch_size=batch_size,
                           taxonomy_sha256=load_taxonomy(given).sha256 if given else None)


def print_tag_summary(summary: dict) -> None:
    run = summary["this_run"]
    table = Table(title=f"skilltag tag -> {summary['output']}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("records", summary["records"]),
        ("ads tagged", summary["ads"]),
        ("rejected", summary["rejects"]),
        *((f"  {reason}", n) for reason, n in summary["reject_reasons"].items()),
        ("sentences", summary["sentences"]),
        ("skills", summary["skills"]),
        ("shards (skipped as done)", f"{summary['shards']} ({summary['shards_skipped']})"),
        ("this run: ads/s", f"{run['ads_per_s']:,.1f}"),
        ("this run: sentences/s", f"{run['sentences_per_s']:,.1f}"),
        ("this run: seconds", f"{run['seconds']:,.1f}"),
    ]
    for what, value in rows:
        table.add_row(what, str(value))
    Console(stderr=True).print(table)
    Console(stderr=True).print(f"summary: {summary['output']}/_summary.json; rejects: {summary['output']}/rejects/")


main.add_command(generate)
main.add_command(train)

if __name__ == "__main__":
    main()
