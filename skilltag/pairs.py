"""Training pairs (skill, sentence) from the sources of Decorte et al. 2023 and the 2022 baseline.

Every source returns a :class:`PairSet`: the pairs plus a :class:`SourceStats` that counts what was
kept and what was skipped (and why), so ``training.json`` can say exactly what a model was trained on.
A bad line or an unknown skill is counted, never fatal: generated files are large and a few bad
records should not cost a training run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blingfire
import pyarrow as pa
import pyarrow.parquet as pq

from skilltag.taxonomy import Taxonomy

# Words and single punctuation marks: matching on these tokens is case-insensitive and respects word
# boundaries, and "node . js" (SkillSpan's spaced tokens) equals "node.js".
_TOKEN = re.compile(r"\w+|[^\w\s]")
CORPUS_SUFFIXES = (".jsonl", ".csv", ".txt", ".parquet")
# Whole ads sit in one CSV field and run past csv's 128 KiB default limit.
_CSV_FIELD_LIMIT = 64 << 20
DEFAULT_MAX_PER_SKILL = 20
_MIN_SURFACE_CHARS = 3
_MAX_PROBLEMS = 5


class PairsError(Exception):
    """A pair source cannot be read at all (missing file, wrong format)."""


@dataclass(frozen=True, slots=True)
class Pair:
    skill: int  # row of the skill in the taxonomy
    sentence: str
    source: str


@dataclass
class SourceStats:
    source: str
    pairs: int = 0
    skills: int = 0
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    problems: list[str] = field(default_factory=list)  # the first few, with file:line, for the report

    def skip(self, reason: str, where: str | None = None) -> None:
        self.skipped[reason] += 1
        if where and len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{where}: {reason}")

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "pairs": self.pairs,
            "skills": self.skills,
            "files": self.files,
            "skipped": dict(self.skipped),
            "problems": self.problems,
        }


@dataclass(frozen=True)
class PairSet:
    pairs: list[Pair]
    stats: SourceStats


def normalise(text: str) -> str:
    """Lower-cased tokens joined by single spaces: the key for matching and for dev-set exclusion."""
    return " ".join(_TOKEN.findall(text.lower()))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _finish(pairs: list[Pair], stats: SourceStats) -> PairSet:
    stats.pairs = len(pairs)
    stats.skills = len({p.skill for p in pairs})
    return PairSet(pairs, stats)


def _keep(sentence: str, exclude: frozenset[str], stats: SourceStats, where: str | None = None) -> bool:
    if normalise(sentence) in exclude:
        stats.skip("sentence is in a dev set", where)
        return False
    return True


def _lines(path: Path) -> Iterator[tuple[str, str | None]]:
    """(file:line, text) for every line; text is None where the line is not UTF-8.

    Decoding line by line makes a bad byte cost one line, not the file. utf-8-sig drops a BOM (Windows
    editors write one; ``cat`` puts one mid-file), which would make its line invalid JSON.
    """
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = None
            yield f"{path}:{line_no}", text


def _jsonl(path: Path) -> Iterator[tuple[str, object, str | None]]:
    """(file:line, record, problem) for every non-blank line; problem says why the record is unusable."""
    for where, line in _lines(path):
        if line is None:
            yield where, None, "line is not UTF-8"
        elif line.strip():
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):  # also integers over 4300 digits and deep nesting
                yield where, None, "line is not valid JSON"
            else:
                yield where, rec, None


def synthetic_pairs(path: str | os.PathLike, taxonomy: Taxonomy, exclude: frozenset[str] = frozenset()) -> PairSet:
    """Pairs from a ``skilltag generate`` JSONL file (one skill per line: uri, label, sentences, ...).

    A line is mapped to its skill by ``uri``, falling back to ``label`` (files from another ESCO
    version keep most labels but not always the URIs).
    """
    p = Path(path)
    if not p.is_file():
        raise PairsError(f"synthetic sentences file not found: {p}")
    stats = SourceStats(source=f"synthetic:{p.name}", files={str(p): file_sha256(p)})
    by_uri, by_label = taxonomy.by_uri(), taxonomy.by_label()
    pairs: list[Pair] = []
    for where, rec, problem in _jsonl(p):
        if problem:
            stats.skip(problem, where)
            continue
        if not isinstance(rec, dict):
            stats.skip("line is not a JSON object", where)
            continue
        uri, label = rec.get("uri"), rec.get("label")
        if not isinstance(uri, str | None) or not isinstance(label, str | None):
            stats.skip("'uri' or 'label' is not a string", where)
            continue
        skill = by_uri.get(uri)
        if skill is None:
            skill = by_label.get(label)
        if skill is None:
            stats.skip("skill not in the taxonomy", where)
            continue
        sentences = rec.get("sentences")
        if not isinstance(sentences, list):
            stats.skip("no 'sentences' list", where)
            continue
        for sentence in sentences:
            if not isinstance(sentence, str) or not sentence.strip():
                stats.skip("empty or non-string sentence", where)
            elif _keep(sentence, exclude, stats, where):
                pairs.append(Pair(skill, sentence.strip(), "synthetic"))
    return _finish(pairs, stats)


def description_pairs(taxonomy: Taxonomy, exclude: frozenset[str] = frozenset()) -> PairSet:
    """(label, ESCO description): the paper's ablation baseline."""
    stats = SourceStats(source="descriptions", files={taxonomy.path: taxonomy.sha256})
    pairs = []
    for i, skill in enumerate(taxonomy.skills):
        if not skill.description:
            stats.skip("skill has no description")
        elif _keep(skill.description, exclude, stats):
            pairs.append(Pair(i, skill.description, "descriptions"))
    return _finish(pairs, stats)


