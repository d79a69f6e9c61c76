"""The thumbnail grid with selection, and the bulk actions on a selection (edit, delete, restore, purge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import streamlit as st

from dashboard.feedback import flash, run_safely
from dashboard.image_detail import open_detail, show_requested_detail
from dashboard.state import selection, set_selection, user_name
from rdm.db import ImageRecord, ImageStore
from rdm.errors import StoreError


def short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True)
class Tile:
    record: ImageRecord
    score: float | None = None
    badge: str = ""  # e.g. ":green-badge[kept]"
    note: str = ""  # one more line under the caption


def _toggle(key: str, image_id: int) -> None:
    chosen = selection(key)
    if st.session_state.get(f"{key}:pick:{image_id}"):
        chosen.add(image_id)
    else:
        chosen.discard(image_id)


def tile_text(tile: Tile, compact: bool = False) -> str:
    r = tile.record
    if compact:  # narrow columns (retrieval hits): id, score and verdict first, caption last
        head = f"**#{r.id}**" + (f" `{tile.score:.3f}`" if tile.score is not None else "")
        lines = [head + (f" {tile.badge}" if tile.badge else "")]
        if tile.note:
            lines.append(f":gray[{tile.note}]")
        lines.append(f":gray[{short(r.caption or r.filename, 32)}]")
        return "  \n".join(lines)
    head = f"**#{r.id}** · {r.category or 'uncategorised'}"
    if tile.score is not None:
        head += f" · `score {tile.score:.3f}`"
    if tile.badge:
        head += f" {tile.badge}"
    lines = [head, short((r.caption or r.filename).replace("\n", " "), 70)]
    if r.tags:
        lines.append(" ".join(f"`{t}`" for t in r.tags[:4]) + (" …" if len(r.tags) > 4 else ""))
    if tile.note:
        lines.append(f":gray[{tile.note}]")
    if r.deleted:
        lines.append(":red-badge[deleted]")
    return "  \n".join(lines)


# Thumbnails of any shape sit in equal square boxes and every card's text takes the same height, so a
# grid reads as rows and columns (each column is its own stack: ragged text would skew the rows).
GRID_CSS = """<style>
[class*="st-key-rdm-tiles"] [data-testid="stImage"] img {
  aspect-ratio: 1 / 1; object-fit: contain; background: #f3f4f6; border-radius: 6px; width: 100%;
}
[class*="st-key-rdm-tiles"] [data-testid="stMarkdown"] {
  min-height: 7.2em; overflow-wrap: anywhere;  /* every line readable: a tile grows, its row aligns at the top */
}
/* the selection bar sticks under the app's header while the grid scrolls, so tiles ticked low on a page
   can be edited or deleted without scrolling back up (its layout wrapper is what sits in the page's block) */
