"""Every dashboard page, run headless with AppTest against a small tiny-encoder DB and the tiny generator.

Each test drives a page the way a user would (pick, type, click) and checks what the user would
see or what the DB now holds. No test may leave a traceback on a page.
"""

from __future__ import annotations

import base64
import io
import os
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apptest_pages import APP, TIMEOUT, by_label, drain, jpeg, no_traceback, page, texts
from dashboard.config import secret_overrides
from dashboard.map_figure import LABEL_POSITIONS, label_positions
from dashboard.prompt import SEED_PROMPTS
from tiny_db import demo_files
from rdm.db import ImageStore

ROOT = Path(__file__).resolve().parents[2]

# --- Overview ---


def test_overview_shows_the_db_and_what_is_missing(dashboard_env):
    at = page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Live images"] == "12" and metrics["Categories"] == "4"
    assert metrics["Deleted (restorable)"] == "0"
    warnings = " ".join(w.value for w in at.warning)
    assert "Tiny test model" in warnings and "No LLM configured" in warnings
    assert "`tiny`" in texts(at)
    assert any("Vector index: flat (exact) over 12 vectors" in c.value and "index.faiss" in c.value
               for c in at.caption)


def test_missing_db_is_a_message_with_the_fix_and_the_rest_still_works(dashboard_env, monkeypatch, tmp_path):
    monkeypatch.setenv("RDM_DB", str(tmp_path / "nowhere"))
    at = page("overview")
    assert "No image DB" in at.error[0].value and "make demo-db" in at.error[0].value
    assert any("Tiny test model" in w.value for w in at.warning)  # the backend section still rendered
    at = page("browse")
    assert "No image DB" in at.error[0].value


def test_secrets_fill_settings_but_never_show(dashboard_env, monkeypatch):
    monkeypatch.setenv("RDM_WORKER_URL", "http://from-env:8765")
    assert secret_overrides({"RDM_WORKER_URL": "http://from-secrets", "RDM_WORKER_TOKEN": "s3cret"},
                            {"RDM_WORKER_URL": "http://from-env:8765"}) == {"worker_token": "s3cret"}
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["RDM_WORKER_TOKEN"] = "s3cret-token"
    at.secrets["OPENAI_API_KEY"] = "sk-very-secret"
    at.run()
    shown = texts(at)
    assert "**Worker token**: `set`" in shown and "**LLM key**: `set`" in shown
    assert "s3cret-token" not in shown and "sk-very-secret" not in shown


# --- Browse & curate ---


def test_browse_filters_by_category_and_caption(dashboard_env):
    at = page("browse")
    assert "**12** image(s)" in texts(at)
    by_label(at.selectbox, "Category").select("animals").run()
    assert "**3** image(s)" in texts(at)
    by_label(at.selectbox, "Category").select("All").run()
    by_label(at.text_input, "Caption, file name or tag contains").input("Fish 1").run()
    assert "**3** image(s)" in texts(at)  # Fish 1, Fish 10, Fish 11


def test_pages_step_with_previous_and_next_and_select_all_shown_stays_in_the_bar(dashboard_env):
    store = ImageStore.open(dashboard_env)
    rng = np.random.default_rng(3)
    files = []
    for n in range(14):  # 26 images: two pages of 24
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
        files.append((f"noise-{n}.png", buf.getvalue()))
    store.ingest_bytes(files, category="objects")
    at = page("browse")
    assert "showing 1–24" in texts(at)
    assert by_label(at.button, "Previous page").disabled and not by_label(at.button, "Next page").disabled
    by_label(at.button, "Next page").click().run()
    assert "showing 25–26" in texts(at) and by_label(at.button, "Next page").disabled
    by_label(at.button, "Select all shown").click().run()
    assert "2 selected" in texts(at) and not by_label(at.button, "Clear selection").disabled
    by_label(at.button, "Previous page").click().run()
    assert "showing 1–24" in texts(at) and "2 selected" in texts(at)  # the selection outlives the page
    by_label(at.button, "Clear selection").click().run()
    assert "Tick **Select** on images" in texts(at)
    at.pagination[0].set_value(2).run()  # the page numbers and the buttons move one page state
    assert "showing 25–26" in texts(at) and at.pagination[0].value == 2
    by_label(at.button, "Previous page").click().run()
    assert "showing 1–24" in texts(at) and at.pagination[0].value == 1


