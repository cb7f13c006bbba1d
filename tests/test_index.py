import json
import shutil

import numpy as np
import pytest

from skilltag.index import IndexMismatchError, SkillIndex, SkillIndexError, top_k
from skilltag.taxonomy import load_taxonomy

from conftest import BENCH_DIR


def test_top_k_orders_by_score_then_column():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [0.3, 0.2, 0.1, 0.0]], dtype=np.float32)
    ids, vals = top_k(scores, 3)
    assert ids.tolist() == [[1, 3, 2], [0, 1, 2]]
    assert vals[0].tolist() == pytest.approx([0.9, 0.9, 0.5])


def test_save_load_round_trip(tmp_path, slice_index_dir, encoder):
    idx = SkillIndex.load(slice_index_dir, model_sha256=encoder.info.sha256)
    copy = SkillIndex.load(idx.save(tmp_path / "copy"))
    q = encoder.encode(["experience with SQL databases", "care for elderly patients"])
    a, b = idx.search(q, 10), copy.search(q, 10)
    assert np.array_equal(a.skill_ids, b.skill_ids)
    assert np.allclose(a.scores, b.scores)
    assert copy.uris == idx.uris and copy.labels == idx.labels
    manifest = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    assert manifest["model_sha256"] == encoder.info.sha256
    assert manifest["taxonomy_version"] == "v1.1.0"
    assert manifest["dim"] == 384 and manifest["hnsw"]["M"] == idx.manifest.hnsw.M
    assert not list(tmp_path.glob(".copy*")), "no temporary directory left behind"


def test_load_refuses_other_model_or_taxonomy(slice_index_dir, encoder, tmp_path):
    with pytest.raises(IndexMismatchError, match="model"):
        SkillIndex.load(slice_index_dir, model_sha256="0" * 64)
    other = tmp_path / "skills_en.csv"
    other.write_text(
        "conceptType,conceptUri,skillType,reuseLevel,preferredLabel,altLabels,description\n"
        "K,http://x/1,knowledge,,SQL,,\n"
    )
    with pytest.raises(IndexMismatchError, match="taxonomy"):
        SkillIndex.load(slice_index_dir, taxonomy_sha256=load_taxonomy(other).sha256)


def test_missing_or_corrupt_index(tmp_path, slice_index_dir):
    with pytest.raises(SkillIndexError, match="skilltag index"):
        SkillIndex.load(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(slice_index_dir, broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(SkillIndexError, match="unreadable manifest"):
        SkillIndex.load(broken)


def test_alt_labels_map_back_to_their_skill(taxonomy_slice, encoder):
    tax = load_taxonomy(taxonomy_slice)
    idx = SkillIndex.build(tax, encoder, alt_labels=True)
    assert idx.manifest.n_vectors > idx.manifest.n_skills
    musical = tax.by_label()["manage musical staff"]
    # An alt label, verbatim, must find its own skill first, through both search paths.
    q = encoder.encode(["coordinate duties of musical staff"])
    assert idx.search_exact(q, 5).skill_ids[0, 0] == musical
    hits = idx.search(q, 10)
    assert hits.skill_ids[0, 0] == musical
    assert len(set(hits.skill_ids[0].tolist())) == 10, "a skill appears once even with several vectors"


@pytest.mark.slow
def test_hnsw_recall_at_10_vs_exact(full_index, encoder):
    sentences = [json.loads(line)["sentence"] for name in ("tech", "house")
                 for line in (BENCH_DIR / f"{name}_dev.jsonl").open()]
    q = encoder.encode(sentences)
    exact = full_index.search_exact(q, 10).skill_ids
    approx = full_index.search(q, 10).skill_ids
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.99
