"""The output directory: append-only, torn-line repair, exactly once, failures kept for retry."""

from __future__ import annotations

import json

import pytest

from skilltag.generate.store import FailedRecord, OutputStore, SkillRecord, StoreError


def record(i: int) -> SkillRecord:
    return SkillRecord(f"uri:{i}", f"skill {i}", [f"You will do thing {i}."], "m", "v1", {"prompt_tokens": 1}, 1)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_append_and_reopen(tmp_path):
    store = OutputStore(tmp_path / "out")
    assert store.append_done([record(1), record(2)]) == [record(1), record(2)]
    again = OutputStore(tmp_path / "out")
    assert set(again.done) == {"uri:1", "uri:2"}
    assert again.made_by == {("m", "v1"): 2}
    assert lines(again.sentences_path)[0] == {
        "uri": "uri:1", "label": "skill 1", "sentences": ["You will do thing 1."], "model": "m",
        "prompt_version": "v1", "usage": {"prompt_tokens": 1}, "attempts": 1,
    }


def test_a_done_skill_is_never_written_twice(tmp_path):
    store = OutputStore(tmp_path)
    store.append_done([record(1)])
    assert store.append_done([record(1), record(2), record(2)]) == [record(2)]
    assert [r["uri"] for r in lines(store.sentences_path)] == ["uri:1", "uri:2"]


def test_torn_last_line_is_cut_off(tmp_path):
    store = OutputStore(tmp_path)
    store.append_done([record(1), record(2)])
    whole = store.sentences_path.read_bytes()
    with store.sentences_path.open("ab") as f:
        f.write(b'{"uri": "uri:3", "label": "ski')
    again = OutputStore(tmp_path)
    assert again.repaired_bytes == len(b'{"uri": "uri:3", "label": "ski')
    assert set(again.done) == {"uri:1", "uri:2"}
    assert again.sentences_path.read_bytes() == whole
    again.append_done([record(3)])
    assert [r["uri"] for r in lines(again.sentences_path)] == ["uri:1", "uri:2", "uri:3"]


def test_unparseable_whole_last_line_counts_as_torn(tmp_path):
    store = OutputStore(tmp_path)
    store.append_done([record(1)])
    with store.sentences_path.open("ab") as f:
        f.write(b'{"uri": "uri:2", "lab\n')
    assert set(OutputStore(tmp_path).done) == {"uri:1"}


def test_damage_before_the_last_line_is_an_error_not_a_silent_loss(tmp_path):
    path = tmp_path / "sentences.jsonl"
    path.write_text('{"uri": "a", "sentences": []}\nnot json\n{"uri": "b", "sentences": []}\n')
    with pytest.raises(StoreError, match="line 2"):
        OutputStore(tmp_path)
    assert path.read_text().count("\n") == 3  # untouched


def test_duplicate_uris_on_disk_are_an_error(tmp_path):
    (tmp_path / "sentences.jsonl").write_text('{"uri": "a"}\n{"uri": "a"}\n')
    with pytest.raises(StoreError, match="twice"):
        OutputStore(tmp_path)


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        OutputStore(tmp_path / "f")


def test_failures_are_forgotten_only_when_retried_or_done(tmp_path):
    store = OutputStore(tmp_path)
    store.append_failed([FailedRecord(f"uri:{i}", f"skill {i}", "HTTP 400", "m", "v1", 1) for i in range(3)])
    store.append_done([record(2)])
    again = OutputStore(tmp_path)
    again.forget_failures({"uri:0"})
    assert [r["uri"] for r in lines(again.failed_path)] == ["uri:1"]


def test_a_second_writer_is_refused_until_the_first_is_done(tmp_path):
    first = OutputStore(tmp_path, exclusive=True)
    with pytest.raises(StoreError, match="another skilltag generate is writing"):
        OutputStore(tmp_path, exclusive=True)
    first.close()
    with OutputStore(tmp_path, exclusive=True) as again:
        assert again.dir == tmp_path