def test_bulk_edit_of_a_caption_is_saved_and_survives_a_reload(dashboard_env):
    at = page("browse")
    at.checkbox(key="browse:pick:2").check().run()
    by_label(at.text_area, "Caption").input("A goldfish in a bowl")  # form fields apply on submit
    by_label(at.button, "Save changes").click().run()
    no_traceback(at)
    assert [s.value for s in at.success] == ["Saved the caption of 1 image(s)."]  # not the untouched fields
    assert ImageStore.open(dashboard_env).get(2).caption == "A goldfish in a bowl"
    assert "A goldfish in a bowl" in texts(page("browse"))  # a fresh session: a reload


def test_bulk_category_and_tags_for_several_images(dashboard_env):
    at = page("browse")
    for image_id in (1, 2, 3):
        at.checkbox(key=f"browse:pick:{image_id}").check().run()
    assert "3 selected" in texts(at)
    form_category = [s for s in at.selectbox if s.label == "Category"][1]  # [0] is the filter
    form_category.set_value("people")
    by_label(at.text_input, "Tags (comma-separated)").input("Reviewed")
    by_label(at.button, "Save changes").click().run()
    no_traceback(at)
    assert [s.value for s in at.success] == ["Saved the category and tags of 3 image(s)."]
    records = ImageStore.open(dashboard_env).records(ids=[1, 2, 3])
    assert {r.category for r in records} == {"people"}
    assert all("reviewed" in r.tags and "fish" in r.tags for r in records)  # added, not replaced


def test_delete_then_restore(dashboard_env):
    at = page("browse")
    at.checkbox(key="browse:pick:4").check().run()
    at.checkbox(key="browse:pick:5").check().run()
    by_label(at.button, "Delete 2").click().run()
    no_traceback(at)
    store = ImageStore.open(dashboard_env)
    assert store.stats().live == 10 and "**10** image(s)" in texts(at)
    at.segmented_control(key="browse:show").set_value("Deleted").run()
    assert "**2** image(s)" in texts(at)
    at.checkbox(key="browse:pick:4").check().run()
    at.checkbox(key="browse:pick:5").check().run()
    by_label(at.button, "Restore 2").click().run()
    no_traceback(at)
    assert store.stats().live == 12 and store.stats().deleted == 0


def test_upload_reports_each_file(dashboard_env):
    at = page("browse")
    at.session_state["browse:section"] = "Upload"  # tabs run only once opened
    at.run()
    # the README's limit per image, beside the uploader's own limit per upload (a zip)
    assert "Each image may be up to 100 MB and 50 MP, also inside a zip; an upload (a zip) up to" in texts(at)
    duplicate = demo_files()[0].read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("shoot/green.jpg", jpeg((30, 200, 30)))
    at.file_uploader(key="browse:files:0").set_value([
        ("red.jpg", jpeg((220, 30, 30)), "image/jpeg"), ("blue.jpg", jpeg((30, 30, 220)), "image/jpeg"),
        ("copy.jpg", duplicate, "image/jpeg"), ("notes.png", b"not an image", "image/png"),
        ("shoot.zip", archive.getvalue(), "application/zip")]).run()
    by_label(at.selectbox, "Into category").set_value("people")
    by_label(at.button, "Add to the DB").click().run()
    no_traceback(at)
    assert "3 added, 1 duplicate(s) not stored again, 1 skipped" in texts(at)
    report = at.dataframe[0].value
    assert dict(zip(report["file"], report["result"])) == {"red.jpg": "added", "blue.jpg": "added",
                                                           "copy.jpg": "duplicate", "notes.png": "skipped",
                                                           "green.jpg": "added"}
    assert "not an image" in report.set_index("file").loc["notes.png", "reason"]
    store = ImageStore.open(dashboard_env)
    assert store.stats().by_category["people"] == 3 + 3 and store.stats().live == 15


def test_text_search_and_find_similar(dashboard_env):
    at = page("browse")
    at.text_input(key="browse:search-text").input("a fish in the sea")
    by_label(at.button, "Search").click().run()
    no_traceback(at)
    assert "best matching **a fish in the sea**" in texts(at)
    assert "`score " in texts(at)  # scores under the thumbnails
    at.button(key="browse:similar:7").click().run()
    assert "most like **#7**" in texts(at)
    assert "**#7**" not in [m.value.split(" ·")[0] for m in at.tabs[0].markdown]  # itself excluded
    by_label(at.button, "Back to all images").click().run()
    assert "**12** image(s)" in texts(at)


