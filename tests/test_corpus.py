"""Input discovery and shard reading: local paths and URIs (file://, and s3:// against a real S3 server)."""

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skilltag.corpus import CorpusError, Fields, discover_inputs, find_inputs, plan_shards, read_shard

LINES = [
    b'{"id": "a1", "text": "Python developer wanted.", "country": "DE"}',
    b"",
    b"not json",
    b'{"id": "a2", "text": "Experience with SQL.", "country": "FR"}',
    b'{"id": "a1", "text": "a repeated id"}',
    b'{"id": "a3", "text": "Team player.", "country": {"code": "NL"}}',
]
ROWS = [{"id": f"p{i}", "text": f"Ad number {i} needs Excel.", "country": ["BE", None][i % 2]} for i in range(11)]
FIELDS = Fields(keep=("country",))


def write_corpus(root):
    """A directory as a nightly export looks: JSONL, Parquet in small row groups, a marker file to skip."""
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_bytes(b"\n".join(LINES) + b"\n")
    pq.write_table(pa.Table.from_pylist(ROWS), root / "sub" / "b.parquet", row_group_size=3)
    (root / "_SUCCESS").write_bytes(b"")
    return root


def read_all(files, shard_size):
    shards, blank = plan_shards(files, shard_size)
    seen: set[str] = set()
    ads, rejects = [], []
    for shard in shards:
        batch, rej = read_shard(shard, FIELDS, seen)
        ads += list(zip(batch.ids, batch.texts, batch.keep["country"]))
        rejects += [(r.record, r.reason) for r in rej]
    return ads, rejects, blank, [(s.start, s.count) for s in shards]


