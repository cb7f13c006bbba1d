import pytest

from skilltag.evaluate import BenchmarkError, evaluate, load_benchmark

from conftest import BENCH_DIR


def test_benchmark_errors(tmp_path, full_index):
    labels = {label: i for i, label in enumerate(full_index.labels)}
    uris = {u: i for i, u in enumerate(full_index.uris)}
    bad = tmp_path / "b.jsonl"
    for body, message in [
        ('{"sentence": "x", "labels": ["no such skill"]}\n', "not in the taxonomy"),
        ('{"sentence": "x", "labels": []}\n', "non-empty 'labels'"),
        ('{"labels": ["SQL"]}\n', "missing or empty 'sentence'"),
        ("{oops\n", ":1: not valid JSON"),
        ("", "no benchmark sentences"),
        ('["x", ["SQL"]]\n', "a JSON list, not an object"),
        ("[" * 100_000 + "]" * 100_000 + "\n", ":1: not valid JSON"),
        ('{"sentence": "x", "labels": [["SQL"]]}\n', "every label must be a string"),
        ('{"sentence": "x", "uris": [{"u": 1}]}\n', "every URI must be a string"),
        ('{"sentence": "lone \\ud800", "labels": ["SQL"]}\n', "lone UTF-16 surrogate"),
        (f'{{"sentence": "x", "labels": ["{full_index.uris[0]}"]}}\n', "is an ESCO URI; list URIs under 'uris'"),
    ]:
        bad.write_text(body)
        with pytest.raises(BenchmarkError, match=message):
            load_benchmark(bad, labels, uris)
    bad.write_bytes(b'{"sentence": "x", "labels": ["SQL"]}\n{"sentence": "caf\xe9", "labels": ["SQL"]}\n')
    with pytest.raises(BenchmarkError, match=":2: not UTF-8"):
        load_benchmark(bad, labels, uris)
    bad.write_bytes(b'\xef\xbb\xbf{"sentence": "x", "labels": ["SQL"]}\n')
    assert load_benchmark(bad, labels, uris).sentences == ["x"], "a byte order mark is not part of the JSON"
    with pytest.raises(BenchmarkError, match="not found"):
        load_benchmark(tmp_path / "missing.jsonl", labels, uris)
    with pytest.raises(BenchmarkError, match="not a regular file"):
        load_benchmark(tmp_path, labels, uris)


@pytest.mark.slow
@pytest.mark.parametrize("name, rp5", [("tech", 53.0), ("house", 48.1)])
def test_stock_model_dev_figures(full_index, encoder, name, rp5):
    """The paper-protocol figures of stock all-MiniLM-L6-v2 (exact), and HNSW loses nothing that matters."""
    labels = {label: i for i, label in enumerate(full_index.labels)}
    uris = {u: i for i, u in enumerate(full_index.uris)}
    bench = load_benchmark(BENCH_DIR / f"{name}_dev.jsonl", labels, uris)
    exact = evaluate(full_index, encoder, bench, "exact").scores
    hnsw = evaluate(full_index, encoder, bench, "hnsw").scores
    assert exact.rp5 == pytest.approx(rp5, abs=1.5)
    assert hnsw.rp5 >= exact.rp5 - 0.5
    assert hnsw.rp10 >= exact.rp10 - 0.5
    assert 0 < exact.mrr <= 100 and exact.rp10 >= exact.rp5 - 1e-9
