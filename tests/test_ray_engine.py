"""The Ray engine against the local engine: same parts, same skills, same rejects, same resume rules."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from skilltag.corpus import CorpusError, Fields
from skilltag.encoder import Encoder, default_model_path
from skilltag.index import SkillIndex, SkillIndexError
from skilltag.job import TagJob, run_tag_job
from skilltag.ray_engine import RayOptions, encoder_pool, run_tag_job_ray
from skilltag.rundir import RunMismatchError
from skilltag.tagger import TagConfig, Tagger

from conftest import S3_CREDENTIALS

SHARED = Path(__file__).resolve().parents[2] / "shared"
ESCO_CSV = SHARED / "data/esco/v1.1.0/skills_en.csv"
JOBADS = SHARED / "data/jobads/skillspan_postings_train_dev.jsonl"
N_SKILLS = 2000
N_ADS = 40  # of the 198 postings: both engines encode them, at 60-140 sentences/s on 2 CPUs
KEEP = ("source", "posting_idx")
CFG = TagConfig()

pytestmark = [
    pytest.mark.skipif(not JOBADS.is_file(), reason=f"job ads not found at {JOBADS}"),
    # Ray's own DataContext copies trip its deprecated-field warnings; nothing here sets them.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return Encoder(default_model_path(), device="cpu")


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, encoder) -> Path:
    """A saved index over the first N_SKILLS rows of ESCO (the Ray workers load it by path)."""
    from skilltag.taxonomy import load_taxonomy

    root = tmp_path_factory.mktemp("ray-index")
    csv_path = root / "v1.1.0" / "skills_en.csv"
    csv_path.parent.mkdir()
    with ESCO_CSV.open(encoding="utf-8", newline="") as src, csv_path.open("w", encoding="utf-8", newline="") as out:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(row for _, row in zip(range(N_SKILLS), reader))
    return SkillIndex.build(load_taxonomy(csv_path), encoder).save(root / "index")


@pytest.fixture(scope="module")
def ray_cluster():
    # Workers open their shards themselves, so S3 credentials go to them in the job's runtime_env
    # (on a real cluster: the nodes' instance roles or the same runtime_env).
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": S3_CREDENTIALS})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ads_dir(tmp_path_factory) -> Path:
    """The first N_ADS real postings as two JSONL files, so shards span files."""
    root = tmp_path_factory.mktemp("ads")
    lines = JOBADS.read_text(encoding="utf-8").splitlines(keepends=True)[:N_ADS]
    (root / "a.jsonl").write_text("".join(lines[: N_ADS // 2]), encoding="utf-8")
    (root / "b.jsonl").write_text("".join(lines[N_ADS // 2 :]), encoding="utf-8")
    return root


def _job(inputs: Path | str, output: Path, shard_size: int) -> TagJob:
    return TagJob(str(inputs), str(output), Fields(keep=KEEP), shard_size=shard_size, batch_ads=8)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, ads_dir, encoder, index_dir) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    run_tag_job(_job(ads_dir, out, 8), Tagger(encoder, SkillIndex.load(index_dir), CFG))
    return out


def assert_same_output(local: Path, remote: Path, same_inputs: bool = True) -> None:
    """Same part and reject files; same ids, columns and skills in the same order; scores within 1e-5."""
    parts = sorted(p.name for p in local.glob("part-*"))
    assert parts and parts == sorted(p.name for p in remote.glob("part-*"))
    for name in parts:
        a, b = pl.read_parquet(local / name), pl.read_parquet(remote / name)
        assert a.schema == b.schema
        assert a.drop("skills").equals(b.drop("skills"))
        for skills_a, skills_b in zip(a["skills"].to_list(), b["skills"].to_list(), strict=True):
            assert [(s["uri"], s["evidence"], s["sentence_index"]) for s in skills_a] == [
                (s["uri"], s["evidence"], s["sentence_index"]) for s in skills_b
            ]
            for s, t in zip(skills_a, skills_b):
                assert abs(s["score"] - t["score"]) <= 1e-5
    rejects = sorted(p.name for p in (local / "rejects").iterdir())
    assert rejects == sorted(p.name for p in (remote / "rejects").iterdir())
    for name in rejects:
        assert (local / "rejects" / name).read_text() == (remote / "rejects" / name).read_text()
    if same_inputs:
        assert json.loads((local / "_run.json").read_text()) == json.loads((remote / "_run.json").read_text())


def _totals(summary: dict) -> dict:
    keys = ("shards", "records", "ads", "rejects", "reject_reasons", "blank_lines", "sentences", "skills")
    return {k: summary[k] for k in keys}


def test_encoder_pool_sizing():
    assert encoder_pool(RayOptions(), {"CPU": 2.0}).size == 1  # one CPU stays for reading and writing
    assert encoder_pool(RayOptions(), {"CPU": 16.0}).device == "cpu"
    gpu = encoder_pool(RayOptions(), {"CPU": 32.0, "GPU": 4.0})
    assert (gpu.size, gpu.gpus, gpu.device) == (4, 1.0, "cuda")
    assert encoder_pool(RayOptions(gpus_per_encoder=0.5), {"CPU": 32.0, "GPU": 4.0}).size == 8
    assert encoder_pool(RayOptions(num_encoders=3, cpus_per_encoder=2), {"CPU": 8.0}).size == 3


def test_needs_a_saved_index(tmp_path, ads_dir):
    with pytest.raises(SkillIndexError, match="--index"):
        run_tag_job_ray(_job(ads_dir, tmp_path / "out", 8), None, None, CFG)


@pytest.mark.slow
def test_ray_output_equals_local(tmp_path, ray_cluster, ads_dir, index_dir, local_reference):
    summary = run_tag_job_ray(_job(ads_dir, tmp_path / "out", 8), None, index_dir, CFG)
    assert_same_output(local_reference, tmp_path / "out")
    local = json.loads((local_reference / "_summary.json").read_text())
    assert _totals(summary) == _totals(local)
    assert summary["ads"] == N_ADS and summary["shards"] == 6 and summary["engine"] == "ray"
    assert set(local) <= set(summary)


@pytest.mark.slow
def test_ray_reads_s3_inputs_like_local_files(tmp_path, s3, ray_cluster, ads_dir, index_dir, local_reference):
    client, query = s3
    client.create_bucket(Bucket="ray-ads")
    for f in sorted(ads_dir.iterdir()):
        client.put_object(Bucket="ray-ads", Key=f"2026-11/{f.name}", Body=f.read_bytes())
    summary = run_tag_job_ray(_job(f"s3://ray-ads/2026-11/{query}", tmp_path / "out", 8), None, index_dir, CFG)
    assert summary["input_files"] == 2 and summary["ads"] == N_ADS and summary["rejects"] == 0
    assert_same_output(local_reference, tmp_path / "out", same_inputs=False)


def _bad_corpus(root: Path) -> Path:
    """Every reject reason, duplicates within a shard, across shards and across files, blank lines."""
    root.mkdir()
    lines = [
        b'{"id": "a1", "text": "Experience with Python and SQL.", "source": 1}',
        b'{"id": "x", "text": ',
        b'{"id": "a2", "text": "   "}',
        b"",
        b'["not", "an", "object"]',
        b'{"id": "a2", "text": "Strong communication skills and teamwork."}',
        b'{"id": "a1", "text": "A second ad that reuses the id a1."}',
        b'{"id": true, "text": "Boolean ids are invalid."}',
        b'{"text": "No id at all."}',
        b'{"id": 7, "text": 42}',
        b'{"id": "bad", "text": "caf\xe9 au lait"}',
        b'{"id": "a3", "text": "Manage a team of nurses in a hospital ward."}',
        b'{"id": "a3", "text": "Same id again in the same shard."}',
        b'{"id": 7, "text": "Teach children to read and write."}',
        b"   ",
        b'{"id": "a4", "text": "Drive a forklift; operate warehouse machinery.", "source": {"k": [1, 2]}}',
        b'{"id": "s1", "text": "A lone \\ud800 surrogate."}',
        b'{"id": "n1", "text": "A huge number.", "source": ' + b"9" * 5000 + b"}",
    ]
    (root / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    pl.DataFrame(
        {
            "id": ["a2", "7", "b1", "b2", "b2", "a4"],
            "text": ["Dup across files.", "Int 7 and string 7 are one id.", None, "Repair cars.", "Dup.", "Dup."],
            "source": [3, None, 5, 6, 7, 8],
        }
    ).write_parquet(root / "b.parquet")
    return root


@pytest.mark.slow
def test_rejects_duplicates_and_reruns_match_local(tmp_path, ray_cluster, encoder, index_dir):
    corpus = _bad_corpus(tmp_path / "in")
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    local = run_tag_job(_job(corpus, local_out, 3), Tagger(encoder, SkillIndex.load(index_dir), CFG))
    remote = run_tag_job_ray(_job(corpus, ray_out, 3), None, index_dir, CFG)
    assert local["reject_reasons"] == {
        "duplicate_id": 6, "empty_text": 1, "invalid_id": 1, "invalid_json": 2, "invalid_unicode": 1,
        "missing_id": 1, "missing_text": 1, "non_string_text": 1, "not_an_object": 1, "undecodable_bytes": 1,
    }
    assert _totals(remote) == _totals(local)
    assert_same_output(local_out, ray_out)

    # A rerun of the finished job skips every shard and does not start Ray.
    mtimes = {p: p.stat().st_mtime_ns for p in ray_out.rglob("part-*")}
    again = run_tag_job_ray(_job(corpus, ray_out, 3), None, index_dir, CFG)
    assert again["shards_skipped"] == again["shards"] and "startup_seconds" not in again["ray"]
    assert {p: p.stat().st_mtime_ns for p in ray_out.rglob("part-*")} == mtimes
    assert _totals(again) == _totals(local)

    # An unfinished shard (no marker) is redone; the others, and their ids, are kept.
    (ray_out / "_markers" / "part-00000-00001.json").unlink()
    resumed = run_tag_job_ray(_job(corpus, ray_out, 3), None, index_dir, CFG)
    assert resumed["shards_skipped"] == resumed["shards"] - 1 and resumed["this_run"]["ads"] == 1
    assert_same_output(local_out, ray_out)

    # Either engine finishes a job the other started: they write the same fingerprint and layout.
    (local_out / "_markers" / "part-00001-00000.json").unlink()
    finished = run_tag_job_ray(_job(corpus, local_out, 3), None, index_dir, CFG)
    assert finished["shards_skipped"] == finished["shards"] - 1
    assert_same_output(ray_out, local_out)

    with pytest.raises(RunMismatchError, match="tag_config"):
        run_tag_job_ray(_job(corpus, ray_out, 3), None, index_dir, TagConfig(threshold=0.6))


@pytest.mark.slow
def test_an_unreadable_row_group_is_the_same_one_line_error_on_both_engines(tmp_path, ray_cluster, encoder,
                                                                             index_dir):
    src = tmp_path / "in" / "ads.parquet"
    src.parent.mkdir()
    rows = [{"id": f"p{i}", "text": f"Ad {i}: maintain hospital equipment and train staff."} for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=4)
    text = pq.ParquetFile(src).metadata.row_group(1).column(1)
    data = bytearray(src.read_bytes())
    start = text.dictionary_page_offset or text.data_page_offset
    data[start : start + text.total_compressed_size] = b"\xab" * text.total_compressed_size  # footer intact
    src.write_bytes(bytes(data))
    tagger = Tagger(encoder, SkillIndex.load(index_dir), CFG)
    for run in (lambda out: run_tag_job(_job(src.parent, out, 4), tagger),
                lambda out: run_tag_job_ray(_job(src.parent, out, 4), None, index_dir, CFG)):
        with pytest.raises(CorpusError, match="ads.parquet: not a readable Parquet file") as caught:
            run(tmp_path / "out")
        assert type(caught.value) is CorpusError, "Ray's wrapper is taken off, so the CLI prints one line"
        shutil.rmtree(tmp_path / "out")


def _encoder_actor_pid() -> int | None:
    for proc in psutil.process_iter(["cmdline"]):
        if any("TagShards" in part for part in proc.info["cmdline"] or ()):
            return proc.pid
    return None


@pytest.mark.slow
def test_killed_encoder_actor_is_restarted(tmp_path, ray_cluster, ads_dir, index_dir, local_reference):
    out = tmp_path / "out"
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(run_tag_job_ray(_job(ads_dir, out, 8), None, index_dir, CFG)))
    job.start()
    deadline = time.monotonic() + 300
    # Kill it mid-job: once the first shard is written, while the others still need the encoder.
    while not (out / "_markers").is_dir() or not any((out / "_markers").iterdir()):
        assert time.monotonic() < deadline and job.is_alive()
        time.sleep(0.2)
    pid = _encoder_actor_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    job.join(timeout=600)
    # One encoder actor: the remaining shards can only finish on the actor Ray restarted.
    assert not job.is_alive() and result["ads"] == N_ADS and result["shards_skipped"] == 0
    assert_same_output(local_reference, out)
