"""Skill index: one vector per skill name (optionally also per alt label), searched with HNSW.

An index directory holds::

    manifest.json   what built it: model + hash, taxonomy version + hash, dims, HNSW params
    skills.parquet  the label space (uri, label) in taxonomy order
    vectors.npy     every vector, grouped by skill (preferred label first), float32
    offsets.npy     where each skill's vectors start in vectors.npy
    hnsw.bin        the hnswlib graph over vectors.npy

The exact path (a matrix product over ``vectors.npy``) is the reference the HNSW path is tested
against, and what ``evaluate`` uses to rank every skill.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
import polars as pl

from skilltag import __version__
from skilltag.encoder import Encoder
from skilltag.fsutil import replace_dir
from skilltag.taxonomy import Taxonomy

MANIFEST_FILE = "manifest.json"
MANIFEST_KEYS = ("model_sha256", "taxonomy_sha256", "format_version")  # marks a skilltag index
FORMAT_VERSION = 1
DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 128


class SkillIndexError(Exception):
    """The index is missing or corrupt."""


class IndexMismatchError(SkillIndexError):
    """The index was built with another model or taxonomy than the one in use."""


@dataclass(frozen=True)
class HnswParams:
    M: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    ef: int = DEFAULT_EF
    space: str = "ip"


@dataclass(frozen=True)
class IndexManifest:
    model_name: str
    model_sha256: str
    taxonomy_version: str
    taxonomy_sha256: str
    dim: int
    n_skills: int
    n_vectors: int
    alt_labels: bool
    hnsw: HnswParams = field(default_factory=HnswParams)
    build_seconds: float = 0.0
    skilltag_version: str = __version__
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, data: dict) -> "IndexManifest":
        data = dict(data)
        data["hnsw"] = HnswParams(**data.get("hnsw", {}))
        return cls(**data)


@dataclass(frozen=True)
class SearchResult:
    """Top-k skills per query: ``skill_ids[i, j]`` (row into the label space, -1 = none) and its cosine."""

    skill_ids: np.ndarray
    scores: np.ndarray


def skill_texts(taxonomy: Taxonomy, alt_labels: bool) -> tuple[list[str], np.ndarray]:
    """The texts to embed, grouped by skill, and each skill's start offset into them."""
    texts: list[str] = []
    offsets = np.empty(len(taxonomy), dtype=np.int64)
    for i, skill in enumerate(taxonomy.skills):
        offsets[i] = len(texts)
        texts.append(skill.label)
        if alt_labels:
            texts.extend(skill.alt_labels)
    return texts, offsets


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a score matrix, best first, ties broken by the lower column (deterministic)."""
    n, m = scores.shape
    k = min(k, m)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    return ids.astype(np.int64), np.take_along_axis(part_scores, order, axis=1).astype(np.float32)


class SkillIndex:
    def __init__(
        self,
        manifest: IndexManifest,
        uris: list[str],
        labels: list[str],
        vectors: np.ndarray,
        offsets: np.ndarray,
        graph: hnswlib.Index,
    ):
        self.manifest = manifest
        self.uris = uris
        self.labels = labels
        self.vectors = vectors
        self.offsets = offsets
        self.graph = graph
        self._device_vectors = None
        self.vector_skill = np.repeat(
            np.arange(len(offsets), dtype=np.int64), np.diff(np.append(offsets, len(vectors)))
        )

    def __len__(self) -> int:
        return len(self.uris)

    @classmethod
    def build(
        cls,
        taxonomy: Taxonomy,
        encoder: Encoder,
        alt_labels: bool = False,
        params: HnswParams = HnswParams(),
    ) -> "SkillIndex":
        start = time.perf_counter()
        texts, offsets = skill_texts(taxonomy, alt_labels)
        vectors = encoder.encode(texts)
        graph = _build_graph(vectors, params)
        manifest = IndexManifest(
            model_name=encoder.info.name,
            model_sha256=encoder.info.sha256,
            taxonomy_version=taxonomy.version,
            taxonomy_sha256=taxonomy.sha256,
            dim=encoder.dim,
            n_skills=len(taxonomy),
            n_vectors=len(vectors),
            alt_labels=alt_labels,
            hnsw=params,
            build_seconds=round(time.perf_counter() - start, 2),
        )
        return cls(
            manifest,
            [s.uri for s in taxonomy.skills],
            taxonomy.labels,
            vectors,
            offsets,
            graph,
        )

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index atomically: a half-written directory is never left under the final name."""
        return replace_dir(directory, self._write, MANIFEST_FILE, "skilltag index", MANIFEST_KEYS)

    def _write(self, tmp: Path) -> None:
        pl.DataFrame({"uri": self.uris, "label": self.labels}).write_parquet(tmp / "skills.parquet")
        np.save(tmp / "vectors.npy", self.vectors)
        np.save(tmp / "offsets.npy", self.offsets)
        self.graph.save_index(str(tmp / "hnsw.bin"))
        (tmp / MANIFEST_FILE).write_text(json.dumps(asdict(self.manifest), indent=2) + "\n")

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        model_sha256: str | None = None,
        taxonomy_sha256: str | None = None,
    ) -> "SkillIndex":
        """Load an index, refusing one built with another model or taxonomy than the ones given."""
        d = Path(directory)
        manifest_path = d / MANIFEST_FILE
        if not manifest_path.is_file():
            raise SkillIndexError(f"No skill index at {d} (manifest.json missing). Build one with `skilltag index`.")
        try:
            manifest = IndexManifest.from_json(json.loads(manifest_path.read_text()))
        except (ValueError, TypeError) as e:
            raise SkillIndexError(f"{manifest_path}: unreadable manifest ({e})") from e
        if manifest.format_version != FORMAT_VERSION:
            raise SkillIndexError(
                f"{d}: index format {manifest.format_version}, this skilltag reads {FORMAT_VERSION}; rebuild it"
            )
        if model_sha256 and model_sha256 != manifest.model_sha256:
            raise IndexMismatchError(
                f"{d} was built with model {manifest.model_name} (sha256 {manifest.model_sha256[:12]}…), "
                f"not with the model in use (sha256 {model_sha256[:12]}…). Rebuild the index with "
                f"`skilltag index --model ...` or use the model it was built with."
            )
        if taxonomy_sha256 and taxonomy_sha256 != manifest.taxonomy_sha256:
            raise IndexMismatchError(
                f"{d} was built from ESCO {manifest.taxonomy_version} (sha256 {manifest.taxonomy_sha256[:12]}…), "
                f"not from the taxonomy file in use (sha256 {taxonomy_sha256[:12]}…). Rebuild the index with "
                f"`skilltag index --taxonomy ...`."
            )
        skills = pl.read_parquet(d / "skills.parquet")
        vectors = np.load(d / "vectors.npy")
        offsets = np.load(d / "offsets.npy")
        if vectors.shape != (manifest.n_vectors, manifest.dim) or len(skills) != manifest.n_skills:
            raise SkillIndexError(f"{d}: files disagree with manifest.json; the index is corrupt, rebuild it")
        graph = hnswlib.Index(space=manifest.hnsw.space, dim=manifest.dim)
        graph.load_index(str(d / "hnsw.bin"), max_elements=manifest.n_vectors)
        graph.set_ef(manifest.hnsw.ef)
        return cls(manifest, skills["uri"].to_list(), skills["label"].to_list(), vectors, offsets, graph)

    def skill_scores(self, queries: np.ndarray) -> np.ndarray:
        """Cosine of every query to every skill (max over the skill's vectors), shape (n, n_skills)."""
        sims = queries @ self.vectors.T
        if len(self.vectors) == len(self.offsets):
            return sims
        return np.maximum.reduceat(sims, self.offsets, axis=1)

    def search_exact(self, queries: np.ndarray, k: int) -> SearchResult:
        ids, scores = top_k(self.skill_scores(queries), k)
        return SearchResult(ids, scores)

    def search_torch(self, queries, k: int, chunk: int = 8192) -> SearchResult:
        """Exact top-k for a torch tensor of queries, computed on the tensor's device.

        On a GPU this replaces HNSW: scoring 14k skills is one small matmul, and only the top-k
        (not the embeddings) cross back to the host. Skill vectors are uploaded once per device.
        """
        import torch

        k = min(k, len(self))
        device = queries.device
        if getattr(self, "_device_vectors", None) is None or self._device_vectors.device != device:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            self._device_vectors = torch.from_numpy(self.vectors).to(device=device, dtype=dtype)
            self._device_vector_skill = torch.from_numpy(self.vector_skill).to(device)
        vectors, owner = self._device_vectors, self._device_vector_skill
        ids, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(queries), chunk):
                sims = (queries[start : start + chunk].to(vectors.dtype) @ vectors.T).float()
                if len(vectors) != len(self.offsets):
                    per_skill = torch.full((len(sims), len(self)), -torch.inf, device=device)
                    sims = per_skill.scatter_reduce_(1, owner.expand(len(sims), -1), sims, reduce="amax")
                top = torch.topk(sims, k, dim=1)
                ids.append(top.indices)
                scores.append(top.values)
        if not ids:
            return SearchResult(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
        return SearchResult(torch.cat(ids).cpu().numpy().astype(np.int64), torch.cat(scores).cpu().numpy())

    def search(self, queries: np.ndarray, k: int, ef: int | None = None) -> SearchResult:
        """Approximate top-k skills per query through the HNSW graph."""
        n = len(queries)
        k = min(k, len(self))
        if n == 0:
            return SearchResult(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
        # Several vectors can belong to one skill: fetch extra neighbours so k distinct skills survive.
        fan_out = 1 if len(self.vectors) == len(self.offsets) else 4
        kk = min(k * fan_out, len(self.vectors))
        self.graph.set_ef(max(ef or self.manifest.hnsw.ef, kk))
        vec_ids, dists = self.graph.knn_query(queries, k=kk)
        sims = 1.0 - dists
        skill_ids = self.vector_skill[vec_ids.astype(np.int64)]
        if fan_out == 1:
            return SearchResult(skill_ids, sims.astype(np.float32))
        return _dedupe_skills(skill_ids, sims, k)


def _build_graph(vectors: np.ndarray, params: HnswParams) -> hnswlib.Index:
    graph = hnswlib.Index(space=params.space, dim=vectors.shape[1])
    graph.init_index(max_elements=max(len(vectors), 1), ef_construction=params.ef_construction, M=params.M,
                     random_seed=100)
    graph.add_items(vectors, np.arange(len(vectors)))
    graph.set_ef(params.ef)
    return graph


def _dedupe_skills(skill_ids: np.ndarray, sims: np.ndarray, k: int) -> SearchResult:
    """Keep each skill's best vector per row; hits arrive best first, so the first sighting wins."""
    out_ids = np.full((len(skill_ids), k), -1, dtype=np.int64)
    out_scores = np.full((len(skill_ids), k), -np.inf, dtype=np.float32)
    for row in range(len(skill_ids)):
        _, first = np.unique(skill_ids[row], return_index=True)
        first.sort()
        first = first[:k]
        out_ids[row, : len(first)] = skill_ids[row, first]
        out_scores[row, : len(first)] = sims[row, first]
    return SearchResult(out_ids, out_scores)
