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

from skilltag.cache import SentenceCache, text_keys
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
    search: str = "hnsw"  # or "exact": brute force on the encoder's device (the GPU default)
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
    n_encoded: int  # sentences sent to the encoder (distinct, not cached)
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


def encode_sentences(encoder: Encoder, texts: list[str], on_device: bool = False):
    """Step 2: embed sentences (token-length-sorted batches); ``on_device`` keeps them on the GPU."""
    return encoder.encode_tensor(texts) if on_device else encoder.encode(texts)


def search_skills(index: SkillIndex, vectors, k: int, exact: bool = False) -> SearchResult:
    """Step 3: top-k skills per sentence: HNSW, or exact on the vectors' device (GPU: a matmul)."""
    if exact:
        return index.search_torch(vectors, k) if not isinstance(vectors, np.ndarray) else index.search_exact(vectors, k)
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
    """Holds the encoder, index and an optional run-wide sentence cache.

    ``prepare`` (CPU, pure Python) and ``finish`` (encoder and index) are separate so a job can
    split the next batch while the encoder works on this one; ``tag`` does both.
    """

    def __init__(self, encoder: Encoder, index: SkillIndex, cfg: TagConfig = TagConfig(),
                 cache: SentenceCache | None = None):
        if cfg.search not in ("hnsw", "exact"):
            raise ValueError(f"unknown search {cfg.search!r}; use 'hnsw' or 'exact'")
        self.encoder = encoder
        self.index = index
        self.cfg = cfg
        self.cache = cache

    def prepare(self, texts: list[str]) -> tuple[Sentences, float]:
        t0 = time.perf_counter()
        return split_ads(texts, self.cfg), time.perf_counter() - t0

    def finish(self, sentences: Sentences, split_seconds: float = 0.0) -> TaggedBatch:
        times = StageTimes(split=split_seconds)
        t0 = time.perf_counter()
        distinct, inverse = unique_texts(sentences.text)
        times.split += time.perf_counter() - t0
        hits, n_encoded = self._distinct_hits(distinct, times)
        t1 = time.perf_counter()
        expanded = SearchResult(hits.skill_ids[inverse], hits.scores[inverse])
        n_ads = len(sentences.per_ad)
        skills = aggregate(sentences, expanded, n_ads, self.index.uris, self.index.labels, self.cfg)
        times.aggregate = time.perf_counter() - t1
        return TaggedBatch(skills, sentences.per_ad, sentences.truncated, n_encoded, times)

    def _distinct_hits(self, distinct: list[str], times: StageTimes) -> tuple[SearchResult, int]:
        """Top-k per distinct sentence (from the cache where seen before in this run), and how many were encoded."""
        t0 = time.perf_counter()
        k = min(self.cfg.top_k, len(self.index))
        if self.cache is None:
            keys, hit = None, np.zeros(len(distinct), dtype=bool)
            ids = np.zeros((len(distinct), k), np.int64)
            scores = np.zeros((len(distinct), k), np.float32)
        else:
            keys = text_keys(distinct)
            hit, ids, scores = self.cache.lookup(keys)
        miss = np.flatnonzero(~hit)
        t1 = time.perf_counter()
        times.split += t1 - t0
        if len(miss):
            exact = self.cfg.search == "exact"
            vectors = encode_sentences(self.encoder, [distinct[i] for i in miss], on_device=exact)
            t2 = time.perf_counter()
            fresh = search_skills(self.index, vectors, k, exact=exact)
            t3 = time.perf_counter()
            times.encode += t2 - t1
            times.search += t3 - t2
            ids[miss], scores[miss] = fresh.skill_ids, fresh.scores
            if self.cache is not None:
                self.cache.add(keys[miss], fresh.skill_ids, fresh.scores)
        return SearchResult(ids, scores), len(miss)

    def tag(self, texts: list[str]) -> TaggedBatch:
        sentences, split_seconds = self.prepare(texts)
        return self.finish(sentences, split_seconds)
