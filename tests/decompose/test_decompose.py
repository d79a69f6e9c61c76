"""Decomposition: the offline and KeyBERT backends on the seed's prompts, and every kind of bad
LLM answer, served by a local OpenAI-compatible server to the real `openai` client."""

from __future__ import annotations

import json
import math

import pytest
from openai_stub import OpenAIStub, Reply, chat_reply, error_reply, json_reply
from typer.testing import CliRunner

from rdm.cli import app
from rdm.decompose import (
    MAX_SUBQUERIES,
    MAX_SUBQUERY_WORDS,
    Decomposition,
    DecompositionError,
    LLMConfig,
    clear_cache,
    decompose,
)
from rdm.errors import RDMError
from rdm.settings import load_settings

PROMPT_A = ("This stylish dog collar combines navy fabric with beige leather details. Featuring a gold-tone "
            "buckle and a matching tag. The dog wearing the collar, sits on a cushion, gazing at its owner "
            "with loving eyes.")
PROMPT_B = ("A cute dog wearing yellow hoodie sits on a stylish sofa, gazing around in a warm and cozy living "
            "room. Soft lighting fills the space, casting gentle shadows on the plush cushions. The atmosphere "
            "feels calm and inviting, with a sense of comfort and warmth.")
# What the seed's LLM answered for prompt B (exp. 3).
SEED_ANSWER = {
    "summary": "A cute dog in a yellow hoodie on a sofa in a cozy living room",
    "subqueries": [
        {"text": "A cute dog wearing a yellow hoodie", "weight": 0.4},
        {"text": "A stylish sofa", "weight": 0.2},
        {"text": "A warm and cozy living room", "weight": 0.2},
        {"text": "Soft lighting casting gentle shadows", "weight": 0.1},
        {"text": "Plush cushions", "weight": 0.1},
    ],
}
LLM_ENV = ("RDM_LLM_BASE_URL", "OPENAI_BASE_URL", "RDM_LLM_API_KEY", "OPENAI_API_KEY", "RDM_LLM_MODEL")


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def stub():
    with OpenAIStub() as server:
        yield server


def config_for(stub: OpenAIStub, **overrides) -> LLMConfig:
    return LLMConfig(**{"base_url": stub.base_url, "model": "stub-model", "api_key": "test-key",
                        "timeout_s": 5.0, "max_retries": 0, **overrides})


def texts(d: Decomposition) -> list[str]:
    return [q.text for q in d.subqueries]


def weights(d: Decomposition) -> list[float]:
    return [q.weight for q in d.subqueries]


def the_one_with(d: Decomposition, *words: str):
    """The single sub-query that mentions all ``words``."""
    hits = [q for q in d.subqueries if all(w in q.text.lower() for w in words)]
    assert len(hits) == 1, f"expected one sub-query with {words} in {texts(d)}"
    return hits[0]


def assert_well_formed(d: Decomposition) -> None:
    assert d.subqueries and d.summary
    assert all(q.weight > 0 for q in d.subqueries)
    assert math.isclose(sum(weights(d)), 1.0, abs_tol=1e-9)
    assert len({q.text.lower() for q in d.subqueries}) == len(d.subqueries)


# --- offline (spaCy) ---

def test_offline_prompt_b_yields_the_five_visual_concepts_with_the_dog_first():
    d = decompose(PROMPT_B, "offline")

    assert d.backend == "offline" and d.fallback_reason is None
    assert_well_formed(d)
    assert len(d.subqueries) == 5
    dog = the_one_with(d, "dog", "yellow hoodie")
    lighting = the_one_with(d, "lighting", "shadows")
    for concept in ("sofa", "living room", "cushions"):
        the_one_with(d, concept)
    assert dog.weight > max(q.weight for q in d.subqueries if q is not dog)
    assert lighting.weight < the_one_with(d, "sofa").weight  # a detail of the scene, not a thing in it
    # moods and "the space" are not things a photo search can find
    for abstract in ("atmosphere", "sense", "comfort", "warmth", "space"):
        assert not any(abstract in t.lower() for t in texts(d))
    assert "dog" in d.summary and "living room" in d.summary


