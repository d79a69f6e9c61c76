"""What a browser session keeps, under AppTest: one working prompt on every page that takes one, the
inspector's edited sub-queries used by Generate, Browse's view in the URL, the user's name, and the form
of a job still running. A reload is a new AppTest opened on the URL's query (the session id with it)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_dashboard import APP, TIMEOUT, _generate, by_label, no_traceback, page, texts

from dashboard import session
from dashboard.prompt import SEED_PROMPTS
from rdm.decompose import Decomposition, SubQuery
from rdm.generate.tiny import TEST_MODEL_SETTINGS

PROMPT_A = SEED_PROMPTS["Prompt A (collar)"]


def reload(at: AppTest, name: str) -> AppTest:
    """The browser reloads ``at``'s URL, then the user opens page ``name``."""
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    again.query_params.update(at.query_params)
    again.run()
    again.switch_page(f"../pages/{name}.py").run()
    no_traceback(again)
    return again


def test_one_working_prompt_on_every_page_and_after_a_reload(dashboard_env):
    at = page("retrieval")
    at.segmented_control(key="retrieval:seed-choice").set_value("Prompt A (collar)").run()
    for name, key in (("generate", "generate"), ("variations", "variations"), ("embedding_map", "map")):
        at.switch_page(f"../pages/{name}.py").run()
        no_traceback(at)
        assert at.text_area(key=f"{key}:prompt").value == PROMPT_A
    at.switch_page("../pages/generate.py").run()
    at.text_area(key="generate:prompt").input("a red collar on a sofa").run()
    again = reload(at, "retrieval")
    assert again.text_area(key="retrieval:prompt").value == "a red collar on a sofa"


def test_the_inspectors_edited_table_survives_a_reload_and_generate_records_it(dashboard_env, tmp_path):
    at = page("retrieval")
    at.segmented_control(key="retrieval:seed-choice").set_value("Prompt A (collar)").run()
    # the table as the user left it (AppTest cannot type into a data editor; the browser test does)
    session_id = at.query_params["session"]
    folder = Path(os.environ["RDM_JOBS"]) / "sessions"
    kept = session.load(folder, session_id)
    edited = replace(kept.decomposition, subqueries=(SubQuery("a navy dog collar", 0.7), SubQuery("a cushion", 0.3)),
                     repairs=("sub-queries edited by hand",))
    session.save(folder, session_id, replace(kept, decomposition=edited))
    again = reload(at, "retrieval")
    assert "Edited weights in use: a navy dog collar **0.70**, a cushion **0.30**" in texts(again)
    again.switch_page("../pages/generate.py").run()
    assert again.toggle(key="generate:use-edited").value is True
    assert "the inspector's edited sub-queries" in texts(again)
    _generate(again, ["subquery"])
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    record = json.loads((run_dir / "run.json").read_text())
    used = Decomposition.from_dict(record["modes"][0]["retrieval"]["decomposition"])
    assert [(q.text, round(q.weight, 6)) for q in used.subqueries] == [("a navy dog collar", 0.7), ("a cushion", 0.3)]
    assert "sub-queries edited by hand" in used.repairs


def test_browse_filters_search_page_and_ticks_survive_a_reload(dashboard_env):
    at = page("browse")
    at.selectbox(key="browse:category").select("animals").run()
    at.text_input(key="browse:text").input("Fish").run()
    assert "**3** image(s)" in texts(at)
    shown = [int(c.key.rsplit(":", 1)[1]) for c in at.checkbox if c.key and c.key.startswith("browse:pick:")]
    at.checkbox(key=f"browse:pick:{shown[0]}").check().run()
    assert at.query_params["category"] == "animals" and at.query_params["contains"] == "Fish"
    again = reload(at, "browse")
    assert again.selectbox(key="browse:category").value == "animals"
    assert again.text_input(key="browse:text").value == "Fish" and "**3** image(s)" in texts(again)
    assert "1 selected" in texts(again) and again.checkbox(key=f"browse:pick:{shown[0]}").value  # the tick too
    # a visit to another page keeps the view too
    again.switch_page("../pages/overview.py").run()
    again.switch_page("../pages/browse.py").run()
    assert again.selectbox(key="browse:category").value == "animals"


def test_a_bookmarked_search_opens_with_an_unknown_category_left_out(dashboard_env):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"find": "a violin", "category": "no-such-category", "show": "All"})
    at.run()
    at.switch_page("../pages/browse.py").run()
    no_traceback(at)
    assert at.selectbox(key="browse:category").value == "All"
    assert at.text_input(key="browse:search-text").value == "a violin"
    assert "best matching **a violin**" in texts(at)


def test_the_users_name_is_remembered_after_a_reload(dashboard_env):
    at = page("blind_review")
    at.sidebar.text_input(key="user:name").input("maria").run()
    again = reload(at, "blind_review")
    assert again.sidebar.text_input(key="user:name").value == "maria"


def test_generate_after_a_reload_shows_the_form_of_the_job_still_running(dashboard_env):
    at = page("generate")
    at.segmented_control(key="generate:seed-choice").set_value("Prompt A (collar)").run()
    at.pills(key="generate:modes").set_value(["none", "full"]).run()
    at.number_input(key="generate:seed").set_value(7)
    at.number_input(key="generate:steps:tiny").set_value(3)
    by_label(at.button, "Generate").click().run()  # queued; nothing runs it in this test
    fresh = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # another tab, no session id
    fresh.switch_page("../pages/generate.py").run()
    no_traceback(fresh)
    assert fresh.text_area(key="generate:prompt").value == PROMPT_A
    assert fresh.pills(key="generate:modes").value == ["none", "full"]
    assert fresh.number_input(key="generate:seed").value == 7
    assert fresh.number_input(key="generate:steps:tiny").value == 3
    assert any(b.label == "Cancel" for b in fresh.button)
    assert not by_label(fresh.button, "Queue another run").disabled  # another can wait behind it


