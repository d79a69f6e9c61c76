"""Retrieval modes, the cosine filter, budgets and the conditioning plans of the seed's four
experiments, on a small demo-photo DB with the offline ConSE encoder."""

from __future__ import annotations

import json
import math

import pytest
from openai_stub import OpenAIStub, json_reply
from retrieval_db import MIRRORED_DOG, ids_by_name
from typer.testing import CliRunner

from rdm.cli import app
from rdm.decompose import Decomposition, LLMConfig, SubQuery
from rdm.errors import RetrievalError
from rdm.plan import ConditioningPlan
from rdm.retrieve import (
    BELOW_ABSOLUTE,
    BELOW_RELATIVE,
    OVER_BUDGET,
    SAME_IMAGE,
    FilterSettings,
    Fusion,
    plan_for,
)
from rdm.settings import DEMO_PHOTOS

DOG_PHOTO = str(DEMO_PHOTOS / "images" / "gcompris-farm-dog.jpg")
CAT_PHOTO = str(DEMO_PHOTOS / "images" / "gcompris-farm-cat.jpg")
PROMPT = "A dog naps on a soft pillow next to solar panels."
runner = CliRunner()


@pytest.fixture(scope="module")
def names(conse_store):
    return {i: name for name, i in ids_by_name(conse_store).items()}


def table(*rows: tuple[str, float]) -> Decomposition:
    """A sub-query table as a user would type it in the dashboard."""
    return Decomposition(prompt=" and ".join(t for t, _ in rows), summary=rows[0][0],
                         subqueries=tuple(SubQuery(t, w) for t, w in rows), backend="offline")


def total(plan: ConditioningPlan) -> float:
    return math.fsum(i.weight for i in plan.items)


# --- modes ---

def test_full_mode_searches_the_whole_prompt_once(conse_store, names):
    result = plan_for(conse_store, "a dog", "full", k=3)
    assert result.decomposition is None and len(result.hits) == 3
    assert all(h.subquery is None for h in result.hits) and result.kept == result.hits
    assert {names[h.id] for h in result.kept[:2]} & {"lomiri-friends.jpg", "gcompris-farm-dog.jpg", MIRRORED_DOG}
    assert [i.source for i in result.plan.items] == ["prompt", "reference", "reference", "reference"]


def test_subquery_mode_tags_each_hit_with_the_subquery_it_answers(conse_store, names):
    subqueries = table(("a dog", 0.5), ("a pillow", 0.25), ("solar panels", 0.25))
    result = plan_for(conse_store, PROMPT, "subquery", k=2, decomposition=subqueries)
    assert result.decomposition is subqueries  # a user-edited table replaces the decomposer
    assert [h.subquery for h in result.hits] == ["a dog"] * 2 + ["a pillow"] * 2 + ["solar panels"] * 2
    best = {h.subquery: names[h.id] for h in reversed(result.hits)}
    assert best["a pillow"] == "gcompris-categories-others-pillow.jpg"
    assert best["solar panels"].startswith("gcompris-categories-renewable-solar")
    assert result.kept == result.hits and result.filtered == () and result.filters is None


def test_mode_none_is_the_prompt_alone(conse_store):
    result = plan_for(conse_store, PROMPT, "none")
    assert result.hits == () and [(i.source, i.weight) for i in result.plan.items] == [("prompt", 1.0)]


def test_llm_subqueries_drive_retrieval(conse_store):
    answer = {"summary": "a dog on a pillow", "subqueries": [{"text": "a sleeping dog", "weight": 0.7},
                                                             {"text": "a soft pillow", "weight": 0.3}]}
    with OpenAIStub(json_reply(answer)) as stub:
        llm = LLMConfig(base_url=stub.base_url, model="stub-model", api_key="test", max_retries=0)
        result = plan_for(conse_store, "Our dog loves this pillow, says the ad.", "subquery", k=1,
                          decomposer_backend="llm", llm=llm)
    assert result.decomposition.backend == "llm"
    assert [h.subquery for h in result.hits] == ["a sleeping dog", "a soft pillow"]


