"""Pair sources and augmentation of `skilltag train` on a small real ESCO slice (no model needed)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilltag.pairs import (
    Pair,
    PairsError,
    alt_label_pairs,
    description_pairs,
    dev_sentences,
    distant_pairs,
    normalise,
    synthetic_pairs,
)
from skilltag.taxonomy import load_taxonomy
from skilltag.train import augment

from conftest import write_taxonomy_slice

SLICE_LABELS = (
    "JavaScript", "Java (computer programming)", "SQL", "English", "manage budgets", "customer service",
    "Python (computer programming)", "MySQL", "communication", "think creatively", "statistics", "R",
)


def write_slice(dest: Path, labels=SLICE_LABELS) -> Path:
    """The rows of real ESCO v1.1.0 whose preferredLabel is in ``labels`` (skills_en.csv layout)."""
    return write_taxonomy_slice(dest, 0, set(labels))


@pytest.fixture(scope="module")
def tax(tmp_path_factory):
    t = load_taxonomy(write_slice(tmp_path_factory.mktemp("esco") / "v1.1.0" / "skills_en.csv"))
    assert len(t) == len(SLICE_LABELS)
    return t


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def labels_of(tax, pairs):
    return [(tax.skills[p.skill].label, p.sentence) for p in pairs]


def test_synthetic_maps_by_uri_then_label_and_counts_bad_lines(tax, tmp_path):
    js = tax.skills[tax.by_label()["JavaScript"]]
    f = write_jsonl(tmp_path / "gen.jsonl", [
        {"uri": js.uri, "label": "a label that changed", "sentences": ["Build UIs in JS.", "Write browser code."],
         "model": "m", "prompt_version": "v1", "usage": {}, "attempts": 1},
        {"uri": "http://example.org/old-uri", "label": "SQL", "sentences": ["Query databases daily."]},
        {"uri": "http://example.org/gone", "label": "no such skill", "sentences": ["Ignored."]},
        "{not json",
        '["a list"]',
        {"uri": js.uri, "sentences": "not a list"},
        {"uri": js.uri, "sentences": ["", 7, "Ship frontend features."]},
        "",
    ])
    ps = synthetic_pairs(f, tax)
    assert labels_of(tax, ps.pairs) == [
        ("JavaScript", "Build UIs in JS."), ("JavaScript", "Write browser code."),
        ("SQL", "Query databases daily."), ("JavaScript", "Ship frontend features."),
    ]
    assert {p.source for p in ps.pairs} == {"synthetic"}
    assert dict(ps.stats.skipped) == {
        "skill not in the taxonomy": 1, "line is not valid JSON": 1, "line is not a JSON object": 1,
        "no 'sentences' list": 1, "empty or non-string sentence": 2,
    }
    assert ps.stats.pairs == 4 and ps.stats.skills == 2
    assert ps.stats.problems[0] == f"{f}:3: skill not in the taxonomy"


def test_synthetic_missing_file_is_an_error(tax, tmp_path):
    with pytest.raises(PairsError, match="not found"):
        synthetic_pairs(tmp_path / "absent.jsonl", tax)


def test_synthetic_skips_a_line_whose_uri_or_label_is_not_a_string(tax, tmp_path):
    sql = tax.skills[tax.by_label()["SQL"]]
    f = write_jsonl(tmp_path / "gen.jsonl", [
        {"uri": [sql.uri], "sentences": ["Query databases."]},
        {"uri": None, "label": {"a": 1}, "sentences": ["Query databases."]},
        {"uri": sql.uri, "sentences": ["Write SQL joins."]},
    ])
    ps = synthetic_pairs(f, tax)
    assert labels_of(tax, ps.pairs) == [("SQL", "Write SQL joins.")]
    assert dict(ps.stats.skipped) == {"'uri' or 'label' is not a string": 2}
    assert ps.stats.problems[0] == f"{f}:1: 'uri' or 'label' is not a string"


def test_synthetic_skips_a_line_that_is_not_utf8(tax, tmp_path):
    f = tmp_path / "gen.jsonl"
    f.write_bytes(b'{"label": "SQL", "sentences": ["Bad \xff byte."]}\n{"label": "SQL", "sentences": ["Fine."]}\n')
    ps = synthetic_pairs(f, tax)
    assert [p.sentence for p in ps.pairs] == ["Fine."]
    assert dict(ps.stats.skipped) == {"line is not UTF-8": 1}
    assert ps.stats.problems == [f"{f}:1: line is not UTF-8"]


def test_synthetic_skips_json_the_parser_refuses_as_invalid(tax, tmp_path):
    f = write_jsonl(tmp_path / "gen.jsonl", [
        "[" * 100_000 + "]" * 100_000,  # RecursionError in json
        '{"label": "SQL", "sentences": ["Big."], "n": ' + "1" * 5000 + "}",  # over Python's 4300-digit limit
        {"label": "SQL", "sentences": ["Fine."]},
    ])
    ps = synthetic_pairs(f, tax)
    assert [p.sentence for p in ps.pairs] == ["Fine."]
    assert dict(ps.stats.skipped) == {"line is not valid JSON": 2}


def test_synthetic_ignores_a_byte_order_mark(tax, tmp_path):
    f = tmp_path / "gen.jsonl"
    f.write_text('{"label": "SQL", "sentences": ["First."]}\n', encoding="utf-8-sig")
    ps = synthetic_pairs(f, tax)
    assert [p.sentence for p in ps.pairs] == ["First."] and not ps.stats.skipped


@pytest.mark.parametrize("line, message", [
    (b'{"sentence": 42, "labels": ["SQL"]}', "not a benchmark line with a 'sentence' string"),
    (b'{"sentence": null, "labels": ["SQL"]}', "not a benchmark line with a 'sentence' string"),
    (b'{"sentence": "\xff", "labels": ["SQL"]}', "line is not UTF-8"),
])
def test_dev_sentences_bad_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    dev = tmp_path / "dev.jsonl"
    dev.write_bytes(b'\xef\xbb\xbf{"sentence": "We need SQL.", "labels": ["SQL"]}\n' + line + b"\n")  # BOM is fine
    with pytest.raises(PairsError) as e:
        dev_sentences([dev])
    assert str(e.value) == f"{dev}:2: {message}"
    dev.write_bytes(b'\xef\xbb\xbf{"sentence": "We need SQL.", "labels": ["SQL"]}\n')
    assert dev_sentences([dev]) == {normalise("We need SQL.")}


def test_descriptions_and_alt_labels_pair_with_the_preferred_label(tax):
    d = description_pairs(tax)
    assert labels_of(tax, d.pairs) == [(s.label, s.description) for s in tax.skills]
    a = alt_label_pairs(tax)
    assert labels_of(tax, a.pairs) == [(s.label, alt) for s in tax.skills for alt in s.alt_labels]
    assert ("customer service", "customer care") in labels_of(tax, a.pairs)
    assert a.stats.skills == sum(1 for s in tax.skills if s.alt_labels)


def test_dev_sentences_are_excluded_from_every_source(tax, tmp_path):
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"sentence": "Build UIs in JS .", "labels": ["JavaScript"]},
                                               {"sentence": "We need SQL skills.", "labels": ["SQL"]}])
    exclude = dev_sentences([dev])
    assert exclude == {normalise("build uis in js."), normalise("We need SQL skills.")}
    gen = write_jsonl(tmp_path / "gen.jsonl", [
        {"uri": tax.skills[0].uri, "sentences": ["build UIs in JS.", "Something else entirely."]}])
    ps = synthetic_pairs(gen, tax, exclude)
    assert [p.sentence for p in ps.pairs] == ["Something else entirely."]
    assert ps.stats.skipped["sentence is in a dev set"] == 1
    ads = write_jsonl(tmp_path / "ads.jsonl", [{"text": "We need SQL skills.\nWe need SQL and MySQL skills."}])
    dp = distant_pairs([ads], tax, exclude)
    assert {p.sentence for p in dp.pairs} == {"We need SQL and MySQL skills."}


def test_distant_supervision_matches_whole_names_case_insensitively(tax, tmp_path):
    corpus = tmp_path / "ads"
    corpus.mkdir()
    # SkillSpan layout: one tokenised sentence per line.
    write_jsonl(corpus / "skillspan.jsonl", [
        {"idx": 1, "tokens": ["Strong", "JAVA", "and", "SQL", "skills", "."], "source": "tech"},
        {"idx": 1, "tokens": ["JavaScript", "only"], "source": "tech"},
    ])
    # Ads with text: newline-separated sentences; the first repeats a SkillSpan sentence (deduplicated).
    write_jsonl(corpus / "ads.jsonl", [
        {"id": "a", "text": "Strong JAVA and SQL skills .\nGreat customer care matters. We design and plan data."}])
    with (corpus / "ads.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ID", "description"])
        w.writerow(["1", "Fluent english required. Experience with MySQL is a plus. R is nice."])
    (corpus / "README.md").write_text("Java Java Java")  # not a corpus file type: ignored
    dp = distant_pairs([corpus], tax)
    got = set(labels_of(tax, dp.pairs))
    assert got == {
        ("Java (computer programming)", "Strong JAVA and SQL skills ."),
        ("SQL", "Strong JAVA and SQL skills ."),
        ("JavaScript", "JavaScript only"),
        ("customer service", "Great customer care matters."),
        ("English", "Fluent english required."),
        ("MySQL", "Experience with MySQL is a plus."),
    }
    # "JavaScript" does not contain the skill "Java", "MySQL" does not contain "SQL"; "design" and "data"
    # (one-word lower-case alt labels of "think creatively" and "statistics") and "R" (too short) are skipped.
    assert dp.stats.skipped["skill name not matched: lower-case one-word alt label"] > 0
    assert dp.stats.skipped["skill name not matched: shorter than 3 characters"] >= 1
    assert set(dp.stats.files) == {str(corpus / n) for n in ("ads.csv", "ads.jsonl", "skillspan.jsonl")}


def test_distant_caps_sentences_per_skill(tax, tmp_path):
    ads = write_jsonl(tmp_path / "ads.jsonl", [{"text": "\n".join(f"Use SQL for task {i}." for i in range(30))}])
    dp = distant_pairs([ads], tax, max_per_skill=5, seed=1)
    assert len(dp.pairs) == 5 and len({p.sentence for p in dp.pairs}) == 5
    assert dp.stats.skipped["over the per-skill cap"] == 25
    assert distant_pairs([ads], tax, max_per_skill=5, seed=1).pairs == dp.pairs  # seeded


def test_distant_missing_corpus_is_an_error(tax, tmp_path):
    with pytest.raises(PairsError, match="not found"):
        distant_pairs([tmp_path / "nope"], tax)


def test_distant_reads_parquet_and_a_broken_parquet_is_an_error(tax, tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "description": ["We need SQL skills.", None]}), tmp_path / "ads.parquet")
    dp = distant_pairs([tmp_path], tax)
    assert labels_of(tax, dp.pairs) == [("SQL", "We need SQL skills.")]
    assert set(dp.stats.files) == {str(tmp_path / "ads.parquet")}
    pq.write_table(pa.table({"body": ["We need SQL skills."]}), tmp_path / "nocol.parquet")
    with pytest.raises(PairsError, match="nocol.parquet: no 'description' or 'text' column"):
        distant_pairs([tmp_path / "nocol.parquet"], tax)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1" + bytes(range(256)) + b"PAR1")
    with pytest.raises(PairsError, match="broken.parquet: not a readable Parquet file"):
        distant_pairs([tmp_path / "broken.parquet"], tax)


def test_distant_skips_lines_that_are_not_utf8_and_reads_long_csv_fields(tax, tmp_path):
    txt = tmp_path / "ads.txt"
    txt.write_bytes(b"Bad \xff byte and SQL.\nWe need SQL skills.\n")
    dp = distant_pairs([txt], tax)
    assert labels_of(tax, dp.pairs) == [("SQL", "We need SQL skills.")]
    assert dp.stats.skipped["line is not UTF-8"] == 1 and dp.stats.problems == [f"{txt}:1: line is not UTF-8"]
    long_ad = "Fluent English required.\n" + "filler " * 40_000  # one 280 KB field, over csv's 128 KiB default
    ads = tmp_path / "ads.csv"
    ads.write_bytes(b"id,description\n1,Bad \xff byte and SQL.\n2,\"" + long_ad.encode() + b"\"\n")
    dp = distant_pairs([ads], tax)
    assert labels_of(tax, dp.pairs) == [("English", "Fluent English required.")]
    assert dp.stats.skipped["row is not UTF-8"] == 1 and dp.stats.problems == [f"{ads}:2: row is not UTF-8"]


def test_distant_folder_without_job_ad_files_is_an_error(tax, tmp_path):
    (tmp_path / "README.md").write_text("We need SQL skills.")
    with pytest.raises(PairsError, match=f"no job-ad files .* found under {tmp_path}$"):
        distant_pairs([tmp_path], tax)


def test_distant_unsupported_file_type_is_an_error(tax, tmp_path):
    ads = tmp_path / "ads.json"
    ads.write_text('[{"text": "We need SQL skills."}]')
    with pytest.raises(PairsError, match=r"ads.json: unsupported job-ad file type; use \.jsonl/\.csv/\.txt/\.parquet"):
        distant_pairs([ads], tax)


def test_augment_glues_another_sentence_before_or_after_at_rate_p():
    pairs = [Pair(i % 50, f"sentence number {i}.", "synthetic") for i in range(4000)]
    out, glued = augment(pairs, 0.3, random.Random(0))
    assert len(out) == len(pairs)
    assert [p.skill for p in out] == [p.skill for p in pairs]
    changed = [(o, a) for o, a in zip(pairs, out) if o.sentence != a.sentence]
    assert len(changed) == glued
    assert 0.3 * 4000 - 100 < glued < 0.3 * 4000 + 100  # binomial sd ~29
    originals = {p.sentence for p in pairs}
    before = 0
    for orig, new in changed:
        if new.sentence.endswith(" " + orig.sentence):
            other = new.sentence[: -len(orig.sentence) - 1]
            before += 1
        else:
            assert new.sentence.startswith(orig.sentence + " ")
            other = new.sentence[len(orig.sentence) + 1:]
        assert other in originals and other != orig.sentence
    assert 0.4 < before / glued < 0.6


def test_augment_edge_cases():
    pairs = [Pair(0, "a.", "x"), Pair(1, "b.", "x")]
    assert augment(pairs, 0.0, random.Random(0)) == (pairs, 0)
    out, glued = augment(pairs, 1.0, random.Random(0))
    assert glued == 2 and {p.sentence for p in out} <= {"a. b.", "b. a."}
    with pytest.raises(ValueError):
        augment(pairs, 1.5, random.Random(0))


def test_distant_folder_skips_a_tag_output_inside_it(tax, tmp_path):
    (tmp_path / "ads.txt").write_text("We need SQL skills.\n")
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    (tagged / "_run.json").write_text("{}")
    (tagged / "part-00000-00000.parquet").write_bytes(b"not read")
    assert labels_of(tax, distant_pairs([tmp_path], tax).pairs) == [("SQL", "We need SQL skills.")]
