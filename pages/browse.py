"""Browse & curate: a paged thumbnail grid with filters, text search, find-similar, bulk edits,
uploads into a category, copies, look-alikes and outliers to review, and the history with undo."""

import math

import pandas as pd
import streamlit as st

from dashboard.feedback import guard, page_header, run_safely, show_flashes
from dashboard.grid import Tile, bulk_actions, current_page, image_grid, pager, select_buttons
from dashboard.resources import (LOOK_ALIKE_THRESHOLD, copies, db_key, encoder, image_records, near_duplicates,
                                 outliers, require_store)
from dashboard.state import (ask_page_rerun, keep_browse_selection, kept_browse_selection, page_rerun_if_asked,
                             retrieval_settings, selection, set_selection, set_url, user_name)
from rdm.curation.review import MAX_GROUP
from rdm.db.copies import DEFAULT_MAX_DISTANCE
from rdm.common.sources import IMAGE_SUFFIXES, MAX_FILE_BYTES, MAX_PIXELS

KEY = "browse"
QUERY = f"{KEY}:query"  # None, ("text", str) or ("similar", id)
VIEW = f"{KEY}:view"  # the view's URL fields as last shown, for a return from another page
URL_PAGE = f"{KEY}:url-page"  # the page a URL asked for, applied once the filters say which pages there are
PAGE_SIZES = (24, 48, 96)
SEARCH_K = 48
GROUPS_PER_PAGE = 20
LOOK_ALIKE_GROUPS_PER_PAGE = 5  # of up to MAX_GROUP images each: a page draws at most 60 tiles (120 took 2 s to draw)
ALIKE_NOTE = 0.05  # warn when this share of random pairs is above the look-alike threshold
HISTORY_ROWS = 300
UNRELIABLE_FOR_OUTLIERS = {  # encoders whose similarities make this list a weak hint at best
    "tiny": "The tiny test encoder has random weights: these outliers mean nothing.",
    "conse": "The offline ConSE encoder sees ImageNet classes: a photo of the only dog among cats and fish looks "
             "odd to it although it is well labelled, and scenes and landmarks blur together. Treat this list as a "
             "hint; a real CLIP encoder (`rdm reindex --encoder open_clip`) ranks better.",
}


def find_similar(image_id: int) -> None:
    st.session_state[QUERY] = ("similar", int(image_id))
    st.session_state[f"{KEY}:search-text"] = ""  # the box no longer says what is shown
    ask_page_rerun()  # the box is outside the grid's fragment


def show_all() -> None:
    st.session_state[QUERY] = None
    st.session_state[f"{KEY}:search-text"] = ""
    ask_page_rerun()


def run_search() -> None:
    text = st.session_state.get(f"{KEY}:search-text", "").strip()
    st.session_state[QUERY] = ("text", text) if text else None


def open_view(store) -> None:
    """Arriving on the page (a reload, a bookmark, a return from another page; Streamlit dropped the
    filter widgets): the filters, search and page the URL names, else those this session last showed,
    and after a reload the images it had ticked. Values the DB does not know are left out."""
    if f"{KEY}:show" in st.session_state:
        return
    view = {k: v for k in ("show", "category", "tag", "contains", "find", "similar", "page", "per_page")
            if (v := st.query_params.get(k))} or st.session_state.get(VIEW, {})
    known = {"show": ("Live", "Deleted", "All"), "category": store.categories(), "tag": store.tags()}
    for field, choices in known.items():
        if view.get(field) in choices:
            st.session_state[f"{KEY}:{field}"] = view[field]
    st.session_state[f"{KEY}:text"] = view.get("contains", "")
    st.session_state[f"{KEY}:search-text"] = view.get("find", "")
    similar = view.get("similar", "")
    st.session_state[QUERY] = (("text", view["find"]) if view.get("find") else
                               ("similar", int(similar)) if similar.isdigit() else None)
    if view.get("per_page", "").isdigit() and int(view["per_page"]) in PAGE_SIZES:
        st.session_state[f"{KEY}:page-size"] = int(view["per_page"])
    if view.get("page", "").isdigit():
        st.session_state[URL_PAGE] = int(view["page"])
    if not selection(KEY) and kept_browse_selection():  # a reload: the ticks, of images still in the DB
        set_selection(KEY, [r.id for r in store.records(ids=kept_browse_selection(), include_deleted=True)])


