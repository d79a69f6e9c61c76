"""One image in detail: the picture large, every field, its nearest neighbours and its history.

Any grid tile's open button asks for it; the dialog opens once, in the run that follows the click.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.feedback import guard
from rdm.db import ImageStore
from rdm.common.sources import decode_image

DETAIL_SIDE = 1024  # px: decoded reduced, so a 50 MP original does not travel to the browser
NEIGHBOURS = 6


def open_detail(image_id: int) -> None:
    st.session_state[state.DETAIL_IMAGE] = int(image_id)


def show_requested_detail(store: ImageStore) -> None:
    """Open the dialog if a tile asked for it since the last run (once)."""
    image_id = st.session_state.pop(state.DETAIL_IMAGE, None)
    if image_id is not None:
        _detail(store, image_id)


@st.dialog("Image details", width="large")
def _detail(store: ImageStore, image_id: int) -> None:
    with guard(f"Showing image #{image_id}"):
        record = store.get(image_id)
        picture = decode_image(store.image_path(image_id).read_bytes(), record.filename, max_side=DETAIL_SIDE)
        st.image(picture, caption=f"#{record.id} · {record.filename} · {record.width}×{record.height}")
        fields = {"category": record.category or "–", "tags": ", ".join(record.tags) or "–",
                  "caption": record.caption or "–", "source": record.source or "–", "licence": record.licence or "–",
                  "author": record.author or "–", "added": record.added_at,
                  "deleted": record.deleted_at or "no", "sha256": record.sha256}
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
