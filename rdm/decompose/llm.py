"""The LLM decomposer: any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp) with
structured JSON output. Its answer is untrusted: it is repaired where the intent is clear
(renormalise, dedupe, truncate), and an answer that cannot be used raises ``LLMFailure`` so that
the offline decomposition stands in, with the reason kept."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from rdm.decompose.result import Candidate, Decomposition, assemble
from rdm.common.redact import public_url, redact, refuse_credentials
from rdm.settings import Settings

SYSTEM_PROMPT = """\
You split an advertising image prompt into sub-queries for an image search engine.
Each sub-query names one concrete, visible thing from the prompt (the subject or product, \
other objects, the setting, the lighting) with its attributes, in a few words, like a photo \
caption. Leave out moods and abstract feelings: no photo search can find them.
Give each sub-query an importance weight above 0; the main subject or product gets the \
highest weight, and the weights sum to 1. Use at most {max_subqueries} sub-queries.
Also give a summary: the whole prompt as one short image-search query of at most 15 words."""

RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "subqueries": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "weight": {"type": "number"}},
                "required": ["text", "weight"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["summary", "subqueries"],
    "additionalProperties": False,
}


class LLMFailure(Exception):
    """The LLM gave no usable answer; the message says why, in plain words."""


@dataclass(frozen=True)
class LLMConfig:
    base_url: str | None  # None: api.openai.com
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    max_retries: int = 2
    temperature: float | None = 0.0  # None leaves it out (some reasoning models reject it)

    def __post_init__(self) -> None:
        refuse_credentials(self.base_url, "LLM base URL (RDM_LLM_BASE_URL)", "RDM_LLM_API_KEY")

    @property
    def configured(self) -> bool:
        # A local server (Ollama, vLLM, llama.cpp) needs a base URL but no key.
        return bool(self.base_url or self.api_key)

    @property
    def where(self) -> str:
        return public_url(self.base_url) if self.base_url else "api.openai.com"

    @property
    def patience(self) -> str:
        """How long a silent server is waited for, all attempts together (the client backs off a little)."""
        attempts = self.max_retries + 1
        return (f"{self.timeout_s:g} s" if attempts == 1 else
                f"{self.timeout_s:g} s, tried {attempts} times (about {self.timeout_s * attempts:g} s in all)")

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout_s: float | None = None,
                      max_retries: int | None = None) -> "LLMConfig":
        return cls(base_url=settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key,
                   timeout_s=settings.llm_timeout_s if timeout_s is None else timeout_s,
                   max_retries=settings.llm_retries if max_retries is None else max_retries)


@functools.lru_cache(maxsize=256)  # an LLMFailure is not cached: the next call asks again
def llm_decomposition(prompt: str, config: LLMConfig, max_subqueries: int) -> Decomposition:
    # the answer is saved with runs and in their PNGs: a server that echoes the key must not put it there
    answer = redact(_ask_llm(prompt, config, max_subqueries), extra=(config.api_key,))
    summary, candidates, repairs = _read_answer(answer)
    return assemble(prompt, summary, candidates, "llm", repairs=repairs, max_subqueries=max_subqueries,
                     report_renormalised=True)


def _ask_llm(prompt: str, config: LLMConfig, max_subqueries: int) -> str:
    """The raw JSON text the model answered, or an LLMFailure saying why there is none."""
    import openai

    # Local servers ignore the key, but the client insists on having one.
    client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or "not-needed",
                           timeout=config.timeout_s, max_retries=config.max_retries)
    extra = {} if config.temperature is None else {"temperature": config.temperature}
    try:
        with client:
            completion = client.chat.completions.create(
                model=config.model,
                messages=[{"role": "system", "content": SYSTEM_PROMPT.format(max_subqueries=max_subqueries)},
                          {"role": "user", "content": prompt}],
                response_format={"type": "json_schema", "json_schema": {
                    "name": "decomposition", "strict": True, "schema": RESPONSE_SCHEMA}},
                **extra,
            )
    except openai.APITimeoutError as exc:
        raise LLMFailure(f"the LLM server at {config.where} did not answer within {config.patience}: check the "
                         "server, or set RDM_LLM_TIMEOUT_S / RDM_LLM_RETRIES") from exc
    except RecursionError as exc:  # a body nested thousands deep
        raise LLMFailure(f"the LLM server at {config.where} answered with JSON nested too deeply to read") from exc
    except openai.APIConnectionError as exc:
        raise LLMFailure(f"could not reach the LLM server at {config.where}: {exc.__cause__ or exc}") from exc
    except openai.AuthenticationError as exc:
        raise LLMFailure(f"the LLM server at {config.where} refused the API key (HTTP {exc.status_code}: "
                          f"{_server_message(exc)}): check RDM_LLM_API_KEY") from exc
    except openai.APIStatusError as exc:
        raise LLMFailure(f"the LLM server at {config.where} answered HTTP {exc.status_code}: "
                          f"{_server_message(exc)}") from exc
    except openai.OpenAIError as exc:
        raise LLMFailure(f"the LLM call to {config.where} failed: {exc}") from exc
    except json.JSONDecodeError as exc:  # e.g. a proxy's HTML page with status 200
        raise LLMFailure(f"the server at {config.where} did not answer with JSON: "
                          "is it an OpenAI-compatible endpoint (usually ending in /v1)?") from exc

    choices = getattr(completion, "choices", None)
    if not choices:
        raise LLMFailure(f"the LLM server at {config.where} answered without any message")
    message = choices[0].message
    if getattr(message, "refusal", None):
        raise LLMFailure(f"the model {config.model!r} refused: {_snippet(message.refusal)}")
    if not message.content:
        raise LLMFailure(f"the model {config.model!r} answered with an empty message")
    if choices[0].finish_reason == "length":
        raise LLMFailure(f"the model {config.model!r} ran out of tokens before finishing its answer")
    return message.content


def _read_answer(content: str) -> tuple[str | None, list[Candidate], list[str]]:
    """Validate the model's JSON: drop unusable sub-queries (recorded), fail when none is left."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise LLMFailure(f"the LLM answer is not valid JSON ({exc.msg}): {_snippet(content)}") from exc
    except RecursionError as exc:
        raise LLMFailure("the LLM answer is JSON nested too deeply to be a decomposition") from exc
    if not isinstance(data, dict):
        raise LLMFailure(f"the LLM answer is not a JSON object with a summary and sub-queries: {_snippet(content)}")
    raw = data.get("subqueries")
    if not isinstance(raw, list):
        raise LLMFailure("the LLM answer has no 'subqueries' list" if raw is None
                          else f"the LLM answer's 'subqueries' is not a list: {_snippet(json.dumps(raw))}")
    if not raw:
        raise LLMFailure("the LLM answer has an empty 'subqueries' list")

    candidates, repairs = [], []
    for n, entry in enumerate(raw, 1):
        text = entry.get("text") if isinstance(entry, dict) else None
        weight = entry.get("weight") if isinstance(entry, dict) else None
        if not isinstance(text, str) or not text.strip():
            repairs.append(f"dropped sub-query {n}: it has no text")
        elif not _is_positive_number(weight):
            repairs.append(f"dropped {text.strip()!r}: its weight {weight!r} is not a positive number")
        else:
            candidates.append((" ".join(text.split()), float(weight), None))
    if not candidates:
        raise LLMFailure(f"no sub-query in the LLM answer has both a text and a positive weight "
                          f"({'; '.join(repairs)})")
    summary = data.get("summary")
    return (" ".join(summary.split()) if isinstance(summary, str) else None), candidates, repairs


def _is_positive_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _server_message(exc: Any) -> str:
    """The server's own words: the OpenAI-style error message, else the raw body."""
    body = exc.body
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return _snippet(message or (body if isinstance(body, str) and body else exc.message))


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

