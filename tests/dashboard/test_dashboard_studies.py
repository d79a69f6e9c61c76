"""The Studies and Blind review pages under AppTest: a study's figures, blind votes that survive a new
session, and the reviewers' ranking; no study and a broken study are messages, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest
from apptest_pages import by_label, drain, no_traceback, page, texts

from rdm.study.votes import VoteBook


def progress(at) -> str:
    return at.get("progress")[0].proto.text


@pytest.fixture
def studies(dashboard_env, small_study, tmp_path, monkeypatch):
    root = tmp_path / "studies"
    shutil.copytree(small_study, root / "pets")
    monkeypatch.setenv("RDM_STUDIES", str(root))
    return root


def test_the_studies_page_shows_intervals_wins_requirements_and_examples(studies):
    at = page("studies")
    no_traceback(at)
    shown = texts(at)
    assert "TEST MODEL" in shown and "n is the number of prompts (3)" in shown
    assert "not pre-registered" in shown
    assert at.selectbox(key="studies:metric").value == "clip:tiny"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bar = next(c for c in charts if c["data"][0]["type"] == "bar")
    assert bar["data"][0]["x"] == ["none", "full", "subquery+filter"] and bar["data"][0]["error_y"]["visible"]
    assert any(c["data"][0]["type"] == "heatmap" and "win rate" in c["layout"]["title"]["text"] for c in charts)
    assert any("per requirement" in c["layout"]["title"]["text"] for c in charts)
    pairs = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert len(pairs) == 3 and set(pairs["n (prompts)"]) == {3} and set(pairs["images"]) == {6}
    assert (pairs["p_adjusted"] >= pairs["p_value"]).all()
    examples = [c for i in at.get("image") for c in i.captions if " · seed " in c]
    assert len(examples) == 6 and "Best by clip:tiny" in shown  # 3 best and 3 worst
    assert "No votes yet" in shown
    at.selectbox(key="studies:metric").set_value("fidelity").run()
    no_traceback(at)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bar = next(spec for spec in specs if spec["data"][0]["type"] == "bar")
    assert bar["data"][0]["x"] == ["full", "subquery+filter"]  # no references, no fidelity


def test_blind_votes_are_saved_at_once_and_rank_the_modes(studies):
    at = page("blind_review")
    assert "Type **your name**" in texts(at)
    at.session_state["user:name"] = "ana"
    at.run()
    no_traceback(at)
    assert progress(at) == "ana: 0 of 18 pairs voted"
    labels = [b.label for b in at.button]
    assert {"Left is better", "Right is better", "Tie", "Both bad"} <= set(labels)
    shown = texts(at)
    assert "none" not in shown.split("**Prompt:**")[-1].split("Keys:")[0]  # the modes stay hidden
    for n in range(4):
        by_label(at.button, "Left is better" if n % 2 else "Right is better").click().run()
        no_traceback(at)
    assert progress(at) == "ana: 4 of 18 pairs voted"
    votes = VoteBook(studies / "pets").votes()
    assert len(votes) == 4 and {v["reviewer"] for v in votes} == {"ana"}
    again = page("blind_review")  # a new session (a reload): the votes are kept and counted
    again.session_state["user:name"] = "ana"
    again.run()
    assert progress(again) == "ana: 4 of 18 pairs voted"
    results = page("studies")
    no_traceback(results)
    ranked = next(d.value for d in results.dataframe if "Bradley-Terry strength" in d.value.columns)
    assert set(ranked["mode"]) == {"none", "full", "subquery+filter"} and ranked["wins"].sum() == 4
    assert "4 vote(s) from 1 reviewer(s), 4 counted" in texts(results)


def test_no_study_and_a_broken_study_are_messages(dashboard_env, tmp_path, monkeypatch):
    monkeypatch.setenv("RDM_STUDIES", str(tmp_path / "none-yet"))
    at = page("studies")
    no_traceback(at)
    assert "No studies in" in texts(at) and "rdm study run" in texts(at)
    broken = tmp_path / "studies" / "bad"
    broken.mkdir(parents=True)
    (broken / "study.json").write_text("{not json")
    monkeypatch.setenv("RDM_STUDIES", str(tmp_path / "studies"))
    at = page("blind_review")
    at.session_state["user:name"] = "ana"
    at.run()
    no_traceback(at)
    assert any("cannot be read" in e.value for e in at.error)


def test_a_study_submitted_from_the_page_runs_in_the_background_and_can_be_cancelled(dashboard_env, tmp_path):
    import time

    from rdm.jobs import JobBook, make_queue

    at = page("studies")
    assert "No studies in" in texts(at)
    at.text_input(key="studyjobs:name").input("pets-quick")
    at.selectbox(key="studyjobs:suite").set_value("dev/seed")
    at.multiselect(key="studyjobs:modes").set_value(["none", "subquery+filter"])
    at.number_input(key="studyjobs:seeds").set_value(1)
    # the tiny test backend's own steps and size, not 50 steps at 768 px of random weights
    assert (at.number_input(key="studyjobs:steps").value, at.number_input(key="studyjobs:size").value) == (4, 128)
    at.number_input(key="studyjobs:steps").set_value(2)
    at.number_input(key="studyjobs:size").set_value(64)
    at.multiselect(key="studyjobs:scorers").set_value(["clip:tiny", "vqa:tiny"])
    at.selectbox(key="studyjobs:backend").set_value("tiny")
    by_label(at.button, "Submit the study").click().run()
    no_traceback(at)
    assert any("Queued the study **pets-quick**" in s.value for s in at.success)
    book = JobBook(tmp_path / "jobs")
    (job,) = book.jobs()
    assert job.status == "queued" and "pets-quick" in texts(at) and any(b.label == "Cancel" for b in at.button)
    # a second one, cancelled before the worker takes it
    at.text_input(key="studyjobs:name").input("pets-later")
    by_label(at.button, "Submit the study").click().run()
    later = next(j for j in book.jobs() if j.title == "pets-later")
    at.button(key=f"studyjobs:cancel:{later.id}").click().run()
    assert book.get(later.id).status == "cancelled"
    # the worker (here in-process) runs the first; the page shows its study once it is done
    huey, _ = make_queue(tmp_path / "jobs")
    worker = huey.create_consumer(workers=1, periodic=False, initial_delay=0.05, max_delay=0.2)
    worker.start()
    try:
        deadline = time.monotonic() + 180
        while book.get(job.id).status in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop(graceful=True)
    assert book.get(job.id).status == "done", book.get(job.id).message
    done = page("studies")
    no_traceback(done)
    assert done.selectbox(key="studies:folder").value == "pets-quick"
    assert ", run unchanged" in texts(done)  # the page registered its plan before the job existed
    assert any(b.label == "Resume" for b in done.button)  # the cancelled one can still run


def test_variations_make_a_strength_by_mode_grid_with_the_same_seeds(dashboard_env, tmp_path):
    from apptest_pages import jpeg

    from rdm.runs import list_runs

    at = page("variations")
    assert by_label(at.button, "Make the variations").disabled  # no photo, no prompt yet
    at.text_area(key="variations:prompt").input("a navy dog collar on a cushion")
    at.file_uploader(key="variations:photo").set_value([("collar.jpg", jpeg((20, 30, 90)), "image/jpeg")]).run()
    no_traceback(at)
    by_label(at.button, "Make the variations").click().run()
    drain(at)
    no_traceback(at)
    runs = sorted(list_runs(tmp_path / "runs"), key=lambda r: r.settings.strength)
    assert [r.settings.strength for r in runs] == [0.2, 0.35, 0.5]
    assert all([m.mode for m in r.modes] == ["none", "subquery+filter"] and r.variation_of for r in runs)
    assert len({tuple(i.seed for m in r.modes for i in m.images) for r in runs}) == 1  # the same seeds throughout
    shown = texts(at)
    assert "**strength 0.2**" in shown and "**strength 0.5**" in shown and "TEST MODEL" in shown
    captions = [c for i in at.get("image") for c in i.captions if c.startswith("seed ")]
    assert len(captions) == 3 * 2  # strengths x modes


def test_a_reload_follows_a_generation_still_running(dashboard_env):
    at = page("generate")
    at.segmented_control(key="generate:seed-choice").set_value("Prompt A (collar)").run()
    at.pills(key="generate:modes").set_value(["none"]).run()
    by_label(at.button, "Generate").click().run()
    reloaded = page("generate")  # a new session: the queued job is followed again; another may wait behind it
    no_traceback(reloaded)
    assert any(b.label == "Cancel" for b in reloaded.button) and by_label(reloaded.button, "Queue another run")
    drain(reloaded)
    no_traceback(reloaded)
    assert any("Saved as run" in s.value for s in reloaded.success)