# --- the filter ---

def test_filter_reasons_match_the_scores(conse_store):
    subqueries = table(("a dog", 0.4), ("a cat", 0.3), ("a red sports car", 0.3))
    result = plan_for(conse_store, "x", "subquery+filter", k=6, decomposition=subqueries,
                      filters=FilterSettings(threshold=0.35, relative=0.8))
    assert result.filters.threshold == 0.35
    best = {q: max(h.score for h in result.hits if h.subquery == q) for q in ("a dog", "a cat", "a red sports car")}
    reasons = {reason for _, reason in result.filtered}
    assert BELOW_ABSOLUTE in reasons and BELOW_RELATIVE in reasons
    for hit, reason in result.filtered:
        if reason == BELOW_ABSOLUTE:
            assert hit.score < 0.35
        elif reason == BELOW_RELATIVE:
            assert 0.35 <= hit.score < 0.8 * best[hit.subquery]
    for hit in result.kept:
        assert hit.score >= max(0.35, 0.8 * best[hit.subquery])
    # No photo of a car: the sub-query is reported and its text item dropped (the seed's exp4).
    assert result.uncovered == ("a red sports car",)
    assert "a red sports car" not in [i.text for i in result.plan.items]
    assert any("a red sports car" in note for note in result.plan.notes)


def test_uncovered_subqueries_stay_in_the_plan_when_asked(conse_store):
    result = plan_for(conse_store, "x", "subquery+filter", decomposition=table(("a dog", 0.6), ("a red sports car", 0.4)),
                      filters=FilterSettings(threshold=0.35, drop_uncovered=False))
    assert result.uncovered == ("a red sports car",)
    assert "a red sports car" in [i.text for i in result.plan.items if i.source == "subquery"]


def test_near_duplicates_and_repeats_are_kept_once(conse_store, names):
    # The mirrored copy of the dog photo answers "a dog" (its pixels hash apart, its embedding is
    # within the bound); the same photos also answer "a puppy".
    result = plan_for(conse_store, "x", "subquery+filter", k=4, decomposition=table(("a dog", 0.6), ("a puppy", 0.4)),
                      filters=FilterSettings(threshold=0.0, relative=0.0, dedupe=0.95))
    kept = [names[h.id] for h in result.kept]
    assert len(kept) == len(set(kept))
    assert len({"gcompris-farm-dog.jpg", MIRRORED_DOG} & set(kept)) == 1
    dupes = [(names[h.id], reason) for h, reason in result.filtered if reason.startswith("near-duplicate of #")]
    assert {n for n, _ in dupes} >= {"gcompris-farm-dog.jpg", MIRRORED_DOG} - set(kept)
    assert result.uncovered == ()  # "a puppy" is answered by the references kept for "a dog"


