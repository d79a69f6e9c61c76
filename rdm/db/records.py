"""The plain data a DB hands out: image records, search hits, reports and statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from rdm.common.sources import IngestItem

ProgressFn = Callable[[int, int], None]  # progress(done, total)


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    filename: str
    ext: str
    category: str
    tags: tuple[str, ...]
    caption: str
    source: str
    licence: str
    author: str
    width: int
    height: int
    added_at: str
    deleted_at: str | None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    record: ImageRecord
    subquery: str | None = None  # the sub-query this hit answers (retrieval stage)
    image_score: float | None = None  # the score's parts (rdm.db.fusion.Fusion): the embedding's cosine,
    text_score: float | None = None  # the curated text's match in [0, 1]; None: not computed
    matched: tuple[str, ...] = ()  # the query words the image's text holds
    text_words: int = 0  # of how many content words of the query (every one counts in text_score)

    def to_dict(self) -> dict:
        d = {"id": self.id, "score": round(float(self.score), 6), "filename": self.record.filename,
             "category": self.record.category, "tags": list(self.record.tags),
             "caption": self.record.caption}
        if self.subquery is not None:
            d["subquery"] = self.subquery
        if self.image_score is not None:
            d["image_score"] = round(float(self.image_score), 6)
        if self.text_score is not None:
            d["text_score"] = round(float(self.text_score), 6)
            d["matched"] = list(self.matched)
            d["text_words"] = self.text_words
        return d

    def explain(self) -> str:
        """The score's parts in words, for a tooltip or a table cell."""
        parts = []
        if self.image_score is not None:
            parts.append(f"image {self.image_score:.3f}")
        if self.text_score is not None:
            parts.append(f"text {self.text_score:.2f}" + (f": {', '.join(self.matched)} ({len(self.matched)} of "
                                                          f"{self.text_words} words)" if self.matched else ""))
        return " + ".join(parts)


@dataclass(frozen=True)
class IngestReport:
    items: tuple[IngestItem, ...]

    def _with(self, status: str) -> tuple[IngestItem, ...]:
        return tuple(i for i in self.items if i.status == status)

    @property
    def added(self) -> tuple[IngestItem, ...]:
        return self._with("added")

    @property
    def duplicates(self) -> tuple[IngestItem, ...]:
        return self._with("duplicate")

    @property
    def skipped(self) -> tuple[IngestItem, ...]:
        return self._with("skipped")

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.duplicates)} duplicate(s) not stored again, "
                f"{len(self.skipped)} skipped")


@dataclass(frozen=True)
class Stats:
    path: str
    live: int
    deleted: int
    by_category: dict[str, int]
    encoder: str
    encoder_reason: str
    dim: int
    index_version: int
    revision: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[str, ...]
    repaired: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_tags(tags: str | Sequence[str] | None) -> tuple[str, ...]:
    """Comma-separated text or a list -> lower-case tags, each once, in the order given."""
    if tags is None:
        return ()
    items = tags.split(",") if isinstance(tags, str) else tags
    seen: dict[str, None] = {}
    for t in items:
        t = str(t).strip().lower()
        if t:
            seen.setdefault(t, None)
    return tuple(seen)
