"""Run-wide sentence cache: each distinct sentence is encoded and searched once per run.

Job ads repeat boilerplate (company blurbs, benefits, equal-opportunity lines) across ads and
shards. The cache maps a stable 64-bit hash of the sentence text to its top-k skills. It grows
only through :meth:`SentenceCache.add`, and the entries each shard added are saved beside its
part file, so a resumed run replays them and reaches exactly the state an uninterrupted run had —
outputs stay identical. Memory is bounded: once past ``max_entries`` the cache starts over at the
next shard boundary (a rule that depends only on the shards before, so replay stays exact).
"""

from __future__ import annotations

import hashlib

import numpy as np

DEFAULT_MAX_ENTRIES = 1_000_000  # ~160 MB at top-k 5


def text_keys(texts: list[str]) -> np.ndarray:
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little") for t in texts),
        dtype=np.uint64,
        count=len(texts),
    )


class SentenceCache:
    def __init__(self, k: int, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.k = k
        self.max_entries = max_entries
        self.hits = 0
        self.lookups = 0
        self._reset()

    def _reset(self) -> None:
        self._rows: dict[int, int] = {}
        self._ids = np.empty((1024, self.k), dtype=np.int64)
        self._scores = np.empty((1024, self.k), dtype=np.float32)
        self._keys = np.empty(1024, dtype=np.uint64)
        self._new_from = 0

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per key: hit flag, cached skill ids and scores (rows of misses are undefined)."""
        rows = np.fromiter((self._rows.get(int(k), -1) for k in keys), dtype=np.int64, count=len(keys))
        hit = rows >= 0
        self.lookups += len(keys)
        self.hits += int(hit.sum())
        safe = np.where(hit, rows, 0)
        return hit, self._ids[safe], self._scores[safe]

    def start_shard(self) -> None:
        """Called before each shard, fresh or replayed: the only place the cache may start over."""
        if len(self._rows) > self.max_entries:
            self._reset()
        self._new_from = len(self._rows)

    def add(self, keys: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        n = len(self._rows)
        need = n + len(keys)
        if need > len(self._keys):
            cap = max(need, 2 * len(self._keys))
            self._ids = np.resize(self._ids, (cap, self.k))
            self._scores = np.resize(self._scores, (cap, self.k))
            self._keys = np.resize(self._keys, cap)
        for j, key in enumerate(keys.tolist()):
            self._rows[key] = n + j
        self._ids[n:need] = ids
        self._scores[n:need] = scores
        self._keys[n:need] = keys

    def shard_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries added since ``start_shard`` (what this shard contributed), to be saved with it."""
        n, start = len(self._rows), self._new_from
        return self._keys[start:n].copy(), self._ids[start:n].copy(), self._scores[start:n].copy()

    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0
