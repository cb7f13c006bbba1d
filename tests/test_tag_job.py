"""End-to-end tagging jobs on real ads: formats, rejects that add up, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from skilltag.corpus import Fields
from skilltag.index import SkillIndex
from skilltag.job import TagJob, run_tag_job
from skilltag.rundir import RunMismatchError
from skilltag.tagger import TagConfig, Tagger

from conftest import REPO

N_ADS = 12


@pytest.fixture(scope="module")
def tagger(encoder, slice_index_dir):
    return Tagger(encoder, SkillIndex.load(slice_index_dir), TagConfig(threshold=0.4))


@pytest.fixture(scope="module")
def ads(real_ads):
    # Short real ads keep the suite fast; the content is real SkillSpan postings.
    shortest = sorted(real_ads, key=lambda a: len(a["text"]))[:N_ADS]
    return [{"id": a["id"], "text": a["text"], "source": a["source"], "n": a["n_sentences"]} for a in shortest]


BAD_LINES = [
    b'{"id": "b1", "text": 42}',
    b"this is not json",
    b'["a", "list"]',
    b'{"id": "b2", "text": "   "}',
    b'{"text": "an ad without an id"}',
    b'{"id": "b3"}',
    b'{"id": {"nested": 1}, "text": "x"}',
    b'{"id": "b4", "text": "caf\xe9 \xff"}',
    b'{"id": "b5", "text": "a lone \\ud800 surrogate"}',
]


def write_jsonl(path, ads, bad=()):
    with open(path, "wb") as fh:
        for a in ads:
            fh.write(json.dumps(a).encode() + b"\n")
        for line in bad:
            fh.write(line + b"\n")
    return path


def read_output(out_dir, fmt="parquet") -> pl.DataFrame:
    files = sorted(out_dir.glob(f"part-*.{fmt}"))
    frames = [pl.read_parquet(f) if fmt == "parquet" else pl.read_ndjson(f) for f in files]
    return pl.concat(frames) if frames else pl.DataFrame()


def read_rejects(out_dir) -> list[dict]:
    return [json.loads(line) for f in sorted((out_dir / "rejects").glob("*.jsonl")) for line in f.open()]


def test_every_record_is_in_output_or_rejects(tmp_path, tagger, ads):
    dup = dict(ads[0], text="a duplicate id with other text")
    src = write_jsonl(tmp_path / "in.jsonl", ads + [dup], BAD_LINES)
    out = tmp_path / "out"
    summary = run_tag_job(TagJob(str(src), str(out), Fields(keep=("source",)), shard_size=5), tagger)
    frame, rejects = read_output(out), read_rejects(out)
    assert len(frame) + len(rejects) == len(ads) + 1 + len(BAD_LINES) == summary["records"]
    assert frame["id"].to_list() == [a["id"] for a in ads], "input order kept, first occurrence of an id wins"
    assert sorted(r["reason"] for r in rejects) == sorted(
        ["duplicate_id", "non_string_text", "invalid_json", "not_an_object", "empty_text", "missing_id",
         "missing_text", "invalid_id", "undecodable_bytes", "invalid_unicode"]
    )
    assert summary["rejects"] == len(rejects) and sum(summary["reject_reasons"].values()) == len(rejects)
    assert all(r["source"] == str(src) and "record" in r and r["detail"] for r in rejects)
    assert frame["source"].to_list() == [a["source"] for a in ads]
    assert frame.schema["skills"] == pl.List(
        pl.Struct({"uri": pl.String, "label": pl.String, "score": pl.Float32, "evidence": pl.String,
                   "sentence_index": pl.Int32})
    )
    skills = frame["skills"].to_list()
    assert sum(len(s) for s in skills) == summary["skills"] > 0
    for ad_skills in skills:
        scores = [s["score"] for s in ad_skills]
        assert scores == sorted(scores, reverse=True) and all(s >= 0.4 for s in scores)
        assert len({s["uri"] for s in ad_skills}) == len(ad_skills)
    written = json.loads((out / "_summary.json").read_text())
    assert written["records"] == summary["records"]


def test_parquet_and_jsonl_round_trip(tmp_path, tagger, ads):
    src = tmp_path / "ads.parquet"
    pl.DataFrame(ads).write_parquet(src)
    jsonl_src = write_jsonl(tmp_path / "ads.jsonl", ads)
    run_tag_job(TagJob(str(src), str(tmp_path / "p"), Fields(keep=("n",)), fmt="parquet", shard_size=7), tagger)
    run_tag_job(TagJob(str(jsonl_src), str(tmp_path / "j"), Fields(keep=("n",)), fmt="jsonl", shard_size=7), tagger)
    p, j = read_output(tmp_path / "p"), read_output(tmp_path / "j", "jsonl")
    assert p["id"].to_list() == j["id"].to_list() == [a["id"] for a in ads]
    assert p["n"].to_list() == [str(a["n"]) for a in ads], "pass-through columns are written as strings"
    for a, b in zip(p["skills"].to_list(), j["skills"].to_list()):
        assert [s["uri"] for s in a] == [s["uri"] for s in b]
        assert [s["score"] for s in a] == pytest.approx([s["score"] for s in b], abs=1e-6)


def test_directory_input_and_changed_options_refused(tmp_path, tagger, ads):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_jsonl(shards / "a.jsonl", ads[:5])
    pl.DataFrame(ads[5:]).write_parquet(shards / "b.parquet")
    out = tmp_path / "out"
    summary = run_tag_job(TagJob(str(shards), str(out), shard_size=4), tagger)
    assert summary["input_files"] == 2 and summary["ads"] == len(ads)
    again = run_tag_job(TagJob(str(shards), str(out), shard_size=4), tagger)
    assert again["shards_skipped"] == again["shards"] and again["this_run"]["ads"] == 0
    with pytest.raises(RunMismatchError, match="shard_size"):
        run_tag_job(TagJob(str(shards), str(out), shard_size=3), tagger)
    other = Tagger(tagger.encoder, tagger.index, TagConfig(threshold=0.9))
    with pytest.raises(RunMismatchError, match="tag_config"):
        run_tag_job(TagJob(str(shards), str(out), shard_size=4), other)


def test_an_output_inside_the_input_directory_is_not_read_back(tmp_path, tagger, ads):
    shards = tmp_path / "ads"
    shards.mkdir()
    write_jsonl(shards / "a.jsonl", ads)
    job = TagJob(str(shards), str(shards / "tagged"), shard_size=5, fmt="jsonl")
    first = run_tag_job(job, tagger)
    again = run_tag_job(job, tagger)
    assert first["records"] == again["records"] == len(ads) and first["input_files"] == again["input_files"] == 1
    assert again["shards_skipped"] == again["shards"], "its own part files did not change the inputs"


def test_overwrite_deletes_only_what_a_tag_job_wrote(tmp_path, tagger, ads):
    src = write_jsonl(tmp_path / "a.jsonl", ads)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("months of work")
    for overwrite in (False, True):
        with pytest.raises(RunMismatchError, match="holds no skilltag tag job"):
            run_tag_job(TagJob(str(src), str(home), overwrite=overwrite), tagger)
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]

    out = tmp_path / "out"
    run_tag_job(TagJob(str(src), str(out), shard_size=5), tagger)
    (out / "notes.txt").write_text("the analyst's notes")
    again = run_tag_job(TagJob(str(src), str(out), shard_size=4, overwrite=True), tagger)
    assert again["shards_skipped"] == 0 and again["ads"] == len(ads)
    assert (out / "notes.txt").read_text() == "the analyst's notes"
    assert len(list(out.glob("part-*.parquet"))) == again["shards"], "no part file of the old job is left"


def test_overwrite_recognises_a_job_killed_before_its_run_file(tmp_path, tagger, ads):
    src = write_jsonl(tmp_path / "a.jsonl", ads)
    out = tmp_path / "out"
    run_tag_job(TagJob(str(src), str(out), shard_size=5), tagger)
    (out / "_markers").rename(tmp_path / "markers")  # as a kill between --overwrite's deletions leaves it:
    (out / "_run.json").unlink()  # markers go first, _run.json last
    with pytest.raises(RunMismatchError, match="holds no skilltag tag job"):
        run_tag_job(TagJob(str(src), str(out), shard_size=5), tagger)
    assert run_tag_job(TagJob(str(src), str(out), shard_size=5, overwrite=True), tagger)["ads"] == len(ads)
    (out / "_run.json").write_text('{"name": "another tool"}')
    with pytest.raises(RunMismatchError, match="was not written by skilltag"):
        run_tag_job(TagJob(str(src), str(out), shard_size=5, overwrite=True), tagger)


def test_top_k_beyond_the_index_size_is_capped(tmp_path, tagger, ads):
    wide = Tagger(tagger.encoder, tagger.index, TagConfig(top_k=len(tagger.index) + 50, threshold=0.4))
    src = write_jsonl(tmp_path / "a.jsonl", ads)
    summary = run_tag_job(TagJob(str(src), str(tmp_path / "wide"), shard_size=5), wide)
    assert summary["ads"] == len(ads) and summary["skills"] > 0


def test_an_output_path_that_cannot_be_created_is_a_clear_error(tmp_path, tagger, ads):
    src = write_jsonl(tmp_path / "a.jsonl", ads)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(RunMismatchError, match="cannot write to output"):
        run_tag_job(TagJob(str(src), str(tmp_path / "a_file" / "out")), tagger)


def test_a_job_reads_its_inputs_from_s3(tmp_path, tagger, ads, s3):
    client, query = s3
    client.create_bucket(Bucket="jobs")
    client.put_object(Bucket="jobs", Key="ads/a.jsonl", Body=write_jsonl(tmp_path / "a.jsonl", ads, BAD_LINES).read_bytes())
    src = f"s3://jobs/ads/{query}"
    summary = run_tag_job(TagJob(src, str(tmp_path / "s3"), shard_size=5), tagger)
    run_tag_job(TagJob(str(tmp_path / "a.jsonl"), str(tmp_path / "local"), shard_size=5), tagger)
    assert summary["ads"] == len(ads) and summary["rejects"] == len(BAD_LINES)
    assert read_output(tmp_path / "s3").equals(read_output(tmp_path / "local"))
    assert {r["source"] for r in read_rejects(tmp_path / "s3")} == {f"s3://jobs/ads/a.jsonl{query}"}
    again = run_tag_job(TagJob(src, str(tmp_path / "s3"), shard_size=5), tagger)
    assert again["shards_skipped"] == again["shards"], "a rerun over the same objects resumes"


def test_missing_parquet_column_is_a_clear_error(tmp_path, tagger, ads):
    from skilltag.corpus import CorpusError

    src = tmp_path / "ads.parquet"
    pl.DataFrame(ads).write_parquet(src)
    with pytest.raises(CorpusError, match="no column 'body'.*--text-field"):
        run_tag_job(TagJob(str(src), str(tmp_path / "o"), Fields(text="body")), tagger)


@pytest.mark.slow
def test_kill_9_then_rerun_gives_identical_output(tmp_path, real_ads, slice_index_dir, encoder):
    # Many small shards of distinct ads, so each shard costs real encoder time and the kill lands
    # mid-run even on a fast machine; the repeats at the end exercise the sentence cache on resume.
    unique = [{"id": a["id"], "text": a["text"]} for a in sorted(real_ads, key=lambda a: len(a["text"]))[:60]]
    repeats = [{"id": f"x{i}", "text": a["text"]} for i, a in enumerate(unique[:6])]
    src = write_jsonl(tmp_path / "in.jsonl", unique + repeats, BAD_LINES)
    args = [sys.executable, "-m", "skilltag.cli", "tag", str(src), "--index", str(slice_index_dir),
            "--model", str(encoder.info.path), "--shard-size", "2", "--threshold", "0.4"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    clean = tmp_path / "clean"
    subprocess.run(args + ["-o", str(clean)], check=True, env=env, capture_output=True)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(args + ["-o", str(crashed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((crashed / "_markers").glob("*.json"))) < 2:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((crashed / "_markers").glob("*.json")))
    n_shards = len(list((clean / "_markers").glob("*.json")))
    assert 2 <= done_before < n_shards, "the kill landed mid-run"

    result = subprocess.run(args + ["-o", str(crashed)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((crashed / "_summary.json").read_text())
    assert summary["shards_skipped"] >= done_before
    assert read_output(crashed).equals(read_output(clean))
    assert read_rejects(crashed) == read_rejects(clean)
    assert not list(crashed.glob(".*tmp")), "no temporary files left"