def test_offline_prompt_a_keeps_the_product_details_the_dog_and_the_owner():
    d = decompose(PROMPT_A, "offline")

    assert_well_formed(d)
    collar = the_one_with(d, "stylish dog collar")
    for concept in ("buckle", "tag", "dog wearing the collar", "cushion", "owner"):
        the_one_with(d, concept)
    assert collar.weight == max(weights(d))
    assert "collar" in d.summary


def test_offline_finds_a_subject_the_parse_folded_into_its_verb():
    # the small model parses "pig" as a compound of "munches"
    d = decompose("A pig munches from a bucket in the barn under a bright light bulb.", "offline")

    pig = the_one_with(d, "pig")
    assert pig.text == "pig" and pig.weight == max(weights(d))
    for concept in ("bucket", "barn", "light bulb"):
        the_one_with(d, concept)
    assert d.summary.startswith("pig")


@pytest.mark.parametrize("prompt, subjects", [
    ("A wise owl perches on a wooden chair beside a cup of coffee and a pencil.", ["wise owl"]),
    ("A playful dog naps on a soft pillow next to a steaming coffee cup.", ["playful dog"]),
    ("A horse and a sheep graze beside an old windmill on a sunny farm.", ["horse", "sheep"]),
    ("Organic poultry feed: a hen and a duck wander past a red bucket.", ["hen", "duck"]),
])
def test_offline_a_verb_tagged_as_a_noun_is_not_part_of_its_subject(prompt, subjects):
    # the tagger reads "perches", "naps", "graze", "wander" as the head nouns of "owl perches" etc.
    d = decompose(prompt, "offline")

    assert texts(d)[: len(subjects)] == subjects
    assert weights(d)[0] == weights(d)[len(subjects) - 1] > max(weights(d)[len(subjects):])
    assert not any(verb in d.summary for verb in ("perches", "naps", "graze", "wander"))


@pytest.mark.parametrize("prompt, phrase", [
    ("Organic poultry feed for happy hens.", "organic poultry feed"),
    ("A steaming coffee cup on the table.", "steaming coffee cup"),
])
def test_offline_keeps_compound_nouns_that_could_be_verbs(prompt, phrase):
    assert texts(decompose(prompt, "offline"))[0] == phrase


def test_offline_coordinated_clause_subjects_each_become_a_subquery():
    # "while a hammer and a wrench hang": the parse gives "hammer" a clause's role and "wrench hang"
    d = decompose("A cow stands beside a red bucket while a hammer and a wrench hang on the barn wall.", "offline")

    assert texts(d)[0] == "cow" and weights(d)[0] == max(weights(d))
    hammer, wrench = the_one_with(d, "hammer"), the_one_with(d, "wrench")
    assert (hammer.text, wrench.text) == ("hammer", "wrench")
    assert hammer.weight == wrench.weight > the_one_with(d, "bucket").weight  # subjects of their clause


def test_offline_a_with_phrase_doing_something_of_its_own_is_its_own_subquery():
    d = decompose("A playful dog naps on a soft pillow next to a steaming coffee cup, with windmills "
                  "turning in the background.", "offline")

    assert texts(d)[0] == "playful dog"
    assert "windmills" in texts(d)
    assert not any("background" in t for t in texts(d))
    # an attribute still belongs to its thing
    assert "dog with a red collar" in texts(decompose("A dog with a red collar sits on a sofa.", "offline"))


@pytest.mark.parametrize("prompt, gone, thing", [
    ("A cute cat sits on a wooden chair in front of a medieval castle.", "front", "medieval castle"),
    ("A happy dog relaxes beside a row of solar panels.", "row", "solar panels"),
    ("A pair of shoes lies next to a sleeping puppy.", "pair", "shoes"),
    ("A cat plays with a set of keys on a rug.", "set", "keys"),
    ("A bunch of flowers stands in a glass vase.", "bunch", "flowers"),
    ("A kitten naps in the foreground of a snowy garden.", "foreground", "snowy garden"),
])
def test_offline_place_and_quantity_nouns_give_way_to_what_they_point_at(prompt, gone, thing):
    d = decompose(prompt, "offline")

    assert thing in texts(d)
    assert not any(gone in t.split() for t in texts(d))


