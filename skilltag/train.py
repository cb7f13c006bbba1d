"""Contrastive bi-encoder training of Decorte et al. 2023.

(sentence, skill label) pairs, MultipleNegativesRankingLoss with in-batch negatives, and the paper's
augmentation: with probability p a random other training sentence is glued before or after a sentence,
so the model learns to find one skill inside multi-skill text. The result is a normal
sentence-transformers directory plus ``training.json``, which records what went in and how the model
scores on the dev benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from skilltag import __version__
from skilltag.encoder import Encoder, EncoderError, model_fingerprint, pick_device, resolve_model, stock_model_path
from skilltag.fsutil import atomic_write_bytes, check_replaceable, replace_dir
from skilltag.evaluate import BenchmarkResult, evaluate, load_benchmark
from skilltag.index import SkillIndex
from skilltag.pairs import (
    DEFAULT_MAX_PER_SKILL,
    Pair,
    PairSet,
    alt_label_pairs,
    description_pairs,
    dev_sentences,
    distant_pairs,
    file_sha256,
    synthetic_pairs,
)
from skilltag.taxonomy import Taxonomy

MANIFEST = "training.json"
MANIFEST_KEYS = ("recipe", "base_model", "params")  # what marks a directory as a model skilltag trained


class TrainError(Exception):
    """Training cannot start: no pairs, or a base model that cannot be used."""


@dataclass(frozen=True)
class Sources:
    synthetic: tuple[str, ...] = ()
    descriptions: bool = False
    alt_labels: bool = False
    distant: tuple[str, ...] = ()  # job-ad files or folders
    distant_max_per_skill: int = DEFAULT_MAX_PER_SKILL

    def any(self) -> bool:
        return bool(self.synthetic or self.descriptions or self.alt_labels or self.distant)


@dataclass(frozen=True)
class TrainParams:
    """The paper's defaults: 1 epoch, batch 64, AdamW lr 2e-5, 5% linear warm-up, scale 20, p 0.5."""

    epochs: float = 1.0
    batch_size: int = 64
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.05
    scale: float = 20.0
    augment_p: float = 0.5
    max_steps: int | None = None
    seed: int = 42
    device: str = "auto"


@dataclass(frozen=True)
class TrainResult:
    output: Path
    manifest: dict
    dev: list[BenchmarkResult] = field(default_factory=list)


def collect_pairs(sources: Sources, taxonomy: Taxonomy, exclude: frozenset[str], seed: int) -> list[PairSet]:
    """One PairSet per selected source, in a fixed order (synthetic, descriptions, alt labels, distant)."""
    sets = [synthetic_pairs(path, taxonomy, exclude) for path in sources.synthetic]
    if sources.descriptions:
        sets.append(description_pairs(taxonomy, exclude))
    if sources.alt_labels:
        sets.append(alt_label_pairs(taxonomy, exclude))
    if sources.distant:
        sets.append(distant_pairs(sources.distant, taxonomy, exclude, sources.distant_max_per_skill, seed))
    return sets


def augment(pairs: list[Pair], p: float, rng: random.Random) -> tuple[list[Pair], int]:
    """Glue one random other training sentence before or after each sentence with probability ``p``.

    The other sentence is drawn from the unaugmented pool, so no text grows beyond two sentences.
    Returns the new pairs (same order and skills) and how many were glued.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augmentation probability must be in [0, 1], got {p}")
    if len(pairs) < 2 or p == 0.0:
        return list(pairs), 0
    out: list[Pair] = []
    glued = 0
    for i, pair in enumerate(pairs):
        if rng.random() >= p:
            out.append(pair)
            continue
        j = rng.randrange(len(pairs) - 1)
        other = pairs[j + (j >= i)].sentence  # any index but i
        text = f"{other} {pair.sentence}" if rng.random() < 0.5 else f"{pair.sentence} {other}"
        out.append(Pair(pair.skill, text, pair.source))
        glued += 1
    return out, glued


def to_dataset(pairs: list[Pair], taxonomy: Taxonomy):
    """A datasets.Dataset of (sentence, skill): the sentence is the anchor, its skill label the positive.

    The label is unique per skill in ESCO, so NO_DUPLICATES batching (which rejects a row if any of its
    values is already in the batch) keeps every skill at most once per batch: a second pair of the same
    skill would be a false in-batch negative.
    """
    from datasets import Dataset

    return Dataset.from_dict({
        "sentence": [p.sentence for p in pairs],
        "skill": [taxonomy.skills[p.skill].label for p in pairs],
    })


def build_trainer(model, dataset, params: TrainParams, work_dir: str, device: str, callbacks=()):
    """The sentence-transformers trainer with the paper's loss, optimiser and schedule."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    args = SentenceTransformerTrainingArguments(
        output_dir=work_dir,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        warmup_steps=params.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        optim="adamw_torch",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=params.seed,
        data_seed=params.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=device == "cpu",
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        disable_tqdm=False,
    )
    loss = MultipleNegativesRankingLoss(model, scale=params.scale)
    return SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, callbacks=list(callbacks)
    )


def evaluate_dev(model_dir: str | os.PathLike, taxonomy: Taxonomy, dev: tuple[str, ...], device: str) -> list[BenchmarkResult]:
    """The evaluate protocol (exact search over every skill) on each dev file."""
    if not dev:
        return []
    encoder = Encoder(model_dir, device=device)
    index = SkillIndex.build(taxonomy, encoder)
    label_to_id, uri_to_id = taxonomy.by_label(), taxonomy.by_uri()
    return [evaluate(index, encoder, load_benchmark(p, label_to_id, uri_to_id), search="exact") for p in dev]


