"""Text interference: a misleading hint put before the question, or the visual descriptors removed from it.

    >>> from data_builders.text import misleading_hint, remove_words
    >>> misleading_hint("What color is the circle?", "blue", "Hint: it is {wrong}.")
    'Hint: it is blue. What color is the circle?'
    >>> remove_words("What color is the big car?", ["big", "red"])
    ('What color is the car?', ['big'])

The image is untouched. A misleading hint leaves the question answerable (the image still shows the answer;
the model should trust it over the hint). Removing descriptors can make the question ambiguous: for synthetic
scenes the rule is exact (``sources/synthetic.py``: answerable iff the reduced question still has one answer
in the scene and it equals the original answer); for on-disk data ``disk.rules.remove_descriptors`` decides.
"""

from __future__ import annotations

import re

import numpy as np

KINDS = ("misleading_hint", "remove_descriptors")


def misleading_hint(question: str, wrong: str, template: str) -> str:
    """The question with a hint naming a wrong answer in front of it."""
    return f"{template.format(wrong=wrong)} {question}"


def pick_wrong(answer: str, candidates: list[str], rng: np.random.Generator) -> str | None:
    """A wrong answer for a hint, drawn from ``candidates`` (None when every candidate equals ``answer``)."""
    options = sorted({c for c in candidates if c and c.strip().lower() != answer})
    if not options:
        return None
    return options[int(rng.integers(len(options)))]


def remove_words(question: str, words: list[str]) -> tuple[str, list[str]]:
    """Delete whole ``words`` (case-insensitive) from ``question``; return the new text and what was removed."""
    removed: list[str] = []

    def drop(match: re.Match[str]) -> str:
        removed.append(match.group(0))
        return ""

    if not words:
        return question, []
    pattern = r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b"
    text = re.sub(pattern, drop, question, flags=re.IGNORECASE)
    text = re.sub(r"\s+([?.!,])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    return text, removed