def test_offline_a_quantity_subject_hands_its_role_to_what_it_counts():
    d = decompose("A row of solar panels sits on the roof of a barn.", "offline")

    assert texts(d)[0] == "solar panels" and weights(d)[0] == max(weights(d))
    assert d.summary.startswith("solar panels on the roof")
    # without "of", a quantity noun is a thing itself
    assert "old TV set" in texts(decompose("A dog watches an old TV set.", "offline"))


def test_offline_prompt_without_a_concrete_thing_uses_the_whole_prompt():
    d = decompose("A sense of adventure and freedom.", "offline")

    assert texts(d) == ["A sense of adventure and freedom."] and weights(d) == [1.0]
    assert any("whole prompt" in r for r in d.repairs)


def test_offline_caps_the_number_of_subqueries_at_the_highest_weighted():
    d = decompose(PROMPT_A, "offline", max_subqueries=3)

    assert len(d.subqueries) == 3 and "collar" in d.subqueries[0].text
    assert_well_formed(d)


# --- keybert (the seed's baseline) ---

def test_keybert_weights_are_the_normalised_keyword_scores():
    d = decompose(PROMPT_A, "keybert")

    assert d.backend == "keybert"
    assert_well_formed(d)
    assert texts(d)[0] == "collar"  # the product is the most central word
    scores = [q.score for q in d.subqueries]
    assert all(s is not None and 0 < s <= 1 for s in scores)
    assert scores == sorted(scores, reverse=True)
    for q in d.subqueries:
        assert math.isclose(q.weight, q.score / sum(scores), rel_tol=1e-9)
    assert all(t in d.summary for t in texts(d))


# --- the contract: round trip, bad requests, settings ---

@pytest.mark.parametrize("backend", ["offline", "keybert"])
def test_decomposition_round_trips_through_json(backend):
    d = decompose(PROMPT_B, backend)
    data = json.loads(json.dumps(d.to_dict()))

    assert set(data) == {"prompt", "summary", "subqueries", "backend", "fallback_reason", "repairs"}
    assert all({"text", "weight"} <= set(q) for q in data["subqueries"])
    assert Decomposition.from_dict(data) == d


def test_from_dict_rejects_weights_that_do_not_sum_to_one():
    data = decompose(PROMPT_B, "offline").to_dict()
    data["subqueries"][0]["weight"] += 0.5
    with pytest.raises(DecompositionError, match="sum to"):
        Decomposition.from_dict(data)


@pytest.mark.parametrize("prompt, backend, message", [
    ("   ", "offline", "prompt is empty"),
    (PROMPT_B, "gpt", "unknown decomposition backend 'gpt'"),
])
def test_bad_requests_say_what_to_change(prompt, backend, message):
    with pytest.raises(DecompositionError, match=message):
        decompose(prompt, backend)


def test_llm_config_comes_from_settings_and_hides_the_key():
    settings = load_settings(llm_base_url="http://localhost:11434/v1", llm_model="llama3.2", llm_api_key="sk-secret")
    config = LLMConfig.from_settings(settings, timeout_s=7.0, max_retries=0)

    assert (config.base_url, config.model, config.api_key) == ("http://localhost:11434/v1", "llama3.2", "sk-secret")
    assert (config.timeout_s, config.max_retries) == (7.0, 0)
    assert "sk-secret" not in repr(config)


# --- llm: good answers, repaired answers, answers replaced by the offline decomposition ---

