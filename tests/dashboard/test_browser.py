"""End to end: the real dashboard (`streamlit run`) on a free loopback port against a temporary DB,
driven through every page by Debian's Chromium with Playwright.

A screenshot of each page lands in tests/artifacts/ (git-ignored). Skipped, saying why, only when
/usr/bin/chromium is missing (`.ci/run` installs it with apt).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, dashboard_server
from rdm.db import ImageStore

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
RUN_TIMEOUT_MS = 240_000  # the first map compiles UMAP; the first generation builds the tiny model

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium: "
                                                     "`apt-get install chromium` (.ci/run does this)"),
]


@pytest.fixture(scope="module")
def server(tiny_db_template, small_study, tmp_path_factory):
    """The dashboard against a copy of the tiny DB and a small study; yields (url, db, runs)."""
    import shutil

    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "db"
    shutil.copytree(tiny_db_template, db)
    shutil.copytree(small_study, tmp / "studies" / "pets")
    with dashboard_server(db, tmp) as url:
        yield url, db, tmp / "runs"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    # Streamlit scrolls inside its own container, so a full-page screenshot is only as tall as the viewport
    context = browser.new_context(viewport={"width": 1500, "height": 2400}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(RUN_TIMEOUT_MS)
    tab.goto(server[0])
    settle(tab)
    yield tab
    context.close()


def settle(tab) -> None:
    """Wait until Streamlit has finished the run an action started."""
    tab.wait_for_timeout(400)
    tab.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=RUN_TIMEOUT_MS)
    tab.wait_for_timeout(200)


def go_to(tab, title: str) -> None:
    tab.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    settle(tab)


def shot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_exception(tab) -> None:
    assert tab.locator('[data-testid="stException"]').count() == 0


def jpeg_file(folder: Path, name: str, colour) -> Path:
    path = folder / name
    buf = io.BytesIO()
    Image.new("RGB", (96, 72), colour).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue())
    return path


def caption_all_shown(tab, count: int, caption: str) -> None:
    """Browse: select every image shown (``count`` of them) and give them one caption."""
    tab.get_by_role("button", name="Select all shown").click()
    tab.get_by_text(f"{count} selected").wait_for()
    settle(tab)
    tab.get_by_role("button", name=f"Edit {count}").click()
    tab.get_by_label("Caption", exact=True).fill(caption)
    tab.get_by_role("button", name="Save changes").click()
    tab.get_by_text("Saved").first.wait_for()
    settle(tab)


def test_overview(page):
    page.get_by_text("Live images").wait_for()
    assert page.get_by_text("Tiny test model").count() >= 1
    no_exception(page)
    shot(page, "1-overview")


def test_browse_upload_edit_delete_restore(page, server, tmp_path):
    _, db, _ = server
    go_to(page, "Browse & curate")
    page.get_by_text("image(s)").first.wait_for()
    # 1. upload two images into a new category
    page.get_by_role("tab", name="Upload").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        [str(jpeg_file(tmp_path, "red.jpg", (210, 40, 40))), str(jpeg_file(tmp_path, "teal.jpg", (20, 160, 150)))])
    settle(page)
    category = page.get_by_role("combobox", name="Into category")
    category.click()
    category.fill("products")
    category.press("Enter")
    settle(page)
    page.get_by_role("button", name="Add to the DB").click()
    page.get_by_text("2 added").wait_for()
    settle(page)
    shot(page, "2-browse-upload")
    store = ImageStore.open(db)
    assert store.stats().by_category.get("products") == 2
    # 2. edit a caption
    page.get_by_role("tab", name="Images").click()
    first = page.locator('[data-testid="stCheckbox"]').first
    first.click()
    settle(page)
    # the selection bar stays in view while the grid scrolls under it (in a window short enough to scroll)
    tall = page.viewport_size
    page.set_viewport_size({"width": tall["width"], "height": 700})
    bar = page.locator('[class*="st-key-rdm-selection-bar"]')
    page.locator('[data-testid="stCheckbox"]').last.hover()
    page.mouse.wheel(0, 3000)
    page.wait_for_timeout(400)
    box = bar.bounding_box()
    assert 0 <= box["y"] < 200 and page.locator('[data-testid="stCheckbox"]').first.bounding_box()["y"] < 0
    shot(page, "3-browse-selection-bar")
    page.set_viewport_size(tall)
    shot(page, "3-browse-grid")
    page.get_by_role("button", name="Edit 1").click()
    caption = page.get_by_label("Caption", exact=True)
    caption.fill("Edited in the browser")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved").first.wait_for()
    settle(page)
    assert any(r.caption == "Edited in the browser" for r in store.records())
    # 3. delete it, then restore it from the Deleted view
    page.get_by_role("button", name="Delete 1").click()
    page.get_by_text("Deleted 1 image(s)").wait_for()
    settle(page)
    assert store.stats().deleted == 1
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Deleted", exact=True).first.click()
    settle(page)
    page.locator('[data-testid="stCheckbox"]').first.click()
    settle(page)
    page.get_by_role("button", name="Restore 1").click()
    page.get_by_text("Restored 1 image(s)").wait_for()
    settle(page)
    assert store.stats().deleted == 0
    no_exception(page)


MAP_JS = ("[...document.querySelectorAll('.js-plotly-plot')]"
          ".find(g => g.layout && g.layout.meta === 'rdm-embedding-map')")
POINTS_JS = """() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
    .find(g => g.layout && g.layout.meta === 'rdm-embedding-map');
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const pts = [];
  gd._fullData.forEach(t => { if (t.mode === 'markers' && t.customdata) t.x.forEach((x, i) =>
      pts.push([box.left + xa.l2p(x), box.top + ya.l2p(t.y[i])])); });
  return {pts, box: {left: box.left, top: box.top, right: box.right, bottom: box.bottom}};
}"""


def test_map_hover_and_lasso(page):
    go_to(page, "Embedding map")
    page.get_by_text("UMAP of").first.wait_for()
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for()
    page.wait_for_timeout(500)
    found = page.evaluate(POINTS_JS)
    points, box = found["pts"], found["box"]
    assert len(points) >= 12
    # hover: the thumbnail preview appears beside the cursor
    x, y = points[0]
    page.mouse.move(x, y)
    page.locator("#rdm-map-tip img").wait_for(state="visible", timeout=10_000)
    first = page.locator("#rdm-map-tip img").get_attribute("src")
    assert first.startswith("data:image/jpeg")
    # each point's thumbnail is fetched when it is hovered (none are sent up front)
    page.mouse.move(*points[-1])
    page.wait_for_function("(src) => { const i = document.querySelector('#rdm-map-tip img');"
                           " return i && i.src !== src && i.offsetParent !== null; }", arg=first, timeout=10_000)
    shot(page, "4-map-hover")
    # colour by tag, then highlight one: the chart drawn at first restyles its points (no new chart)
    page.evaluate(MAP_JS + ".__rdmKept = true")
    colours = "() => { const m = (" + MAP_JS + ")._fullData[0].marker; return [m.cmax, [...m.color].join(',')]; }"
    by_category = page.evaluate(colours)
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Tag", exact=True).click()
    settle(page)
    page.wait_for_function(f"() => ({colours})()[0] !== {by_category[0]}")
    assert page.evaluate(colours)[1] != by_category[1] and page.evaluate(MAP_JS + ".__rdmKept")
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Highlight one tag").locator("input").click()
    page.get_by_role("option").first.click()
    settle(page)
    page.wait_for_function("() => Array.isArray((" + MAP_JS + ")._fullData[0].marker.size)")
    assert page.evaluate(MAP_JS + ".__rdmKept") and "others (" in page.locator(".rdm-map-legend").inner_text()
    shot(page, "4b-map-highlight")
    # lasso around every point (dragmode is lasso): a closed loop just inside the plot area
    left, top, right, bottom = box["left"] + 3, box["top"] + 3, box["right"] - 3, box["bottom"] - 3
    page.mouse.move(left, top)
    page.mouse.down()
    for px, py in [(right, top), (right, bottom), (left, bottom), (left, top + 2)]:
        page.mouse.move(px, py, steps=12)
    page.mouse.up()
    page.get_by_text("image(s) in the lasso").wait_for()
    settle(page)
    assert page.locator('[data-testid="stCheckbox"]').count() >= 12
    no_exception(page)
    shot(page, "5-map-lasso")


def test_the_chart_library_loads_while_a_page_is_read_and_the_map_uses_that_copy(page):
    # the Overview draws no chart: left alone a moment, the tab loads Streamlit's Plotly chunk itself
    page.wait_for_function("() => window.__rdmChartPreload === 'loaded' && !!window.Plotly", timeout=30_000)
    go_to(page, "Embedding map")
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for()
    # the map's chart found the module loaded (the same URL): the chunk was fetched once, not a second copy
    fetched = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)"
                            ".filter(n => n.includes('/PlotlyChart.'))")
    assert len(fetched) == 1, fetched
    no_exception(page)


def _metric(tab, label: str) -> int:
    metric = tab.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text())


def test_retrieval_inspector_on_prompt_b_and_threshold(page):
    go_to(page, "Retrieval inspector")
    page.get_by_text("Prompt B (hoodie)").click()
    page.get_by_text("Per sub-query (filtered)").wait_for()
    settle(page)
    kept_before = _metric(page, "Kept")
    assert kept_before > 0
    shot(page, "6-retrieval")
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Absolute threshold").get_by_role("slider")
    slider.focus()
    slider.press("End")  # the strictest threshold: cosine 1.0
    settle(page)
    page.wait_for_function("() => document.body.innerText.includes('not covered')")
    assert _metric(page, "Kept") == 0
    no_exception(page)
    shot(page, "7-retrieval-threshold")


def test_generate_with_the_tiny_backend(page, server):
    go_to(page, "Generate & compare")
    page.get_by_text("Prompt A (collar)").click()
    settle(page)
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Saved as run").wait_for()
    settle(page)
    shot(page, "8-generate")
    assert page.get_by_text("TEST MODEL").count() >= 1
    page.locator('[data-testid="stImage"]').nth(4 * 2 - 1).wait_for()  # four modes, two seeds
    no_exception(page)
    assert any(p.is_dir() and p.name != "inputs" for p in server[2].iterdir())


def edit_first_sub_query(tab, text: str) -> None:
    """Type ``text`` over the first row's sub-query in the inspector's table (a canvas grid: by position)."""
    grid = tab.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    tab.mouse.dblclick(box["x"] + 120, box["y"] + 35 + 17)  # below the header row, in the sub-query column
    editor = tab.locator("textarea.gdg-input")  # the grid's cell editor, over the canvas
    editor.fill(text)
    editor.press("Enter")
    settle(tab)


def test_an_edited_sub_query_table_survives_a_reload_and_generate_uses_it(page, server):
    go_to(page, "Retrieval inspector")
    page.get_by_text("Prompt A (collar)").click()
    page.get_by_text("Per sub-query (filtered)").wait_for()
    settle(page)
    edit_first_sub_query(page, "a navy dog collar")
    page.get_by_text("Edited weights in use: a navy dog collar").wait_for()
    page.reload()  # a new Streamlit session: the URL's session id finds the prompt and the table again
    settle(page)
    page.get_by_text("Edited weights in use: a navy dog collar").wait_for()
    go_to(page, "Generate & compare")
    page.get_by_text("Use the sub-queries edited in the Retrieval inspector").wait_for()
    before = {p.name for p in server[2].iterdir()} if server[2].is_dir() else set()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Saved as run").wait_for()
    settle(page)
    no_exception(page)
    (run,) = [p for p in server[2].iterdir() if p.name not in before]
    record = json.loads((run / "run.json").read_text())
    used = [m["retrieval"]["decomposition"] for m in record["modes"] if m["mode"] == "subquery"][0]
    assert used["subqueries"][0]["text"] == "a navy dog collar" and "sub-queries edited by hand" in used["repairs"]


def test_a_reload_keeps_browses_view_in_the_url_the_working_prompt_and_the_name(page, server):
    type_name(page, "Reviewer Two")
    go_to(page, "Variations")
    page.get_by_text("Prompt B (hoodie)").click()
    settle(page)
    page.goto(f"{page.url.split('?')[0].rsplit('/', 1)[0]}/browse?category=animals&contains=Fish&"
              f"{page.url.split('?')[1]}")  # a bookmarked view, in this session
    settle(page)
    page.get_by_text("3 image(s)").wait_for()
    page.reload()
    settle(page)
    page.get_by_text("3 image(s)").wait_for()
    assert "category=animals" in page.url and "contains=Fish" in page.url
    assert page.get_by_label("Your name", exact=True).and_(page.get_by_role("textbox")).input_value() == "Reviewer Two"
    go_to(page, "Retrieval inspector")
    assert "yellow hoodie" in page.get_by_label("Prompt", exact=True).input_value()
    no_exception(page)


def test_variations_of_an_uploaded_photo_fill_a_strength_by_mode_grid(page, tmp_path):
    go_to(page, "Variations")
    page.get_by_text("Prompt A (collar)").click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(jpeg_file(tmp_path, "collar.jpg", (20, 30, 90))))
    settle(page)
    page.get_by_role("button", name="Make the variations").click()
    page.get_by_text("Strength × mode").wait_for()
    settle(page)
    for strength in ("0.2", "0.35", "0.5"):
        assert page.get_by_text(f"strength {strength}", exact=True).count() == 1
    assert page.get_by_text("seed ").count() >= 6  # 3 strengths x 2 modes, the same seed
    no_exception(page)
    shot(page, "8b-variations")


def test_runs_page_opens_the_report(page):
    go_to(page, "Runs & report")
    page.get_by_text("Download HTML report").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download HTML report").click()
    html = Path(download.value.path()).read_text(encoding="utf-8")
    assert "<html" in html and "TEST MODEL" in html
    page.get_by_text("Show the HTML report").click()
    settle(page)
    frame = page.frame_locator('[data-testid="stIFrame"]').first
    frame.get_by_text("Requirement satisfaction").first.wait_for()
    no_exception(page)
    shot(page, "9-runs-report")


def test_copies_are_grouped_and_a_bulk_caption_edit_is_undone_from_history(page, server, tmp_path):
    _, db, _ = server
    store = ImageStore.open(db)
    # 1. a photo with a resized and a re-encoded copy, and four different photos of one kind
    photo = ROOT / "data" / "demo-photos" / "images" / "gcompris-farm-dog.jpg"
    with Image.open(photo) as im:
        im = im.convert("RGB")
        im.resize((im.width // 2, im.height // 2)).save(tmp_path / "dog-small.jpg", quality=90)
        im.save(tmp_path / "dog-recompressed.jpg", quality=50)
    solar = [photo.with_name(f"gcompris-categories-renewable-solar-{n}.jpg") for n in (1, 5, 6, 8)]
    go_to(page, "Browse & curate")
    page.get_by_role("tab", name="Upload").click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        [str(photo), str(tmp_path / "dog-small.jpg"), str(tmp_path / "dog-recompressed.jpg"), *map(str, solar)])
    settle(page)
    page.get_by_role("button", name="Add to the DB").click()
    page.get_by_text("7 added").wait_for()
    settle(page)
    page.get_by_role("tab", name="Review").click()
    settle(page)
    page.get_by_text("group(s) of copies").wait_for()
    assert page.get_by_text("1 group(s) of copies, 2 copies in all.").count() == 1  # the solar panels are not copies
    shot(page, "10-review-copies")
    # 2. a bulk caption edit of three images
    ids = [r.id for r in store.records(tag="music")]  # three images no other browser test touches
    originals = {i: store.get(i).caption for i in ids}
    assert len(ids) == 3
    page.get_by_role("tab", name="Images").click()
    settle(page)
    tag = page.get_by_role("combobox", name="Tag")
    tag.click()
    tag.fill("music")
    tag.press("Enter")
    settle(page)
    page.get_by_text("**3** image(s)").or_(page.get_by_text("3 image(s)")).first.wait_for()
    caption_all_shown(page, 3, "One caption for three")
    assert {store.get(i).caption for i in ids} == {"One caption for three"}
    # 3. undone from History, and the originals are back after a reload
    page.get_by_role("tab", name="History").click()
    settle(page)
    page.get_by_role("button", name="Undo its whole bulk action (3 change(s))").click()
    page.get_by_text("Reverted 3 change(s)").wait_for()
    settle(page)
    shot(page, "11-history-undo")
    page.reload()
    settle(page)
    assert {i: ImageStore.open(db).get(i).caption for i in ids} == originals
    no_exception(page)


def test_evaluation_baseline_then_a_curated_caption_shows_a_delta_and_is_found(page, server, tmp_path):
    _, db, _ = server
    store = ImageStore.open(db)
    bucket = next(r for r in store.records() if r.caption == "Bucket")
    queries = tmp_path / "held-out.jsonl"
    queries.write_text(json.dumps({"query": "a quibbleflux", "relevant": [bucket.filename]}) + "\n")
    # 1. run an uploaded query set by text and hybrid retrieval, and save it as the baseline
    go_to(page, "Retrieval evaluation")
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Upload", exact=True).click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(queries))
    settle(page)
    kinds = page.get_by_role("combobox", name="Retrieval")
    kinds.click()
    kinds.fill("text")
    kinds.press("Enter")
    kinds.press("Escape")  # the open list hides the rest of the page from the accessibility tree
    settle(page)
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("Metrics · upload:held-out.jsonl").wait_for()
    settle(page)
    page.get_by_role("button", name="Save as baseline").click()
    page.get_by_text("Saved as the baseline of this query set.").wait_for()
    settle(page)
    shot(page, "12-evaluation-baseline")
    # 2. curate: a caption with the new word, and search finds that image first
    go_to(page, "Browse & curate")
    page.get_by_label("Caption, file name or tag contains").fill("Bucket")
    page.get_by_label("Caption, file name or tag contains").press("Enter")
    settle(page)
    caption_all_shown(page, 1, "A quibbleflux bucket")
    page.get_by_label("Caption, file name or tag contains").fill("")
    page.get_by_label("Caption, file name or tag contains").press("Enter")
    settle(page)
    page.get_by_label("Find images of …").fill("quibbleflux")
    page.get_by_test_id("stBaseButton-secondaryFormSubmit").click()
    settle(page)
    first = page.locator('[class*="st-key-rdm-tiles"] [data-testid="stMarkdown"]').first
    assert f"#{bucket.id}" in first.inner_text() and "quibbleflux" in first.inner_text()
    # 3. back on the evaluation page, the same set again: the change against the baseline
    go_to(page, "Retrieval evaluation")
    page.get_by_text("uploaded earlier").wait_for()
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("Compared with the baseline saved").wait_for()
    settle(page)
    page.get_by_text("Queries that moved").wait_for()
    shot(page, "13-evaluation-delta")
    no_exception(page)


def type_name(page, name: str) -> None:
    """The sidebar's "Your name" (votes and curation changes are recorded under it)."""
    box = page.get_by_label("Your name", exact=True).and_(page.get_by_role("textbox"))
    box.fill(name)
    box.press("Enter")
    settle(page)


