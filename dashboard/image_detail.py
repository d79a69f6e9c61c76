"""One image in detail: the picture large, its fields to edit, its nearest neighbours and its history.

Any grid tile's open button asks for it; the dialog opens once, in the run that follows the click, and
steps to the previous or next tile of the same grid (buttons, or the Left and Right arrow keys) without
closing: a curator goes through a page of images one by one.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.feedback import guard, run_safely, show_flashes
from rdm.db import ImageStore
from rdm.common.sources import decode_image

DETAIL_SIDE = 1024  # px: decoded reduced, so a 50 MP original does not travel to the browser
DETAIL_IDS, DETAIL_SHOWN, DETAIL_GRID, DETAIL_FORM = "detail:ids", "detail:shown", "detail:grid", "detail:edit"
NEIGHBOURS = 6


def open_detail(image_id: int, ids: Sequence[int] = (), grid: str = "") -> None:
    """Ask for image ``image_id``'s dialog; ``ids``: the tiles of ``grid`` in order, to step through."""
    st.session_state[state.DETAIL_IMAGE] = int(image_id)
    st.session_state[DETAIL_IDS] = [int(i) for i in ids] or [int(image_id)]
    st.session_state[DETAIL_GRID] = grid


def show_requested_detail(store: ImageStore, grid: str = "") -> None:
    """The dialog, from the run after a tile of ``grid`` asked for it until it is closed (a save reruns the
    page); only that grid opens it, as a page may hold several grids and a run one dialog."""
    if st.session_state.get(DETAIL_GRID, "") != grid:
        return
    image_id = st.session_state.pop(state.DETAIL_IMAGE, None)
    if image_id is not None:
        st.session_state[DETAIL_SHOWN] = image_id
    if st.session_state.get(DETAIL_SHOWN) is not None:
        _detail(store)


def _closed() -> None:
    st.session_state.pop(DETAIL_SHOWN, None)


def _step(by: int) -> None:
    ids = st.session_state.get(DETAIL_IDS) or []
    shown = st.session_state.get(DETAIL_SHOWN)
    if shown in ids:
        st.session_state[DETAIL_SHOWN] = ids[(ids.index(shown) + by) % len(ids)]


def _save(store: ImageStore, image_id: int) -> None:
    def work() -> str:
        form = f"{DETAIL_FORM}:{image_id}"
        before = store.get(image_id)
        after = store.edit(image_id, category=st.session_state[f"{form}:category"],
                           tags=st.session_state[f"{form}:tags"], caption=st.session_state[f"{form}:caption"],
                           who=state.user_name())
        changed = [f for f in ("category", "tags", "caption") if getattr(after, f) != getattr(before, f)]
        return f"Saved the {' and '.join(changed)} of #{image_id}." if changed else "Nothing changed."
    run_safely(f"Saving image #{image_id}", work)


@st.dialog("Image details", width="large", on_dismiss=_closed)
def _detail(store: ImageStore) -> None:
    image_id = st.session_state[DETAIL_SHOWN]
    ids = st.session_state.get(DETAIL_IDS) or [image_id]
    with guard(f"Showing image #{image_id}"):
        if len(ids) > 1:
            nav = st.container(horizontal=True, vertical_alignment="center")
            nav.button("Previous", key=f"{DETAIL_FORM}:previous", icon=":material/chevron_left:", shortcut="Left",
                       on_click=_step, args=(-1,))
            nav.caption(f"{ids.index(image_id) + 1} of {len(ids)} on this page")
            nav.button("Next", key=f"{DETAIL_FORM}:next", icon=":material/chevron_right:", shortcut="Right",
                       on_click=_step, args=(1,))
        show_flashes()
        record = store.get(image_id)
        picture = decode_image(store.image_path(image_id).read_bytes(), record.filename, max_side=DETAIL_SIDE)
        st.image(picture, caption=f"#{record.id} · {record.filename} · {record.width}×{record.height}")
        fields = {"category": record.category or "–", "tags": ", ".join(record.tags) or "–",
                  "caption": record.caption or "–", "source": record.source or "–", "licence": record.licence or "–",
                  "author": record.author or "–", "added": record.added_at,
                  "deleted": record.deleted_at or "no", "sha256": record.sha256}
        with st.form(f"{DETAIL_FORM}:{image_id}", border=False):
            form = f"{DETAIL_FORM}:{image_id}"
            c1, c2 = st.columns(2)
            c1.text_input("Category", record.category, key=f"{form}:category")
            c2.text_input("Tags (comma-separated)", ", ".join(record.tags), key=f"{form}:tags")
            st.text_area("Caption", record.caption, key=f"{form}:caption", height=68)
            st.form_submit_button("Save", type="primary", icon=":material/save:", on_click=_save,
                                  args=(store, image_id), disabled=record.deleted)
        st.dataframe(pd.DataFrame({"field": list(fields), "value": list(fields.values())}), hide_index=True,
                     width="stretch")
        if not record.deleted:
            st.markdown("**Nearest neighbours** (embedding cosine)")
            hits = store.similar(image_id, NEIGHBOURS)
            cols = st.columns(NEIGHBOURS)
            for col, hit in zip(cols, hits):
                col.image(str(store.thumbnail_file(hit.record)), caption=f"#{hit.id} · {hit.score:.3f}")
        st.markdown("**History**")
        changes = store.history(image_id)
        if changes:
            st.dataframe(pd.DataFrame([{"change": c.id, "when": c.at.replace("T", " ")[:19], "who": c.who or "–",
                                        "what": f"{c.action}: {c.summary()}"} for c in changes]),
                         hide_index=True, width="stretch")
        else:
            st.caption("No change recorded (the image predates the history).")
