"""CPU encoder on ONNX Runtime with int8 weights: the torch ``Encoder``'s interface, several times its speed.

The sentence-transformers model is exported once (fp32 ONNX of the transformer, int8 matrix weights) and
cached under the source model's sha256, next to its tokenizer and the few settings encoding needs, so
later runs load neither torch nor sentence-transformers. Pooling (mean over real tokens) and L2
normalisation run in numpy. ``info.sha256`` stays the source model's: the vectors answer the same
question as the torch encoder's (cosine ~0.9996 to them), so skill indexes built with torch stay valid.

Only the export needs torch, ``onnx``, ``onnx-ir`` and ``onnxruntime.quantization``; encoding needs
``onnxruntime``, ``tokenizers`` and numpy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from skilltag.encoder import Encoder, EncoderError, ModelInfo, model_fingerprint, resolve_model

BACKEND = "onnx-int8"
CACHE_ENV_VAR = "SKILLTAG_CACHE"
# Bump when the export recipe changes, so models cached by an older recipe are rebuilt.
EXPORT_VERSION = 2
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
DEFAULT_BATCH_SIZE = 64


def cache_root() -> Path:
    """$SKILLTAG_CACHE, else ~/.cache/skilltag; exported models live in ``<root>/onnx/<sha256>/``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "skilltag").expanduser()


def _require(module: str):
    """Import an optional dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EncoderError(f"the onnx backend needs {module}: pip install 'skilltag[onnx]'") from e


def _load_source(model_dir: Path):
    """The sentence-transformers model, refused unless it is Transformer -> mean Pooling [-> Normalize]."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    kinds = [type(m).__name__ for m in st]
    pooling = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]) or pooling != "mean":
        raise EncoderError(
            f"{model_dir}: the onnx backend handles Transformer -> mean Pooling [-> Normalize] models only, "
            f"this one is {kinds} with pooling {pooling!r}; use --backend torch"
        )
    return st


def _export_fp32(st, input_names: list[str], path: Path) -> None:
    """The transformer alone (token ids -> last hidden state) as fp32 ONNX, batch and length dynamic."""
    import torch

    auto_model = st[0].auto_model
    # Plain attention ops: onnxruntime's attention fusion recognises them, not the exported SDPA graph.
    auto_model.set_attn_implementation("eager")
    auto_model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = auto_model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs))).last_hidden_state

    # A padded example, so no "the mask is all ones" shortcut gets baked into the trace.
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2000, 102, 0]])
    mask = (ids > 0).long()
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer and deprecation warnings about branches that are constant for an encoder (checked by tests).
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing for a plain BERT.
        torch.onnx.export(
            LastHiddenState(),
            tuple(example[n] for n in input_names),
            str(path),
            input_names=input_names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: axes for n in [*input_names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )


def _quantize_int8(fp32: Path, out: Path) -> dict:
    """int8 weights for every MatMul with a constant weight, int8 arithmetic, fp32 everywhere else.

    Block-wise (MatMulNBits, 8 bits, blocks of 32 along the inner dimension, accuracy level 4 = int8
    compute with per-block activation scales) rather than ``quantize_dynamic``: the latter scales a
    whole batch's activations with one number, which moves embeddings to cosine ~0.992 of torch and
    cost 0.8-2.4 pooled dev RP@5 points on ESCO slices; block-wise keeps cosine ~0.9996 at ~60% of
    its speed (README, "Faster CPU encoding"). The embedding tables stay fp32: quantising them saves no time.
    """
    _require("onnx_ir")  # the MatMulNBits quantiser's model representation
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # Importing it runs logging.basicConfig(level=INFO) for the whole process; undo that, and its
    # one line per skipped node.
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)

    settings = {"op": "MatMulNBits", "bits": 8, "block_size": 32, "symmetric": True, "accuracy_level": 4}
    quantizer = MatMulNBitsQuantizer(
        str(fp32),
        bits=settings["bits"],
        block_size=settings["block_size"],
        is_symmetric=settings["symmetric"],
        accuracy_level=settings["accuracy_level"],
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(out))
    return settings


