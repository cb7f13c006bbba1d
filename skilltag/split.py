"""Clean job-ad text and cut it into sentences, keeping each sentence's character offsets.

Dropped on purpose: fragments without a letter ("40.000", "---") and short section headers ending
in a colon ("Job description:"), which otherwise match skill names like "write job descriptions".

Ads are rarely prose: bullets, one-line list items, HTML line breaks and semicolon-separated duty
lists dominate. So the text is first cut on structure (newlines, bullet markers, semicolons), and
only then each piece goes through blingfire's sentence splitter, which knows abbreviations
("e.g.", "Dr.", "U.S.") but would otherwise run bullet lines together.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import blingfire

SPLITTER_VERSION = "2"
DEFAULT_MAX_SENTENCE_CHARS = 500
DEFAULT_MAX_SENTENCES = 2000
HEADER_MAX_WORDS = 5

# Block-level HTML tags become line breaks; every other tag is removed.
_BLOCK_TAG = re.compile(r"<\s*(?:br|/?p|/?li|/?ul|/?ol|/?div|/?h[1-6]|/?tr|/?td|/?th)\b[^>]*>", re.I)
_ANY_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
# Bullet glyphs anywhere, and "-", "*", "1.", "a)" list markers at the start of a line.
_BULLET_GLYPHS = "•·●○◦▪▫■□➢➤►▶✓✔✗❖◆◇‣⁃\uf0b7\uf0a7\uf076\uf0d8\uf0fc"
_PIECE_BOUNDARY = re.compile(rf"[\n\r\t\f\v\u2028\u2029]+|[{_BULLET_GLYPHS}]|;\s+|\s[|]\s")
_LEADING_MARKER = re.compile(r"^\s*(?:[-*+–—>]+|\(?\d{1,2}[.)]|\(?[a-zA-Z][.)](?=\s))\s+")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_SPACES = re.compile(r"[ \u00a0\u200b\u00ad]+")


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    start: int  # offsets into the cleaned text
    end: int


def clean_text(text: str) -> str:
    """Unescape entities and turn markup into plain text with line breaks where blocks were."""
    if "<" in text:
        text = _BLOCK_TAG.sub("\n", text)
        text = _ANY_TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return text


def _pieces(text: str):
    """Structural pieces of the text with their start offsets."""
    pos = 0
    for m in _PIECE_BOUNDARY.finditer(text):
        if m.start() > pos:
            yield pos, text[pos : m.start()]
        pos = m.end()
    if pos < len(text):
        yield pos, text[pos:]


def _chop(text: str, start: int, max_chars: int):
    """(text, start, end) pieces of an over-long sentence, cut at whitespace so nothing is lost."""
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        cut = cut if cut > max_chars // 2 else max_chars
        head = text[:cut].rstrip()
        yield head, start, start + len(head)
        rest = text[cut:]
        start += cut + len(rest) - len(rest.lstrip())
        text = rest.lstrip()
    if text:
        yield text, start, start + len(text)


def _sentence_spans(piece: str) -> list[tuple[int, int]]:
    """blingfire's sentence spans of one piece.

    ``text_to_sentences`` runs in C; its offsets twin maps byte offsets back in a Python loop per
    character (most of the splitter's time), so spans are found with ``str.find`` instead, falling
    back to the slow twin only if blingfire ever rewrote the text.
    """
    spans = []
    cursor = 0
    for sentence in blingfire.text_to_sentences(piece).split("\n"):
        if not sentence:
            continue
        start = piece.find(sentence, cursor)
        if start < 0:
            return blingfire.text_to_sentences_and_offsets(piece)[1]
        spans.append((start, start + len(sentence)))
        cursor = start + len(sentence)
    return spans


def _is_header(sentence: str) -> bool:
    """"Job description:", "Requirements:" introduce a section; as text they only match skill names."""
    return sentence.endswith(":") and len(sentence.split()) <= HEADER_MAX_WORDS


def split_sentences(
    text: str, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS, max_sentences: int = DEFAULT_MAX_SENTENCES
) -> tuple[list[Sentence], bool]:
    """Sentences of one ad (offsets into ``clean_text(text)``) and whether the ad was cut short.

    Only the first ``2 * max_sentences * max_chars`` characters are read (room for the most sentences
    kept, twice over for markup and blank space), so a runaway 50 MB record costs no more than that.
    """
    limit = 2 * max_sentences * max_chars
    cleaned = clean_text(text[:limit])
    out: list[Sentence] = []
    for piece_start, piece in _pieces(cleaned):
        marker = _LEADING_MARKER.match(piece)
        if marker:
            piece_start += marker.end()
            piece = piece[marker.end() :]
        if not _HAS_LETTER.search(piece):
            continue
        for s, e in _sentence_spans(piece):
            raw = piece[s:e]
            if not _HAS_LETTER.search(raw):
                continue
            stripped = raw.strip()
            if _is_header(stripped):
                continue
            start = piece_start + s + raw.find(stripped)
            for chunk, a, b in _chop(stripped, start, max_chars):
                if len(out) == max_sentences:  # only cut short when there is a sentence left to drop
                    return out, True
                out.append(Sentence(_SPACES.sub(" ", chunk), a, b))
    return out, len(text) > limit
