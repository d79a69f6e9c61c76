"""A decomposition (weighted sub-queries and a summary) and how every backend assembles one.

Whatever a backend proposes is shortened to a few words per sub-query, merged where two say the
same, cut to the most important ones, and weighted to sum to 1 (Kandinsky's interpolate does not
normalise); each repair is recorded so the user can see what was changed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from rdm.errors import DecompositionError, PlanError
from rdm.plan import normalise, validate_weights

MAX_SUBQUERIES = 8
MAX_SUBQUERY_WORDS = 12  # a sub-query names one thing; CLIP reads at most 77 tokens anyway
MAX_SUMMARY_WORDS = 24
MIN_WEIGHT = 1e-3  # of the total: below this a sub-query cannot condition anything


@dataclass(frozen=True)
class SubQuery:
    text: str
    weight: float  # positive; all weights of a decomposition sum to 1
    score: float | None = None  # raw keyword score (KeyBERT), if any


@dataclass(frozen=True)
class Decomposition:
    prompt: str
    summary: str
    subqueries: tuple[SubQuery, ...]
    backend: str  # llm | offline | keybert
    fallback_reason: str | None = None  # why the LLM answer was not used (backend is then offline)
    repairs: tuple[str, ...] = ()  # what was repaired: renormalised, merged, truncated, dropped

    def __post_init__(self) -> None:
        validate_weights([q.weight for q in self.subqueries], what=f"decomposition of {self.prompt!r}")

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "summary": self.summary,
            "subqueries": [
                {"text": q.text, "weight": q.weight, **({"score": q.score} if q.score is not None else {})}
                for q in self.subqueries
            ],
            "backend": self.backend,
            "fallback_reason": self.fallback_reason,
            "repairs": list(self.repairs),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Decomposition":
        try:
            return cls(
                prompt=data["prompt"],
                summary=data["summary"],
                subqueries=tuple(SubQuery(**q) for q in data["subqueries"]),
                backend=data["backend"],
                fallback_reason=data.get("fallback_reason"),
                repairs=tuple(data.get("repairs", ())),
            )
        except (KeyError, TypeError, PlanError) as exc:
            raise DecompositionError(f"not a decomposition: {exc}") from exc



Candidate = tuple[str, float, "float | None"]  # text, positive share, raw score


def assemble(prompt: str, summary: str | None, candidates: Sequence[Candidate], backend: str, *,
              repairs: Sequence[str] = (), max_subqueries: int = MAX_SUBQUERIES,
              report_renormalised: bool = False) -> Decomposition:
    repairs = list(repairs)

    # 0. Shares relative to the largest: any finite positive numbers (1e308 included) then add up
    #    without overflowing.
    top = max(share for _, share, _ in candidates)
    candidates = [(text, share / top, score) for text, share, score in candidates]

    # 1. Shorten over-long texts at a word boundary.
    shortened = []
    for text, share, score in candidates:
        short = clip_words(text, MAX_SUBQUERY_WORDS)
        if short != text:
            repairs.append(f"truncated {text!r} to {MAX_SUBQUERY_WORDS} words")
        shortened.append((short, share, score))

    # 2. Merge duplicates (case, articles and punctuation aside), adding up their weights.
    merged: dict[str, list] = {}
    for text, share, score in shortened:
        key = dedupe_key(text)
        if key in merged:
            repairs.append(f"merged duplicate sub-query {text!r} into {merged[key][0]!r}")
            merged[key][1] += share
        else:
            merged[key] = [text, share, score]

    # 3. Keep the most important ones, most important first.
    ranked = sorted(merged.values(), key=lambda c: -c[1])
    if len(ranked) > max_subqueries:
        dropped = ", ".join(repr(c[0]) for c in ranked[max_subqueries:])
        repairs.append(f"kept the {max_subqueries} highest-weighted of {len(ranked)} sub-queries, "
                       f"dropped {dropped}")
        ranked = ranked[:max_subqueries]

    # 4. A share too small to matter is dropped: it would round to a weight of 0.
    total = math.fsum(c[1] for c in ranked)
    negligible = [c for c in ranked[1:] if c[1] / total < MIN_WEIGHT]
    for text, share, _ in negligible:
        repairs.append(f"dropped {text!r}: its weight ({share / total:.2g} of the total) is negligible")
    ranked = [c for c in ranked if not any(c is n for n in negligible)]

    # 5. Weights sum to 1 (Kandinsky's interpolate does not normalise).
    if report_renormalised and abs(total * top - 1.0) > 1e-6:
        repairs.append(f"renormalised weights that summed to {total * top:.4g}")
    weights = normalise([c[1] for c in ranked])

    # 6. The summary: given, else the top sub-query.
    if not summary:
        summary = ranked[0][0]
        repairs.append("the answer had no summary: used the top sub-query")
    short_summary = clip_words(summary, MAX_SUMMARY_WORDS)
    if short_summary != summary:
        repairs.append(f"truncated the summary to {MAX_SUMMARY_WORDS} words")

    subqueries = tuple(SubQuery(text, w, score) for (text, _, score), w in zip(ranked, weights))
    return Decomposition(prompt=prompt, summary=short_summary, subqueries=subqueries,
                         backend=backend, repairs=tuple(repairs))


def clip_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]).rstrip(",;:")


def dedupe_key(text: str) -> str:
    words = re.findall(r"\w+", text.lower())
    while words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def whole_prompt(prompt: str, backend: str, why: str) -> Decomposition:
    return assemble(prompt, prompt, [(prompt, 1.0, None)], backend, repairs=[why])