def show_view(show, category, tag, text, query, page, size) -> None:
    """The view in the URL (defaults left out), so it can be bookmarked, shared and reloaded."""
    view = {"show": show if show != "Live" else None, "category": category, "tag": tag, "contains": text.strip(),
            "find": query[1] if query and query[0] == "text" else None,
            "similar": query[1] if query and query[0] == "similar" else None,
            "page": page if page > 1 else None, "per_page": size if size != PAGE_SIZES[0] else None}
    st.session_state[VIEW] = {k: str(v) for k, v in view.items() if v}
    set_url(view)


def images_tab(store) -> None:
    # 1. filters and search
    open_view(store)
    f1, f2, f3, f4 = st.columns([1.2, 1, 1, 1.4])
    show = f1.segmented_control("Show", ["Live", "Deleted", "All"], default="Live", key=f"{KEY}:show",
                                required=True)
    category = f2.selectbox("Category", ["All"] + store.categories(), key=f"{KEY}:category")
    tag = f3.selectbox("Tag", ["All"] + store.tags(), key=f"{KEY}:tag")
    text = f4.text_input("Caption, file name or tag contains", key=f"{KEY}:text", placeholder="e.g. sofa")
    category = None if category == "All" else category
    tag = None if tag == "All" else tag
    with st.form(f"{KEY}:search", border=False):
        s1, s2 = st.columns([5, 1], vertical_alignment="bottom")
        s1.text_input("Find images of …", key=f"{KEY}:search-text",
                      placeholder="a dog on a sofa in a cozy living room (searches the embeddings and the captions)")
        s2.form_submit_button("Search", icon=":material/search:", on_click=run_search, width="stretch")
    shown_images(store, show, category, tag, text)


@st.fragment
def shown_images(store, show: str, category: str | None, tag: str | None, text: str) -> None:
    """What the filters select, as a page of tiles with the selection bar and the pager. A fragment: ticking a
    tile, turning a page, editing or deleting reruns only this (at 20,000 images a whole page's run cost a second
    more); a category an edit adds joins the Category filter at the page's next whole run. Only find-similar and
    back-to-all, which change the search box above, rerun the whole page: a second run right after the first,
    so kept to those two (a click landing between the two runs could be lost)."""
    page_rerun_if_asked()
    show_flashes()  # what a callback of this fragment reported (a whole run shows them under the title)
    # 2. what to show: a semantic search, a find-similar, or the filtered DB
    query = st.session_state.get(QUERY)
    tiles: list[Tile] = []
    with guard("Searching"):
        # searches see live images only (deleted ones are out of the index); every other filter applies
        if query and show == "Deleted":
            st.info("Searches look through live images: switch Show to Live or All.", icon=":material/info:")
        elif query and query[0] == "text":
            encoder(store)
            fusion = retrieval_settings().fusion  # the Retrieval inspector's choice
            hits = store.search(query[1], SEARCH_K, fusion=fusion, category=category, tag=tag,
                                contains=text.strip() or None)
            st.info(f"The {len(hits)} images best matching **{query[1]}** ({fusion.describe()}; {store.encoder_name})"
                    + (" among the filtered ones." if category or tag or text.strip() else "."),
                    icon=":material/search:")
            tiles = [Tile(h.record, h.score, note=h.explain()) for h in hits]
        elif query and query[0] == "similar":
            anchor = store.get(query[1])
            hits = store.similar(query[1], SEARCH_K, category=category, tag=tag, contains=text.strip() or None)
            picture, words = st.columns([1, 7], vertical_alignment="center")
            picture.image(str(store.thumbnail_file(anchor)), caption=f"the anchor, image {anchor.id}")
            words.info(f"The {len(hits)} images most like **#{query[1]}**"
                       + (" among the filtered ones." if category or tag or text.strip() else "."),
                       icon=":material/image_search:")
            tiles = [Tile(h.record, h.score) for h in hits]
        else:
            records = image_records(store, include_deleted=show == "All", only_deleted=show == "Deleted",
                                    category=category, tag=tag, text=text.strip() or None)
            tiles = [Tile(r) for r in records]
    if query:
        st.button("Back to all images", icon=":material/arrow_back:", on_click=show_all)

    # 3. bulk actions, then the page of thumbnails
    bulk_actions(store, KEY)
    size = st.session_state.get(f"{KEY}:page-size", PAGE_SIZES[0])
    pages = max(1, math.ceil(len(tiles) / size))
    page_key = f"{KEY}:page:{hash((show, category, tag, text, query, size))}"  # back to page 1 on a new filter
    if URL_PAGE in st.session_state:
        st.session_state[page_key] = st.session_state.pop(URL_PAGE)
    page = current_page(page_key, pages)
    show_view(show, category, tag, text, query, page, size)
    shown = tiles[(page - 1) * size: page * size]
    head, sizes = st.columns([4, 1], vertical_alignment="bottom")
    head.markdown(f"**{len(tiles)}** image(s)" + (f" · showing {(page - 1) * size + 1}–"
                                                   f"{(page - 1) * size + len(shown)}" if shown else ""))
    sizes.selectbox("Per page", PAGE_SIZES, key=f"{KEY}:page-size")
    select_buttons(KEY, [t.record.id for t in shown])
    image_grid(store, shown, key=KEY, on_similar=find_similar)
    pager(pages, page_key, shortcuts=True)
    st.caption("Keys: ← → previous and next page · A select all shown · X clear the selection")
    keep_browse_selection(selection(KEY))