def hardware(device: str) -> dict:
    import torch

    info = {
        "device": device,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    import sentence_transformers
    import torch
    import transformers

    return {
        "skilltag": __version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def train(
    taxonomy: Taxonomy,
    output: str | os.PathLike,
    sources: Sources,
    params: TrainParams = TrainParams(),
    base_model: str | os.PathLike | None = None,
    dev: tuple[str, ...] = (),
    log: Callable[[str], None] = lambda _: None,
) -> TrainResult:
    """Fine-tune ``base_model`` on the selected sources, save it to ``output``, score it on ``dev``."""
    if not sources.any():
        raise TrainError("no training source selected: give --synthetic, --descriptions, --alt-labels or --distant")
    base = resolve_model(base_model) if base_model else stock_model_path()
    if not (base / "modules.json").is_file():
        raise TrainError(f"no sentence-transformers model at {base} (modules.json missing)")
    check_replaceable(Path(output), MANIFEST, "skilltag model", MANIFEST_KEYS)  # before training, not after
    device = pick_device(params.device)

    exclude = dev_sentences(dev)
    for path in dev:  # a bad label fails now, not after training
        load_benchmark(path, taxonomy.by_label(), taxonomy.by_uri())
    sets = collect_pairs(sources, taxonomy, exclude, params.seed)
    for s in sets:
        skipped = sum(s.stats.skipped.values())
        log(f"{s.stats.source}: {s.stats.pairs} pairs, {s.stats.skills} skills, {skipped} skipped")
        for problem in s.stats.problems:
            log(f"  {problem}")
    pairs = [p for s in sets for p in s.pairs]
    if len(pairs) < 2:
        raise TrainError(f"only {len(pairs)} training pair(s) after reading the sources; nothing to learn")
    rng = random.Random(params.seed)
    pairs, glued = augment(pairs, params.augment_p, rng)
    log(f"{len(pairs)} pairs, {glued} augmented (p={params.augment_p}), device {device}")

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import is_training_available
    from transformers.utils import logging as hf_logging

    if not is_training_available():
        raise TrainError("training needs the packages datasets and accelerate: pip install datasets accelerate")
    hf_logging.set_verbosity_error()
    try:
        model = SentenceTransformer(str(base), device=device, local_files_only=True)
    except (OSError, ValueError) as e:
        raise EncoderError(f"cannot load base model {base}: {e}") from e
    dataset = to_dataset(pairs, taxonomy)
    with tempfile.TemporaryDirectory(prefix="skilltag-train-") as work_dir:
        trainer = build_trainer(model, dataset, params, work_dir, device)
        start = time.perf_counter()
        # The trainer prints its logs to stdout; keep stdout for results (the CLI prints dev scores there).
        with contextlib.redirect_stdout(sys.stderr):
            state = trainer.train()
        train_seconds = time.perf_counter() - start

    steps = trainer.state.global_step
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": "Decorte et al. 2023: MultipleNegativesRankingLoss, in-batch negatives, sentence augmentation",
        "base_model": {"name": base.name if base.name != "model" else base.parent.name, "path": str(base),
                       "sha256": model_fingerprint(str(base.resolve()))},
        "taxonomy": {"path": taxonomy.path, "version": taxonomy.version, "sha256": taxonomy.sha256,
                     "skills": len(taxonomy)},
        "sources": [s.stats.to_json() for s in sets],
        "dev_excluded": {"files": {p: file_sha256(p) for p in dev}, "sentences": len(exclude)},
        "pairs": len(pairs),
        "augmented": glued,
        "params": asdict(params),
        "steps": steps,
        "pairs_seen": steps * params.batch_size,
        "train_loss": round(state.training_loss, 5),
        "train_seconds": round(train_seconds, 1),
        "steps_per_second": round(steps / train_seconds, 3) if train_seconds else None,
        "hardware": hardware(device),
        "versions": _versions(),
        "dev": [],
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    out = replace_dir(output, write, owned_by=MANIFEST, kind="skilltag model", keys=MANIFEST_KEYS)
    log(f"model saved to {out}; scoring dev sets")
    # Scored from the saved files, so the figures are those of the model as it loads; after the swap,
    # so a failure here never costs the trained model.
    results = evaluate_dev(out, taxonomy, dev, device)
    manifest["dev"] = [{"benchmark": r.name, "search": r.search, **asdict(r.scores)} for r in results]
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return TrainResult(output=out, manifest=manifest, dev=results)


def compact_copy(model_dir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """A half-size copy for packaging: fp16 weights that still load (and run) as float32.

    transformers loads weights in the dtype that config.json names, so the config keeps float32 while
    model.safetensors holds fp16: half the download, CPU inference stays in float32.
    """
    from sentence_transformers import SentenceTransformer

    src = Path(model_dir)
    model = SentenceTransformer(str(src), device="cpu", local_files_only=True)
    model.half()

    def write(out: Path) -> None:
        model.save_pretrained(str(out))
        config_path = out / "config.json"
        config = json.loads(config_path.read_text())
        config["dtype"] = "float32"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        if (src / MANIFEST).is_file():
            shutil.copy2(src / MANIFEST, out / MANIFEST)
        # The generated model card names local paths and changes each run; training.json is the record.
        (out / "README.md").unlink(missing_ok=True)

    return replace_dir(dest, write, owned_by="modules.json", kind="sentence-transformers model", keys=())
