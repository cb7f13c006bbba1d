"""The tagging path, top to bottom: split -> encode -> search -> aggregate.

Each step is a plain function over a whole batch of ads, so the same code serves the local
engine and the Ray engine. How a skill's score for an ad is made:

* every sentence is matched against the skill index and keeps its ``top_k`` skills;
* a skill's score for the ad is the **maximum** cosine over the ad's sentences, and the sentence
  that gave it is kept as ``evidence`` (ties: the earlier sentence);
* skills scoring below ``threshold`` are dropped, the rest sorted by score (ties: by URI) and cut
  at ``max_skills``.

Max rather than mean or count: one clear sentence ("Experience with Kubernetes") is enough
evidence, and boilerplate repeated across an ad must not inflate a skill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from skilltag.encoder import Encoder
from skilltag.index import SearchResult, SkillIndex
from skilltag.split import DEFAULT_MAX_SENTENCE_CHARS, DEFAULT_MAX_SENTENCES, SPLITTER_VERSION, split_sentences

DEFAULT_TOP_K = 5
DEFAULT_THRESHOLD = 0.45
DEFAULT_MAX_SKILLS = 30


@dataclass(frozen=True)
class TagConfig:
    top_k: int = DEFAULT_TOP_K
    threshold: float = DEFAULT_THRESHOLD
    max_skills: int = DEFAULT_MAX_SKILLS
    max_sentence_chars: int = DEFAULT_MAX_SENTENCE_CHARS
    max_sentences: int = DEFAULT_MAX_SENTENCES
    splitter_version: str = SPLITTER_VERSION


@dataclass(frozen=True)
class Sentences:
    """All sentences of a batch of ads, flattened; row i belongs to ad ``ad[i]``."""

    ad: np.ndarray  # int32, which ad of the batch
    index: np.ndarray  # int32, position of the sentence within its ad
    text: list[str]
    per_ad: np.ndarray  # int32, sentences per ad
    truncated: np.ndarray  # bool, ad hit max_sentences


@dataclass(frozen=True, slots=True)
class SkillHit:
    uri: str
    label: str
    score: float
    evidence: str
    sentence_index: int


@dataclass
class StageTimes:
    split: float = 0.0
    encode: float = 0.0
    search: float = 0.0
    aggregate: float = 0.0

    def add(self, other: "StageTimes") -> None:
        self.split += other.split
        self.encode += other.encode
        self.search += other.search
        self.aggregate += other.aggregate


@dataclass(frozen=True)
class TaggedBatch:
    skills: list[list[SkillHit]]
    n_sentences: np.ndarray
    truncated: np.ndarray
    n_unique_sentences: int
    times: StageTimes = field(default_factory=StageTimes)


def split_ads(texts: list[str], cfg: TagConfig) -> Sentences:
    """Step 1: clean and split every ad."""
    ads: list[int] = []
    idx: list[int] = []
    out: list[str] = []
    per_ad = np.zeros(len(texts), dtype=np.int32)
    truncated = np.zeros(len(texts), dtype=bool)
    for a, text in enumerate(texts):
        sentences, cut = split_sentences(text, cfg.max_sentence_chars, cfg.max_sentences)
        per_ad[a] = len(sentences)
        truncated[a] = cut
        ads.extend([a] * len(sentences))
        idx.extend(range(len(sentences)))
        out.extend(s.text for s in sentences)
    return Sentences(np.asarray(ads, np.int32), np.asarray(idx, np.int32), out, per_ad, truncated)


def unique_texts(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts and, for each input, the row of its distinct text (ads repeat boilerplate)."""
    first: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        inverse[i] = first.setdefault(t, len(first))
    return list(first), inverse


def encode_sentences(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """Step 2: embed sentences (one batched, length-sorted pass over the whole list)."""
    return encoder.encode(texts)


def search_skills(index: SkillIndex, vectors: np.ndarray, k: int) -> SearchResult:
    """Step 3: top-k skills per sentence from the HNSW index."""
    return index.search(vectors, k)


def aggregate(
    sentences: Sentences,
    hits: SearchResult,
    n_ads: int,
    uris: list[str],
    labels: list[str],
    cfg: TagConfig,
) -> list[list[SkillHit]]:
    """Step 4: per ad, each skill's best sentence; threshold, order, cap. ``hits`` rows = sentences."""
    result: list[list[SkillHit]] = [[] for _ in range(n_ads)]
    if len(sentences.text) == 0:
        return result
    k = hits.skill_ids.shape[1]
    row = np.repeat(np.arange(len(sentences.text)), k)
    skill = hits.skill_ids.reshape(-1)
    score = hits.scores.reshape(-1)
    keep = (skill >= 0) & (score >= cfg.threshold)
    row, skill, score = row[keep], skill[keep], score[keep]
    ad = sentences.ad[row]
    sent_idx = sentences.index[row]
    # Best sentence per (ad, skill): sort by ad, skill, score desc, sentence asc; first of each group wins.
    order = np.lexsort((sent_idx, -score, skill, ad))
    ad, skill, score, row, sent_idx = ad[order], skill[order], score[order], row[order], sent_idx[order]
    first = np.ones(len(ad), dtype=bool)
    first[1:] = (ad[1:] != ad[:-1]) | (skill[1:] != skill[:-1])
    ad, skill, score, row, sent_idx = ad[first], skill[first], score[first], row[first], sent_idx[first]
    # Within an ad: score desc, then URI for a deterministic order among equal scores.
    uri_rank = np.argsort(np.argsort(np.asarray(uris, dtype=object)[skill], kind="stable"), kind="stable")
    order = np.lexsort((uri_rank, -score, ad))
    for i in order:
        bucket = result[ad[i]]
        if len(bucket) < cfg.max_skills:
            s = int(skill[i])
            bucket.append(SkillHit(uris[s], labels[s], float(score[i]), sentences.text[row[i]], int(sent_idx[i])))
    return result


class Tagger:
    """Holds the encoder and index; ``tag`` runs the four steps over a batch of ad texts."""

    def __init__(self, encoder: Encoder, index: SkillIndex, cfg: TagConfig = TagConfig()):
        self.encoder = encoder
        self.index = index
        self.cfg = cfg

    def tag(self, texts: list[str]) -> TaggedBatch:
        times = StageTimes()
        t0 = time.perf_counter()
        sentences = split_ads(texts, self.cfg)
        distinct, inverse = unique_texts(sentences.text)
        t1 = time.perf_counter()
        vectors = encode_sentences(self.encoder, distinct)
        t2 = time.perf_counter()
        distinct_hits = search_skills(self.index, vectors, self.cfg.top_k)
        hits = SearchResult(distinct_hits.skill_ids[inverse], distinct_hits.scores[inverse])
        t3 = time.perf_counter()
        skills = aggregate(sentences, hits, len(texts), self.index.uris, self.index.labels, self.cfg)
        t4 = time.perf_counter()
        times.split, times.encode, times.search, times.aggregate = t1 - t0, t2 - t1, t3 - t2, t4 - t3
        return TaggedBatch(skills, sentences.per_ad, sentences.truncated, len(distinct), times)
