"""Hybrid retrieval: the curated-text index (FTS5) beside the image embedding, the --retrieval knob in
the CLI, and curation that reaches search at once."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db import ImageStore
from rdm.db.texts import query_words
from rdm.errors import RetrievalError
from rdm.retrieve import Fusion

runner = CliRunner()


def cli(*args: str) -> dict | list:
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_a_new_caption_word_makes_that_image_the_first_hit_at_once(tiny_db):
    target = ImageStore.open(tiny_db).records()[4]
    assert cli("search", "zorblat", "--db", str(tiny_db), "--retrieval", "text")["hits"] == []
    runner.invoke(app, ["edit", str(target.id), "--caption", "A zorblat on the beach", "--db", str(tiny_db)])
    for kind in ("hybrid", "text"):
        hits = cli("search", "zorblat", "--db", str(tiny_db), "--retrieval", kind)["hits"]
        assert hits[0]["id"] == target.id
        assert hits[0]["text_score"] == 1.0 and hits[0]["matched"] == ["zorblat"]
    # undone, the word is gone from the index too
    change = cli("history", str(target.id), "--db", str(tiny_db))["changes"][0]
    runner.invoke(app, ["undo", str(change["id"]), "--db", str(tiny_db)])
    assert cli("search", "zorblat", "--db", str(tiny_db), "--retrieval", "text")["hits"] == []


def test_tags_category_and_file_name_words_are_searchable_and_stemmed(tiny_db):
    store = ImageStore.open(tiny_db)
    rec = store.records()[0]
    store.edit(rec.id, tags="seaside, Picnics", category="summer")
    for words in ("picnic", "seaside", "summer", rec.filename.split("-")[1]):
        ids = [h.id for h in store.search(words, 50, fusion=Fusion("text"))]
        assert rec.id in ids, words


def test_json_keeps_its_keys_and_adds_the_score_parts(tiny_db):
    keys = {"id", "score", "filename", "category", "tags", "caption"}
    image = cli("search", "fish", "--db", str(tiny_db), "--retrieval", "image")["hits"][0]
    assert keys <= set(image) and image["image_score"] == image["score"] and "text_score" not in image
    hybrid = cli("search", "fish", "--db", str(tiny_db))["hits"]
    for hit in hybrid:
        assert hit["score"] == pytest.approx(hit["image_score"] + Fusion().text_weight * hit["text_score"], abs=1e-5)
    retrieved = cli("retrieve", "A fish swims past a cathedral", "--db", str(tiny_db), "--retrieval", "text")
    assert retrieved["kept"] and all(h["text_score"] > 0 for h in retrieved["kept"])
    assert {"prompt", "mode", "hits", "kept", "filtered", "plan"} <= set(retrieved)


def test_eval_retrieval_takes_the_knob(tiny_db, tmp_path):
    store = ImageStore.open(tiny_db)
    cathedral = next(r for r in store.records() if r.caption == "Cathedral")
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query": "a cathedral", "relevant": [cathedral.filename]}) + "\n")
    results = {kind: cli("eval-retrieval", str(path), "--mode", "full", "--db", str(tiny_db), "--retrieval", kind)
               for kind in ("image", "text", "hybrid")}
    assert {r["retrieval"] for r in results.values()} == {"image", "text", "hybrid"}
    assert set(results["text"]) == {"mode", "k", "budget", "metrics", "retrieval"}
    # the tiny encoder's cosines mean nothing; the caption "Cathedral" finds the cathedral
    assert results["text"]["metrics"]["recall@5"] == 1.0 and results["hybrid"]["metrics"]["recall@5"] == 1.0
    bad = runner.invoke(app, ["eval-retrieval", str(path), "--db", str(tiny_db), "--retrieval", "words"])
    assert bad.exit_code == 1 and "unknown retrieval 'words'" in bad.output


def test_hybrid_top_k_is_the_exact_fused_ranking(tiny_db):
    store = ImageStore.open(tiny_db)
    fusion = Fusion("hybrid", text_weight=0.7)
    query = "a fish near a cathedral"
    ids, vecs = store.catalog.vectors()
    cos = vecs @ store.encoder.encode_texts([query])[0]
    text = store.catalog.text_matches(query)
    brute = sorted(((float(c) + 0.7 * (text[i].score if i in text else 0.0), int(i)) for i, c in zip(ids, cos)),
                   key=lambda t: (-t[0], t[1]))[:6]
    hits = store.search(query, 6, fusion=fusion)
    assert [h.id for h in hits] == [i for _, i in brute]
    assert [h.score for h in hits] == pytest.approx([s for s, _ in brute], abs=1e-5)


def test_deleted_images_and_filters_hold_for_text_matches(tiny_db):
    store = ImageStore.open(tiny_db)
    fish = [h.id for h in store.search("fish", 10, fusion=Fusion("text"))]
    store.delete(fish[0])
    assert fish[0] not in [h.id for h in store.search("fish", 10, fusion=Fusion("text"))]
    other = next(c for c in store.catalog.categories() if c != store.get(fish[0]).category)
    assert all(h.record.category == other for h in store.search("fish", 10, category=other))


@pytest.mark.parametrize("text", ['"dog', "fish AND", "NEAR(cat fish)", "fish*", "caption: fish", "-", "the of a"])
def test_query_syntax_characters_are_plain_words(tiny_db, text):
    store = ImageStore.open(tiny_db)
    store.search(text, 5, fusion=Fusion("text"))  # no FTS5 syntax error
    assert query_words("the Statue of Liberty") == ("statue", "liberty")


def test_a_db_from_before_the_text_index_gets_one_on_open(tiny_db):
    con = sqlite3.connect(tiny_db / "meta.sqlite")
    for trigger in ("texts_insert", "texts_update", "texts_delete"):
        con.execute(f"DROP TRIGGER {trigger}")
    con.execute("DROP TABLE texts")
    con.commit()
    con.close()
    store = ImageStore.open(tiny_db)
    assert [h.record.caption for h in store.search("cathedral", 1, fusion=Fusion("text"))] == ["Cathedral"]


def test_a_text_match_without_a_vector_is_left_out_not_an_error(tiny_db):
    store = ImageStore.open(tiny_db)
    fish = store.search("fish", 1, fusion=Fusion("text"))[0]
    con = sqlite3.connect(tiny_db / "meta.sqlite")
    con.execute("DELETE FROM vectors WHERE image_id = ?", (fish.id,))
    con.commit()
    con.close()
    assert fish.id not in [h.id for h in ImageStore.open(tiny_db).search("fish", 5, fusion=Fusion("text"))]


def test_fusion_is_checked():
    with pytest.raises(RetrievalError, match="unknown retrieval"):
        Fusion("semantic")
    with pytest.raises(RetrievalError, match="text weight"):
        Fusion("hybrid", text_weight=-1)
    assert Fusion("image").score(0.4, 1.0) == 0.4 and Fusion("text").score(0.4, 0.5) == 0.5
    assert Fusion("hybrid", 0.5).score(0.4, 1.0) == pytest.approx(0.9)
    assert np.isclose(Fusion().score(0.2, 0.0), 0.2)


def test_check_finds_and_repairs_a_text_index_out_of_step(tiny_db):
    store = ImageStore.open(tiny_db)
    assert store.check().ok
    con = sqlite3.connect(tiny_db / "meta.sqlite")
    con.execute("UPDATE texts SET caption = 'stale words' WHERE rowid = (SELECT MIN(id) FROM images)")
    con.execute("DELETE FROM texts WHERE rowid = (SELECT MAX(id) FROM images)")
    con.commit()
    con.close()
    report = store.check()
    assert any("text index disagrees with 2 row(s)" in p for p in report.problems), report.problems
    assert store.check(repair=True).repaired and store.check().ok
    assert store.search("stale", 5, fusion=Fusion("text")) == []


def test_a_query_word_no_image_holds_lowers_the_text_match(tiny_db):
    store = ImageStore.open(tiny_db)
    target = store.records()[4]
    store.edit(target.id, caption="A red zorblat on the beach")
    (alone,) = [h for h in store.search("zorblat", 12, fusion=Fusion("text"))]
    assert alone.text_score == pytest.approx(1.0) and alone.explain().endswith("zorblat (1 of 1 words)")
    (half,) = [h for h in store.search("zorblat quuxel", 12, fusion=Fusion("text"))]  # no image holds "quuxel"
    assert half.id == target.id and half.matched == ("zorblat",) and half.text_words == 2
    assert 0 < half.text_score < 1.0
    assert "text " in half.explain() and half.explain().endswith(": zorblat (1 of 2 words)")


def test_one_word_of_a_sub_query_does_not_cover_it_with_a_weak_cosine(tiny_db):
    from rdm.db import Hit
    from rdm.decompose import SubQuery
    from rdm.retrieve import FilterSettings
    from rdm.retrieve.filter import filter_hits

    store = ImageStore.open(tiny_db)
    pyramid, cushion, dog = store.records()[:3]
    fusion, query = Fusion(), "red cushion"
    hits = [Hit(pyramid.id, 0.294 + 0.3 * 0.4, pyramid, query, 0.294, 0.4, ("red",), 2),  # one word of two
            Hit(cushion.id, 0.25 + 0.3, cushion, query, 0.25, 1.0, ("red", "cushion"), 2),  # the full text
            Hit(dog.id, 0.31, dog, query, 0.31, 0.0, (), 2)]  # the cosine alone
    kept, filtered, uncovered = filter_hits(store, [SubQuery(query, 1.0)], np.zeros((1, 8), np.float32), hits,
                                            FilterSettings(threshold=0.3, relative=0.0), fusion=fusion)
    assert {h.id for h in kept} == {cushion.id, dog.id} and not uncovered
    ((left, reason),) = filtered
    assert left.id == pyramid.id and reason.startswith("below absolute threshold") and "1 of 2 words" in reason
    _, _, uncovered = filter_hits(store, [SubQuery(query, 1.0)], np.zeros((1, 8), np.float32), hits[:1],
                                  FilterSettings(threshold=0.3, relative=0.0), fusion=fusion)
    assert uncovered == (query,)  # "covered" needs the cosine or every word