def upload_tab(store) -> None:
    # the uploader's own "Limit … per file" is Streamlit's cap on an upload (a zip), not an image's
    st.markdown(f"Add photos or a zip of photos to the DB. Each file is checked, embedded and saved; "
                f"duplicates (same bytes) are not stored twice. Each image may be up to {MAX_FILE_BYTES // 2**20} MB "
                f"and {MAX_PIXELS / 1e6:.0f} MP, also inside a zip; an upload (a zip) up to "
                f"{st.get_option('server.maxUploadSize')} MB.")
    attempt = st.session_state.setdefault(f"{KEY}:upload-round", 0)
    files = st.file_uploader("Images or a zip", accept_multiple_files=True,
                             type=sorted(s.lstrip(".") for s in IMAGE_SUFFIXES) + ["zip"],
                             key=f"{KEY}:files:{attempt}")
    c1, c2 = st.columns(2)
    category = c1.selectbox("Into category", store.categories() or ["animals"], key=f"{KEY}:upload-category",
                            accept_new_options=True, help="Pick one, or type a new category")
    tags = c2.text_input("Tags for all of them (comma-separated)", key=f"{KEY}:upload-tags")
    if st.button("Add to the DB", type="primary", icon=":material/upload:", disabled=not files):
        bar = st.progress(0.0, text="Embedding…")
        with guard("Uploading"):
            encoder(store)
            report = store.ingest_bytes([(f.name, f.getvalue()) for f in files], category=category,
                                        tags=tags or None, who=user_name(),
                                        progress=lambda done, total: bar.progress(done / max(total, 1),
                                                                                  text=f"{done}/{total} files"))
            st.session_state[f"{KEY}:upload-report"] = report
            st.session_state[f"{KEY}:upload-round"] = attempt + 1  # a fresh, empty uploader
            st.rerun()
    report = st.session_state.get(f"{KEY}:upload-report")
    if report is not None:
        kind = st.success if report.added and not report.skipped else st.warning if report.added else st.error
        kind(f"**Upload report:** {report.summary()}.")
        st.dataframe(pd.DataFrame([{"file": i.name, "result": i.status,
                                    "image id": f"#{i.image_id}" if i.image_id is not None else "",
                                    "reason": i.reason} for i in report.items]),
                     hide_index=True, width="stretch",
                     column_config={"reason": st.column_config.TextColumn("reason", width="large")})


def keep_best(store, groups) -> None:
    """Soft-delete every copy, keeping each group's leader (the largest image)."""
    ids = [i for g in groups for i in g.members]
    run_safely("Deleting copies", lambda: f"Kept {len(groups)} image(s) and deleted "
                                          f"{store.delete(ids, who=user_name())} "
                                          "copies; restore them from Show → Deleted.")