def test_blind_review_by_keyboard_then_the_ranking(page):
    type_name(page, "Reviewer One")
    go_to(page, "Blind review")
    page.get_by_text("0 of 18 pairs voted").wait_for()
    page.get_by_text("Keys:").click()  # focus off the name box: shortcuts do not fire while typing
    page.keyboard.press("ArrowLeft")
    page.get_by_text("1 of 18 pairs voted").wait_for()
    settle(page)
    page.keyboard.press("t")
    page.get_by_text("2 of 18 pairs voted").wait_for()
    settle(page)
    page.get_by_role("button", name="Right is better").click()
    page.get_by_text("3 of 18 pairs voted").wait_for()
    shot(page, "14-blind-review")
    page.reload()  # nothing lost: the votes are in the study's folder
    settle(page)
    type_name(page, "Reviewer One")
    go_to(page, "Studies")
    page.get_by_text("3 vote(s) from 1 reviewer(s)").wait_for()
    page.get_by_text("win rate of the row over the column").first.wait_for()  # plotly draws after the page
    no_exception(page)
    shot(page, "15-studies")


def fill_number(tab, label: str, value: int) -> None:
    box = tab.get_by_label(label, exact=True).and_(tab.get_by_role("spinbutton"))
    box.fill(str(value))
    box.press("Enter")
    settle(tab)


