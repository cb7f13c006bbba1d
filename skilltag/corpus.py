"""Job-ad input: find the files, plan fixed shards over them, read one shard at a time.

A shard is a fixed run of records (non-blank JSONL lines or Parquet rows) of one file, so its
boundaries never depend on earlier runs and a rerun can skip finished shards by name. Every record
of a shard comes back either as an ad or as a :class:`Reject` with a reason.

Inputs are local paths or URIs that ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``abfs://``,
``hdfs://``, ``file://``), the same ones Ray Data reads, so a Ray worker can open its shard itself.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pyarrow.fs as pafs
import pyarrow.parquet as pq

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
RAW_SNIPPET_CHARS = 2000
READ_BUFFER = 1 << 20
BOM = b"\xef\xbb\xbf"  # what Windows tools put before the first line; not part of any record
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")
GLOB_CHARS = re.compile(r"[*?\[]")


class CorpusError(Exception):
    """The input cannot be found or does not have the fields asked for."""


@dataclass(frozen=True)
class InputFile:
    path: str
    format: str  # "jsonl" | "parquet"
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Shard:
    name: str
    file: InputFile
    start: int  # first record (0-based) of the file in this shard
    count: int
    byte_offset: int = 0  # JSONL: where the shard's first line starts


@dataclass(frozen=True)
class Reject:
    source: str
    record: int  # 0-based record number within the source file
    reason: str
    detail: str
    raw: str | None = None


@dataclass
class AdBatch:
    """Valid ads of one shard, column-wise, in input order."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    keep: dict[str, list[str | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Fields:
    id: str = "id"
    text: str = "text"
    keep: tuple[str, ...] = ()


def _format_of(name: str) -> str | None:
    name = name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def _is_hidden(name: str) -> bool:
    return PurePosixPath(name).name.startswith((".", "_"))


def is_uri(path: str) -> bool:
    return "://" in path


def open_input(path: str) -> BinaryIO:
    """A buffered, seekable binary reader over a local path or a pyarrow.fs URI."""
    if not is_uri(path):
        return open(path, "rb")
    fs, inner = pafs.FileSystem.from_uri(path)
    return io.BufferedReader(fs.open_input_file(inner), buffer_size=READ_BUFFER)


def discover_inputs(spec: str | os.PathLike, output: str | os.PathLike | None = None) -> list[InputFile]:
    """A file, a directory of shards (recursively) or a glob; files sorted by path for a stable order.

    Local files inside ``output`` or inside any other tag job's output (a directory with ``_run.json``)
    are left out: ``tag ads/ -o ads/tagged`` must not read its own part files on a rerun.
    """
    spec = str(spec)
    found = _discover_uri(spec) if is_uri(spec) else _discover_local(spec, Path(output).resolve() if output else None)
    if not found:
        raise CorpusError(f"no input found at {spec!r} (give a .jsonl/.parquet file, a directory or a glob)")
    for f in found:
        if f.format == "unknown":
            name, hint = f.path.split("?")[0].lower(), ""
            if name.endswith((".csv", ".tsv")):
                # CSV fields hold newlines, so it cannot be sharded by line offsets; one conversion fixes that.
                hint = f" (convert once: python -c \"import polars as pl; pl.read_csv('{f.path}').write_parquet('ads.parquet')\")"
            elif name.endswith(COMPRESSED_SUFFIXES):
                # Shards start at byte offsets, which a compressed stream cannot seek to cheaply.
                hint = " (compressed: decompress it first, or convert it to Parquet, which compresses and shards)"
            raise CorpusError(f"{f.path}: unknown input format; use .jsonl/.ndjson/.json lines or .parquet{hint}")
    return found