def test_a_shard_reads_only_its_rows_across_parquet_row_groups(tmp_path):
    root = write_corpus(tmp_path / "in")
    files = discover_inputs(str(root))
    assert [f.path.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.parquet"], "sorted, _SUCCESS skipped"
    ads, rejects, blank, spans = read_all(files, shard_size=4)
    assert blank == 1
    assert spans == [(0, 4), (4, 1), (0, 4), (4, 4), (8, 3)]
    assert ads == [("a1", "Python developer wanted.", "DE"), ("a2", "Experience with SQL.", "FR"),
                   ("a3", "Team player.", json.dumps({"code": "NL"}))] + \
        [(r["id"], r["text"], r["country"]) for r in ROWS]
    assert rejects == [(1, "invalid_json"), (3, "duplicate_id")]


def test_file_uris_read_exactly_like_local_paths(tmp_path):
    root = write_corpus(tmp_path / "in")
    local = discover_inputs(str(root))
    as_uri = discover_inputs(root.as_uri())
    assert [f.path for f in as_uri] == [f"file://{f.path}" for f in local]
    assert [(f.format, f.size) for f in as_uri] == [(f.format, f.size) for f in local]
    assert read_all(as_uri, 4) == read_all(local, 4)
    assert [f.path for f in discover_inputs(root.as_uri() + "/sub/*.parquet")] == [as_uri[1].path]


def test_s3_inputs_read_like_local_ones(tmp_path, s3):
    client, query = s3
    root = write_corpus(tmp_path / "in")
    client.create_bucket(Bucket="corpus")
    for f in ("a.jsonl", "sub/b.parquet", "_SUCCESS"):
        client.put_object(Bucket="corpus", Key=f"nightly/{f}", Body=(root / f).read_bytes())
    files = discover_inputs(f"s3://corpus/nightly{query}")
    assert [f.path for f in files] == [f"s3://corpus/nightly/a.jsonl{query}", f"s3://corpus/nightly/sub/b.parquet{query}"]
    assert read_all(files, 4) == read_all(discover_inputs(str(root)), 4)
    assert len(discover_inputs(f"s3://corpus/nightly/*.jsonl{query}")) == 1
    with pytest.raises(CorpusError, match="no input found"):
        discover_inputs(f"s3://corpus/elsewhere/{query}")


@pytest.mark.parametrize("spec, message", [
    ("nowhere/*.jsonl", "no input found"),
    ("nosuchscheme://bucket/x.jsonl", "cannot read input"),
])
def test_bad_input_specs_are_clear_errors(tmp_path, spec, message):
    with pytest.raises(CorpusError, match=message):
        discover_inputs(str(tmp_path / spec) if "://" not in spec else spec)


def test_a_device_or_pipe_is_not_taken_for_a_missing_input():
    with pytest.raises(CorpusError, match="/dev/null is not a regular file or a directory"):
        discover_inputs("/dev/null")


def test_unknown_format_is_named(tmp_path):
    (tmp_path / "ads.csv").write_text("id,text\n1,x\n")
    with pytest.raises(CorpusError, match="ads.csv: unknown input format.*write_parquet"):
        discover_inputs(str(tmp_path / "ads.csv"))
    pl.DataFrame(ROWS).write_parquet(tmp_path / "ok.parquet")
    assert len(discover_inputs(str(tmp_path))) == 1, "a directory skips files of other formats"


def test_a_byte_order_mark_and_crlf_line_ends_are_not_part_of_records(tmp_path):
    src = tmp_path / "windows.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"id": "w1", "text": "First ad."}\r\n\r\n{"id": "w2", "text": "Second ad."}\r\n')
    for shard_size in (1, 5):
        ads, rejects, blank, _ = read_all(discover_inputs(str(src)), shard_size)
        assert [a[:2] for a in ads] == [("w1", "First ad."), ("w2", "Second ad.")] and not rejects and blank == 1


def test_compressed_input_says_what_to_do(tmp_path):
    (tmp_path / "ads.jsonl.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(CorpusError, match="compressed: decompress it first, or convert it to Parquet"):
        discover_inputs(str(tmp_path / "ads.jsonl.gz"))


def test_hostile_jsonl_lines_are_rejects_not_crashes(tmp_path):
    src = tmp_path / "hostile.jsonl"
    lines = [
        b'{"id": "ok", "text": "Fine ad.", "country": "DE"}',
        b'{"id": "big", "text": "x", "n": ' + b"9" * 5000 + b"}",  # past Python's int-from-string limit
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON decoder recurses
        b'{"id": "s1", "text": "lone \\ud800 surrogate"}',
        b'{"id": "s2\\udfff", "text": "surrogate in the id"}',
        b'{"id": "s3", "text": "surrogate in a kept field", "country": "\\udc80"}',
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    ads, rejects, _, _ = read_all(discover_inputs(str(src)), 10)
    assert ads == [("ok", "Fine ad.", "DE")]
    assert rejects == [(1, "invalid_json"), (2, "invalid_json"), (3, "invalid_unicode"), (4, "invalid_unicode"),
                       (5, "invalid_unicode")]


def test_a_kept_field_nested_near_the_recursion_limit_is_an_ad_or_a_reject(tmp_path):
    # Somewhere in this range json.loads still copes and writing the field back as JSON does not.
    depths = range(900, 1001, 4)
    lines = [b'{"id": "d%d", "text": "Nested.", "country": %s}' % (d, b"[" * d + b"]" * d) for d in depths]
    (tmp_path / "deep.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    ads, rejects, _, _ = read_all(discover_inputs(str(tmp_path / "deep.jsonl")), 100)
    assert len(ads) + len(rejects) == len(depths)
    assert {reason for _, reason in rejects} <= {"invalid_json"}


def test_parquet_values_python_cannot_hold_reject_only_their_row(tmp_path):
    too_late = 253402300800 * 2 * 10**6  # microseconds: year ~10,000+, past datetime's range
    text = pa.Array.from_buffers(  # invalid UTF-8 in a string column, as a broken writer leaves it
        pa.string(), 3, [None, pa.array([0, 3, 7, 10], type=pa.int32()).buffers()[1], pa.py_buffer(b"ab.bad\xffcd.")]
    )
    table = pa.table({"id": ["t1", "t2", "t3"], "text": text,
                      "country": pa.array([0, 0, too_late], type=pa.timestamp("us"))})
    pq.write_table(table, tmp_path / "odd.parquet")
    ads, rejects, _, _ = read_all(discover_inputs(str(tmp_path / "odd.parquet")), 10)
    assert ads == [("t1", "ab.", "1970-01-01 00:00:00")]
    assert rejects == [(1, "unreadable_value"), (2, "unreadable_value")]


def test_a_file_that_is_not_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 but then nothing useful")
    with pytest.raises(CorpusError, match="broken.parquet: not a readable Parquet file"):
        find_inputs(str(tmp_path), FIELDS)


def test_an_input_changed_after_planning_is_refused(tmp_path):
    root = write_corpus(tmp_path / "in")
    shards, _ = plan_shards(discover_inputs(str(root)), 4)
    with open(root / "a.jsonl", "ab") as fh:
        fh.write(b'{"id": "late", "text": "Appended while the job ran."}\n')
    with pytest.raises(CorpusError, match="a.jsonl changed while the job ran"):
        read_shard(shards[0], FIELDS, set())
    (root / "sub" / "b.parquet").unlink()
    with pytest.raises(CorpusError, match="b.parquet was removed"):
        read_shard(shards[2], FIELDS, set())


def test_the_output_directory_is_not_read_as_input(tmp_path):
    root = write_corpus(tmp_path / "in")
    (root / "tagged").mkdir()
    pl.DataFrame({"id": ["x"], "skills": [[]]}).write_parquet(root / "tagged" / "part-00000-00000.parquet")
    files = find_inputs(str(root), FIELDS, output=root / "tagged")
    assert [f.path.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.parquet"]
    with pytest.raises(CorpusError, match="no input found"):
        find_inputs(str(root / "tagged"), FIELDS, output=root / "tagged")
    # An earlier job's output (it has _run.json) is not input either, found by directory or by glob.
    (root / "sub" / "old-run").mkdir()
    (root / "sub" / "old-run" / "_run.json").write_text("{}")
    (root / "sub" / "old-run" / "part-00000-00000.jsonl").write_text('{"id": "x", "skills": []}\n')
    for spec in (str(root), str(root / "**")):
        names = [f.path.rsplit("/", 1)[1] for f in find_inputs(spec, FIELDS, output=root / "tagged")]
        assert names == ["a.jsonl", "b.parquet"], spec
    # A pattern keeps a data file whose name starts with "_"; a directory walk skips it like _SUCCESS.
    (root / "_batch1.jsonl").write_bytes((root / "a.jsonl").read_bytes())
    assert [f.path.rsplit("/", 1)[1] for f in discover_inputs(str(root / "*.jsonl"))] == ["_batch1.jsonl", "a.jsonl"]