def test_a_study_submitted_in_the_browser_survives_a_reload_and_a_second_is_cancelled(page):
    go_to(page, "Studies")
    page.get_by_text("Run a new study").click()
    page.get_by_label("Name (its folder)").fill("browser-study")
    page.get_by_label("Name (its folder)").press("Enter")
    settle(page)
    bundled = page.get_by_role("combobox", name="Bundled suite")
    bundled.click()
    page.get_by_role("option", name="dev/seed").click()
    settle(page)
    for label, value in (("Seeds", 1), ("Steps", 2), ("Size (px, square)", 64)):
        fill_number(page, label, value)
    page.get_by_role("button", name="Submit the study").click()
    page.get_by_text("Queued the study").wait_for()
    page.get_by_text("Study jobs").wait_for()
    page.reload()  # the job is the worker's, not this page's: a reload loses nothing
    settle(page)
    page.get_by_text("browser-study").first.wait_for()
    # a second one, cancelled while it waits or runs
    page.get_by_text("Run a new study").click()
    page.get_by_label("Name (its folder)").fill("browser-cancelled")
    page.get_by_label("Name (its folder)").press("Enter")
    settle(page)
    fill_number(page, "Steps", 2)
    fill_number(page, "Size (px, square)", 64)
    page.get_by_role("button", name="Submit the study").click()
    page.get_by_text("Queued the study").wait_for()
    settle(page)
    page.get_by_role("button", name="Cancel").first.click()  # newest first: the second study
    page.get_by_text("browser-cancelled · cancelled").wait_for(timeout=60_000)
    # the first finishes in the background and its study opens in the picker
    page.get_by_text("study saved in").first.wait_for(timeout=240_000)
    settle(page)
    page.get_by_text("win rate of the row over the column").first.wait_for(timeout=60_000)
    no_exception(page)
    shot(page, "16-study-jobs")