def test_llm_answer_is_used_and_the_request_asks_for_structured_json(stub):
    stub.script(json_reply(SEED_ANSWER))
    d = decompose(PROMPT_B, "llm", llm=config_for(stub))

    assert d.backend == "llm" and d.fallback_reason is None and d.repairs == ()
    assert d.summary == SEED_ANSWER["summary"]
    assert texts(d) == [q["text"] for q in SEED_ANSWER["subqueries"]]
    assert weights(d) == pytest.approx([0.4, 0.2, 0.2, 0.1, 0.1])
    assert_well_formed(d)
    sent = stub.requests[-1]
    assert sent["model"] == "stub-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert set(sent["response_format"]["json_schema"]["schema"]["required"]) == {"summary", "subqueries"}
    assert sent["messages"][-1] == {"role": "user", "content": PROMPT_B}


def test_llm_results_are_cached_per_prompt_and_model(stub):
    stub.script(json_reply(SEED_ANSWER))
    first = decompose(PROMPT_B, "llm", llm=config_for(stub))
    again = decompose(PROMPT_B, "llm", llm=config_for(stub))
    assert again == first and len(stub.requests) == 1

    decompose(PROMPT_B, "llm", llm=config_for(stub, model="other-model"))
    decompose(PROMPT_A, "llm", llm=config_for(stub))
    assert [r["model"] for r in stub.requests] == ["stub-model", "other-model", "stub-model"]


def test_a_failed_llm_call_is_not_cached(stub):
    stub.script(error_reply(503, "loading model"))
    assert decompose(PROMPT_B, "llm", llm=config_for(stub)).backend == "offline"

    stub.script(json_reply(SEED_ANSWER))
    assert decompose(PROMPT_B, "llm", llm=config_for(stub)).backend == "llm"


LONG = ("a small fluffy white dog with a red collar sitting on a green velvet armchair next to a window "
        "in the late afternoon sun")
NAN = float("nan")


@pytest.mark.parametrize("answer, repair, expected", [
    pytest.param({"summary": "dog", "subqueries": [{"text": "dog", "weight": 0.6}, {"text": "sofa", "weight": 0.4},
                                                  {"text": "lamp", "weight": 0.3}]},
                 "renormalised weights that summed to 1.3",
                 [("dog", 0.6 / 1.3), ("sofa", 0.4 / 1.3), ("lamp", 0.3 / 1.3)], id="weights-sum-not-1"),
    pytest.param({"summary": "dog", "subqueries": [{"text": "A stylish sofa", "weight": 0.3},
                                                  {"text": "dog", "weight": 0.5},
                                                  {"text": "a Stylish sofa.", "weight": 0.2}]},
                 "merged duplicate", [("A stylish sofa", 0.5), ("dog", 0.5)], id="duplicates"),
    pytest.param({"summary": "dog", "subqueries": [{"text": LONG, "weight": 0.7}, {"text": "sofa", "weight": 0.3}]},
                 "truncated", [(" ".join(LONG.split()[:MAX_SUBQUERY_WORDS]), 0.7), ("sofa", 0.3)], id="over-long"),
    pytest.param({"summary": "dog", "subqueries": [{"text": "dog", "weight": 0.5}, {"text": "sofa", "weight": 0},
                                                  {"text": "lamp", "weight": -0.2}, {"text": "rug", "weight": NAN},
                                                  {"text": "toy", "weight": math.inf},
                                                  {"text": "cat", "weight": "0.3"}, {"text": "bowl"},
                                                  {"text": "", "weight": 0.1}, {"text": "plant", "weight": 0.5}]},
                 "dropped 'lamp': its weight -0.2 is not a positive number", [("dog", 0.5), ("plant", 0.5)],
                 id="zero-negative-nan-missing-weights"),
    pytest.param({"subqueries": [{"text": "dog", "weight": 0.75}, {"text": "sofa", "weight": 0.25}]},
                 "no summary", [("dog", 0.75), ("sofa", 0.25)], id="missing-summary"),
    pytest.param({"summary": "dog", "subqueries": [{"text": f"thing {n}", "weight": 1 + n} for n in range(12)]},
                 f"kept the {MAX_SUBQUERIES} highest-weighted of 12",
                 [(f"thing {n}", (1 + n) / sum(range(5, 13))) for n in range(11, 3, -1)], id="too-many"),
])
def test_llm_answers_that_can_be_repaired_are_repaired_and_say_so(stub, answer, repair, expected):
    stub.script(json_reply(answer))
    d = decompose(PROMPT_B, "llm", llm=config_for(stub))

    assert d.backend == "llm" and d.fallback_reason is None
    assert any(repair in r for r in d.repairs), d.repairs
    assert [(q.text, pytest.approx(q.weight)) for q in d.subqueries] == [(t, pytest.approx(w)) for t, w in expected]
    assert_well_formed(d)


