"""Retrieval evaluation: the metrics, query files, equal budgets, and `rdm eval-retrieval`."""

from __future__ import annotations

import json
import math

import pytest
from retrieval_db import MIRRORED_DOG, ids_by_name
from typer.testing import CliRunner

from rdm.cli import app
from rdm.retrieve.evaluate import (
    Concept,
    EvaluationError,
    coverage,
    evaluate,
    load_queries,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from rdm.retrieve import EVAL_MODES, Fusion
from rdm.settings import REPO_ROOT

runner = CliRunner()
DOG = ["gcompris-farm-dog.jpg", "lomiri-friends.jpg", MIRRORED_DOG]  # the mirrored copy is a dog photo too
PILLOW = ["gcompris-categories-others-pillow.jpg"]
SOLAR = [f"gcompris-categories-renewable-solar-{n}.jpg" for n in (1, 5, 6, 8)]
CASTLE = ["gcompris-monuments-france-cite-de-carcassonne.jpg", "gcompris-monuments-germany-neuschwanstein-castle.jpg"]
CAT = ["gcompris-farm-cat.jpg", "skimage-chelsea.jpg", "gcompris-erase-kitten.jpg"]


def write_jsonl(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def query_file(tmp_path):
    return write_jsonl(tmp_path / "q.jsonl", [
        {"query": "a dog", "relevant": DOG},
        {"query": "a pillow", "relevant": PILLOW},
        {"query": "A dog naps on a soft pillow next to solar panels.",
         "concepts": [{"name": "dog", "relevant": DOG}, {"name": "pillow", "relevant": PILLOW},
                      {"name": "solar panels", "relevant": SOLAR}]},
        {"query": "A dog and a cat rest on a pillow in front of a castle.",
         "concepts": [{"name": "dog", "relevant": DOG}, {"name": "cat", "relevant": CAT},
                      {"name": "pillow", "relevant": PILLOW}, {"name": "castle", "relevant": CASTLE}]},
    ])


# --- metrics ---

def test_ranking_metrics_on_a_hand_worked_list():
    ranked, relevant = [1, 9, 2, 8], frozenset({1, 2, 3})
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(2 / 4)  # of what came back
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert recall_at_k(ranked, relevant, 1) == 1.0  # capped: one slot, and it holds a right photo
    assert recall_at_k([9, 1], relevant, 2) == pytest.approx(1 / 2)
    assert precision_at_k([], relevant, 5) == 0.0 and ndcg_at_k([], relevant, 5) == 0.0


def test_coverage_counts_concepts_with_any_relevant_reference():
    concepts = [Concept("dog", frozenset({1, 2})), Concept("pillow", frozenset({3})), Concept("sun", frozenset({4}))]
    assert coverage([2, 9, 2], concepts) == pytest.approx(1 / 3)
    assert coverage([1, 3, 4], concepts) == 1.0


# --- query files ---

def test_labels_by_file_name_or_id_become_db_ids(conse_store, tmp_path):
    ids = ids_by_name(conse_store)
    path = write_jsonl(tmp_path / "q.jsonl", [{"query": "a dog", "relevant": [DOG[0], ids[DOG[1]]]}])
    (query,) = load_queries(path, conse_store)
    assert query.relevant == {ids[DOG[0]], ids[DOG[1]]} and not query.composite


@pytest.mark.parametrize("line, message", [
    ('{"query": "a dog", "relevant": ["no-such-photo.jpg"]}', "q.jsonl:2: not in the DB .*no-such-photo.jpg"),
    ('{"query": "a dog"', "q.jsonl:2: not valid JSON"),
    ('{"query": "a dog"}', "q.jsonl:2: give 'relevant'"),
    ('{"query": "", "relevant": [1]}', "q.jsonl:2: each line needs a non-empty 'query'"),
    ('{"query": "a dog", "concepts": []}', "q.jsonl:2: 'concepts' must be a non-empty list"),
])
def test_bad_query_lines_name_the_line(conse_store, tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query": "a dog", "relevant": DOG}) + "\n" + line + "\n")
    with pytest.raises(EvaluationError, match=message):
        load_queries(path, conse_store)


@pytest.mark.parametrize("split, at_least", [("dev", 10), ("test", 20)])
def test_shipped_query_splits_match_the_demo_photos(split, at_least):
    lines = {name: [json.loads(line) for line in (REPO_ROOT / "data" / "queries" / split / f"{name}.jsonl")
                    .read_text().splitlines()] for name in ("single", "composite")}
    photos = {p.name for p in (REPO_ROOT / "data" / "demo-photos" / "images").iterdir()}
    labelled = {r for line in lines["single"] for r in line["relevant"]} | {
        r for line in lines["composite"] for c in line["concepts"] for r in c["relevant"]}
    assert labelled <= photos
    assert len(lines["composite"]) >= at_least and all(2 <= len(line["concepts"]) <= 4 for line in lines["composite"])
    assert len(lines["single"]) >= at_least


def test_the_test_split_shares_no_query_with_dev():
    def queries(split):
        return {json.loads(line)["query"].lower() for name in ("single", "composite")
                for line in (REPO_ROOT / "data" / "queries" / split / f"{name}.jsonl").read_text().splitlines()}
    assert not queries("dev") & queries("test")


# --- evaluation ---

def test_every_mode_is_held_to_the_same_budget(conse_store, query_file):
    queries = load_queries(query_file, conse_store)
    for mode in EVAL_MODES:
        result = evaluate(conse_store, queries, mode, k=5, budget=3)
        assert all(len(o.references) <= 3 for o in result.outcomes)


@pytest.mark.parametrize("kind", ["image", "hybrid"])
def test_subquery_filter_covers_more_concepts_at_equal_budget(conse_store, query_file, kind):
    queries = load_queries(query_file, conse_store)
    cov = {m: evaluate(conse_store, queries, m, budget=3, fusion=Fusion(kind)).metrics["coverage"] for m in EVAL_MODES}
    assert cov["subquery+filter"] > cov["subquery"] and cov["subquery+filter"] > cov["full"]


def test_metrics_of_a_set_without_a_kind_of_line_are_null(conse_store, tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"query": "a pillow", "relevant": PILLOW}])
    metrics = evaluate(conse_store, load_queries(path, conse_store), "full", k=3).metrics
    assert metrics == {"recall@3": 1.0, "precision@3": pytest.approx(1 / 3, abs=1e-4), "ndcg@3": 1.0, "coverage": None}


# --- CLI ---

def test_cli_json_for_one_mode(conse_store, query_file):
    out = runner.invoke(app, ["eval-retrieval", str(query_file), "--mode", "subquery+filter",
                              "--db", str(conse_store.path), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["mode"] == "subquery+filter" and data["k"] == 5 and data["budget"] == 5
    assert set(data["metrics"]) == {"recall@5", "precision@5", "ndcg@5", "coverage"}
    assert all(isinstance(v, float) for v in data["metrics"].values())


def test_cli_table_compares_the_three_modes(conse_store, query_file):
    out = runner.invoke(app, ["eval-retrieval", str(query_file), "--budget", "3", "--db", str(conse_store.path)])
    assert out.exit_code == 0, out.output
    header = next(line for line in out.stdout.splitlines() if line.startswith("metric"))
    assert header.split()[1:] == list(EVAL_MODES)
    assert "budget=3" in out.stdout and "coverage" in out.stdout


def test_cli_bad_query_file_is_one_line(conse_store, tmp_path):
    out = runner.invoke(app, ["eval-retrieval", str(tmp_path / "missing.jsonl"), "--db", str(conse_store.path)])
    assert out.exit_code == 1 and "cannot read the query file" in out.output