def _discover_local(spec: str, output: Path | None) -> list[InputFile]:
    p = Path(spec)
    if p.is_dir():
        candidates = sorted(q for q in p.rglob("*") if q.is_file() and not _is_hidden(q.name))
        paths = [q for q in candidates if _format_of(q.name)]
    elif p.is_file():
        paths = [p]
    elif p.exists():
        raise CorpusError(f"input {spec} is not a regular file or a directory (a pipe or a device?)")
    else:
        # A pattern names data files: only marker files (_SUCCESS, .crc) are left out, not _batch1.jsonl.
        paths = sorted(Path(q) for q in glob.glob(spec, recursive=True)
                       if Path(q).is_file() and (_format_of(q) or not _is_hidden(q)))
    if not p.is_file():
        is_output: dict[Path, bool] = {}  # per directory: thousands of files share a few parents

        def in_tag_output(q: Path) -> bool:
            for d in q.resolve().parents:
                if d not in is_output:
                    is_output[d] = d == output or (d / "_run.json").is_file()
                if is_output[d]:
                    return True
            return False

        paths = [q for q in paths if not in_tag_output(q)]
    out = []
    for q in paths:
        st = q.stat()
        out.append(InputFile(str(q.resolve()), _format_of(q.name) or "unknown", st.st_size, st.st_mtime_ns))
    return out


def _discover_uri(spec: str) -> list[InputFile]:
    base, sep, query = spec.partition("?")
    base = base.rstrip("/")  # pyarrow drops a directory's trailing slash too
    try:
        fs, inner = pafs.FileSystem.from_uri(spec)
        if not base.endswith(inner):
            raise CorpusError(f"cannot address files under {spec!r}: pyarrow maps it to {inner!r}")
        # Each file gets back its own URI, query (endpoint, region ...) included, so any worker can reopen it.
        prefix, suffix = base[: len(base) - len(inner)], sep + query

        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.File:
            infos = [info]
        elif info.type == pafs.FileType.Directory:
            listed = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
            infos = [i for i in listed if i.type == pafs.FileType.File and not _is_hidden(i.path)
                     and _format_of(i.path)]
        elif GLOB_CHARS.search(inner):
            root = inner[: GLOB_CHARS.search(inner).start()].rpartition("/")[0] or "/"
            listed = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
            infos = [i for i in listed if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, inner)]
        else:
            infos = []
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError; network and credential errors OSErrors
        raise CorpusError(f"cannot read input {spec!r}: {e}") from e
    return [
        InputFile(prefix + i.path + suffix, _format_of(i.path) or "unknown", i.size, i.mtime_ns or 0)
        for i in sorted(infos, key=lambda i: i.path)
    ]


def find_inputs(spec: str | os.PathLike, fields: Fields, output: str | os.PathLike | None = None) -> list[InputFile]:
    """The job's input files (see :func:`discover_inputs`), every Parquet file checked for the fields asked for."""
    files = discover_inputs(spec, output)
    for f in files:
        check_fields(f, fields)
    return files


def _parquet_error(path: str, e: Exception) -> CorpusError:
    return CorpusError(f"{path}: not a readable Parquet file ({e}); fix or remove it, then rerun to resume")


def check_fields(file: InputFile, fields: Fields) -> None:
    """Parquet has a schema: a missing column is a usage error, caught before any work is done."""
    if file.format != "parquet":
        return
    try:
        with open_input(file.path) as fh:
            names = pq.read_schema(fh).names
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise _parquet_error(file.path, e) from e
    for label, name in (("--id-field", fields.id), ("--text-field", fields.text)):
        if name not in names:
            raise CorpusError(f"{file.path}: no column {name!r} ({label}); its columns are: {', '.join(names)}")


def plan_shards(files: list[InputFile], shard_size: int) -> tuple[list[Shard], int]:
    """Shards over all files and the number of blank JSONL lines skipped (they hold no record)."""
    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    shards: list[Shard] = []
    blank = 0
    for fi, f in enumerate(files):
        if f.format == "parquet":
            try:
                with open_input(f.path) as fh:
                    n = pq.ParquetFile(fh).metadata.num_rows
            except (OSError, ValueError) as e:
                raise _parquet_error(f.path, e) from e
            starts = [(s, 0) for s in range(0, n, shard_size)]
        else:
            starts, n, b = _jsonl_shard_starts(f.path, shard_size)
            blank += b
        for si, (start, offset) in enumerate(starts):
            name = f"part-{fi:05d}-{si:05d}"
            shards.append(Shard(name, f, start, min(shard_size, n - start), offset))
    return shards, blank