@pytest.mark.parametrize("reply, timeout_s, reason", [
    (error_reply(500, "CUDA out of memory"), 5.0, "answered HTTP 500: CUDA out of memory"),
    (error_reply(401, "Incorrect API key provided", kind="invalid_request_error"), 5.0,
     "refused the API key (HTTP 401: Incorrect API key provided): check RDM_LLM_API_KEY"),
    (error_reply(404, "model 'stub-model' not found", kind="not_found_error"), 5.0,
     "answered HTTP 404: model 'stub-model' not found"),
    (json_reply(SEED_ANSWER, delay_s=3.0), 0.3, "did not answer within 0.3 s"),
    (chat_reply(None, refusal="I can't help with that request."), 5.0,
     "refused: I can't help with that request."),
    (chat_reply('{"summary": "a dog", "subqueries": [{"text": "dog", "wei'), 5.0, "not valid JSON"),
    (chat_reply("Sorry, I cannot split this prompt."), 5.0, "not valid JSON (Expecting value): Sorry, I cannot"),
    (chat_reply('{"summary": "a dog", "subqueries": [', finish_reason="length"), 5.0, "ran out of tokens"),
    (json_reply({"summary": "a dog", "subqueries": []}), 5.0, "empty 'subqueries' list"),
    (json_reply({"summary": "a dog", "queries": ["dog"]}), 5.0, "no 'subqueries' list"),
    (json_reply({"summary": "a dog", "subqueries": "dog, sofa"}), 5.0, "'subqueries' is not a list"),
    (json_reply(["dog", "sofa"]), 5.0, "not a JSON object"),
    (json_reply({"summary": "a dog", "subqueries": [{"text": "dog", "weight": 0}, {"text": "sofa", "weight": -1}]}),
     5.0, "no sub-query in the LLM answer has both a text and a positive weight"),
    (chat_reply(""), 5.0, "empty message"),
    (Reply(200, "<html>Welcome to nginx!</html>"), 5.0, "did not answer with JSON"),
], ids=["500", "401", "404-model", "timeout", "refusal", "malformed-json", "prose", "cut-off", "empty-list",
        "missing-field", "wrong-type", "not-an-object", "no-positive-weight", "empty-message", "html-page"])
def test_llm_trouble_falls_back_to_offline_and_says_why(stub, reply, timeout_s, reason):
    stub.script(reply)
    d = decompose(PROMPT_B, "llm", llm=config_for(stub, timeout_s=timeout_s))

    assert d.backend == "offline"
    assert reason in d.fallback_reason
    assert d.subqueries == decompose(PROMPT_B, "offline").subqueries
    assert_well_formed(d)


def test_unreachable_llm_server_falls_back():
    with OpenAIStub() as gone:
        config = config_for(gone)
    d = decompose(PROMPT_B, "llm", llm=config)

    assert d.backend == "offline" and "could not reach the LLM server at" in d.fallback_reason


def test_unconfigured_llm_falls_back_and_says_what_to_set(monkeypatch):
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    d = decompose(PROMPT_B, "llm")

    assert d.backend == "offline"
    assert "no LLM is configured" in d.fallback_reason and "RDM_LLM_BASE_URL" in d.fallback_reason


# --- the CLI ---

