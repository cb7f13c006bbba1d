"""Which skills a run covers: all of the taxonomy, or those named in a file, cut to a limit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from skilltag.generate.engine import GenerateError
from skilltag.taxonomy import Skill


def read_wanted(path: str | os.PathLike) -> list[str]:
    """The URIs or labels in a file, one a line; blank lines and '#' comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise GenerateError(f"cannot read --skills file {path}: {e}") from e
    wanted = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not wanted:
        raise GenerateError(f"--skills file {path} names no skill (one URI or preferred label a line)")
    return wanted


def select_skills(skills: Sequence[Skill], wanted: Sequence[str] | None = None, limit: int | None = None) -> list[Skill]:
    """``wanted`` (URIs or preferred labels, any case) in the file's order, else all; first ``limit`` of them."""
    if wanted is None:
        chosen = list(skills)
    else:
        by_key: dict[str, Skill] = {}
        for s in skills:
            by_key.setdefault(s.label.casefold(), s)
        for s in skills:
            by_key[s.uri] = s
        unknown = [w for w in wanted if w not in by_key and w.casefold() not in by_key]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise GenerateError(f"--skills names {len(unknown)} skill(s) not in the taxonomy: {shown}{more}")
        picked = {}
        for w in wanted:
            s = by_key.get(w) or by_key[w.casefold()]
            picked.setdefault(s.uri, s)
        chosen = list(picked.values())
    if limit is not None:
        if limit < 0:
            raise GenerateError("--limit must not be negative")
        chosen = chosen[:limit]
    return chosen
