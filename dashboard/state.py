"""The session state that pages share, each key named once with a typed accessor.

Pages keep their own widget keys (``<page>:<widget>``); what one page hands to another goes
through here, so the key is never spelled twice. The working prompt (one for the inspector, Generate,
the map overlay and Variations), its edited sub-queries and the user's name are also kept in the
session's file (dashboard/session.py), so a reload restores them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import streamlit as st

from dashboard import session
from rdm.decompose import Decomposition
from rdm.retrieve import RetrievalSettings
from rdm.retrieve import Retrieval
from rdm.runs import RunRecord

SESSION = "session:id"  # this browser session's id, also in the URL
KEPT = "session:kept"  # what the session's file holds (session.Kept)
KEPT_IN = "session:folder"  # where the session files are
MAP_OVERLAY = "map:overlay"  # Retrieval inspector / map overlay form -> Embedding map
MAP_LASSO = "map:lasso-ids"  # the images picked on the map, shown in the grid below it
LAST_RUN = "generate:last-run"  # the latest run of this session, shown under Generate & compare
RETRIEVAL_SETTINGS = "retrieval:settings"  # the knobs of every page that retrieves (dashboard/retrieval_knobs.py)
DETAIL_IMAGE = "detail:image"  # the image a tile asked to show in detail (dashboard/image_detail.py)
USER_NAME = "user:name"  # who this session's curation changes are recorded as (sidebar)
PAGE_RERUN = "page:rerun"  # a callback inside a fragment changed what the rest of the page shows


def begin_session(folder: Path, default_user: str | None) -> None:
    """Every run, before any page: the session's id stays in the URL (a page switch drops query
    parameters), and on the first run of a session what its file kept is read back."""
    if SESSION not in st.session_state:
        asked = st.query_params.get(session.PARAM)
        st.session_state[SESSION] = asked if session.valid_id(asked) else session.new_id()
        st.session_state[KEPT_IN] = folder
        st.session_state[KEPT] = session.load(folder, st.session_state[SESSION])
    st.query_params[session.PARAM] = st.session_state[SESSION]
    st.session_state.pop(PAGE_RERUN, None)  # this is the whole page's run a fragment may have asked for
    if USER_NAME not in st.session_state:  # the sidebar's box starts from it
        st.session_state[USER_NAME] = _kept().user or default_user or ""


def ask_page_rerun() -> None:
    """From a callback of a widget inside a fragment (which reruns alone): the change shows outside it too (a
    search box, a filter's choices), so the next run is the whole page's."""
    st.session_state[PAGE_RERUN] = True


def page_rerun_if_asked() -> None:
    """First thing in a fragment: rerun the whole page if a callback asked for it (a whole run clears it)."""
    if st.session_state.pop(PAGE_RERUN, False):
        st.rerun()


def _kept() -> session.Kept:
    return st.session_state.get(KEPT) or session.Kept()


def _keep(**changes) -> None:
    kept = replace(_kept(), **changes)
    if kept != _kept():
        st.session_state[KEPT] = kept
        if KEPT_IN in st.session_state:
            session.save(st.session_state[KEPT_IN], st.session_state[SESSION], kept)


def working_prompt() -> str:
    return _kept().prompt


def set_working_prompt(prompt: str) -> None:
    _keep(prompt=prompt)


def edited_decomposition(prompt: str) -> Decomposition | None:
    """The sub-queries edited in the Retrieval inspector, if they are of ``prompt`` (up to whitespace)."""
    edited = _kept().decomposition
    return edited if edited is not None and edited.prompt == " ".join(prompt.split()) else None


def set_edited_decomposition(decomposition: Decomposition) -> None:
    _keep(decomposition=decomposition)


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


def kept_browse_selection() -> tuple[int, ...]:
    """Browse's ticked images as the session's file last kept them (a reload starts from these)."""
    return _kept().browse_selection


def keep_browse_selection(ids: Sequence[int]) -> None:
    _keep(browse_selection=tuple(sorted(int(i) for i in ids)))


def user_name() -> str:
    return str(st.session_state.get(USER_NAME) or "").strip()


def remember_user_name() -> None:
    _keep(user=user_name())


def retrieval_settings() -> RetrievalSettings:
    return st.session_state.get(RETRIEVAL_SETTINGS) or RetrievalSettings()


def set_retrieval_settings(settings: RetrievalSettings) -> None:
    st.session_state[RETRIEVAL_SETTINGS] = settings


def set_url(values: Mapping[str, object]) -> None:
    """Name these values in the URL's query (an empty one is removed), so the view can be bookmarked."""
    for name, value in values.items():
        if value is None or value == "":
            st.query_params.pop(name, None)
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)