def test_the_queue_lists_cancels_and_resumes_a_job_queued_on_another_page(dashboard_env, tmp_path):
    from test_dashboard import drain

    at = page("queue")
    assert "No jobs yet" in at.info[0].value
    at.switch_page("../pages/generate.py").run()
    at.segmented_control(key="generate:seed-choice").set_value("Prompt A (collar)").run()
    at.pills(key="generate:modes").set_value(["none"]).run()
    at.selectbox(key="generate:size:tiny").select("64×64")
    at.number_input(key="generate:n").set_value(1)
    by_label(at.button, "Generate").click().run()
    at.switch_page("../pages/queue.py").run()
    no_traceback(at)
    assert "**0** running · **1** queued · **1** in all" in texts(at) and ":gray-badge[queued]" in texts(at)
    by_label(at.button, "Cancel").click().run()
    no_traceback(at)
    assert "Cancelled before it started." in texts(at) and ":orange-badge[cancelled]" in texts(at)
    at.switch_page("../pages/generate.py").run()  # the page that queued it says where to resume it
    assert any("Generation cancelled." in w.value and "Resume it on the **Queue** page" in w.value for w in at.warning)
    at.switch_page("../pages/queue.py").run()
    by_label(at.button, "Resume").click().run()
    assert "Queued again" in texts(at) and ":gray-badge[queued]" in texts(at)
    drain(at)
    assert ":green-badge[done]" in texts(at) and "1 run(s) saved" in at.get("progress")[0].proto.text
    assert [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]


def test_two_runs_queued_from_generate_wait_in_the_queue_under_the_users_name_and_both_show(dashboard_env,
                                                                                           tmp_path):
    from test_dashboard import drain

    at = page("generate")
    at.sidebar.text_input(key="user:name").input("maria").run()
    at.segmented_control(key="generate:seed-choice").set_value("Prompt A (collar)").run()
    at.pills(key="generate:modes").set_value(["none"]).run()
    at.selectbox(key="generate:size:tiny").select("64×64")
    at.number_input(key="generate:n").set_value(1)
    by_label(at.button, "Generate").click().run()
    at.number_input(key="generate:seed").set_value(5)
    by_label(at.button, "Queue another run").click().run()  # while the first still waits
    no_traceback(at)
    assert len([b for b in at.button if b.label == "Cancel"]) == 2  # the page follows both
    at.switch_page("../pages/queue.py").run()
    assert "**0** running · **2** queued · **2** in all" in texts(at)
    assert texts(at).count("by maria") == 2
    at.switch_page("../pages/generate.py").run()
    drain(at)
    no_traceback(at)
    runs = [json.loads((p / "run.json").read_text()) for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    assert sorted(r["settings"]["seed"] for r in runs) == sorted([TEST_MODEL_SETTINGS.seed, 5])  # both ran
    assert not [b for b in at.button if b.label == "Cancel"] and by_label(at.button, "Generate")
    assert any("Saved as run" in s.value for s in at.success)


def test_a_session_file_is_a_name_and_a_damaged_one_starts_afresh(tmp_path):
    assert not session.valid_id("../../etc/passwd") and not session.valid_id("") and session.valid_id(session.new_id())
    (tmp_path / "abcdefgh1234.json").write_text('{"prompt": 3, "decomposition": {"subqueries": "x"}}')
    assert session.load(tmp_path, "abcdefgh1234") == session.Kept()
    kept = session.Kept("a dog on a sofa", None, "maria")
    session.save(tmp_path, "abcdefgh1234", kept)
    assert session.load(tmp_path, "abcdefgh1234") == kept


def test_variations_use_the_inspectors_edited_table_of_the_working_prompt(dashboard_env, tmp_path):
    from test_dashboard import drain, jpeg

    at = page("retrieval")
    at.segmented_control(key="retrieval:seed-choice").set_value("Prompt A (collar)").run()
    folder, session_id = Path(os.environ["RDM_JOBS"]) / "sessions", at.query_params["session"]
    kept = session.load(folder, session_id)
    session.save(folder, session_id, replace(kept, decomposition=replace(
        kept.decomposition, subqueries=(SubQuery("a navy dog collar", 1.0),), repairs=("sub-queries edited by hand",))))
    again = reload(at, "variations")
    assert "Sub-queries: a navy dog collar **1.00** (as edited in the Retrieval inspector)" in texts(again)
    again.file_uploader(key="variations:photo").set_value([("collar.jpg", jpeg((20, 30, 90)), "image/jpeg")]).run()
    again.pills(key="variations:strengths").set_value([0.5]).run()
    again.pills(key="variations:modes").set_value(["subquery"]).run()
    by_label(again.button, "Make the variations").click().run()
    drain(again)
    no_traceback(again)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    used = json.loads((run_dir / "run.json").read_text())["modes"][0]["retrieval"]["decomposition"]
    assert [q["text"] for q in used["subqueries"]] == ["a navy dog collar"]