def alt_label_pairs(taxonomy: Taxonomy, exclude: frozenset[str] = frozenset()) -> PairSet:
    """(label, alt label), one pair per alt label."""
    stats = SourceStats(source="alt-labels", files={taxonomy.path: taxonomy.sha256})
    pairs = [
        Pair(i, alt, "alt-labels")
        for i, skill in enumerate(taxonomy.skills)
        for alt in skill.alt_labels
        if _keep(alt, exclude, stats)
    ]
    return _finish(pairs, stats)


def split_sentences(text: str) -> list[str]:
    """Lines first (ads keep one sentence or bullet per line), then blingfire for run-on paragraphs."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.extend(s.strip() for s in blingfire.text_to_sentences(line).splitlines() if s.strip())
    return out


def corpus_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The corpus files named, with folders expanded to the job-ad files inside them."""
    kinds = "/".join(CORPUS_SUFFIXES)
    files: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            # A `skilltag tag` output inside the corpus (it has _run.json) holds tagged ads, not corpus text.
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in CORPUS_SUFFIXES
                           and not any((d / "_run.json").is_file() for d in f.parents if d.is_relative_to(p)))
            if not found:
                raise PairsError(f"no job-ad files ({kinds}) found under {p}")
            files.extend(found)
        elif p.is_file():
            # Read as plain text, another format (a JSON array, a spreadsheet) would train on its syntax.
            if p.suffix.lower() not in CORPUS_SUFFIXES:
                raise PairsError(f"{p}: unsupported job-ad file type; use {kinds} (JSON Lines: name it .jsonl)")
            files.append(p)
        else:
            raise PairsError(f"job-ad corpus not found: {p}")
    return files


