"""Heavy objects and derived data, cached across reruns.

The DB handle, the encoder and the generator are ``st.cache_resource`` (one per server); status
checks are cached for a short while (a worker or an LLM server can come and go); derived data
(near-duplicates, outliers, the map layout, hover thumbnails) is ``st.cache_data`` keyed by the
DB's index version or revision, so it is computed once and again only after the DB changes; the map
layout is also saved in the DB folder, so a new server process opens it instead of fitting UMAP.
"""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

import streamlit as st
from PIL import Image

from dashboard.config import llm_config, settings
from rdm.db.copies import DEFAULT_MAX_DISTANCE, CopyGroup, find_copies
from rdm.curation import LookAlikes, MapLayout, Outlier, category_outliers, look_alikes, map_layouts
from rdm.db import ImageRecord, ImageStore, StoreError
from rdm.encoders import Encoder, load_encoder
from rdm.common.files import jpeg_thumbnail
from rdm.generate import BaseGenerator, make_generator
from rdm.health import Check, backend_check, llm_check
from rdm.curation import map_layout as saved_or_new_layout
from rdm.curation import warm_up as warm_up_umap
from rdm.settings import Settings


CHECK_TTL_S = 30
log = logging.getLogger("rdm.dashboard")


# --- the DB, the encoder, the generator ---


@st.cache_resource(show_spinner="Opening the image DB…")
def _open_store(path: str) -> ImageStore:
    return ImageStore.open(path)


def store_or_none(s: Settings | None = None) -> ImageStore | None:
    """The configured DB, or None after showing how to get one."""
    s = s or settings()
    try:
        return _open_store(str(Path(s.db).resolve()))
    except StoreError as exc:
        st.error(f"**No image DB.** {exc}. Set RDM_DB to a DB folder, or run `make demo-db`.",
                 icon=":material/database:")
        return None


def require_store(s: Settings | None = None) -> ImageStore:
    store = store_or_none(s)
    if store is None:
        st.stop()
    return store


def db_key(store: ImageStore) -> str:
    return str(store.path.resolve())


@st.cache_resource(show_spinner="Loading the encoder (once per server)…")
def _encoder(name: str) -> Encoder:
    return load_encoder(name)


def encoder(store: ImageStore) -> Encoder:
    """The DB's encoder, loaded once; the store's own lazy load then finds it in the same cache."""
    return _encoder(store.encoder_name)


@st.cache_resource(show_spinner="Loading the generator (once per server)…")
def _generator(backend: str, key: tuple, _settings: Settings) -> BaseGenerator:
    return make_generator(_settings, backend)