[data-testid="stLayoutWrapper"]:has(> [class*="st-key-rdm-selection-bar"]) {
  position: sticky; top: 3.75rem; z-index: 20;
}
[class*="st-key-rdm-selection-bar"] {
  background: var(--st-background-color, #fff); padding: .35rem .6rem; border: 1px solid rgba(49, 51, 63, .2);
  border-radius: .5rem; box-shadow: 0 2px 6px rgba(0, 0, 0, .08);
}
</style>"""


def image_grid(store: ImageStore, tiles: Sequence[Tile], *, key: str, columns: int = 6,
               selectable: bool = True, on_similar: Callable[[int], None] | None = None,
               name: str | None = None, compact: bool = False) -> None:
    """Thumbnails (never originals) in a grid, each with caption, score and a select box.

    ``key`` names the selection; ``name`` (default: ``key``) must be unique per grid on a page.
    """
    if not tiles:
        st.info("No images to show.", icon=":material/image_not_supported:")
        return
    chosen = selection(key)
    with st.container(key=f"rdm-tiles-{name or key}"):
        cols = st.columns(columns)
        for n, tile in enumerate(tiles):
            rid = tile.record.id
            with cols[n % columns].container(border=True):
                try:
                    st.image(str(store.thumbnail_file(tile.record)), width="stretch")
                except (OSError, StoreError):
                    st.warning(f"Thumbnail of #{rid} is missing: run `rdm check --repair`.")
                st.markdown(tile_text(tile, compact))
                row = st.container(horizontal=True, vertical_alignment="center", gap="small")
                if selectable:
                    pick = f"{key}:pick:{rid}"
                    st.session_state[pick] = rid in chosen  # the selection set is the truth
                    row.checkbox("Select", key=pick, on_change=_toggle, args=(key, rid))
                if on_similar:
                    row.button(":material/image_search:", key=f"{key}:similar:{rid}", on_click=on_similar,
                               args=(rid,), type="tertiary", help="Find the images most like this one")
                row.button(":material/open_in_full:", key=f"{name or key}:detail:{rid}", on_click=open_detail,
                           args=(rid, [t.record.id for t in tiles], name or key), type="tertiary",
                           help="Details: large picture, fields to edit, neighbours, history; ← → step through")
    show_requested_detail(store, name or key)


def _add_to_selection(key: str, ids: Sequence[int]) -> None:
    selection(key).update(int(i) for i in ids)


def select_buttons(key: str, visible_ids: Sequence[int]) -> None:
    st.button("Select all shown", key=f"{key}:select-shown", icon=":material/select_all:", shortcut="A",
              on_click=_add_to_selection, args=(key, list(visible_ids)), disabled=not visible_ids,
              help="Shortcut: A")


def _step(key: str, pages: int, delta: int) -> None:
    st.session_state[key] = min(max(1, st.session_state.get(key, 1) + delta), pages)


def _picked(key: str, widget: str) -> None:
    st.session_state[key] = st.session_state[widget]


def current_page(key: str, pages: int) -> int:
    return min(max(1, st.session_state.get(key, 1)), pages)


def pager(pages: int, key: str, *, shortcuts: bool = False) -> None:
    """Page numbers with previous/next buttons (with ``shortcuts``: the Left and Right arrow keys, one grid a page).

    The page lives in ``st.session_state[key]``; the page-number widget is keyed by the page it shows, so
    the buttons move it without writing into a widget's state.
    """
    if pages <= 1:
        return
    current = current_page(key, pages)
    row = st.container(horizontal=True, vertical_alignment="center", gap="small")
    row.button("Previous page", key=f"{key}:previous", icon=":material/chevron_left:", disabled=current <= 1,
               shortcut="Left" if shortcuts else None, on_click=_step, args=(key, pages, -1),
               help="Shortcut: ←" if shortcuts else None)
    with row:
        widget = f"{key}:numbers:{current}"
        st.pagination(pages, default=current, key=widget, on_change=_picked, args=(key, widget))
    row.button("Next page", key=f"{key}:next", icon=":material/chevron_right:", disabled=current >= pages,
               shortcut="Right" if shortcuts else None, on_click=_step, args=(key, pages, 1),
               help="Shortcut: →" if shortcuts else None)


# --- bulk actions on a selection ---


def _apply_edit(store: ImageStore, key: str, ids: list[int], form: str) -> None:
    state = st.session_state
    category = (state.get(f"{form}:category") or "").strip()
    tags = (state.get(f"{form}:tags") or "").strip()
    caption = state.get(f"{form}:caption") or ""
    replace_tags = state.get(f"{form}:tag-mode") == "Replace tags"
    single = len(ids) == 1

    def work() -> str:
        changes = {}
        if category and category != "(keep)":
            changes["category"] = category
        if replace_tags:
            changes["tags"] = tags
        elif tags:
            changes["add_tags"] = tags
        if single or caption.strip():
            changes["caption"] = caption
        if not changes:
            flash("warning", "Nothing to change: pick a category, or type tags or a caption.")
            return None
        before = {r.id: r for r in store.records(ids=ids, include_deleted=True)}
        store.edit_many(ids, **changes, who=user_name())
        after = store.records(ids=ids, include_deleted=True)
        # the form sends every field of a single image: name only what really changed
        names = [field for field in ("category", "tags", "caption")
                 if any(getattr(r, field) != getattr(before[r.id], field) for r in after)]
        if not names:
            return "Nothing changed: the image(s) already had these values."
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        return f"Saved the {listed} of {len(ids)} image(s)."

    run_safely("Editing", work)


def _bulk(store: ImageStore, key: str, ids: list[int], action: str) -> None:
    """Delete, restore or purge the selected images, then clear the selection."""
    verb, done = {
        "delete": ("Deleting", "Deleted {n} image(s). They are hidden from search and the grid; "
                               "restore them from Show → Deleted."),
        "restore": ("Restoring", "Restored {n} image(s)."),
        "purge": ("Removing", "Removed {n} image(s) for good (rows, vectors and files)."),
    }[action]

    def work() -> str:
        n = getattr(store, action)(ids, who=user_name())
        selection(key).clear()
        return done.format(n=n)
    run_safely(verb, work)




def bulk_actions(store: ImageStore, key: str) -> None:
    """A sticky bar over the grid: the selection's count, its edit form (category, tags, caption), delete,
    restore, remove for good and clear; every change is saved at once."""
    ids = sorted(selection(key))
    with st.container(key=f"rdm-selection-bar-{key}", horizontal=True, vertical_alignment="center", gap="small"):
        if not ids:
            st.caption("Tick **Select** on images to edit, delete or restore them together.")
            return
        records = store.records(include_deleted=True, ids=ids)
        live = [r.id for r in records if not r.deleted]
        gone = [r.id for r in records if r.deleted]
        single = records[0] if len(records) == 1 else None
        st.markdown(f"**:material/checklist: {len(ids)} selected**" + (f" · image #{single.id}" if single else ""))
        with st.popover(f"Edit {len(ids)}", icon=":material/edit:", help="Category, tags and caption"):
            edit_form(store, key, ids, single)
        if live:
            st.button(f"Delete {len(live)}", key=f"{key}:delete", icon=":material/delete:",
                      on_click=_bulk, args=(store, key, live, "delete"),
                      help="Hidden from search and the grid; restorable")
        if gone:
            st.button(f"Restore {len(gone)}", key=f"{key}:restore", icon=":material/restore_from_trash:",
                      on_click=_bulk, args=(store, key, gone, "restore"))
            with st.popover("Remove for good", icon=":material/delete_forever:"):
                st.write(f"Remove {len(gone)} deleted image(s) with their files? This cannot be undone.")
                st.button("Yes, remove", key=f"{key}:purge", type="primary", on_click=_bulk,
                          args=(store, key, gone, "purge"))
        st.button("Clear selection", key=f"{key}:clear", icon=":material/deselect:", shortcut="X",
                  on_click=set_selection, args=(key, []), help="Shortcut: X")


def edit_form(store: ImageStore, key: str, ids: list[int], single: ImageRecord | None) -> None:
    form = f"{key}:edit:{hash(tuple(ids))}"  # new defaults whenever the selection changes
    with st.form(form, border=False, width=640):
        c1, c2 = st.columns(2)
        categories = ["(keep)"] + store.categories()
        c1.selectbox("Category", categories, key=f"{form}:category", accept_new_options=True,
                     index=categories.index(single.category) if single and single.category in categories else 0,
                     help="Pick one, or type a new category")
        c2.text_input("Tags (comma-separated)", key=f"{form}:tags", value=", ".join(single.tags) if single else "")
        c2.radio("Tags", ["Add tags", "Replace tags"], key=f"{form}:tag-mode", horizontal=True,
                 index=1 if single else 0, label_visibility="collapsed")
        st.text_area("Caption", key=f"{form}:caption", value=single.caption if single else "", height=90,
                     placeholder=None if single else "Leave empty to keep each image's caption")
        st.form_submit_button("Save changes", type="primary", icon=":material/save:",
                              on_click=_apply_edit, args=(store, key, ids, form))
