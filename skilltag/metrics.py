"""Ranking metrics of the paper's protocol (Decorte et al. 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scores:
    n: int
    rp5: float
    rp10: float
    mrr: float


def r_precision_at_k(ranking: Sequence, gold: set, k: int) -> float:
    """|gold ∩ top-k| / min(k, |gold|): a sentence with 2 gold skills can score 1.0 at k=5."""
    if not gold:
        raise ValueError("a benchmark sentence needs at least one gold skill")
    hits = sum(1 for item in ranking[:k] if item in gold)
    return hits / min(k, len(gold))


def reciprocal_rank(ranking: Sequence, gold: set) -> float:
    """1 / rank of the first gold item; 0 when no gold item is in the ranking given."""
    for rank, item in enumerate(ranking, start=1):
        if item in gold:
            return 1.0 / rank
    return 0.0


def score_rankings(rankings: Sequence[Sequence], golds: Sequence[set]) -> Scores:
    """Mean RP@5, RP@10 and MRR over sentences, in percent as the paper reports them."""
    if len(rankings) != len(golds):
        raise ValueError("one ranking per gold set")
    n = len(golds)
    if n == 0:
        raise ValueError("no benchmark sentences")
    rp5 = sum(r_precision_at_k(r, g, 5) for r, g in zip(rankings, golds)) / n
    rp10 = sum(r_precision_at_k(r, g, 10) for r, g in zip(rankings, golds)) / n
    mrr = sum(reciprocal_rank(r, g) for r, g in zip(rankings, golds)) / n
    return Scores(n=n, rp5=100 * rp5, rp10=100 * rp10, mrr=100 * mrr)