def copies_section(store) -> None:
    st.caption("Copies of one photo (resized, re-encoded, slightly edited), found by comparing perceptual "
               "hashes of the pixels: each group's largest image is the one to keep.")
    distance = st.slider("Hash distance at most (bits of 64)", 0, 16, DEFAULT_MAX_DISTANCE, key=f"{KEY}:copy-distance",
                         help="Copies measured 0-4 here, different photos of one kind 20 and more")
    with guard("Finding copies"):
        groups = copies(db_key(store), store.revision, distance)
        n = sum(len(g.members) for g in groups)
        st.markdown(f"**{len(groups)}** group(s) of copies, {n} cop{'y' if n == 1 else 'ies'} in all.")
        if not groups:
            return
        st.button(f"Keep the best of every group (delete {sum(len(g.members) for g in groups)} copies)",
                  key=f"{KEY}:keep-all", icon=":material/auto_delete:", on_click=keep_best, args=(store, groups))
        pages = max(1, math.ceil(len(groups) / GROUPS_PER_PAGE))
        page = current_page(f"{KEY}:copy-page", pages)
        shown = groups[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]
        by_id = {r.id: r for r in store.records(ids=[i for g in shown for i in (g.leader, *g.members)])}
        for n, group in enumerate(shown, (page - 1) * GROUPS_PER_PAGE + 1):
            head, act = st.columns([3, 1], vertical_alignment="bottom")
            head.markdown(f"**Group {n}** · keep #{group.leader} · {len(group.members)} cop"
                          f"{'y' if len(group.members) == 1 else 'ies'}")
            act.button(f"Keep #{group.leader}, delete the rest", key=f"{KEY}:keep:{group.leader}",
                       on_click=keep_best, args=(store, [group]))
            tiles = [Tile(by_id[group.leader], badge=":green-badge[keep]")] + [
                Tile(by_id[i], badge=":orange-badge[copy]", note=f"distance {d}")
                for i, d in zip(group.members, group.distances) if i in by_id]
            image_grid(store, tiles, key="copies", name=f"copies-{n}", selectable=False)
        pager(pages, f"{KEY}:copy-page")


def review_tab(store) -> None:
    db = db_key(store)
    found_copies, dupes, odd = st.tabs(["Copies (pixels)", "Similar (embedding)", "Outliers"],
                                       key=f"{KEY}:review", on_change="rerun")
    if found_copies.open:
        with found_copies:
            copies_section(store)
    if dupes.open:
        with dupes:
            similar_section(store, db)
    if odd.open:
        with odd:
            outliers_section(store, db)


def similar_section(store, db: str) -> None:
    st.caption(f"Images whose embeddings are nearly identical: often different photos of one kind (a look-alike, "
               f"not a copy); each one still costs reference weight. Every two images of a group are at least "
               f"this alike; a group holds at most {MAX_GROUP}.")
    threshold = st.slider("Cosine at least", 0.80, 1.00, LOOK_ALIKE_THRESHOLD, 0.005, format="%.3f",
                          key=f"{KEY}:dupe-threshold")
    with guard("Finding look-alikes"):
        found = near_duplicates(db, store.index_version, threshold)
        groups = found.groups
        if found.alike_share >= ALIKE_NOTE:
            st.warning(f"**{found.alike_share:.0%} of random pairs of images are this alike**: the "
                       f"`{store.encoder_name}` encoder makes most images look alike at {threshold:.3f}, so these "
                       "groups say little. Raise the threshold, or re-embed with a real CLIP encoder "
                       "(`rdm reindex --encoder open_clip`).", icon=":material/info:")
        st.markdown(f"**{len(groups)}** group(s) of {sum(len(g.ids) for g in groups)} images.")
        bulk_actions(store, "dupes")
        pages = max(1, math.ceil(len(groups) / LOOK_ALIKE_GROUPS_PER_PAGE))
        page = current_page(f"{KEY}:dupe-page", pages)
        first = (page - 1) * LOOK_ALIKE_GROUPS_PER_PAGE
        shown = groups[first: first + LOOK_ALIKE_GROUPS_PER_PAGE]
        by_id = {r.id: r for r in store.records(ids=[i for g in shown for i in g.ids])}
        for n, group in enumerate(shown, first + 1):
            st.markdown(f"**Group {n}** · {len(group.ids)} images · cosine "
                        f"{group.min_similarity:.3f}–{group.max_similarity:.3f}")
            image_grid(store, [Tile(by_id[i]) for i in group.ids if i in by_id], key="dupes", name=f"dupes-{n}")
        pager(pages, f"{KEY}:dupe-page")


