"""The output directory of ``skilltag generate``: append-only JSONL that survives a kill at any moment.

``sentences.jsonl`` holds one line per finished skill and is only ever appended to, a batch at a
time, each batch fsynced before its skills count as done. On open, a torn last line (the process
died mid-write) is cut off, and the URIs already present are the skills a rerun skips, so no skill
is written twice. ``failed.jsonl`` lists the skills of the latest runs that failed, with the reason;
they are tried again on the next run.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from skilltag.fsutil import fsync_dir

SENTENCES_FILE = "sentences.jsonl"
FAILED_FILE = "failed.jsonl"
LOCK_FILE = ".lock"


class StoreError(Exception):
    """The output directory holds a file that is not ours or is damaged beyond a torn last line."""


@dataclass(frozen=True)
class SkillRecord:
    """One line of sentences.jsonl; the first five fields are the layout the training stage reads."""

    uri: str
    label: str
    sentences: list[str]
    model: str
    prompt_version: str
    usage: dict[str, int]
    attempts: int


@dataclass(frozen=True)
class FailedRecord:
    uri: str
    label: str
    reason: str
    model: str
    prompt_version: str
    attempts: int


def _line(record: SkillRecord | FailedRecord) -> bytes:
    return (json.dumps(asdict(record), ensure_ascii=False) + "\n").encode("utf-8")


def _append(path: Path, data: bytes) -> None:
    """One write call per batch, then fsync: after a kill, the file ends with whole lines or a torn one."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def _read_lines(path: Path) -> tuple[list[dict], int]:
    """The records of a JSONL file, cutting off a torn last line; returns (records, bytes cut)."""
    if not path.exists():
        return [], 0
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # after the final newline: empty, or a line that was never finished
    records: list[dict] = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("uri"), str):
            if number == len(lines) and not tail:
                # Whole-looking but unparseable last line: also a torn write.
                tail = line + b"\n"
                break
            raise StoreError(
                f"{path}: line {number} is not a JSON record with a 'uri'; "
                "this file was damaged or written by something else. Move it away to start afresh."
            )
        records.append(record)
    if tail:
        with open(path, "r+b") as f:
            f.truncate(len(raw) - len(tail))
            f.flush()
            os.fsync(f.fileno())
    return records, len(tail)


class OutputStore:
    """The finished skills on disk, and the only way to add to them."""

    def __init__(self, out_dir: str | os.PathLike, *, exclusive: bool = False) -> None:
        """Read what is done; ``exclusive`` first claims the directory so no other run writes to it."""
        self.dir = Path(out_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"{self.dir} exists and is not a directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if exclusive:
            self._lock()
        self.sentences_path = self.dir / SENTENCES_FILE
        self.failed_path = self.dir / FAILED_FILE
        try:
            self._read()
        except StoreError:
            self.close()
            raise

    def _read(self) -> None:
        records, self.repaired_bytes = _read_lines(self.sentences_path)
        self.done: dict[str, int] = {}
        self.made_by: Counter[tuple[str, str]] = Counter()
        duplicates = 0
        for r in records:
            if r["uri"] in self.done:
                duplicates += 1
                continue
            self.done[r["uri"]] = len(r.get("sentences") or ())
            self.made_by[(str(r.get("model")), str(r.get("prompt_version")))] += 1
        if duplicates:
            raise StoreError(f"{self.sentences_path}: {duplicates} skill(s) appear twice; this file was not written by us")
        self.previous_failures, _ = _read_lines(self.failed_path)

    def _lock(self) -> None:
        # Held until close() or the process ends (kill -9 included). Two runs appending to one
        # directory would each skip only what was done when they started, and write some skills twice.
        fd = os.open(self.dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"another skilltag generate is writing to {self.dir}; wait for it or stop it") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "OutputStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def append_done(self, records: list[SkillRecord]) -> list[SkillRecord]:
        """Durably add finished skills not yet on disk; returns those written."""
        fresh: list[SkillRecord] = []
        for r in records:
            if r.uri not in self.done:
                self.done[r.uri] = len(r.sentences)
                fresh.append(r)
        if fresh:
            _append(self.sentences_path, b"".join(_line(r) for r in fresh))
        return fresh

    def append_failed(self, records: list[FailedRecord]) -> None:
        if records:
            _append(self.failed_path, b"".join(_line(r) for r in records))

    def forget_failures(self, retrying: set[str]) -> None:
        """Drop earlier failures of the skills about to be retried (and of any done since)."""
        keep = [r for r in self.previous_failures if r["uri"] not in retrying and r["uri"] not in self.done]
        if len(keep) == len(self.previous_failures):
            return
        tmp = self.failed_path.with_suffix(".jsonl.tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in keep))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.failed_path)
        fsync_dir(self.dir)
        self.previous_failures = keep
