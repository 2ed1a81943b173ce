"""What every source gives the pair builder: source questions (``Item``) and its labelling rules (``Source``).

A source is picklable and cheap to copy: worker processes get a copy and open files lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

Box = tuple[int, int, int, int]


class BadRow(ValueError):
    """An input row that cannot be used; names the row, the field and (when known) the file."""

    def __init__(self, row: str, field_name: str, reason: str, file: str | None = None) -> None:
        self.row, self.field, self.reason, self.file = row, field_name, reason, file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}row {row}, field {field_name!r}: {reason}. Fix or remove the row, or set "
                         "on_bad_row: skip in the data config to skip such rows (they are counted in the manifest)")

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str | None]]:
        # a worker process sends it back pickled; the default (the message alone) cannot re-make it, and a pool
        # whose result can't be unpickled hangs instead of raising
        return type(self), (self.row, self.field, self.reason, self.file)

    def record(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "reason": self.reason, "file": self.file}


class NotApplicable(Exception):
    """A (source question, damage) pair that is not made; the reason is counted in the manifest."""


@dataclass
class Item:
    """One normal pair: the image, the question and its ground truth, plus what the rules need."""

    source_id: str
    split: str
    index: int
    image: Image.Image
    question: str
    answer: str
    choices: list[str]
    task: str
    key_box: Box | None = None  # the key region occlude_key covers
    extra: dict[str, Any] = field(default_factory=dict)  # copied into every row's params (e.g. the scene)
    native: Any = None  # source-specific data (the scene and query of a synthetic item)


class Source(Protocol):
    """The labelling rules of one source kind. Each method raises ``NotApplicable`` to leave a row out."""

    kind: str

    def ids(self, split: str) -> list[str]:
        """Source ids of ``split`` in build order (the same in every process)."""

    def item(self, split: str, index: int) -> Item:
        """The normal pair; raises ``BadRow`` for unusable input."""

    def judge_corruption(self, item: Item, name: str, severity: float, params: dict[str, Any],
                         corrupted: Image.Image) -> tuple[bool, str]:
        """Is ``item`` answerable on its corrupted image? ``(answerable, reason)``."""

    def irrelevant(self, item: Item) -> tuple[Image.Image, dict[str, Any]]:
        """An unrelated image that does not show the answer, and params describing it."""

    def mismatched(self, item: Item) -> tuple[Image.Image, bool, str, dict[str, Any]]:
        """Another sample's image: ``(image, answerable, reason, params)``."""

    def hint(self, item: Item) -> tuple[str, bool, str]:
        """A wrong answer for a misleading hint: ``(wrong, answerable, reason)``."""

    def reduce(self, item: Item) -> tuple[str, bool, str]:
        """The question with visual descriptors removed: ``(text, answerable, reason)``."""
