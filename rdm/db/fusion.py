"""How a search hit's score is made from its image cosine and its curated text match."""

from __future__ import annotations

from dataclasses import dataclass

from rdm.db.texts import FULL_MATCH
from rdm.errors import RetrievalError

RETRIEVAL_KINDS = ("image", "text", "hybrid")


@dataclass(frozen=True)
class Fusion:
    """How a hit's score is made from its parts: the image embedding's cosine and the text match of
    its curated caption, tags, category and file name (rdm/db/texts.py, in [0, 1]).

    - ``image``: score = cosine (the seed's retrieval).
    - ``text``: score = text match; only images whose text matches are found.
    - ``hybrid``: score = cosine + ``text_weight`` x text match. A text match only ever adds; the
      absolute threshold is cleared on the cosine alone or with a full text match (``passes``): a
      photo the embedding misses but whose caption names the thing clears it, one word of the query
      does not.
    """

    kind: str = "hybrid"
    text_weight: float = 0.3  # chosen on data/queries/dev (bench/retrieval.py --tune)

    def __post_init__(self) -> None:
        if self.kind not in RETRIEVAL_KINDS:
            raise RetrievalError(f"unknown retrieval {self.kind!r}: use one of {', '.join(RETRIEVAL_KINDS)}")
        if not 0.0 <= self.text_weight <= 10.0:
            raise RetrievalError(f"text weight {self.text_weight} must be between 0 and 10")

    @property
    def uses_image(self) -> bool:
        return self.kind != "text"

    @property
    def uses_text(self) -> bool:
        return self.kind != "image"

    def score(self, image: float, text: float) -> float:
        if self.kind == "image":
            return image
        if self.kind == "text":
            return text
        return image + self.text_weight * text

    def passes(self, score: float, image: float | None, text: float | None, threshold: float) -> bool:
        """Whether a hit clears the absolute ``threshold``. Hybrid: on its cosine alone, or with a full
        text match (every content word of the query); a partial text match only ranks, so one word of
        the query cannot carry a photo of something else over the threshold."""
        if self.kind != "hybrid" or image is None:
            return score >= threshold
        return image >= threshold or (text is not None and text >= FULL_MATCH and score >= threshold)

    def describe(self) -> str:
        return {"image": "score = image cosine",
                "text": "score = text match of caption, tags, category and file name (0-1)",
                "hybrid": f"score = image cosine + {self.text_weight:g} x text match (0-1)"}[self.kind]