def corpus_sentences(path: Path, stats: SourceStats) -> Iterator[str]:
    """Sentences of one job-ad file.

    ``.jsonl``: SkillSpan lines (``tokens``: one sentence) or ads (``text``); ``.csv`` and ``.parquet``: the
    ``description`` (or ``text``) column, one ad per row; ``.txt``: plain text.
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for where, rec, problem in _jsonl(path):
            if problem:
                stats.skip(problem, where)
                continue
            tokens = rec.get("tokens") if isinstance(rec, dict) else None
            text = rec.get("text") if isinstance(rec, dict) else None
            if isinstance(tokens, list):
                yield " ".join(str(t) for t in tokens)
            elif isinstance(text, str):
                yield from split_sentences(text)
            else:
                stats.skip("line has neither 'tokens' nor 'text'", where)
    elif suffix == ".csv":
        yield from _csv_sentences(path, stats)
    elif suffix == ".parquet":
        yield from _parquet_sentences(path, stats)
    else:
        for where, line in _lines(path):
            if line is None:
                stats.skip("line is not UTF-8", where)
            else:
                yield from split_sentences(line)


def _text_column(path: Path, names: list[str]) -> str:
    column = next((c for c in ("description", "text") if c in names), None)
    if column is None:
        raise PairsError(f"{path}: no 'description' or 'text' column")
    return column


def _csv_sentences(path: Path, stats: SourceStats) -> Iterator[str]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    # A bad byte survives decoding as a lone surrogate, so it costs its row, not the file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            column = _text_column(path, reader.fieldnames or [])
            for row in reader:
                text = row[column] or ""
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    stats.skip("row is not UTF-8", f"{path}:{reader.line_num}")
                    continue
                yield from split_sentences(text)
        except csv.Error as e:
            raise PairsError(f"{path}:{reader.line_num}: not readable as CSV ({e})") from e


def _parquet_sentences(path: Path, stats: SourceStats) -> Iterator[str]:
    try:
        pf = pq.ParquetFile(path)
        column = _text_column(path, pf.schema_arrow.names)
        row = 0
        for batch in pf.iter_batches(columns=[column]):
            for text in batch.column(0).to_pylist():
                row += 1
                if isinstance(text, str):
                    yield from split_sentences(text)
                elif text is not None:
                    stats.skip(f"'{column}' is not a string", f"{path}: row {row}")
    except (pa.ArrowException, OSError, ValueError) as e:  # ValueError: invalid UTF-8 in a string column
        raise PairsError(f"{path}: not a readable Parquet file ({e})") from e


@dataclass(frozen=True)
class SurfaceForms:
    """Normalised skill names -> skill rows, indexed by first token for a fast n-gram scan."""

    forms: dict[tuple[str, ...], int]
    lengths_by_first: dict[str, tuple[int, ...]]
    dropped: Counter

    @classmethod
    def build(cls, taxonomy: Taxonomy) -> SurfaceForms:
        owners: dict[tuple[str, ...], set[int]] = defaultdict(set)
        dropped: Counter = Counter()
        for i, skill in enumerate(taxonomy.skills):
            for name, is_alt in [(skill.label, False)] + [(a, True) for a in skill.alt_labels]:
                key = tuple(_TOKEN.findall(name.lower()))
                # Short names ("R", "IT", "re") and lower-case one-word alt labels ("design" for "think
                # creatively", "data" for "statistics") match everywhere in ads and would mostly teach
                # noise; capitalised ones are names worth keeping ("Java", "Python").
                if len(name.strip()) < _MIN_SURFACE_CHARS:
                    dropped["shorter than 3 characters"] += 1
                elif is_alt and name == name.lower() and sum(1 for t in key if t[0].isalnum()) < 2:
                    dropped["lower-case one-word alt label"] += 1
                else:
                    owners[key].add(i)
        forms: dict[tuple[str, ...], int] = {}
        for key, ids in owners.items():
            if len(ids) == 1:
                forms[key] = next(iter(ids))
            else:
                dropped["name of several skills"] += 1
        lengths: dict[str, set[int]] = defaultdict(set)
        for key in forms:
            lengths[key[0]].add(len(key))
        return cls(forms, {w: tuple(sorted(n)) for w, n in lengths.items()}, dropped)

    def find(self, sentence: str) -> set[int]:
        """Skills whose name occurs in ``sentence`` as a whole-token, case-insensitive match."""
        tokens = _TOKEN.findall(sentence.lower())
        found: set[int] = set()
        for i, token in enumerate(tokens):
            for n in self.lengths_by_first.get(token, ()):
                skill = self.forms.get(tuple(tokens[i : i + n]))
                if skill is not None:
                    found.add(skill)
        return found


def distant_pairs(
    paths: Iterable[str | os.PathLike],
    taxonomy: Taxonomy,
    exclude: frozenset[str] = frozenset(),
    max_per_skill: int = DEFAULT_MAX_PER_SKILL,
    seed: int = 0,
) -> PairSet:
    """Distant supervision (the 2022 baseline): ad sentences that literally contain a skill's name.

    Sentences are deduplicated across files (SkillSpan ships the same sentences twice). Frequent skills
    ("English", "Java") are capped at ``max_per_skill`` sentences, drawn with ``seed``, so they neither
    dominate the mix nor force the no-duplicate batch sampler to resample.
    """
    files = corpus_files(paths)
    stats = SourceStats(source="distant", files={str(f): file_sha256(f) for f in files})
    surface = SurfaceForms.build(taxonomy)
    for reason, n in surface.dropped.items():
        stats.skipped[f"skill name not matched: {reason}"] = n
    seen: set[str] = set()
    by_skill: dict[int, list[str]] = defaultdict(list)
    for f in files:
        for sentence in corpus_sentences(f, stats):
            key = normalise(sentence)
            if not key or key in seen:
                continue
            seen.add(key)
            skills = surface.find(sentence)
            if skills and _keep(sentence, exclude, stats):
                for skill in skills:
                    by_skill[skill].append(sentence)
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for skill in sorted(by_skill):
        sentences = by_skill[skill]
        if len(sentences) > max_per_skill:
            stats.skipped["over the per-skill cap"] += len(sentences) - max_per_skill
            sentences = rng.sample(sentences, max_per_skill)
        pairs.extend(Pair(skill, s, "distant") for s in sentences)
    return _finish(pairs, stats)


def dev_sentences(paths: Iterable[str | os.PathLike]) -> frozenset[str]:
    """Normalised sentences of benchmark files: never trained on, whatever the source."""
    out: set[str] = set()
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise PairsError(f"dev file not found: {p}")
        # A dev file must be exact: a bad line is an error, not a skip.
        for where, rec, problem in _jsonl(p):
            if problem:
                raise PairsError(f"{where}: {problem}")
            sentence = rec.get("sentence") if isinstance(rec, dict) else None
            if not isinstance(sentence, str):
                raise PairsError(f"{where}: not a benchmark line with a 'sentence' string")
            out.add(normalise(sentence))
    return frozenset(out)
