"""Load the ESCO skills pillar from the official CSV export.

The label space of every other stage is a :class:`Taxonomy`: an ordered tuple of
:class:`Skill` records plus a content hash, so an index built from one export can
refuse to be used with another.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "SKILLTAG_ESCO"
DOWNLOAD_URL = "https://esco.ec.europa.eu/en/use-esco/download"
REQUIRED_COLUMNS = ("conceptUri", "preferredLabel", "altLabels", "description")
MAX_FIELD_CHARS = 64 * 1024 * 1024


class TaxonomyError(Exception):
    """The taxonomy file is missing or cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Skill:
    uri: str
    label: str
    alt_labels: tuple[str, ...]
    description: str
    skill_type: str
    reuse_level: str


@dataclass(frozen=True)
class Taxonomy:
    skills: tuple[Skill, ...]
    path: str
    version: str
    sha256: str

    def __len__(self) -> int:
        return len(self.skills)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.skills]

    def by_label(self) -> dict[str, int]:
        return {s.label: i for i, s in enumerate(self.skills)}

    def by_uri(self) -> dict[str, int]:
        return {s.uri: i for i, s in enumerate(self.skills)}


def resolve_path(path: str | os.PathLike | None) -> Path:
    """The taxonomy path from the argument, else from $SKILLTAG_ESCO, with a helpful error."""
    chosen = path if path else os.environ.get(ENV_VAR)
    if not chosen:
        raise TaxonomyError(
            "No ESCO taxonomy given. Download the ESCO CSV export (classification, English, CSV) from "
            f"{DOWNLOAD_URL}, then pass --taxonomy PATH/skills_en.csv or set {ENV_VAR}=PATH/skills_en.csv."
        )
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise TaxonomyError(
            f"ESCO skills file not found: {p}. Download the ESCO CSV export (classification, English, CSV) "
            f"from {DOWNLOAD_URL} and point --taxonomy or {ENV_VAR} at its skills_en.csv."
        )
    return p


def _version_from_path(p: Path) -> str:
    # The export itself carries no version; the official layout keeps it in the folder name.
    for part in reversed(p.resolve().parts[:-1]):
        m = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", part)
        if m:
            return "v" + m.group(1)
    return "unknown"


def _split_labels(field: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for line in field.splitlines():
        line = line.strip()
        if line:
            seen.setdefault(line, None)
    return tuple(seen)


def load_taxonomy(path: str | os.PathLike | None = None) -> Taxonomy:
    """Parse an ESCO ``skills_en.csv`` (any version with the official column layout)."""
    p = resolve_path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TaxonomyError(f"{p}: not UTF-8 text (byte {e.start}); is this the ESCO CSV export?") from e
    # Descriptions run long in some exports; the csv module's default 128 KiB field cap is not ESCO's.
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.DictReader(text.splitlines(keepends=True), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as e:
        raise TaxonomyError(f"{p}: malformed CSV header: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        found = ", ".join(ascii(h) for h in header)[:300] or "no header"  # ascii(): binary junk stays printable
        raise TaxonomyError(
            f"{p}: missing column(s) {', '.join(missing)}; expected the ESCO skills_en.csv layout "
            f"({', '.join(REQUIRED_COLUMNS)}, ...). Found: {found}"
        )
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise TaxonomyError(f"{p}: column(s) {', '.join(repeated)} appear more than once in the header")
    skills: list[Skill] = []
    seen_uris: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):
                raise TaxonomyError(f"{p}: row ending at line {line} has the wrong number of fields")
            uri = row["conceptUri"].strip()
            label = row["preferredLabel"].strip()
            if not uri or not label:
                raise TaxonomyError(f"{p}: row ending at line {line} has an empty conceptUri or preferredLabel")
            if uri in seen_uris:
                raise TaxonomyError(f"{p}: row ending at line {line} repeats conceptUri {uri}")
            seen_uris[uri] = line
            alts = tuple(a for a in _split_labels(row["altLabels"]) if a != label)
            skills.append(
                Skill(
                    uri=uri,
                    label=label,
                    alt_labels=alts,
                    description=" ".join(row["description"].split()),
                    skill_type=(row.get("skillType") or "").strip(),
                    reuse_level=(row.get("reuseLevel") or "").strip(),
                )
            )
    except csv.Error as e:
        raise TaxonomyError(f"{p}: malformed CSV near line {reader.line_num}: {e}") from e
    if not skills:
        raise TaxonomyError(f"{p}: no skills found")
    return Taxonomy(
        skills=tuple(skills),
        path=str(p),
        version=_version_from_path(p),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
