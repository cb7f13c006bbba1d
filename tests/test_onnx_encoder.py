"""The int8 ONNX encoder: export cache, same interface and same answers as the torch encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from conftest import BENCH_DIR, SLICE_SIZE, benchmark_labels, write_taxonomy_slice  # noqa: E402

from skilltag import onnx_encoder  # noqa: E402
from skilltag.encoder import EncoderError  # noqa: E402
from skilltag.evaluate import evaluate, load_benchmark  # noqa: E402
from skilltag.index import SkillIndex  # noqa: E402
from skilltag.onnx_encoder import EXPORT_VERSION, OnnxEncoder, cached_export, make_encoder  # noqa: E402
from skilltag.split import split_sentences  # noqa: E402
from skilltag.taxonomy import load_taxonomy  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
TECH_DEV = SHARED / "data/benchmarks/skill_extraction_benchmark/tech_dev.jsonl"
JOBADS = SHARED / "data/jobads/skillspan_postings_train_dev.jsonl"


# --- the export cache, with a stand-in for the (slow) real export -------------------------------------


def fake_export(calls: list):
    def export(model_dir: Path, out_dir: Path, sha256: str) -> dict:
        calls.append(out_dir)
        (out_dir / "model.onnx").write_bytes(b"stand-in")
        manifest = {"export_version": EXPORT_VERSION, "source_sha256": sha256}
        (out_dir / "manifest.json").write_text(json.dumps(manifest))
        return manifest

    return export


def test_export_is_cached_under_the_model_sha(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(onnx_encoder, "export_int8", fake_export(calls))
    first, _ = cached_export(tmp_path / "model", "abc123", tmp_path / "cache")
    again, manifest = cached_export(tmp_path / "model", "abc123", tmp_path / "cache")
    assert first == again == tmp_path / "cache" / "onnx" / "abc123"
    assert len(calls) == 1
    assert manifest["source_sha256"] == "abc123"
    assert sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir()) == ["abc123"]  # no temp dirs left


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SKILLTAG_CACHE", str(tmp_path / "c"))
    assert onnx_encoder.cache_root() == tmp_path / "c"
    monkeypatch.delenv("SKILLTAG_CACHE")
    assert onnx_encoder.cache_root() == Path.home() / ".cache" / "skilltag"


def test_an_older_recipe_is_exported_again(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(onnx_encoder, "export_int8", fake_export(calls))
    stale = tmp_path / "onnx" / "abc123"
    stale.mkdir(parents=True)
    (stale / "manifest.json").write_text(json.dumps({"export_version": EXPORT_VERSION - 1}))
    (stale / "model.onnx").write_bytes(b"old")
    path, _ = cached_export(tmp_path / "model", "abc123", tmp_path)
    assert len(calls) == 1
    assert (path / "model.onnx").read_bytes() == b"stand-in"
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["abc123"]


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(model_dir, out_dir, sha256):
        (out_dir / "model.onnx").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(onnx_encoder, "export_int8", broken)
    with pytest.raises(OSError, match="disk full"):
        cached_export(tmp_path / "model", "abc123", tmp_path)
    assert list((tmp_path / "onnx").iterdir()) == []


def test_make_encoder_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(EncoderError, match="unknown backend"):
        make_encoder(backend="tensorrt")
    with pytest.raises(EncoderError, match="CPU only"):
        make_encoder(device="cuda", backend="onnx")
    with pytest.raises(EncoderError, match="No sentence-transformers model"):
        make_encoder(tmp_path, device="cpu", backend="onnx")


# --- the real export of the packaged MiniLM (about half a minute, once per test session) ----------------


@pytest.fixture(scope="module")
def onnx_enc(tmp_path_factory, encoder) -> OnnxEncoder:
    return OnnxEncoder(encoder.info.path, cache_dir=tmp_path_factory.mktemp("skilltag-cache"))


EDGE_CASES = ["", "x", " ".join(["kubernetes docker terraform"] * 150)]  # empty, one token, past 256 tokens


@pytest.fixture(scope="module")
def real_sentences() -> list[str]:
    """30 TECH-dev sentences and the first 40 sentences of a real ad, distinct."""
    with TECH_DEV.open() as fh:
        dev = [json.loads(line)["sentence"] for line in fh][:30]
    with JOBADS.open() as fh:
        ad = json.loads(fh.readline())["text"]
    return list(dict.fromkeys(dev + [s.text for s in split_sentences(ad)[0]][:40]))


@pytest.mark.slow
def test_same_interface_and_model_identity_as_torch(onnx_enc, encoder):
    assert onnx_enc.backend == "onnx-int8"
    assert onnx_enc.device == "cpu"
    assert onnx_enc.info == encoder.info  # same sha256: indexes built with torch stay valid
    assert onnx_enc.dim == 384
    empty = onnx_enc.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


@pytest.mark.slow
def test_embeddings_match_torch_per_sentence(onnx_enc, encoder, real_sentences):
    texts = real_sentences + EDGE_CASES
    ours = onnx_enc.encode(texts, batch_size=16)
    ref = encoder.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = (ours * ref).sum(axis=1)
    real = cosine[: len(real_sentences)]
    assert real.min() > 0.98, [(texts[i][:60], float(cosine[i])) for i in np.argsort(real)[:3]]
    # One- and zero-word inputs carry the least signal and move most under int8.
    assert cosine[len(real_sentences) :].min() > 0.95


@pytest.mark.slow
def test_rows_come_back_in_input_order(onnx_enc, real_sentences):
    together = onnx_enc.encode(real_sentences, batch_size=8)
    alone = np.vstack([onnx_enc.encode([s]) for s in real_sentences])
    # Activations are quantised per batch, so batch neighbours move a row a little (cosine ~0.99),
    # but every row stays nearest to its own sentence.
    nearest = (together @ alone.T).argmax(axis=1)
    np.testing.assert_array_equal(nearest, np.arange(len(real_sentences)))


@pytest.mark.slow
def test_encode_tensor_matches_encode(onnx_enc, real_sentences):
    tensor = onnx_enc.encode_tensor(real_sentences[:10])
    np.testing.assert_array_equal(tensor.numpy(), onnx_enc.encode(real_sentences[:10]))


@pytest.mark.slow
def test_second_encoder_reuses_the_cached_export(onnx_enc, monkeypatch):
    monkeypatch.setattr(onnx_encoder, "export_int8", lambda *a: pytest.fail("exported twice"))
    again = OnnxEncoder(onnx_enc.info.path, cache_dir=onnx_enc.export_dir.parents[1])
    assert again.export_dir == onnx_enc.export_dir
    np.testing.assert_array_equal(again.encode(["Python"]), onnx_enc.encode(["Python"]))


@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory) -> Path:
    """A real ESCO slice that holds every gold label of both dev sets."""
    labels = benchmark_labels("tech") | benchmark_labels("house")
    return write_taxonomy_slice(tmp_path_factory.mktemp("esco") / "v1.1.0" / "skills_en.csv", SLICE_SIZE, labels)


@pytest.mark.slow
def test_dev_ranking_quality_holds(onnx_enc, encoder, dev_slice):
    """RP@5 over both dev sets (136 sentences) on a real ESCO slice: int8 within 0.5 points of torch,
    searching the torch-built index and its own."""
    taxonomy = load_taxonomy(dev_slice)
    label_to_id = {label: i for i, label in enumerate(taxonomy.labels)}
    uri_to_id = {s.uri: i for i, s in enumerate(taxonomy.skills)}
    benches = [load_benchmark(BENCH_DIR / f"{name}_dev.jsonl", label_to_id, uri_to_id) for name in ("tech", "house")]

    def pooled_rp5(index: SkillIndex, enc) -> float:
        scores = [evaluate(index, enc, b).scores for b in benches]
        return sum(s.rp5 * s.n for s in scores) / sum(s.n for s in scores)

    torch_index = SkillIndex.build(taxonomy, encoder)
    reference = pooled_rp5(torch_index, encoder)
    assert pooled_rp5(torch_index, onnx_enc) >= reference - 0.5
    assert pooled_rp5(SkillIndex.build(taxonomy, onnx_enc), onnx_enc) >= reference - 0.5
