"""Split an ad prompt into weighted, retrievable sub-queries.

Three backends, one module each:
- ``llm`` (rdm/decompose/llm.py): any OpenAI-compatible chat server with structured JSON output;
  whatever it gets wrong is repaired or replaced by the offline decomposition, with the reason kept.
- ``offline`` (rdm/decompose/offline.py): spaCy noun phrases with what is attached to them.
- ``keybert`` (rdm/decompose/keybert.py): KeyBERT keywords weighted by their scores (the seed's baseline).
"""

from __future__ import annotations

from dataclasses import replace

from rdm.decompose.keybert import keybert_decomposition
from rdm.decompose.llm import LLMConfig, LLMFailure, llm_decomposition
from rdm.decompose.offline import offline_decomposition
from rdm.decompose.result import MAX_SUBQUERIES, MAX_SUBQUERY_WORDS, MAX_SUMMARY_WORDS, Decomposition, SubQuery
from rdm.errors import DecompositionError
from rdm.common.redact import redact
from rdm.settings import load_settings

__all__ = ["BACKENDS", "MAX_SUBQUERIES", "MAX_SUBQUERY_WORDS", "MAX_SUMMARY_WORDS", "Decomposition",
           "DecompositionError", "LLMConfig", "SubQuery", "clear_cache", "decompose"]

BACKENDS = ("llm", "offline", "keybert")


def decompose(prompt: str, backend: str = "offline", *, llm: LLMConfig | None = None,
              max_subqueries: int = MAX_SUBQUERIES, budget: int | None = None) -> Decomposition:
    """Split ``prompt`` into weighted sub-queries; results are cached per (prompt, backend, model).

    ``budget`` (a run's reference budget) also caps the sub-queries: with more sub-queries than
    references, some concept would lose its only slot; the lightest are dropped, and the
    decomposition's ``repairs`` say which.

    With ``backend="llm"`` no LLM trouble raises: the offline decomposition comes back instead,
    its ``fallback_reason`` saying what went wrong. ``llm`` defaults to the environment's settings.
    """
    # 1. Check the request.
    prompt = " ".join(prompt.split())
    if not prompt:
        raise DecompositionError("nothing to decompose: the prompt is empty")
    if backend not in BACKENDS:
        raise DecompositionError(f"unknown decomposition backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if budget is not None:
        max_subqueries = min(max_subqueries, budget)
    if max_subqueries < 1:
        raise DecompositionError(f"max_subqueries must be at least 1, got {max_subqueries}")

    # 2. The local backends are deterministic.
    if backend == "offline":
        return offline_decomposition(prompt, max_subqueries)
    if backend == "keybert":
        return keybert_decomposition(prompt, max_subqueries)

    # 3. The LLM, with the offline decomposer standing in for whatever it gets wrong.
    config = llm if llm is not None else LLMConfig.from_settings(load_settings())
    if not config.configured:
        reason = ("no LLM is configured: set RDM_LLM_BASE_URL to an OpenAI-compatible server "
                  "(e.g. http://localhost:11434/v1 for Ollama) or RDM_LLM_API_KEY for OpenAI")
    else:
        try:
            return llm_decomposition(prompt, config, max_subqueries)
        except LLMFailure as exc:  # saved with runs and shown: never the key, never URL credentials
            reason = redact(exc, extra=(config.api_key,))
    return replace(offline_decomposition(prompt, max_subqueries), fallback_reason=reason)


def clear_cache() -> None:
    """Forget cached decompositions (the loaded models stay)."""
    for cached in (offline_decomposition, keybert_decomposition, llm_decomposition):
        cached.cache_clear()