def test_a_resized_copy_is_one_reference_by_default_and_look_alikes_stay(tmp_path, tiny_encoder):
    from PIL import Image

    from rdm.db import ImageStore
    with Image.open(DOG_PHOTO) as photo:
        photo.convert("RGB").resize((photo.width // 2, photo.height // 2)).save(tmp_path / "small-dog.jpg", quality=70)
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest([DOG_PHOTO, CAT_PHOTO, tmp_path / "small-dog.jpg"], metadata={
        "gcompris-farm-dog.jpg": {"caption": "dog"}, "small-dog.jpg": {"caption": "dog"},
        "gcompris-farm-cat.jpg": {"caption": "dog"}})
    result = plan_for(store, "x", "subquery+filter", k=3, decomposition=table(("dog", 1.0)),
                      filters=FilterSettings(relative=0.0))
    reasons = {store.get(h.id).filename: reason for h, reason in result.filtered}
    kept = {store.get(h.id).filename for h in result.kept}
    assert len(kept & {"gcompris-farm-dog.jpg", "small-dog.jpg"}) == 1
    copy = ({"gcompris-farm-dog.jpg", "small-dog.jpg"} - kept).pop()
    assert reasons[copy].startswith("copy of #")
    assert "gcompris-farm-cat.jpg" in kept  # another photo, however alike, is no copy


@pytest.mark.parametrize("dedupe", [0.95, 1.0])
def test_the_same_photo_for_two_subqueries_is_one_reference_that_covers_both(conse_store, dedupe):
    result = plan_for(conse_store, "x", "subquery+filter", k=4, decomposition=table(("a cat", 0.6), ("a kitten", 0.4)),
                      filters=FilterSettings(threshold=0.0, relative=0.0, dedupe=dedupe))
    kept_for = {h.id: h.subquery for h in result.kept}
    repeats = [(h, reason) for h, reason in result.filtered if h.id in kept_for]
    assert repeats, "the cat photos answer both sub-queries"
    for hit, reason in repeats:
        assert reason == f"{SAME_IMAGE} '{kept_for[hit.id]}'" and hit.subquery != kept_for[hit.id]
    assert not any(reason == f"near-duplicate of #{h.id}" for h, reason in result.filtered)
    # one reference in the plan, and both sub-queries covered (their text items stay)
    assert len(result.plan.reference_ids) == len(set(result.plan.reference_ids)) == len(result.kept)
    assert result.uncovered == ()
    assert [i.text for i in result.plan.items if i.source == "subquery"] == ["a cat", "a kitten"]


def test_dedupe_bound_of_one_keeps_edited_copies_apart(conse_store, names):
    result = plan_for(conse_store, "x", "subquery+filter", k=4, decomposition=table(("a dog", 1.0)),
                      filters=FilterSettings(threshold=0.0, relative=0.0, dedupe=1.0))
    assert {"gcompris-farm-dog.jpg", MIRRORED_DOG} <= {names[h.id] for h in result.kept}


@pytest.mark.parametrize("encoder, expected", [("conse", 0.30), ("tiny", -1.0),
                                               ("open_clip:ViT-B-32/laion2b_s34b_b79k", 0.20)])
def test_absolute_threshold_defaults_per_encoder_and_can_be_overridden(encoder, expected):
    assert FilterSettings().absolute_for(encoder) == expected
    assert FilterSettings(threshold=0.5).absolute_for(encoder) == 0.5


# --- budgets and selection ---

def test_budget_is_spent_on_every_subquery_before_a_second_reference(conse_store):
    # Without the filter the best scores win, whichever sub-query they answer: here (image
    # scores) one concept with several close photos (the dog and its edited copy) takes the budget.
    subqueries = table(("a dog", 0.5), ("a pillow", 0.25), ("solar panels", 0.25))
    plain = plan_for(conse_store, PROMPT, "subquery", budget=3, decomposition=subqueries, fusion=Fusion("image"))
    assert list(plain.kept) == sorted(plain.hits, key=lambda h: -h.score)[:3]
    assert len({h.subquery for h in plain.kept}) == 1
    assert sum(reason == OVER_BUDGET for _, reason in plain.filtered) == len(plain.hits) - 3

    filtered = plan_for(conse_store, PROMPT, "subquery+filter", budget=3, decomposition=subqueries)
    assert filtered.kept[0].subquery == "a dog"  # the heaviest sub-query first
    assert {h.subquery for h in filtered.kept} == {"a dog", "a pillow", "solar panels"}
    assert filtered.uncovered == ()
    assert len(filtered.plan.reference_ids) == 3


def test_a_budget_below_the_subquery_count_keeps_the_heaviest(conse_store):
    subqueries = table(("a dog", 0.5), ("a pillow", 0.3), ("solar panels", 0.2))
    result = plan_for(conse_store, PROMPT, "subquery+filter", budget=2, decomposition=subqueries)
    assert [h.subquery for h in result.kept] == ["a dog", "a pillow"]
    # Lost to the budget, not to the filter: its text item stays in the plan.
    assert result.uncovered == () and "solar panels" in [i.text for i in result.plan.items]


def test_full_mode_honours_the_budget(conse_store):
    result = plan_for(conse_store, PROMPT, "full", k=2, budget=4)
    assert len(result.kept) == 4  # the budget, not k, sizes the set in full mode
    assert len(plan_for(conse_store, PROMPT, "full", k=5, budget=2).kept) == 2


def test_coverage_select_picks_one_reference_per_subquery(conse_store):
    subqueries = table(("a dog", 0.4), ("a pillow", 0.2), ("solar panels", 0.2), ("a castle", 0.2))
    result = plan_for(conse_store, PROMPT, "subquery+filter", k=5, decomposition=subqueries,
                      filters=FilterSettings(coverage_select=True))
    assert sorted(h.subquery for h in result.kept) == sorted(q.text for q in subqueries.subqueries)
    assert any(reason == "already covered" for _, reason in result.filtered)


def test_coverage_select_lets_one_photo_cover_two_subqueries(conse_store):
    result = plan_for(conse_store, "x", "subquery+filter", k=3, decomposition=table(("a cat", 0.5), ("a kitten", 0.5)),
                      filters=FilterSettings(coverage_select=True, relative=0.0))
    assert len(result.kept) == 1 and result.uncovered == ()


# --- plans ---

@pytest.mark.parametrize("preset", ["exp1", "exp2", "exp3", "exp4"])
def test_seed_presets_serialise_and_sum_to_one(conse_store, preset):
    plan = plan_for(conse_store, PROMPT, preset, input_images=[DOG_PHOTO, CAT_PHOTO] if preset in ("exp1", "exp2")
                    else [DOG_PHOTO]).plan
    assert plan.mode == preset and total(plan) == pytest.approx(1.0, abs=1e-9)
    assert ConditioningPlan.from_json(plan.to_json()) == plan
    inputs = [i.weight for i in plan.items if i.source == "input"]
    assert inputs == pytest.approx([0.2, 0.3] if preset in ("exp1", "exp2") else [0.4])


def test_exp1_weights_keywords_by_their_scores(conse_store):
    plan = plan_for(conse_store, PROMPT, "exp1", input_images=[DOG_PHOTO, CAT_PHOTO]).plan
    keywords = [i for i in plan.items if i.kind == "text"]
    assert keywords and {i.source for i in keywords} == {"keyword"} and not plan.reference_ids
    a, b = keywords[0], keywords[-1]
    assert a.weight / b.weight == pytest.approx(a.score / b.score)
    assert math.fsum(i.weight for i in keywords) == pytest.approx(0.5)


def test_exp2_to_exp4_hold_the_seed_items(conse_store):
    exp2 = plan_for(conse_store, PROMPT, "exp2", input_images=[DOG_PHOTO]).plan
    assert [i.source for i in exp2.items] == ["summary", "input"]
    exp3 = plan_for(conse_store, PROMPT, "exp3").plan
    exp4 = plan_for(conse_store, PROMPT, "exp4").plan
    for plan in (exp3, exp4):
        assert {i.source for i in plan.items} == {"summary", "subquery", "reference"}
    assert len(exp4.reference_ids) < len(exp3.reference_ids)  # the filter removed some


def test_shares_follow_importance_times_similarity(conse_store):
    subqueries = table(("a dog", 0.6), ("solar panels", 0.4))
    plan = plan_for(conse_store, PROMPT, "subquery", k=1, decomposition=subqueries, input_images=[DOG_PHOTO]).plan
    summary, dog_text, solar_text, dog_ref, solar_ref, product = plan.items
    assert dog_text.weight / solar_text.weight == pytest.approx(0.6 / 0.4)
    assert summary.weight / dog_text.weight == pytest.approx(1 / 0.6)
    assert dog_ref.weight / solar_ref.weight == pytest.approx((0.6 * dog_ref.score) / (0.4 * solar_ref.score), rel=1e-4)
    assert product.weight == pytest.approx(0.4) and total(plan) == pytest.approx(1.0, abs=1e-9)


def test_more_input_images_than_defaults_share_the_preset_total(conse_store):
    plan = plan_for(conse_store, PROMPT, "exp1", input_images=[DOG_PHOTO, CAT_PHOTO, DOG_PHOTO]).plan
    assert [i.weight for i in plan.items if i.source == "input"] == pytest.approx([0.5 / 3] * 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"input_images": [DOG_PHOTO], "input_weights": [0.6, 0.4]}, "one weight per image"),
    ({"input_images": [DOG_PHOTO, CAT_PHOTO], "input_weights": [0.6, 0.4]}, "sum to less than 1"),
    ({"input_weights": [0.3]}, "without input images"),
    ({"k": 0}, "k must be at least 1"),
    ({"budget": 0}, "budget must be at least 1"),
])
def test_bad_plan_requests_say_what_to_change(conse_store, kwargs, message):
    with pytest.raises(RetrievalError, match=message):
        plan_for(conse_store, PROMPT, "exp3", **kwargs)


