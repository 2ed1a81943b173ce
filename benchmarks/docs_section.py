"""The one place the benchmark scripts write their figures: their own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(section: str, text: str, command: str, path: Path = DOCS) -> None:
    """Replace (or append) only the ``section`` heading's part of ``path``; other sections stay as they are."""
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{section}\n\nCommand: `{command}`\n\n{text}\n"
    start = body.find(section)
    if start < 0:
        body = body.rstrip("\n") + "\n\n" + block
    else:
        end = body.find("\n## ", start + len(section))
        body = body[:start] + block + ("\n" + body[end + 1:] if end >= 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(body)
    tmp.replace(path)
