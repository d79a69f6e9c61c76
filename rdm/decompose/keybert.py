"""KeyBERT keywords weighted by their similarity scores: the seed's baseline (exp1)."""

from __future__ import annotations

import functools
from typing import Any

from rdm.decompose.result import Decomposition, assemble, whole_prompt
from rdm.errors import DecompositionError

KEYBERT_TOP_N = 5


@functools.cache
def _keybert_model() -> Any:
    from rdm.encoders import sentence_model
    from rdm.errors import WeightsMissing

    try:
        from keybert import KeyBERT
    except ImportError as exc:
        raise DecompositionError(f"KeyBERT is missing ({exc.name}): pip install keybert") from exc
    try:
        return KeyBERT(model=sentence_model())  # the same MiniLM instance the ConSE encoder uses
    except WeightsMissing as exc:
        raise DecompositionError(str(exc)) from exc


def _keywords(prompt: str, *, top_n: int = KEYBERT_TOP_N,
              ngram_range: tuple[int, int] = (1, 1)) -> list[tuple[str, float]]:
    """KeyBERT with its default settings, as the seed's baseline used it."""
    return [(k, float(s)) for k, s in _keybert_model().extract_keywords(
        prompt, keyphrase_ngram_range=ngram_range, stop_words="english", top_n=top_n)]


@functools.lru_cache(maxsize=256)
def keybert_decomposition(prompt: str, max_subqueries: int) -> Decomposition:
    keywords = [(k, s) for k, s in _keywords(prompt, top_n=min(KEYBERT_TOP_N, max_subqueries)) if s > 0]
    if not keywords:
        return whole_prompt(prompt, "keybert", "KeyBERT found no keyword: used the whole prompt")
    return assemble(prompt, ", ".join(k for k, _ in keywords), [(k, s, s) for k, s in keywords], "keybert",
                     max_subqueries=max_subqueries)

