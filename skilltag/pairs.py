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

from skilltag.taxonomy import Taxonomy

# Words and single punctuation marks: matching on these tokens is case-insensitive and respects word
# boundaries, and "node . js" (SkillSpan's spaced tokens) equals "node.js".
_TOKEN = re.compile(r"\w+|[^\w\s]")
CORPUS_SUFFIXES = (".jsonl", ".csv", ".txt")
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
    with p.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{p}:{line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                stats.skip("line is not valid JSON", where)
                continue
            if not isinstance(rec, dict):
                stats.skip("line is not a JSON object", where)
                continue
            skill = by_uri.get(rec.get("uri"))
            if skill is None:
                skill = by_label.get(rec.get("label"))
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
    """The corpus files named, with folders expanded to the .jsonl/.csv/.txt files inside them."""
    files: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in CORPUS_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise PairsError(f"job-ad corpus not found: {p}")
    return files


def corpus_sentences(path: Path, stats: SourceStats) -> Iterator[str]:
    """Sentences of one job-ad file.

    ``.jsonl``: SkillSpan lines (``tokens``: one sentence) or ads (``text``); ``.csv``: the ``description``
    (or ``text``) column, one ad per row; ``.txt``: plain text.
    """
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    stats.skip("line is not valid JSON", f"{path}:{line_no}")
                    continue
                tokens = rec.get("tokens") if isinstance(rec, dict) else None
                text = rec.get("text") if isinstance(rec, dict) else None
                if isinstance(tokens, list):
                    yield " ".join(str(t) for t in tokens)
                elif isinstance(text, str):
                    yield from split_sentences(text)
                else:
                    stats.skip("line has neither 'tokens' nor 'text'", f"{path}:{line_no}")
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            column = next((c for c in ("description", "text") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise PairsError(f"{path}: no 'description' or 'text' column")
            for row in reader:
                yield from split_sentences(row[column] or "")
    else:
        yield from split_sentences(path.read_text(encoding="utf-8"))


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
        with p.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    out.add(normalise(json.loads(line)["sentence"]))
                except (json.JSONDecodeError, TypeError, KeyError) as e:
                    raise PairsError(f"{p}:{line_no}: not a benchmark line with a 'sentence' ({e})") from e
    return frozenset(out)