@st.cache_resource(show_spinner=False)
def _warm_up(db: str) -> threading.Thread:
    store = _open_store(db)
    steps = {  # in this order: the first search needs the encoder; Review's first open its groups
        f"the {store.encoder_name} encoder": lambda: load_encoder(store.encoder_name).encode_texts(["warm-up"]),
        "the copy groups": lambda: copies(db, store.revision, DEFAULT_MAX_DISTANCE),
        "the look-alike groups": lambda: near_duplicates(db, store.index_version, LOOK_ALIKE_THRESHOLD),
        # only when the map page would fit UMAP in this process (a small DB without a current layout): its
        # kernels compile for ~20 s, holding the interpreter most of that time, so not for nothing
        "UMAP's kernels": lambda: map_layouts.fit_due(store) and len(store.catalog.live_ids()) <
        map_layouts.BACKGROUND_MIN and warm_up_umap(background=False),
    }

    def work() -> None:
        for what, step in steps.items():
            try:
                step()  # the cached functions' own entries: a page asking meanwhile waits for this computation
            except Exception:  # noqa: BLE001 - only a head start: the page that needs it reports what is wrong
                log.warning("%s could not be prepared ahead of the first page needing it", what, exc_info=True)

    thread = threading.Thread(target=work, name="dashboard-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up(s: Settings) -> None:
    """Once per server and DB, in the background from the first page on: load the DB's encoder (13-19 s with
    open_clip) so the first search does not wait for it, then find the copy and look-alike groups Review opens
    with (seconds at 20,000 images), then compile UMAP if the map will need it here; a page asking for one
    meanwhile waits only for what is left."""
    try:
        _warm_up(str(Path(s.db).resolve()))
    except StoreError:
        pass  # no DB: the pages that need one say how to get it


def generator(s: Settings, backend: str) -> BaseGenerator:
    # The token is part of the key (a new token means a new client) but only as a hash.
    key = (s.prior_id, s.decoder_id, s.inpaint_decoder_id, s.worker_url, hash(s.worker_token or ""))
    return _generator(backend, key, s)


# --- status checks ---


@st.cache_data(ttl=CHECK_TTL_S, show_spinner="Checking the generation backend…")
def _backend_check(backend: str, key: tuple, _s: Settings) -> Check:
    return backend_check(_s, backend)


def backend_status(s: Settings, backend: str | None = None) -> Check:
    return _backend_check(backend or s.backend, (s.prior_id, s.decoder_id, s.worker_url, hash(s.worker_token or "")), s)


@st.cache_data(ttl=CHECK_TTL_S, show_spinner="Checking the LLM…")
def _llm_check(key: tuple, _s: Settings) -> Check:
    return llm_check(llm_config(_s))


def llm_status(s: Settings) -> Check:
    return _llm_check((s.llm_base_url, s.llm_model, hash(s.llm_api_key or "")), s)


def clear_status_checks() -> None:
    _backend_check.clear()
    _llm_check.clear()


# --- derived data, cached per DB version ---


@st.cache_resource(show_spinner=False, max_entries=4)
def _records(db: str, revision: int, include_deleted: bool, only_deleted: bool, category: str | None,
             tag: str | None, text: str | None) -> tuple[ImageRecord, ...]:
    return tuple(_open_store(db).records(include_deleted=include_deleted, only_deleted=only_deleted,
                                         category=category, tag=tag, text=text))


def image_records(store: ImageStore, *, include_deleted: bool = False, only_deleted: bool = False,
            category: str | None = None, tag: str | None = None, text: str | None = None) -> tuple[ImageRecord, ...]:
    """The records the grid's filters select, read once per DB revision and shared by every session (frozen:
    never copied): reading 20,000 rows took 0.3 s, paid on every click of the pages that list them."""
    return _records(db_key(store), store.revision, include_deleted, only_deleted, category, tag, text)


LOOK_ALIKE_THRESHOLD = 0.95  # Review's default cosine


@st.cache_data(show_spinner="Looking for look-alikes…", max_entries=16)
def near_duplicates(db: str, index_version: int, threshold: float) -> LookAlikes:
    return look_alikes(_open_store(db), threshold)


@st.cache_data(show_spinner="Comparing perceptual hashes…", max_entries=8)
def copies(db: str, revision: int, max_distance: int) -> list[CopyGroup]:
    return find_copies(_open_store(db), max_distance=max_distance)


@st.cache_data(show_spinner="Scoring each image against its category…", max_entries=16)
def outliers(db: str, revision: int, limit: int) -> list[Outlier]:
    store = _open_store(db)
    ids, vecs = store.vectors()
    category = {r.id: r.category or "(none)" for r in store.records()}
    return category_outliers(ids, vecs, [category[int(i)] for i in ids], limit=limit)


@st.cache_data(show_spinner="Computing the UMAP layout (once per DB version; the first in a server takes ~20 s "
                            "more)…", max_entries=4)
def map_layout(db: str, index_version: int) -> MapLayout:
    return saved_or_new_layout(_open_store(db))


def refit_map(db: str) -> None:
    """Fit the map afresh (saved in the DB folder); every cached layout is dropped."""
    saved_or_new_layout(_open_store(db), refit=True)
    map_layout.clear()


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail_uri(db: str, image_id: int, side: int = 96) -> str | None:
    """A small JPEG data URI of one image (the map's hover preview, the plan table's pictures), made when
    asked for: one per image up front was 42.5 MB on every rerun of the map at 20,000 images."""
    store = _open_store(db)
    try:
        with Image.open(store.thumbnail_file(store.get(image_id))) as im:
            small = jpeg_thumbnail(im, side, quality=70)
    except (OSError, StoreError):
        return None  # a missing thumbnail only loses its hover preview; `rdm check` reports it
    return "data:image/jpeg;base64," + base64.b64encode(small).decode("ascii")