def test_unknown_mode_and_empty_prompt_are_refused(conse_store):
    with pytest.raises(RetrievalError, match="unknown mode 'exp5'"):
        plan_for(conse_store, PROMPT, "exp5")
    with pytest.raises(RetrievalError, match="prompt is empty"):
        plan_for(conse_store, "   ", "full")
    with pytest.raises(RetrievalError, match="between 0 and 1"):
        FilterSettings(relative=1.5)


# --- CLI ---

def rdm(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_cli_retrieve_json(conse_store):
    out = json.loads(rdm("retrieve", PROMPT, "--mode", "subquery+filter", "-k", "3", "--threshold", "0.3",
                         "--budget", "3", "--db", str(conse_store.path), "--json").stdout)
    assert set(out) >= {"prompt", "mode", "decomposition", "hits", "kept", "filtered", "uncovered", "plan", "filters"}
    assert out["filters"]["threshold"] == 0.3 and len(out["kept"]) == 3
    assert all("subquery" in h and "score" in h for h in out["hits"])
    assert all(f["reason"] for f in out["filtered"])
    assert math.fsum(i["weight"] for i in out["plan"]["items"]) == pytest.approx(1.0)


def test_cli_retrieve_table_shows_each_hit_and_why(conse_store):
    out = rdm("retrieve", "A dog rests next to a red sports car.", "--db", str(conse_store.path)).stdout
    assert "kept" in out and "below" in out and "plan (subquery+filter)" in out


def test_cli_plan_json_has_the_issue_shape(conse_store):
    out = json.loads(rdm("plan", "--preset", "exp1", PROMPT, "--input-image", DOG_PHOTO, "--input-image", CAT_PHOTO,
                         "--db", str(conse_store.path), "--json").stdout)
    for item in out["items"]:
        assert item["kind"] in ("text", "image") and item["source"] and item["weight"] > 0
        assert ("text" in item) if item["kind"] == "text" else ("path" in item or "image_id" in item)
    assert [i["weight"] for i in out["items"] if i["source"] == "input"] == pytest.approx([0.2, 0.3])


def test_cli_plan_errors_are_one_line(conse_store):
    missing = rdm("plan", "--preset", "exp3", PROMPT, "--input-image", "nope.jpg", "--db", str(conse_store.path), ok=False)
    assert missing.exit_code == 1 and "input image(s) not found: nope.jpg" in missing.output
    unknown = rdm("plan", "--preset", "exp9", PROMPT, "--db", str(conse_store.path), ok=False)
    assert unknown.exit_code == 1 and "unknown preset 'exp9'" in unknown.output