def test_review_tab_groups_near_duplicates_and_lists_outliers(dashboard_env):
    store = ImageStore.open(dashboard_env)
    red = Image.new("RGB", (120, 90), (200, 40, 40))
    nearly = red.copy()
    nearly.putpixel((0, 0), (201, 40, 40))
    for name, im in (("red-a.png", red), ("red-b.png", nearly)):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        store.ingest_bytes([(name, buf.getvalue())], category="objects")
    at = page("browse")
    assert not at.slider  # the Review tab runs only once it is opened
    at.session_state["browse:section"] = "Review"
    at.run()
    assert "**1** group(s) of copies, 1 copy in all." in texts(at)  # one pixel apart: a copy
    at.session_state["browse:review"] = "Similar (embedding)"
    at.run()
    by_label(at.slider, "Cosine at least").set_value(0.995).run()
    no_traceback(at)
    shown = texts(at)
    assert "**1** group(s) of 2 images" in shown and "**Group 1** · 2 images" in shown
    at.session_state["browse:review"] = "Outliers"
    at.run()
    assert "(margin " in texts(at) and "; typical " in texts(at)  # each outlier: its margin and what is typical


def test_look_alikes_are_bounded_groups_paged_with_a_note_when_everything_is_alike(dashboard_env):
    store = ImageStore.open(dashboard_env)
    store.ingest_bytes([(f"red-{n}.png", png(Image.new("RGB", (120, 90), (200, 40 + n, 40))))
                        for n in range(40)], category="objects")  # 40 shades of one red: all alike
    at = page("browse")
    at.session_state["browse:section"] = "Review"
    at.session_state["browse:review"] = "Similar (embedding)"
    at.run()
    by_label(at.slider, "Cosine at least").set_value(0.9).run()
    no_traceback(at)
    shown = texts(at)
    assert "of random pairs of images are this alike" in shown
    sizes = [int(m.value.split(" · ")[1].split()[0]) for m in at.markdown if m.value.startswith("**Group ")]
    assert len(sizes) >= 4 and max(sizes) == 12  # 40 alike images: capped groups, not one of 40


def test_copies_of_a_photo_are_grouped_and_keep_best_deletes_the_rest(dashboard_env):
    from photo_copies import DOG, copies_of

    store = ImageStore.open(dashboard_env)
    store.ingest([DOG])
    store.ingest_bytes(copies_of(DOG)[:2])
    at = page("browse")
    at.session_state["browse:section"] = "Review"
    at.run()
    no_traceback(at)
    assert "**1** group(s) of copies, 2 copies in all." in texts(at)
    by_label(at.button, "Keep the best of every group (delete 2 copies)").click().run()
    no_traceback(at)
    assert any("deleted 2 copies" in s.value for s in at.success)
    assert ImageStore.open(dashboard_env).stats().deleted == 2


# --- Embedding map ---


def map_legend(at: AppTest) -> str:
    return next(h.proto.body for h in at.get("html") if "rdm-map-legend" in h.proto.body)


