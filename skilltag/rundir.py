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
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from skilltag.corpus import Reject
from skilltag.fsutil import atomic_write_bytes, fsync_dir

RUN_FILE = "_run.json"
SUMMARY_FILE = "_summary.json"
RUN_KEYS = ("inputs", "model_sha256", "tag_config")  # in every _run.json skilltag writes
OWN_DIRS = ("_markers", "rejects", "_cache")
# Part files, the run files, and the dot-named temporaries they are written under.
OWN_FILE = re.compile(r"\.?(part-\d+-\d+\.(parquet|jsonl)|_run\.json|_summary\.json)(\.tmp)?")


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


class RunDir:
    def __init__(self, root: str | os.PathLike, fmt: str):
        if fmt not in ("parquet", "jsonl"):
            raise ValueError(f"unknown output format {fmt!r}")
        self.root = Path(root)
        self.fmt = fmt
        self.markers = self.root / "_markers"
        self.rejects = self.root / "rejects"
        self.cache = self.root / "_cache"

    def _own(self, entry: Path) -> bool:
        if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
            return False
        return entry.name in OWN_DIRS if entry.is_dir() else bool(OWN_FILE.fullmatch(entry.name))

    def _clear(self) -> None:
        """Remove a previous job's output: only the entries a tag job writes, ``_run.json`` last, so a
        kill part-way leaves a directory that ``--overwrite`` still recognises and no stale marker."""
        run_file = self.root / RUN_FILE
        # Markers first (no shard counts as done once its part may be gone), _run.json last.
        for entry in sorted(self.root.iterdir(), key=lambda e: (e != self.markers, e == run_file)):
            if self._own(entry):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def _previous_fingerprint(self) -> dict | None:
        """The fingerprint in ``_run.json``, None without one; a file of that name skilltag did not write
        makes the directory foreign."""
        run_file = self.root / RUN_FILE
        if not run_file.is_file():
            return None
        try:
            previous = json.loads(run_file.read_text())
        except (ValueError, OSError):
            previous = None
        if not isinstance(previous, dict) or not all(k in previous for k in RUN_KEYS):
            raise RunMismatchError(f"{run_file} was not written by skilltag tag; choose a new or empty directory")
        return previous

    def open(self, fingerprint: dict, overwrite: bool = False) -> None:
        """Start a new job here, or resume the same one; refuse to mix two different jobs.

        ``overwrite`` replaces an earlier tag job's output instead; files of any other kind stay.
        """
        fingerprint = json.loads(json.dumps(fingerprint))  # compare as stored: tuples become lists
        if self.root.exists() and (self.root.is_symlink() or not self.root.is_dir()):
            raise RunMismatchError(f"output {self.root} exists and is not a directory (or is a link)")
        try:
            previous = self._previous_fingerprint()
            entries = list(self.root.iterdir()) if self.root.exists() else []
            if previous is None and entries and not (overwrite and all(self._own(e) for e in entries)):
                # Someone else's files, or a tag job killed before it wrote _run.json (--overwrite takes that).
                raise RunMismatchError(
                    f"output {self.root} is not empty and holds no skilltag tag job ({RUN_FILE}); "
                    f"choose a new or empty directory"
                )
            if overwrite:
                self._clear()
            elif previous is not None:
                diff = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
                if diff:
                    raise RunMismatchError(
                        f"{self.root} holds a job with different {', '.join(diff)}. Rerun with the same inputs, "
                        f"options, model and index to resume, or choose a new output directory (or --overwrite)."
                    )
            self.root.mkdir(parents=True, exist_ok=True)
            run_file = self.root / RUN_FILE
            if not run_file.is_file():  # first, so a kill right after leaves a directory this job can resume
                atomic_write_bytes(run_file, (json.dumps(fingerprint, indent=2, sort_keys=True) + "\n").encode())
            for d in (self.markers, self.rejects, self.cache):
                d.mkdir(exist_ok=True)
        except OSError as e:
            raise RunMismatchError(f"cannot write to output {self.root}: {e}") from e

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
        # A rejected record may hold a lone surrogate; it is written escaped rather than failing the shard.
        atomic_write_bytes(reject_path, lines.encode("utf-8", errors="backslashreplace"))
        if cache_entries is not None:
            buf = io.BytesIO()
            keys, ids, scores = cache_entries
            np.savez(buf, keys=keys, ids=ids, scores=scores)
            atomic_write_bytes(self.cache / f"{stats.name}.npz", buf.getvalue())
        # The marker goes last: its presence means the part and the rejects are complete.
        atomic_write_bytes(self.marker_path(stats.name), json.dumps(asdict(stats)).encode())
        fsync_dir(self.root)

    def write_summary(self, summary: dict) -> Path:
        path = self.root / SUMMARY_FILE
        atomic_write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode())
        return path
