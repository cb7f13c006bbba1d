import json

import polars as pl
from click.testing import CliRunner

from skilltag.cli import main

from conftest import BENCH_DIR


def test_help_lists_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    for command in ("generate", "train", "index", "tag", "evaluate"):
        assert command in out


def test_missing_taxonomy_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.delenv("SKILLTAG_ESCO", raising=False)
    result = CliRunner().invoke(main, ["index", "-o", str(tmp_path / "i")])
    assert result.exit_code == 2
    assert "SKILLTAG_ESCO" in result.output and "Traceback" not in result.output


def test_index_evaluate_tag_on_a_real_slice(tmp_path, taxonomy_slice, real_ads):
    runner = CliRunner()
    index_dir = tmp_path / "idx"
    r = runner.invoke(main, ["index", "-o", str(index_dir), "--taxonomy", str(taxonomy_slice), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["n_skills"] == manifest["n_vectors"] > 1000

    r = runner.invoke(main, ["evaluate", str(BENCH_DIR / "tech_dev.jsonl"), "--index", str(index_dir),
                             "--taxonomy", str(taxonomy_slice), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)["results"][0]
    assert result["benchmark"] == "tech_dev" and result["n"] == 75
    # A 1.5k-skill label space is far easier than 13.9k: scores must beat the full-space baseline.
    assert result["rp5"] > 53.0 and 0 < result["mrr"] <= 100

    ads = tmp_path / "ads.jsonl"
    ads.write_text("".join(json.dumps({"id": a["id"], "text": a["text"]}) + "\n" for a in real_ads[:3]))
    out = tmp_path / "tagged"
    r = runner.invoke(main, ["tag", str(ads), "-o", str(out), "--index", str(index_dir)])
    assert r.exit_code == 0, r.output
    frame = pl.read_parquet(sorted(out.glob("part-*.parquet")))
    assert frame["id"].to_list() == [a["id"] for a in real_ads[:3]]
    assert (frame["skills"].list.len() > 0).all()


def test_index_mismatch_is_refused_by_cli(tmp_path, slice_index_dir):
    bench = tmp_path / "b.jsonl"
    bench.write_text('{"sentence": "python", "labels": ["Python (computer programming)"]}\n')
    other_tax = tmp_path / "skills_en.csv"
    other_tax.write_text("conceptUri,preferredLabel,altLabels,description\nhttp://x/1,SQL,,\n")
    r = CliRunner().invoke(main, ["evaluate", str(bench), "--index", str(slice_index_dir), "--taxonomy",
                                  str(other_tax)])
    assert r.exit_code == 2 and "taxonomy" in r.output