def _jsonl_shard_starts(path: str, shard_size: int) -> tuple[list[tuple[int, int]], int, int]:
    starts: list[tuple[int, int]] = []
    n = blank = 0
    offset = 0
    with open_input(path) as fh:
        for line in fh:
            size = len(line)
            line = line.removeprefix(BOM) if offset == 0 else line
            if line.strip():
                if n % shard_size == 0:
                    starts.append((n, offset))
                n += 1
            else:
                blank += 1
            offset += size
    return starts, n, blank


def _to_keep_value(value) -> str | None:
    """Kept fields are strings: JSON for numbers, booleans and nested values, str() for dates and decimals."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple, bool, int, float)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def is_utf8(value: str) -> bool:
    """False for a lone surrogate (a JSON "\\ud800" escape): Python holds it, no output format can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class _Ad:
    id: str
    text: str
    keep: tuple[str | None, ...]


def _check_ad(rec: dict, fields: Fields, seen_ids: set[str]) -> _Ad | tuple[str, str]:
    """The normalised ad, or (reason, detail) for rejecting the record."""
    rec_id, text = rec.get(fields.id), rec.get(fields.text)
    if rec_id is None:
        return "missing_id", f"no {fields.id!r} field"
    if isinstance(rec_id, bool) or not isinstance(rec_id, (str, int)):
        return "invalid_id", f"{fields.id!r} must be a string or integer, got {type(rec_id).__name__}"
    ad_id = str(rec_id)
    if not ad_id.strip():
        return "missing_id", f"{fields.id!r} is empty"
    if text is None:
        return "missing_text", f"no {fields.text!r} field"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            return "undecodable_bytes", f"{fields.text!r} is not UTF-8 ({e.reason} at byte {e.start})"
    if not isinstance(text, str):
        return "non_string_text", f"{fields.text!r} must be a string, got {type(text).__name__}"
    if not text.strip():
        return "empty_text", f"{fields.text!r} is empty or blank"
    try:
        keep = tuple(_to_keep_value(rec.get(k)) for k in fields.keep)
    except (RecursionError, ValueError) as e:
        return "invalid_json", f"a --keep field cannot be written back as JSON ({str(e)[:200]})"
    for name, value in ((fields.id, ad_id), (fields.text, text), *zip(fields.keep, keep)):
        if value is not None and not is_utf8(value):
            return "invalid_unicode", f"{name!r} holds a lone UTF-16 surrogate, which is not valid Unicode text"
    if ad_id in seen_ids:
        return "duplicate_id", f"id {ad_id!r} already seen earlier in the input"
    return _Ad(ad_id, text, keep)


def _iter_jsonl_records(shard: Shard) -> Iterator[tuple[int, bytes]]:
    with open_input(shard.file.path) as fh:
        fh.seek(shard.byte_offset)
        record = shard.start
        for line in fh:
            line = line.removeprefix(BOM) if record == 0 else line
            if not line.strip():
                continue
            if record >= shard.start + shard.count:
                return
            yield record, line
            record += 1


def read_shard(shard: Shard, fields: Fields, seen_ids: set[str]) -> tuple[AdBatch, list[Reject]]:
    """Valid ads and rejects of one shard; accepted ids are added to ``seen_ids``."""
    batch = AdBatch(keep={k: [] for k in fields.keep})
    rejects: list[Reject] = []
    source = shard.file.path
    _check_unchanged(shard.file)
    for record, rec, raw in _records(shard, fields):
        if isinstance(rec, Reject):
            rejects.append(rec)
            continue
        ad = _check_ad(rec, fields, seen_ids)
        if not isinstance(ad, _Ad):
            rejects.append(Reject(source, record, *ad, raw()))
            continue
        seen_ids.add(ad.id)
        batch.ids.append(ad.id)
        batch.texts.append(ad.text)
        for k, value in zip(fields.keep, ad.keep):
            batch.keep[k].append(value)
    return batch, rejects