def export_int8(model_dir: Path, out_dir: Path, sha256: str) -> dict:
    """Write model.onnx, tokenizer.json and manifest.json for ``model_dir`` into ``out_dir``; return the manifest."""
    import torch

    onnxruntime = _require("onnxruntime")
    _require("onnx")  # the quantiser reads and writes models with it
    st = _load_source(model_dir)
    tokenizer = st.tokenizer
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    fp32 = out_dir / "fp32.onnx"
    _export_fp32(st, input_names, fp32)
    quantization = _quantize_int8(fp32, out_dir / MODEL_FILE)
    fp32.unlink()
    tokenizer.backend_tokenizer.save(str(out_dir / TOKENIZER_FILE))
    manifest = {
        "export_version": EXPORT_VERSION,
        "backend": BACKEND,
        "source_path": str(model_dir),
        "source_sha256": sha256,
        "dim": int(st.get_embedding_dimension()),
        "max_seq_length": int(st.max_seq_length),
        "do_lower_case": bool(getattr(st[0], "do_lower_case", False)),
        "input_names": input_names,
        "quantization": quantization,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _read_manifest(directory: Path) -> dict | None:
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("export_version") == EXPORT_VERSION else None


def cached_export(model_dir: Path, sha256: str, root: Path | None = None) -> tuple[Path, dict]:
    """The export of ``model_dir`` from the cache, made first if missing or from an older recipe.

    Built in a temporary directory and renamed into place, so a crash or a concurrent run never leaves
    a half-written model under the final name.
    """
    final = (root or cache_root()) / "onnx" / sha256
    manifest = _read_manifest(final)
    if manifest:
        return final, manifest
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}.", dir=final.parent))
    try:
        manifest = export_int8(model_dir, tmp, sha256)
        if final.exists():  # stale recipe, or another process finished first
            stale = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}.old.", dir=final.parent))
            final.rename(stale / "x")
            shutil.rmtree(stale)
        tmp.rename(final)
    except OSError:
        if not _read_manifest(final):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, manifest


def default_threads() -> int:
    """Every core this process may use: the encoder is the whole job's bottleneck."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxEncoder:
    """Embeds text with the int8 ONNX export of a sentence-transformers model; rows are L2-normalised float32."""

    backend = BACKEND
    device = "cpu"

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        from tokenizers import Tokenizer

        onnxruntime = _require("onnxruntime")
        path = resolve_model(model).resolve()
        if not (path / "modules.json").is_file():
            raise EncoderError(
                f"No sentence-transformers model at {path} (modules.json missing). Pass --model with a local "
                f"model directory (models are never downloaded at run time)."
            )
        sha = model_fingerprint(str(path))
        self.export_dir, manifest = cached_export(path, sha, Path(cache_dir) if cache_dir else None)
        self.input_names: list[str] = manifest["input_names"]
        self.do_lower_case: bool = manifest["do_lower_case"]
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.info = ModelInfo(
            name=path.name if path.name != "model" else path.parent.name,
            path=str(path),
            sha256=sha,
            dim=int(manifest["dim"]),
            max_seq_length=int(manifest["max_seq_length"]),
        )
        self.tokenizer = Tokenizer.from_file(str(self.export_dir / TOKENIZER_FILE))
        self.tokenizer.no_padding()  # each batch is padded to its own longest row below
        self.tokenizer.enable_truncation(self.info.max_seq_length)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.export_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    @property
    def dim(self) -> int:
        return self.info.dim

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Embeddings of ``texts`` in input order, shape (n, dim), float32, unit length.

        Texts are tokenised once, then run longest first in batches padded to their own longest row.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        texts = [t.lower() for t in texts] if self.do_lower_case else list(texts)
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        size = batch_size or self.batch_size
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            out[rows] = self._embed([encodings[r] for r in rows], int(lengths[rows[0]]))
        return out

    def encode_tensor(self, texts: list[str], batch_size: int | None = None):
        """``encode`` as a CPU torch tensor, for callers written against ``Encoder.encode_tensor``."""
        import torch

        return torch.from_numpy(self.encode(texts, batch_size))

    def _embed(self, encodings: list, width: int) -> np.ndarray:
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {n: feed[n] for n in self.input_names})[0]
        weights = mask.astype(np.float32)
        pooled = np.einsum("btd,bt->bd", hidden, weights) / weights.sum(axis=1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


BACKENDS = ("torch", "onnx")


def make_encoder(
    model: str | os.PathLike | None = None,
    device: str | None = None,
    backend: str = "torch",
    batch_size: int | None = None,
) -> Encoder | OnnxEncoder:
    """The encoder a command asked for: ``torch`` on any device, ``onnx`` (int8) on the CPU."""
    if backend == "torch":
        return Encoder(model, device=device, batch_size=batch_size)
    if backend != "onnx":
        raise EncoderError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if device not in (None, "auto", "cpu"):
        raise EncoderError(
            f"the onnx backend runs on the CPU only, not on {device!r}; use --backend torch there (fp16 on CUDA)"
        )
    return OnnxEncoder(model, batch_size=batch_size)
