"""The conversational prompt of a row (kept free of heavy imports: worker processes load it)."""

from __future__ import annotations

from typing import Any


def make_prompt(text: str) -> list[dict[str, Any]]:
    """One user turn, the image first, then the text (the shape TRL's GRPOTrainer expects)."""
    return [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": text}]}]


def prompt_text(prompt: list[dict[str, Any]]) -> str:
    """The text the user turn shows (question + instruction)."""
    return "".join(part.get("text") or "" for part in prompt[0]["content"] if part.get("type") == "text")