def _check_unchanged(file: InputFile) -> None:
    """Shards are planned from the file as it was; one rewritten since would be read at wrong offsets."""
    if is_uri(file.path):
        fs, inner = pafs.FileSystem.from_uri(file.path)
        info = fs.get_file_info(inner)
        now = (info.size, info.mtime_ns or 0) if info.type == pafs.FileType.File else None
    else:
        try:
            st = os.stat(file.path)
            now = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            now = None
    if now != (file.size, file.mtime_ns):
        what = "was removed" if now is None else "changed"
        raise CorpusError(f"{file.path} {what} while the job ran; finished shards are kept: restore the file "
                          f"(same size and mtime, e.g. cp -p) and rerun to resume, or rerun with --overwrite")


def _snippet(text: str) -> str:
    return text if len(text) <= RAW_SNIPPET_CHARS else text[:RAW_SNIPPET_CHARS] + "…"


def _parquet_rows(path: str, columns: list[str], start: int, count: int) -> list[dict | str]:
    """Rows [start, start + count) of the columns present, reading only the row groups that hold them.

    A row with a value Python cannot hold (a timestamp past year 9999, invalid UTF-8 in a string
    column) comes back as the error's text, to be rejected alone rather than failing its shard.
    """
    try:
        with open_input(path) as fh:
            pf = pq.ParquetFile(fh)
            present = [c for c in columns if c in pf.schema_arrow.names]
            groups, first, offset = [], None, 0
            for g in range(pf.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if offset < start + count and offset + n > start:
                    groups.append(g)
                    first = offset if first is None else first
                offset += n
            if not groups:
                return []
            table = pf.read_row_groups(groups, columns=present).slice(start - first, count)
    except (OSError, ValueError) as e:
        raise _parquet_error(path, e) from e
    values: dict[str, list] = {}
    bad: dict[int, str] = {}
    for name in table.column_names:
        column = table.column(name)
        try:
            values[name] = column.to_pylist()
        except (ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
            values[name] = [None] * len(column)
            for i in range(len(column)):
                try:
                    values[name][i] = column[i].as_py()
                except (ValueError, OverflowError) as row_error:
                    bad.setdefault(i, f"column {name!r}: {row_error}")
    return [bad.get(i) or {name: values[name][i] for name in values} for i in range(table.num_rows)]


def _records(shard: Shard, fields: Fields):
    """(record number, dict or Reject, lazy raw snippet) for every record of the shard."""
    source = shard.file.path
    if shard.file.format == "parquet":
        columns = list(dict.fromkeys((fields.id, fields.text, *fields.keep)))
        for i, row in enumerate(_parquet_rows(source, columns, shard.start, shard.count)):
            if isinstance(row, str):
                yield shard.start + i, Reject(source, shard.start + i, "unreadable_value", row), None
                continue
            yield shard.start + i, row, lambda row=row: _snippet(json.dumps(row, ensure_ascii=False, default=repr))
        return
    for record, line in _iter_jsonl_records(shard):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raw = _snippet(line.decode("utf-8", errors="replace"))
            yield record, Reject(source, record, "undecodable_bytes", f"line is not UTF-8 ({e.reason})", raw), None
            continue
        try:
            rec = json.loads(text)
        except (ValueError, RecursionError) as e:  # also a 5,000-digit number or arrays nested 100,000 deep
            detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)[:200]
            yield record, Reject(source, record, "invalid_json", detail, _snippet(text)), None
            continue
        if not isinstance(rec, dict):
            detail = f"a JSON {type(rec).__name__}, not an object"
            yield record, Reject(source, record, "not_an_object", detail, _snippet(text)), None
            continue
        yield record, rec, lambda text=text: _snippet(text.rstrip("\n"))
