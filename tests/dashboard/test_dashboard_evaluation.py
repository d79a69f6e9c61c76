"""The Retrieval evaluation page under AppTest: an uploaded query set run side by side (as a job), a baseline
saved, a caption curated, the delta shown; bad query files reported, never a traceback."""

from __future__ import annotations

import json

from apptest_pages import by_label, drain, no_traceback, page, texts

from rdm.db import ImageStore

KEY = "evaluation"


def upload(at, lines: list[dict] | bytes, name: str = "queries.jsonl") -> None:
    data = lines if isinstance(lines, bytes) else "".join(json.dumps(line) + "\n" for line in lines).encode()
    at.session_state[f"{KEY}:source"] = "Upload"
    at.run()
    at.file_uploader(key=f"{KEY}:upload").set_value([(name, data, "application/json")]).run()


def frame(at, *columns: str):
    """The first table holding these columns (AppTest does not expose a dataframe's key)."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert found, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def test_run_save_a_baseline_curate_and_see_the_delta(dashboard_env):
    store = ImageStore.open(dashboard_env)
    baseball = next(r for r in store.records() if r.caption == "Baseball")
    fish = [r.filename for r in store.records() if "fish" in r.tags]
    cathedral = next(r.filename for r in store.records() if r.caption == "Cathedral")
    at = page("retrieval_eval")
    upload(at, [{"query": "a zorblat", "relevant": [baseball.filename]},
                {"query": "A fish swims past a cathedral", "concepts": [
                    {"name": "fish", "relevant": fish}, {"name": "cathedral", "relevant": [cathedral]}]}])
    by_label(at.multiselect, "Retrieval").set_value(["text", "hybrid"]).run()
    by_label(at.button, "Run evaluation").click().run()
    no_traceback(at)
    assert any(b.label == "Cancel" for b in at.button)  # a job, followed; another may be queued behind it
    assert not by_label(at.button, "Run evaluation").disabled
    at.switch_page("../pages/queue.py").run()
    assert "Evaluating upload:queries.jsonl: 6 configuration(s)" in texts(at)
    at.switch_page("../pages/retrieval_eval.py").run()
    drain(at)  # what the worker does, query by query
    no_traceback(at)
    metrics = frame(at, "configuration", "coverage")
    assert list(metrics["configuration"]) == [f"{kind} / {mode}" for kind in ("text", "hybrid")
                                               for mode in ("full", "subquery", "subquery+filter")]
    assert metrics.loc[metrics["configuration"] == "text / subquery+filter", "coverage"].item() == 1.0
    assert metrics.loc[metrics["configuration"] == "text / full", "recall@5"].item() == 0.0
    assert at.get("plotly_chart")
    by_label(at.selectbox, "Explain the misses of").set_value("text / subquery+filter").run()
    assert "**a zorblat** · not retrieved in the top k (sub-query 'zorblat')" in texts(at)

    by_label(at.button, "Save as baseline").click().run()
    assert "Saved as the baseline of this query set." in texts(at)

    store.edit(baseball.id, caption="A zorblat ball")  # curating, elsewhere in the app
    by_label(at.button, "Run evaluation").click().run()
    drain(at)
    no_traceback(at)
    delta = frame(at, "configuration", "metric", "change")
    row = delta[(delta["configuration"] == "text / full") & (delta["metric"] == "recall@5")]
    assert row["baseline"].item() == 0.0 and row["now"].item() == 1.0 and row["change"].item() == 1.0
    moved = frame(at, "query", "change")
    assert "a zorblat" in set(moved["query"]) and "A fish swims past a cathedral" not in set(moved["query"])


def test_a_bad_query_file_is_a_message(dashboard_env):
    at = page("retrieval_eval")
    upload(at, [{"query": "a dog", "relevant": ["no-such-photo.jpg"]}])
    by_label(at.button, "Run evaluation").click().run()
    no_traceback(at)
    assert any("queries.jsonl:1: not in the DB" in e.value for e in at.error)
    upload(at, b"\xff\xfe not utf-8", name="latin.jsonl")
    by_label(at.button, "Run evaluation").click().run()
    assert any("latin.jsonl is not UTF-8 text" in e.value for e in at.error)


def test_a_bundled_split_names_the_photos_a_db_lacks(dashboard_env):
    at = page("retrieval_eval")
    by_label(at.selectbox, "Bundled set").set_value("test/single").run()
    by_label(at.button, "Run evaluation").click().run()
    no_traceback(at)
    assert any("not in the DB" in e.value and "ingest the photos first" in e.value for e in at.error)
