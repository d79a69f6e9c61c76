"""The conditioning plan: the weighted items that condition Kandinsky 2.2's prior.

Kandinsky's ``interpolate`` is a plain weighted sum with no normalisation, so a plan's weights
must be positive and sum to 1 or the blended embedding's scale drifts. Every constructor here
enforces that; the generator and the run record reuse the same object (JSON round trip).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence
from rdm.errors import PlanError

ItemKind = Literal["text", "image"]
WEIGHT_TOLERANCE = 1e-6
# Each text item is one prior run (batched), each image item one CLIP image encoding: a plan's size
# is its cost, so it is bounded like every other setting of a request.
MAX_PLAN_ITEMS = 64
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class PlanItem:
    kind: ItemKind
    weight: float
    source: str  # prompt | summary | subquery | keyword | reference | input
    text: str | None = None  # text items
    image_id: int | None = None  # retrieved references (DB id)
    path: str | None = None  # advertiser's input product photos
    subquery: str | None = None  # which sub-query a reference answers
    score: float | None = None  # cosine score of a reference / keyword score

    def label(self) -> str:
        if self.kind == "text":
            return f"{self.source}: {self.text}"
        if self.image_id is not None:
            return f"{self.source}: image #{self.image_id}"
        return f"{self.source}: {self.path}"


@dataclass(frozen=True)
class ConditioningPlan:
    prompt: str
    items: tuple[PlanItem, ...]
    mode: str = "none"  # none | full | subquery | subquery+filter | exp1..exp4
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. sub-queries dropped as not covered

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_TEXT_CHARS:
            raise PlanError(f"the plan's prompt must be text of at most {MAX_TEXT_CHARS} characters")
        if len(self.items) > MAX_PLAN_ITEMS:
            raise PlanError(f"plan '{self.mode}' has {len(self.items)} items, at most {MAX_PLAN_ITEMS} are allowed")
        validate_weights([item.weight for item in self.items], what=f"plan '{self.mode}'")
        for item in self.items:
            if item.text is not None and (not isinstance(item.text, str) or len(item.text) > MAX_TEXT_CHARS):
                raise PlanError(f"a text item must be text of at most {MAX_TEXT_CHARS} characters")
            if item.image_id is not None and (isinstance(item.image_id, bool) or not isinstance(item.image_id, int)):
                raise PlanError(f"an image id must be a whole number, got {item.image_id!r}")
            if item.path is not None and not isinstance(item.path, str):
                raise PlanError(f"an image path must be text, got {item.path!r}")
            if item.kind == "text" and not item.text:
                raise PlanError(f"text item from {item.source!r} has no text")
            if item.kind == "image" and item.image_id is None and not item.path:
                raise PlanError(f"image item from {item.source!r} has neither an image id nor a path")
            if item.kind not in ("text", "image"):
                raise PlanError(f"unknown plan item kind {item.kind!r}: expected 'text' or 'image'")
            if not all(isinstance(t, str) and len(t) <= MAX_TEXT_CHARS for t in (item.source, item.subquery or "")):
                raise PlanError("an item's source and sub-query must be text")
            if item.score is not None and (isinstance(item.score, bool) or not isinstance(item.score, numbers.Real)
                                           or not math.isfinite(item.score)):
                raise PlanError(f"an item's score must be a finite number, got {item.score!r}")
        if not isinstance(self.mode, str) or len(self.notes) > MAX_PLAN_ITEMS or not all(
                isinstance(n, str) and len(n) <= MAX_TEXT_CHARS for n in self.notes):
            raise PlanError(f"the plan's mode and notes must be text (at most {MAX_PLAN_ITEMS} notes)")

    @property
    def text_items(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.kind == "text")

    @property
    def image_items(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.kind == "image")

    @property
    def reference_ids(self) -> tuple[int, ...]:
        return tuple(i.image_id for i in self.items if i.image_id is not None)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "mode": self.mode,
            "notes": list(self.notes),
            "items": [{k: v for k, v in asdict(i).items() if v is not None} for i in self.items],
        }

    def to_json(self, **kwargs: object) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "ConditioningPlan":
        try:
            items = tuple(PlanItem(**item) for item in data["items"])
            return cls(prompt=data["prompt"], items=items, mode=data.get("mode", "none"),
                       notes=tuple(data.get("notes", ())))
        except (KeyError, TypeError) as exc:
            raise PlanError(f"not a conditioning plan: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "ConditioningPlan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def validate_weights(weights: Sequence[float], what: str = "weights") -> None:
    if not weights:
        raise PlanError(f"{what}: no items to condition on")
    for w in weights:
        if isinstance(w, bool) or not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
            raise PlanError(f"{what}: every weight must be a positive number, got {w!r}")
    total = math.fsum(weights)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise PlanError(f"{what}: weights sum to {total:.6f}, they must sum to 1")


def normalise(shares: Sequence[float], total: float = 1.0) -> list[float]:
    """Scale positive shares so they sum to ``total``; the last one absorbs rounding."""
    s = math.fsum(shares)
    if not shares or s <= 0 or not math.isfinite(s):
        raise PlanError(f"cannot normalise shares {list(shares)!r}: need positive finite values")
    out = [total * x / s for x in shares]
    out[-1] = total - math.fsum(out[:-1])
    return out


def prompt_only_plan(prompt: str) -> ConditioningPlan:
    """The plain-Kandinsky reference point: the prompt alone, no retrieval."""
    return ConditioningPlan(prompt=prompt, mode="none",
                            items=(PlanItem(kind="text", weight=1.0, source="prompt", text=prompt),))
