"""Output directory of a tagging job: one part file and one completion marker per shard.

Layout (like datatrove): ``part-FFFFF-SSSSS.parquet`` (or ``.jsonl``) per input shard,
``rejects/part-….jsonl`` for that shard's rejected records, ``_cache/part-….npz`` with the
sentence-cache entries it added (see ``skilltag.cache``), ``_markers/part-….json`` written last,
``_run.json`` with the job's fingerprint, ``_summary.json`` at the end. A shard counts as done only
when its marker exists, and every file is written to a temporary name, fsynced and renamed, so
a kill at any moment leaves either a finished shard or none.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from skilltag.corpus import Reject

RUN_FILE = "_run.json"
SUMMARY_FILE = "_summary.json"


class RunMismatchError(Exception):
    """The output directory holds shards of a job with other inputs, options, model or index."""


@dataclass(frozen=True)
class ShardStats:
    name: str
    records: int
    ads: int
    rejects: int
    sentences: int
    skills: int
    truncated_ads: int
    reject_reasons: dict[str, int]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunDir:
    def __init__(self, root: str | os.PathLike, fmt: str):
        if fmt not in ("parquet", "jsonl"):
            raise ValueError(f"unknown output format {fmt!r}")
        self.root = Path(root)
        self.fmt = fmt
        self.markers = self.root / "_markers"
        self.rejects = self.root / "rejects"
        self.cache = self.root / "_cache"

    def clear(self) -> None:
        """Remove a previous job's output (only a directory that a skilltag job wrote)."""
        if not self.root.exists():
            return
        if not (self.root / RUN_FILE).is_file():
            raise RunMismatchError(f"refusing to overwrite {self.root}: it is not a skilltag tag output")
        shutil.rmtree(self.root)

    def open(self, fingerprint: dict) -> None:
        """Start a new job here, or resume the same one; refuse to mix two different jobs."""
        fingerprint = json.loads(json.dumps(fingerprint))  # compare as stored: tuples become lists
        if self.root.exists() and not self.root.is_dir():
            raise RunMismatchError(f"output {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self.markers.mkdir(exist_ok=True)
        self.rejects.mkdir(exist_ok=True)
        self.cache.mkdir(exist_ok=True)
        run_file = self.root / RUN_FILE
        if run_file.exists():
            previous = json.loads(run_file.read_text())
            diff = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
            if diff:
                raise RunMismatchError(
                    f"{self.root} holds a job with different {', '.join(diff)}. Rerun with the same inputs, "
                    f"options, model and index to resume, or choose a new output directory (or --overwrite)."
                )
        elif any(self.root.glob("part-*")) or any(self.markers.iterdir()):
            raise RunMismatchError(f"{self.root} holds part files of an unknown job; choose an empty directory")
        else:
            atomic_write_bytes(run_file, (json.dumps(fingerprint, indent=2, sort_keys=True) + "\n").encode())

    def part_path(self, name: str) -> Path:
        return self.root / f"{name}.{self.fmt}"

    def marker_path(self, name: str) -> Path:
        return self.markers / f"{name}.json"

    def is_done(self, name: str) -> bool:
        return self.marker_path(name).is_file()

    def stats(self, name: str) -> ShardStats:
        return ShardStats(**json.loads(self.marker_path(name).read_text()))

    def done_ids(self, name: str) -> list[str]:
        """Ids a finished shard accepted, so duplicates in later shards are still caught after a resume."""
        path = self.part_path(name)
        if self.fmt == "parquet":
            return pl.read_parquet(path, columns=["id"])["id"].to_list()
        return pl.read_ndjson(path, schema={"id": pl.String})["id"].to_list() if path.stat().st_size else []

    def cache_entries(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The sentence-cache entries a finished shard added (keys, skill ids, scores), if saved."""
        path = self.cache / f"{name}.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return data["keys"], data["ids"], data["scores"]

    def write_shard(
        self,
        stats: ShardStats,
        frame: pl.DataFrame,
        rejects: list[Reject],
        cache_entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        part = self.part_path(stats.name)
        tmp = part.with_name(f".{part.name}.tmp")
        if self.fmt == "parquet":
            frame.write_parquet(tmp, compression="zstd", statistics=True)
        else:
            frame.write_ndjson(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, part)
        reject_path = self.rejects / f"{stats.name}.jsonl"
        lines = "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in rejects)
        atomic_write_bytes(reject_path, lines.encode())
        if cache_entries is not None:
            buf = io.BytesIO()
            keys, ids, scores = cache_entries
            np.savez(buf, keys=keys, ids=ids, scores=scores)
            atomic_write_bytes(self.cache / f"{stats.name}.npz", buf.getvalue())
        # The marker goes last: its presence means the part and the rejects are complete.
        atomic_write_bytes(self.marker_path(stats.name), json.dumps(asdict(stats)).encode())
        _fsync_dir(self.root)

    def write_summary(self, summary: dict) -> Path:
        path = self.root / SUMMARY_FILE
        atomic_write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode())
        return path
