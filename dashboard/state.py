"""The session state that pages share, each key named once with a typed accessor.

Pages keep their own widget keys (``<page>:<widget>``); what one page hands to another goes
through here, so the key is never spelled twice.
"""

from __future__ import annotations

from typing import Sequence

import streamlit as st

from rdm.decompose import Decomposition
from rdm.retrieve import RetrievalSettings
from rdm.retrieve import Retrieval
from rdm.runs import RunRecord

EDITED_DECOMPOSITION = "retrieval:decomposition"  # Retrieval inspector -> Generate & compare
MAP_OVERLAY = "map:overlay"  # Retrieval inspector / map overlay form -> Embedding map
MAP_LASSO = "map:lasso-ids"  # the images picked on the map, shown in the grid below it
LAST_RUN = "generate:last-run"  # the latest run of this session, shown under Generate & compare
RETRIEVAL_SETTINGS = "retrieval:settings"  # the knobs of every page that retrieves (dashboard/retrieval_knobs.py)
DETAIL_IMAGE = "detail:image"  # the image a tile asked to show in detail (dashboard/image_detail.py)
USER_NAME = "user:name"  # who this session's curation changes are recorded as (sidebar)


def edited_decomposition() -> Decomposition | None:
    return st.session_state.get(EDITED_DECOMPOSITION)


def set_edited_decomposition(decomposition: Decomposition) -> None:
    st.session_state[EDITED_DECOMPOSITION] = decomposition


def map_overlay() -> Retrieval | None:
    return st.session_state.get(MAP_OVERLAY)


def set_map_overlay(retrieval: Retrieval | None) -> None:
    st.session_state[MAP_OVERLAY] = retrieval


def map_lasso() -> list[int]:
    return list(st.session_state.get(MAP_LASSO, []))


def set_map_lasso(ids: Sequence[int]) -> None:
    st.session_state[MAP_LASSO] = [int(i) for i in ids]


def last_run() -> RunRecord | None:
    return st.session_state.get(LAST_RUN)


def set_last_run(run: RunRecord) -> None:
    st.session_state[LAST_RUN] = run


def selection(key: str) -> set[int]:
    """The ids ticked in the grid named ``key`` (the set is the truth; checkboxes mirror it)."""
    return st.session_state.setdefault(f"{key}:selected", set())


def set_selection(key: str, ids: Sequence[int]) -> None:
    st.session_state[f"{key}:selected"] = {int(i) for i in ids}


def user_name() -> str:
    return str(st.session_state.get(USER_NAME) or "").strip()


def retrieval_settings() -> RetrievalSettings:
    return st.session_state.get(RETRIEVAL_SETTINGS) or RetrievalSettings()


def set_retrieval_settings(settings: RetrievalSettings) -> None:
    st.session_state[RETRIEVAL_SETTINGS] = settings
