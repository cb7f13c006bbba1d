"""Turn an LLM's answer into clean job-ad sentences, counting what was thrown away and why."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

MIN_WORDS = 4
MAX_WORDS = 60
MAX_CHARS = 400

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_LIST_MARK = re.compile(r"^\s*(?:[-*•·]|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)])\s+")
# Small models often echo the prompt's field names back as "sentences".
_PROMPT_ECHO = re.compile(r"^(?:skill|description|description of (?:the )?skill|sentence \d+)\s*:", re.I)
# Brackets, braces, table bars, tags or a quoted key: pieces of JSON or markdown, not prose.
_MARKUP = re.compile(r'[\[\]{}<>]|\|.*\||"\s*:')
_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_INLINE_NUMBER = re.compile(r"(?:^|(?<=[\s,;]))(\d{1,2})[.)]\s+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
# Frequent English function words that other European languages lack: a job-ad sentence in
# English contains at least one.
_ENGLISH = frozenset(
    "the and or of to for with at by from is are be will you your we our this that who which "
    "have has can must should would their they it".split()
)


@dataclass
class Screened:
    """The sentences that passed, and a count of rejects by reason."""

    kept: list[str] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def split_answer(text: str) -> list[str]:
    """Candidate sentences from a JSON array (possibly fenced or wrapped in an object), else from
    list items or prose: one candidate per line, per inline-numbered item, per sentence."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    from_json = _json_strings(body)
    if from_json is not None:
        return from_json
    candidates = []
    for line in body.splitlines():
        for item in _inline_items(line):
            candidates.extend(_SENTENCE_BREAK.split(_unquote(_LIST_MARK.sub("", item))))
    return [c for c in candidates if c]


def _inline_items(line: str) -> list[str]:
    """'1. Do this, 2. Do that' as two items; a line without a run of numbers 1, 2, ... is one item."""
    marks = list(_INLINE_NUMBER.finditer(line))
    numbers = [int(m.group(1)) for m in marks]
    if len(marks) < 2 or numbers != list(range(1, len(marks) + 1)):
        return [line]
    ends = [m.start() for m in marks[1:]] + [len(line)]
    return [line[: marks[0].start()]] + [line[m.end() : end].strip().rstrip(",;") for m, end in zip(marks, ends)]


def _json_strings(body: str) -> list[str] | None:
    start, end = body.find("["), body.rfind("]")
    candidates = [body.strip()]
    if 0 <= start < end:
        candidates.append(body[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = next((v for v in value.values() if isinstance(v, list)), None)
        if isinstance(value, list):
            return [item.strip() for item in value if isinstance(item, str)]
    if body.lstrip().startswith("["):
        # An array cut off by max_tokens: its complete string literals are still good.
        return [json.loads(lit).strip() for lit in _STRING_LITERAL.findall(body)]
    return None


def _unquote(line: str) -> str:
    line = line.strip().rstrip(",").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1]
    return line.strip()


def normalise(sentence: str) -> str:
    """The key two sentences are duplicates under: case, spacing and punctuation ignored."""
    return " ".join(_WORD.findall(sentence.casefold()))


def reject_reason(sentence: str) -> str | None:
    """Why ``sentence`` is unfit as a job-ad sentence, or None when it is fine."""
    if not sentence:
        return "empty"
    if len(sentence) > MAX_CHARS:
        return "too_long"
    words = _WORD.findall(sentence)
    if len(words) < MIN_WORDS:
        return "too_short"
    if len(words) > MAX_WORDS:
        return "too_long"
    if sentence.endswith(":"):
        return "preamble"
    if _PROMPT_ECHO.match(sentence):
        return "prompt_echo"
    if _MARKUP.search(sentence) or sentence.startswith("#") or sentence.count('"') % 2:
        return "markup"
    letters = [c for c in sentence if c.isalpha()]
    if sum(c.isascii() for c in letters) < 0.9 * len(letters):
        return "not_english"
    if not any(w.casefold() in _ENGLISH for w in words):
        return "not_english"
    return None


def screen(candidates: list[str], seen: set[str] | None = None) -> Screened:
    """Keep the fit, new sentences; ``seen`` holds keys of sentences kept earlier and is extended."""
    seen = set() if seen is None else seen
    out = Screened()
    for sentence in (" ".join(c.split()) for c in candidates):
        reason = reject_reason(sentence)
        key = normalise(sentence)
        if reason is None and key in seen:
            reason = "duplicate"
        if reason is not None:
            out.rejected[reason] += 1
            continue
        seen.add(key)
        out.kept.append(sentence)
    return out