def test_the_queue_lists_cancels_and_resumes_a_job_submitted_from_generate(page):
    go_to(page, "Generate & compare")
    page.get_by_text("Prompt B (hoodie)").click()
    settle(page)
    fill_number(page, "Decoder steps", 150)  # long enough to be caught running, even by a warm worker
    fill_number(page, "Images per mode", 8)
    page.get_by_role("button", name="Generate", exact=True).click()
    settle(page)
    go_to(page, "Queue")
    row = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="yellow hoodie").first  # this job's
    row.get_by_role("button", name="Cancel").click()
    shows(row, "cancelled")
    row.get_by_role("button", name="Resume").click()
    settle(page)
    go_to(page, "Queue")  # the list as the job book has it now (another test's job may hold the worker)
    row = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="yellow hoodie").first
    cancel = row.get_by_role("button", name="Cancel")
    # queued again, running, or finished (another test's job may hold the worker a while)
    row_says(row, cancel.or_(row.get_by_text("done", exact=True)).first, "Cancel or 'done'", timeout_ms=180_000)
    no_exception(page)
    shot(page, "16-queue")
    if cancel.count():  # leave the worker free for the other tests
        cancel.click()
        shows(row, "cancelled")


def shows(row, state: str) -> None:
    """The Queue's row shows the job's ``state``; if not within a minute, the test fails with what it shows."""
    row_says(row, row.get_by_text(state, exact=True), repr(state))


def row_says(row, target, what: str, timeout_ms: int = 60_000) -> None:
    """Wait for ``target`` in the Queue's ``row``; if it never comes, fail with what the row says instead."""
    try:
        target.wait_for(timeout=timeout_ms)
    except Exception as exc:  # noqa: BLE001 - Playwright's timeout: say what the row said instead
        pytest.fail(f"the job's row never showed {what}; it says: {row.inner_text()!r} ({type(exc).__name__})")


def test_two_runs_of_one_second_each_open(page, server):
    from test_dashboard import saved_run

    twins = [saved_run(server[2], ("none", "full"), "2026-12-01T10:15:07+00:00") for _ in range(2)]
    go_to(page, "Runs & report")
    picker = page.locator('[data-testid="stMultiSelect"]')
    for run_id in twins:
        picker.get_by_role("button", name="Clear all").click()
        settle(page)
        picker.locator("input").click()
        page.get_by_role("option").filter(has_text=run_id).click()  # equal labels end with their run ids
        page.keyboard.press("Escape")
        settle(page)
        page.locator('[data-testid="stCaptionContainer"]').filter(has_text=f"Run {run_id}").wait_for()
    no_exception(page)