def outliers_section(store, db: str) -> None:
    st.caption("The images that look least like their category compared with the category they look most "
               "like besides (mean cosines): often mislabelled. An unusual photo that still fits its own category "
               "best ranks low.")
    encoder_kind = store.encoder_name.split(":", 1)[0]
    if encoder_kind in UNRELIABLE_FOR_OUTLIERS:
        st.warning(UNRELIABLE_FOR_OUTLIERS[encoder_kind], icon=":material/info:")
    limit = st.slider("How many", 6, 60, 18, 6, key=f"{KEY}:outlier-limit")
    with guard("Finding outliers"):
        found = outliers(db, store.revision, limit)
        bulk_actions(store, "outliers")
        by_id = {r.id: r for r in store.records(ids=[o.id for o in found])}
        image_grid(store, [Tile(by_id[o.id], o.mean_similarity, note=(
            f"more like {o.closer_to} (margin {o.margin:+.3f})" if o.closer_to else
            f"fits {o.category} best (margin {o.margin:+.3f})") + f"; typical {o.category_mean:.3f}")
            for o in found if o.id in by_id], key="outliers")


def revert(store, change_id: int, whole_batch: bool) -> None:
    run_safely("Undoing", lambda: f"Reverted {store.undo(change_id, whole_batch=whole_batch, who=user_name())} "
                                  "change(s). The revert is in the history too, and can be undone.")


def history_tab(store) -> None:
    st.caption("Every change to the DB's images, newest first: uploads, edits (before → after), deletions, "
               "restores and purges. Pick a change to undo it, or the whole bulk action it was part of. A purge "
               "cannot be undone: its files are gone.")
    image = st.number_input("Only image #", 0, None, 0, key=f"{KEY}:history-image", help="0: every image")
    with guard("Reading the history"):
        changes = store.history(int(image) or None, limit=HISTORY_ROWS)
        if not changes:
            st.info("No changes recorded yet.", icon=":material/history:")
            return
        table = pd.DataFrame([{"change": c.id, "when": c.at.replace("T", " ")[:19], "who": c.who or "–",
                               "image": c.image_id, "action": c.action, "what": c.summary(),
                               "state": f"reverted by {c.undone_by}" if c.undone_by else
                               ("cannot be undone" if c.action == "purge" else ""), "batch": c.batch}
                              for c in changes])
        st.dataframe(table, hide_index=True, width="stretch")
        by_id = {c.id: c for c in changes}
        chosen = st.selectbox("Change to undo", list(by_id), key=f"{KEY}:history-pick",
                              format_func=lambda i: f"{i} · image #{by_id[i].image_id} · {by_id[i].action} · "
                                                    f"{by_id[i].summary()[:80]}")
        picked = by_id[chosen]
        batch = [c for c in store.history(batch=picked.batch) if c.undone_by is None]  # all of it, not the shown rows
        row = st.container(horizontal=True, gap="small")
        row.button(f"Undo change {picked.id}", key=f"{KEY}:undo-one", icon=":material/undo:",
                   disabled=not picked.reversible, on_click=revert, args=(store, picked.id, False))
        row.button(f"Undo its whole bulk action ({len(batch)} change(s))", key=f"{KEY}:undo-batch",
                   icon=":material/history:", disabled=not picked.reversible or len(batch) < 2,
                   on_click=revert, args=(store, picked.id, True))


page_header("Browse & curate", "Every change is saved to the DB at once and survives a reload.")
store = require_store()
# Lazy tabs: only the open one runs (the Review tab at 3,000 images cost seconds per click while hidden).
images, upload, review, changes = st.tabs(["Images", "Upload", "Review", "History"], key=f"{KEY}:section",
                                         on_change="rerun")
for tab, show in ((images, images_tab), (upload, upload_tab), (review, review_tab), (changes, history_tab)):
    if tab.open:
        with tab:
            show(store)
