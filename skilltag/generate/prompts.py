"""Versioned prompt templates: an ESCO skill in, chat messages asking for job-ad sentences out.

The version string is written into every output record, so a change to any wording here must
come with a new version: sentences from different prompts are then never mixed up unknowingly.
"""

from __future__ import annotations

import json
import math

from skilltag.taxonomy import Skill

PROMPT_VERSION = "skilltag-v1"

SYSTEM = (
    "You write realistic sentences for job advertisements. "
    "You answer with a JSON array of strings and nothing else."
)

# After Decorte et al. (2023): give the skill's label and description, ask for sentences that a
# job ad requiring the skill would contain, in varied styles and without always naming the skill.
USER = """Skill: {label}
Description: {description}

Write {n} different sentences that could appear in an English job advertisement for a position that requires this skill. \
Mix requirements, responsibilities and descriptions of the work; some sentences should describe the skill without using its exact name. \
Each sentence stands on its own and is at most 40 words long.
Answer with a JSON array of {n} strings."""

AVOID = """
These sentences were already written; do not repeat or paraphrase them:
{sentences}"""

# A rough token count that errs high for English (about 4 characters a token in practice), so
# the limiter reserves enough before the server reports the true figure.
CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 8


def build_messages(skill: Skill, n: int, avoid: list[str] | tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` sentences for ``skill``, steering away from ``avoid``."""
    description = skill.description or "(no description; rely on the label)"
    user = USER.format(label=skill.label, description=description, n=n)
    if avoid:
        user += AVOID.format(sentences=json.dumps(list(avoid), ensure_ascii=False, indent=0))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(TOKENS_PER_MESSAGE + math.ceil(len(m["content"]) / CHARS_PER_TOKEN) for m in messages)