def test_cli_json_prints_only_the_decomposition():
    result = CliRunner().invoke(app, ["decompose", PROMPT_B, "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert Decomposition.from_dict(data) == decompose(PROMPT_B, "offline")


def test_cli_table_shows_weights_and_subqueries():
    result = CliRunner().invoke(app, ["decompose", PROMPT_B, "--backend", "keybert"])

    assert result.exit_code == 0, result.output
    d = decompose(PROMPT_B, "keybert")
    assert "backend: keybert" in result.stdout
    for q in d.subqueries:
        assert f"{q.weight:7.3f}  {q.score:6.3f}  {q.text}" in result.stdout


def test_cli_llm_backend_uses_the_server_from_the_environment(stub, monkeypatch):
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RDM_LLM_BASE_URL", stub.base_url)
    monkeypatch.setenv("RDM_LLM_MODEL", "llama3.2")
    stub.script(json_reply(SEED_ANSWER))
    result = CliRunner().invoke(app, ["decompose", PROMPT_B, "--backend", "llm", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "llm"
    assert stub.requests[-1]["model"] == "llama3.2"


def test_cli_shows_why_the_llm_was_not_used(stub, monkeypatch):
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RDM_LLM_BASE_URL", stub.base_url)
    stub.script(error_reply(404, "model 'gpt-4o-mini' not found"))
    result = CliRunner().invoke(app, ["decompose", PROMPT_B, "--backend", "llm"])

    assert result.exit_code == 0, result.output
    assert "backend: offline" in result.stdout
    assert "LLM not used:" in result.stdout and "HTTP 404: model 'gpt-4o-mini' not found" in result.stdout


def test_cli_unknown_backend_is_an_error():
    result = CliRunner().invoke(app, ["decompose", PROMPT_B, "--backend", "gpt"])

    assert result.exit_code == 1
    assert "unknown decomposition backend 'gpt'" in result.stderr


def answer_with_weights(*pairs) -> Reply:
    return json_reply({"summary": "a dog on a sofa", "subqueries": [{"text": t, "weight": w} for t, w in pairs]})


@pytest.mark.parametrize("reply, kept", [
    (answer_with_weights(("a dog", 1e308), ("a sofa", 1e308)), ["a dog", "a sofa"]),
    (answer_with_weights(("a dog", 1e308), ("a sofa", 1)), ["a dog"]),
    (answer_with_weights(("a dog", 1.0), ("a sofa", 1e-17)), ["a dog"]),
    (answer_with_weights(("A dog.", 1e308), ("a dog", 1e308), ("a sofa", 1e308)), ["A dog.", "a sofa"]),
    (chat_reply("[" * 100_000 + "]" * 100_000), None),
], ids=["huge-weights", "huge-and-one", "negligible-weight", "huge-duplicates", "nested-100k"])
def test_extreme_llm_numbers_are_repaired_or_replaced_never_a_crash(stub, monkeypatch, reply, kept):
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RDM_LLM_BASE_URL", stub.base_url)
    monkeypatch.setenv("RDM_LLM_RETRIES", "0")
    stub.script(reply)
    result = CliRunner().invoke(app, ["decompose", PROMPT_B, "--backend", "llm", "--json"])
    assert result.exit_code == 0, result.output
    d = Decomposition.from_dict(json.loads(result.stdout))
    assert_well_formed(d)
    if kept is None:
        assert d.backend == "offline" and "nested too deeply" in d.fallback_reason
    else:
        assert d.backend == "llm" and texts(d) == kept


def test_a_silent_llm_server_is_reported_with_the_real_total_wait():
    from rdm.decompose import LLMConfig

    config = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=30, max_retries=2)
    assert config.patience == "30 s, tried 3 times (about 90 s in all)"
    settings = load_settings()
    assert LLMConfig.from_settings(settings).timeout_s == settings.llm_timeout_s


def test_llm_timeout_and_retries_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RDM_LLM_TIMEOUT_S", "4.5")
    monkeypatch.setenv("RDM_LLM_RETRIES", "0")
    config = LLMConfig.from_settings(load_settings())
    assert (config.timeout_s, config.max_retries) == (4.5, 0)
    monkeypatch.setenv("RDM_LLM_TIMEOUT_S", "soon")
    with pytest.raises(RDMError, match="RDM_LLM_TIMEOUT_S=.soon. is not a number"):
        load_settings()