def typed_array(value) -> list:
    """A figure's array as Plotly sends numbers: a typed array ({dtype, bdata: base64}) or a plain list."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), np.dtype(value["dtype"])).tolist()
    return list(value)


def test_map_draws_every_image_and_opens_a_selection_for_bulk_actions(dashboard_env, monkeypatch):
    import rdm.curation.map_layouts as map_layouts

    layouts = []
    real_fit = map_layouts.fit_umap
    monkeypatch.setattr(map_layouts, "fit_umap", lambda *a, **k: layouts.append(1) or real_fit(*a, **k))
    at = page("embedding_map")
    assert "UMAP of 12 images" in texts(at)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    ids = [i for t in figure["data"] if t.get("mode") == "markers" for i in typed_array(t["customdata"])]
    assert sorted(ids) == [r.id for r in ImageStore.open(dashboard_env).records()]  # one point per image, its id and figure["layout"]["dragmode"] == "lasso"
    assert all(f"{name} (3)" in map_legend(at) for name in ("animals", "backgrounds", "objects", "people"))
    at.segmented_control(key="map:colour").set_value("Tag").run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec) == figure  # restyled in the browser, not redrawn
    assert len(layouts) == 1  # reruns reuse the layout of this index version
    # a lasso selection (as the chart reports it) opens those images with the bulk actions
    at.session_state["map:lasso-ids"] = [1, 2]
    at.session_state["map:selected"] = {1, 2}
    at.run()
    assert "**2** image(s) in the lasso" in texts(at) and "2 selected" in texts(at)
    by_label(at.button, "Delete 2").click().run()
    no_traceback(at)
    assert ImageStore.open(dashboard_env).stats().live == 10
    # a new index version: the deleted points leave the saved layout, the others keep their places
    assert "UMAP of 10 images: 10 as fitted" in texts(at) and len(layouts) == 1
    by_label(at.button, "Refit the layout").click().run()
    no_traceback(at)
    assert len(layouts) == 2 and "UMAP of 10 images (" in texts(at)


def test_a_large_map_is_fitted_by_the_job_worker_and_the_page_shows_it_when_done(dashboard_env, monkeypatch):
    import rdm.curation.map_layouts as map_layouts
    from rdm.jobs import JobBook

    monkeypatch.setattr(map_layouts, "BACKGROUND_MIN", 5)  # 12 images count as thousands here
    at = page("embedding_map")
    no_traceback(at)
    assert "being fitted in the background" in at.info[0].value and not at.get("plotly_chart")
    jobs = JobBook(Path(os.environ["RDM_JOBS"])).jobs()
    assert [(j.kind, j.status) for j in jobs] == [("map", "queued")]
    at.run()  # a rerun follows the same job, it does not queue another
    assert len(JobBook(Path(os.environ["RDM_JOBS"])).jobs()) == 1
    drain(at)
    no_traceback(at)
    assert "UMAP of 12 images" in texts(at) and at.get("plotly_chart")
    assert map_layouts.saved_layout(ImageStore.open(dashboard_env)) is not None  # saved with the DB
    by_label(at.button, "Refit the layout").click().run()  # a refit goes to the worker too; the map stays
    assert at.get("plotly_chart") and any(j.payload["refit"] for j in JobBook(Path(os.environ["RDM_JOBS"])).jobs())
    drain(at)
    no_traceback(at)
    assert [j.status for j in JobBook(Path(os.environ["RDM_JOBS"])).jobs()] == ["done", "done"]


def test_map_colours_by_tag_and_overlays_sub_queries(dashboard_env):
    at = page("embedding_map")
    at.segmented_control(key="map:colour").set_value("Tag").run()
    assert "monuments (3)" in map_legend(at) and "music (3)" in map_legend(at)
    # any tag can be highlighted: its images in colour, every other one grey
    at.selectbox(key="map:highlight:Tag").set_value("music").run()
    assert map_legend(at).index("music (3)") < map_legend(at).index("others (9)")
    at.segmented_control(key="map:seed-choice").set_value("Prompt B (hoodie)").run()
    by_label(at.button, "Overlay").click().run()
    no_traceback(at)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    stars = [t for t in figure["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert stars and all(t["name"].startswith("sub-query: ") for t in stars)
    assert all(t["textposition"] in LABEL_POSITIONS for t in stars)
    kept = [t for t in figure["data"] if t.get("marker", {}).get("symbol") == "circle-open"]
    assert kept and all("kept" in label for t in kept for label in t["text"])
    assert "sub-queries of" in texts(at)


def test_labels_of_nearby_sub_queries_take_different_places():
    assert label_positions([(0, 0), (0.01, 0), (5, 5), (0, 0.02)], near=1.0) == [
        "top center", "bottom center", "top center", "middle right"]


# --- Retrieval inspector ---


def test_retrieval_inspector_on_prompt_b_and_the_threshold(dashboard_env):
    at = page("retrieval")
    at.segmented_control(key="retrieval:seed-choice").set_value("Prompt B (hoodie)").run()
    no_traceback(at)
    assert at.text_area(key="retrieval:prompt").value == SEED_PROMPTS["Prompt B (hoodie)"]
    metrics = {m.label: int(m.value) for m in at.metric}
    assert metrics["Sub-queries"] >= 2 and metrics["Hits"] > 0 and metrics["Kept"] > 0
    shown = texts(at)
    assert ":green-badge[kept]" in shown and "KeyBERT keywords:" in shown
    assert "weights sum to 1" in shown
    plan = at.dataframe[-2].value if len(at.dataframe) > 2 else at.dataframe[1].value
    assert abs(plan["weight"].sum() - 1.0) < 1e-6
    # the strictest absolute threshold filters every hit and leaves every sub-query uncovered
    at.slider(key="retrieval:threshold:tiny:hybrid").set_value(1.0).run()
    no_traceback(at)
    metrics = {m.label: int(m.value) for m in at.metric}
    assert metrics["Kept"] == 0 and metrics["Uncovered"] == metrics["Sub-queries"]
    assert ":red-badge[not covered]" in texts(at) and "below absolute threshold" in texts(at)
    # the same sub-queries and hits, drawn on the embedding map
    by_label(at.button, "Show these sub-queries on the embedding map").click().run()
    no_traceback(at)
    assert "overlay: " in texts(at) and "UMAP of 12 images" in texts(at)


def test_llm_decomposer_without_an_llm_falls_back_with_the_reason(dashboard_env):
    at = page("retrieval")
    at.segmented_control(key="retrieval:seed-choice").set_value("Prompt A (collar)").run()
    at.selectbox(key="retrieval:decomposer").select("llm").run()
    no_traceback(at)
    assert "The LLM was not used" in at.warning[0].value and "RDM_LLM_BASE_URL" in at.warning[0].value
    assert {m.label for m in at.metric} >= {"Sub-queries", "Kept"}  # the page still works


# --- Generate & compare, Runs & report ---


def _generate(at: AppTest, modes: list[str], photos=()) -> AppTest:
    at.segmented_control(key="generate:seed-choice").set_value("Prompt A (collar)").run()
    at.pills(key="generate:modes").set_value(modes).run()
    if photos:
        at.file_uploader(key="generate:photos").set_value(list(photos)).run()
    at.number_input(key="generate:n").set_value(1)
    at.selectbox(key="generate:size:tiny").select("64×64")
    at.number_input(key="generate:steps:tiny").set_value(2)
    by_label(at.button, "Generate").click().run()
    no_traceback(at)
    assert any(b.label == "Cancel" for b in at.button)  # queued, followed; another run may wait behind it
    assert not by_label(at.button, "Queue another run").disabled
    drain(at)
    no_traceback(at)
    return at


def test_generate_compares_modes_with_the_tiny_backend_and_saves_the_run(dashboard_env, tmp_path):
    at = _generate(page("generate"), ["none", "subquery+filter", "exp1"],
                   photos=[("collar.jpg", jpeg((20, 30, 90)), "image/jpeg")])
    assert any("Saved as run" in s.value for s in at.success)
    assert any("TEST MODEL" in w.value for w in at.warning)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    record = json.loads((run_dir / "run.json").read_text())
    assert [m["mode"] for m in record["modes"]] == ["none", "subquery+filter", "exp1"]
    assert record["test_model"] is True and record["settings"]["size"] == [64, 64]
    seeds = {m["mode"]: [i["seed"] for i in m["images"]] for m in record["modes"]}
    assert len(set(map(tuple, seeds.values()))) == 1  # the same seed in every column
    exp1_inputs = [i for i in record["modes"][2]["plan"]["items"] if i["source"] == "input"]
    assert [i["weight"] for i in exp1_inputs] == [pytest.approx(0.2)]  # the preset's input weight
    assert "prompt `" in texts(at)  # a score under each image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_generate_keeps_an_uploaded_product_pixel_identical(dashboard_env, tmp_path):
    rgba = np.zeros((20, 28, 4), np.uint8)
    rgba[..., :3] = np.arange(28, dtype=np.uint8)[None, :, None] * 8
    rgba[..., 3] = 255
    rgba[:, :3, 3] = 0  # transparent left strip: cropped away
    at = page("generate")
    at.selectbox(key="generate:size:tiny").select("64×64").run()
    # a photo without transparency is explained, and generating is blocked until it is fixed
    at.file_uploader(key="generate:lock-photo").set_value(
        [("flat.png", png(Image.new("RGB", (28, 20), "red")), "image/png")]).run()
    no_traceback(at)
    assert any("no transparent background: upload a PNG with transparency" in e.value for e in at.error)
    assert by_label(at.button, "Generate").disabled
    # a transparent PNG, moved off the canvas, then back
    at.file_uploader(key="generate:lock-photo").set_value(
        [("collar-cutout.png", png(Image.fromarray(rgba, "RGBA")), "image/png")]).run()
    at.slider(key="generate:lock-scale").set_value(25 / 64).run()
    at.slider(key="generate:lock-x").set_value(0.99).run()
    assert any("sticks out of the 64x64 canvas" in e.value for e in at.error)
    at.slider(key="generate:lock-x").set_value(0.5).run()
    at.slider(key="generate:lock-y").set_value(0.5).run()
    no_traceback(at)
    assert not at.error and any("grey: generated around the product" in c for i in at.get("image") for c in i.captions)
    at = _generate(at, ["none"])
    assert any("Saved as run" in s.value for s in at.success)
    assert any("Product kept pixel-identical" in i.value for i in at.info)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["product"]["placement"] == {"scale": 25 / 64, "x": 0.5, "y": 0.5}
    assert record["product"]["source"].endswith("collar-cutout.png")
    (image,) = (run_dir / "images").glob("*.png")
    saved = np.asarray(Image.open(image).convert("RGB"))
    assert np.array_equal(saved[22:42, 20:45], rgba[:, 3:, :3])  # 25x20 centred on the 64x64 canvas


def test_unreachable_gpu_worker_is_a_message_not_a_crash(dashboard_env, monkeypatch):
    monkeypatch.setenv("RDM_WORKER_URL", "http://127.0.0.1:9")
    at = page("generate")
    at.selectbox(key="generate:backend").select("remote").run()
    at.segmented_control(key="generate:seed-choice").set_value("Prompt B (hoodie)").run()
    at.pills(key="generate:modes").set_value(["none"]).run()
    by_label(at.button, "Generate").click().run()
    drain(at)
    no_traceback(at)
    assert any("Generation failed" in e.value and "rdm worker" in e.value for e in at.error)


def test_generate_says_before_the_click_when_weights_are_missing(dashboard_env, monkeypatch, tmp_path):
    monkeypatch.setenv("RDM_PRIOR_ID", str(tmp_path / "no-prior"))
    monkeypatch.setenv("RDM_DECODER_ID", str(tmp_path / "no-decoder"))
    at = page("generate")
    at.selectbox(key="generate:backend").select("local").run()
    no_traceback(at)
    assert any("weights missing" in e.value and "HF_HOME" in e.value for e in at.error)
    assert by_label(at.button, "Generate") is not None  # the page still works


def test_runs_page_opens_a_run_with_downloads_and_compares_two(dashboard_env):
    at = page("runs")
    assert "No runs yet" in at.info[0].value
    gen = page("generate")
    _generate(gen, ["none", "full"])
    _generate(gen, ["subquery"])
    at = page("runs")
    assert len(at.dataframe[0].value) == 2
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Download HTML report", "Download zip (images + metadata)"]
    at.toggle(key=f"runs:preview:{at.multiselect(key='runs:picked').value[0]}").set_value(True).run()
    no_traceback(at)
    assert at.get("iframe")  # the report, shown in the page
    at.multiselect(key="runs:picked").set_value(list(at.dataframe[0].value["run"])).run()
    no_traceback(at)
    assert "Comparing 2 runs" in [h.value for h in at.subheader]
    table = at.dataframe[1].value
    assert set(table["mode"]) == {"none", "full", "subquery"} and "full prompt" in table.columns
    diff = at.dataframe[2].value  # what differs between the two runs: the modes asked for, not the seed
    assert "options.modes" in set(diff["setting"]) and "settings.seed" not in set(diff["setting"])
    assert "**Settings that differ**" in texts(at)


def saved_run(runs_dir: Path, modes: tuple[str, ...], created: str, strength: float | None = None) -> str:
    """A run folder written directly (no generation), stamped ``created``; returns its id."""
    from rdm.generate import GeneratorInfo, GenerationSettings
    from rdm.plan import prompt_only_plan
    from rdm.runs import ModeOutput, save_run

    outputs = [ModeOutput(replace(prompt_only_plan(SEED_PROMPTS["Prompt B (hoodie)"]), mode=m),
                          (Image.new("RGB", (64, 64), "gray"),), 0.1) for m in modes]
    info = GeneratorInfo("tiny", "prior", "decoder", "cpu", "float32", test_model=True)
    record = save_run(runs_dir, outputs, settings=GenerationSettings(size=(64, 64), strength=strength or 0.3),
                      generator=info, variation_of="product.png" if strength else None)
    run_json = record.folder / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "created": created}))
    return record.id


def test_runs_that_share_a_minute_each_open_with_a_label_of_their_own(dashboard_env, tmp_path):
    runs_dir = tmp_path / "runs"
    same = [saved_run(runs_dir, ("none", "full"), "2026-12-01T10:15:07+00:00") for _ in range(2)]
    other = saved_run(runs_dir, ("none", "full"), "2026-12-01T10:15:42+00:00")
    variations = [saved_run(runs_dir, ("none",), "2026-12-01T10:15:50+00:00", strength=v) for v in (0.2, 0.35)]
    at = page("runs")
    labels = at.multiselect(key="runs:picked").options  # as shown
    assert len(set(labels)) == len(labels) == 5
    assert any(lab.startswith("2026-12-01 10:15:42 · none, full · A cute dog") for lab in labels)
    assert any("strength 0.35" in lab for lab in labels) and any("strength 0.2 " in lab for lab in labels)
    for run_id in [*same, other, *variations]:  # each opens itself, not its neighbour
        at.multiselect(key="runs:picked").set_value([run_id]).run()
        no_traceback(at)
        assert any(f"Run `{run_id}`" in c.value for c in at.caption)
    assert any("variations of `product.png` at strength 0.35" in c.value for c in at.caption)  # the last opened
    at.multiselect(key="runs:picked").set_value([*same, other]).run()
    assert "Comparing 3 runs" in [h.value for h in at.subheader]
    assert sorted(at.dataframe[1].value["run"]) == sorted(same * 2 + [other] * 2)  # two modes per run, once each


def test_cli_and_page_runs_of_the_same_request_record_the_same_options(dashboard_env, tmp_path):
    from typer.testing import CliRunner

    from rdm.cli import app

    modes = ["none", "subquery+filter"]
    _generate(page("generate"), modes)
    (page_run,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    cli_runs = tmp_path / "cli-runs"
    result = CliRunner().invoke(app, ["generate", SEED_PROMPTS["Prompt A (collar)"], "--compare", "--mode", modes[0],
                                      "--mode", modes[1], "--backend", "tiny", "--n", "1", "--size", "64",
                                      "--steps", "2", "--prior-steps", "2", "--db", str(dashboard_env),
                                      "--runs-dir", str(cli_runs)])
    assert result.exit_code == 0, result.output
    (cli_run,) = cli_runs.iterdir()
    from_page, from_cli = (json.loads((run / "run.json").read_text()) for run in (page_run, cli_run))
    assert from_page["options"] == from_cli["options"]
    assert from_page["options"]["modes"] == modes and from_page["options"]["backend"] == "tiny"
    assert from_page["settings"] == from_cli["settings"]


def test_a_bug_shows_internal_error_with_an_id_and_logs_its_traceback(dashboard_env, monkeypatch, caplog):
    def broken(self):
        raise KeyError("injected bug")

    monkeypatch.setattr(ImageStore, "stats", broken)
    at = page("overview")
    (box,) = [e.value for e in at.error if "internal error" in e.value]
    error_id = box.split("internal error ")[1].split(".")[0]
    assert "KeyError" not in box and "injected bug" not in box  # a bug is not the user's to read
    logged = [r.getMessage() for r in caplog.records if error_id in r.getMessage()]
    assert logged and "Traceback (most recent call last)" in logged[0] and "KeyError: 'injected bug'" in logged[0]
    assert any("Tiny test model" in w.value for w in at.warning)  # the rest of the page still rendered


def test_a_bulk_caption_edit_is_undone_from_history(dashboard_env):
    store = ImageStore.open(dashboard_env)
    originals = {i: store.get(i).caption for i in (1, 2, 3)}
    store.edit_many([1, 2, 3], caption="One caption for three", who="maria")
    at = page("browse")
    at.session_state["browse:section"] = "History"
    at.run()
    no_traceback(at)
    table = at.dataframe[0].value
    assert all(w.startswith("caption: ") and w.endswith("→ 'One caption for three'") for w in table["what"][:3])
    assert set(table["who"][:3]) == {"maria"} and set(table["action"][:3]) == {"edit"}
    assert at.selectbox(key="browse:history-pick").value == int(table["change"][0])  # the newest first
    by_label(at.button, "Undo its whole bulk action (3 change(s))").click().run()
    no_traceback(at)
    assert any("Reverted 3 change(s)" in s.value for s in at.success)
    assert {i: ImageStore.open(dashboard_env).get(i).caption for i in (1, 2, 3)} == originals


def test_the_inspectors_settings_are_what_the_next_comparison_records(dashboard_env, tmp_path):
    at = page("retrieval")
    at.segmented_control(key="retrieval:seed-choice").set_value("Prompt A (collar)").run()
    at.slider(key="retrieval:relative").set_value(0.6).run()
    at.slider(key="retrieval:dedupe").set_value(0.9).run()
    at.number_input(key="retrieval:budget").set_value(3).run()
    at.toggle(key="retrieval:coverage").set_value(True).run()
    no_traceback(at)
    at.switch_page("../pages/generate.py").run()
    assert "relative 0.60 · near-duplicates above 0.90" in texts(at) and "budget 3" in texts(at)
    _generate(at, ["subquery+filter"])
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "inputs"]
    options = json.loads((run_dir / "run.json").read_text())["options"]
    assert options["budget"] == 3
    assert options["filters"]["relative"] == 0.6 and options["filters"]["dedupe"] == 0.9
    assert options["filters"]["coverage_select"] is True


def test_search_and_find_similar_honour_every_filter_and_show_the_anchor(dashboard_env):
    at = page("browse")
    at.selectbox(key="browse:tag").select("music").run()
    at.text_input(key="browse:search-text").input("a violin")
    by_label(at.button, "Search").click().run()
    no_traceback(at)
    assert "among the filtered ones" in texts(at)
    store = ImageStore.open(dashboard_env)
    music = {r.id for r in store.records(tag="music")}
    shown = {int(m.value.split("**#")[1].split("**")[0]) for m in at.tabs[0].markdown if m.value.startswith("**#")}
    assert shown and shown <= music
    anchor = sorted(music)[0]
    at.button(key=f"browse:similar:{anchor}").click().run()
    no_traceback(at)
    assert at.text_input(key="browse:search-text").value == ""  # the old search text is gone
    assert any(f"the anchor, image {anchor}" in c for i in at.get("image") for c in i.captions)
    shown = {int(m.value.split("**#")[1].split("**")[0]) for m in at.tabs[0].markdown if m.value.startswith("**#")}
    assert shown <= music - {anchor}


def test_a_tile_opens_the_image_in_detail_with_neighbours_and_history(dashboard_env):
    store = ImageStore.open(dashboard_env)
    store.edit(4, caption="A detailed caption", who="maria")
    at = page("browse")
    at.button(key="browse:detail:4").click().run()
    no_traceback(at)
    shown = texts(at)
    assert "**Nearest neighbours** (embedding cosine)" in shown and "**History**" in shown
    tables = [d.value for d in at.dataframe]
    assert any("A detailed caption" in set(t.get("value", [])) for t in tables)
    assert any("edit: caption:" in " ".join(t.get("what", [])) for t in tables)
    assert any(c.startswith("#4 · ") for i in at.get("image") for c in i.captions)


def test_the_detail_dialog_edits_the_image_and_steps_through_the_page(dashboard_env):
    store = ImageStore.open(dashboard_env)
    at = page("browse")
    at.button(key="browse:detail:4").click().run()
    at.text_area(key="detail:edit:4:caption").input("Edited in the dialog")
    at.text_input(key="detail:edit:4:tags").input("sofa, cosy")
    next(b for b in at.button if b.label == "Save").click().run()
    no_traceback(at)
    record = store.get(4)
    assert (record.caption, record.tags) == ("Edited in the dialog", ("sofa", "cosy"))
    assert "Saved the tags and caption of #4." in texts(at)
    assert store.history(4)[0].action == "edit"
    at.button(key="detail:edit:next").click().run()  # the next tile of the page, the dialog still open
    no_traceback(at)
    assert at.text_area(key="detail:edit:5:caption").value == store.get(5).caption
    at.button(key="detail:edit:previous").click().run()
    assert at.text_area(key="detail:edit:4:caption").value == "Edited in the dialog"
