"""Shared dashboard pieces: settings, cached resources, error boxes, the thumbnail grid, bulk actions.

Pages stay thin: they read inputs, call `rdm`, and render with these helpers. Heavy objects (DB
handle, encoder, generator) are `st.cache_resource`; derived data (near-duplicates, outliers, the
map layout) is `st.cache_data` keyed by the DB's index version or revision, so it is computed
once and recomputed only after the DB changes.
"""

from __future__ import annotations

import base64
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pandas as pd
import streamlit as st
from PIL import Image

from rdm.curation import DuplicateGroup, Outlier, category_outliers, near_duplicate_groups
from rdm.decompose import DecompositionError, LLMConfig
from rdm.embedmap import MapLayout, umap_layout
from rdm.files import jpeg_thumbnail
from rdm.encoders import Encoder, EncoderError, load_encoder
from rdm.generate import BaseGenerator, GenerationError, make_generator
from rdm.health import Check, backend_check, llm_check
from rdm.plan import PlanError
from rdm.retrieve import RetrievalError
from rdm.runs import placement_text
from rdm.settings import Settings, load_settings
from rdm.sources import BadImage
from rdm.db import ImageRecord, ImageStore, StoreError

log = logging.getLogger("rdm.dashboard")
ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"

# Errors whose message already says what to do; anything else is a bug, reported as one.
EXPECTED_ERRORS = (StoreError, EncoderError, GenerationError, DecompositionError, RetrievalError, PlanError,
                   BadImage, LookupError, OSError, ValueError)

# Secret names (env or .streamlit/secrets.toml) -> Settings fields; the environment wins.
SECRET_FIELDS = {
    "RDM_LLM_API_KEY": "llm_api_key", "OPENAI_API_KEY": "llm_api_key",
    "RDM_LLM_BASE_URL": "llm_base_url", "OPENAI_BASE_URL": "llm_base_url",
    "RDM_LLM_MODEL": "llm_model", "RDM_WORKER_URL": "worker_url", "RDM_WORKER_TOKEN": "worker_token",
}

SEED_PROMPTS = {
    "Prompt A (collar)": (
        "This stylish dog collar combines navy fabric with beige leather details. Featuring a gold-tone "
        "buckle and a matching tag. The dog wearing the collar, sits on a cushion, gazing at its owner "
        "with loving eyes."),
    "Prompt B (hoodie)": (
        "A cute dog wearing yellow hoodie sits on a stylish sofa, gazing around in a warm and cozy living "
        "room. Soft lighting fills the space, casting gentle shadows on the plush cushions. The atmosphere "
        "feels calm and inviting, with a sense of comfort and warmth."),
}


def seed_prompt_picker(key: str, height: int = 100) -> str:
    """The prompt box with the seed's prompts A and B one click away; ``key`` namespaces the page."""
    choice = st.segmented_control("Seed prompts", list(SEED_PROMPTS), key=f"{key}:seed-choice")
    if choice and st.session_state.get(f"{key}:seed-applied") != choice:
        st.session_state[f"{key}:prompt"] = SEED_PROMPTS[choice]
        st.session_state[f"{key}:seed-applied"] = choice
    return st.text_area("Prompt", key=f"{key}:prompt", height=height,
                        placeholder="Describe the ad image, or pick a seed prompt above")


# --- settings and secrets ---


def secret_overrides(secrets: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    """Settings fields to take from ``secrets``: those that no environment variable already sets."""
    from_env = {f for name, f in SECRET_FIELDS.items() if environ.get(name, "").strip()}
    overrides: dict[str, str] = {}
    for name, field in SECRET_FIELDS.items():
        value = secrets.get(name)
        usable = isinstance(value, (str, int, float)) and str(value).strip()
        if usable and field not in from_env and field not in overrides:
            overrides[field] = str(value).strip()
    return overrides


def settings() -> Settings:
    try:
        secrets = {k: st.secrets[k] for k in st.secrets}
    except Exception:  # no secrets.toml (the usual case) or an unreadable one: env only
        secrets = {}
    return load_settings(**secret_overrides(secrets, os.environ))


def llm_config(s: Settings) -> LLMConfig:
    return LLMConfig.from_settings(s)


# --- messages ---


@contextmanager
def guard(action: str) -> Iterator[None]:
    """Show what failed and how to fix it instead of a traceback; the rest of the page goes on."""
    try:
        yield
    except EXPECTED_ERRORS as exc:
        st.error(f"**{action} failed.** {exc}", icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - no page may show a traceback
        log.exception("%s failed", action)
        st.error(f"**{action} failed unexpectedly** ({type(exc).__name__}: {exc}). The rest of the page "
                 "still works; the details are in the server log.", icon=":material/bug_report:")


def flash(kind: str, text: str) -> None:
    """A message for the next run (callbacks run before the page draws)."""
    st.session_state.setdefault("_flash", []).append((kind, text))


def show_flashes() -> None:
    for kind, text in st.session_state.pop("_flash", []):
        {"success": st.success, "error": st.error, "warning": st.warning}.get(kind, st.info)(text)


def run_safely(action: str, fn: Callable[[], str | None]) -> None:
    """Run a callback's work; its result (or its error) is flashed on the next run."""
    try:
        message = fn()
    except EXPECTED_ERRORS as exc:
        flash("error", f"**{action} failed.** {exc}")
    except Exception as exc:  # noqa: BLE001
        log.exception("%s failed", action)
        flash("error", f"**{action} failed unexpectedly** ({type(exc).__name__}: {exc}).")
    else:
        if message:
            flash("success", message)


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)
    show_flashes()


# --- cached resources ---


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


@st.cache_resource(show_spinner="Loading the encoder (once per server)…")
def _encoder(name: str) -> Encoder:
    return load_encoder(name)


def encoder(store: ImageStore) -> Encoder:
    """The DB's encoder, loaded once; the store's own lazy load then finds it in the same cache."""
    return _encoder(store.encoder_name)


@st.cache_resource(show_spinner="Loading the generator (once per server)…")
def _generator(backend: str, key: tuple, _settings: Settings) -> BaseGenerator:
    return make_generator(_settings, backend)


def generator(s: Settings, backend: str) -> BaseGenerator:
    # The token is part of the key (a new token means a new client) but only as a hash.
    key = (s.prior_id, s.decoder_id, s.inpaint_decoder_id, s.worker_url, hash(s.worker_token or ""))
    return _generator(backend, key, s)


# --- status checks (short TTL: a worker or an LLM server can come and go) ---

CHECK_TTL_S = 30


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


def show_check(check: Check) -> None:
    box = {"ok": st.success, "warning": st.warning, "error": st.error}[check.level]
    icon = {"ok": ":material/check_circle:", "warning": ":material/warning:", "error": ":material/error:"}
    box(f"**{check.title}**  \n{check.detail}", icon=icon[check.level])


# --- derived data, cached per DB version ---


@st.cache_data(show_spinner="Looking for near-duplicates…", max_entries=16)
def near_duplicates(db: str, index_version: int, threshold: float) -> list[DuplicateGroup]:
    ids, vecs = _open_store(db).vectors()
    return near_duplicate_groups(ids, vecs, threshold)


@st.cache_data(show_spinner="Scoring each image against its category…", max_entries=16)
def outliers(db: str, revision: int, limit: int) -> list[Outlier]:
    store = _open_store(db)
    ids, vecs = store.vectors()
    category = {r.id: r.category or "(none)" for r in store.records()}
    return category_outliers(ids, vecs, [category[int(i)] for i in ids], limit=limit)


@st.cache_data(show_spinner="Computing the UMAP layout (the first map in a server takes ~20 s)…", max_entries=4)
def map_layout(db: str, index_version: int) -> MapLayout:
    ids, vecs = _open_store(db).vectors()
    return umap_layout(ids.tolist(), vecs)


@st.cache_data(show_spinner=False, max_entries=4)
def hover_thumbnails(db: str, index_version: int, side: int = 96) -> dict[int, str]:
    """Small JPEG data URIs for the map's hover preview (a few KB each)."""
    store = _open_store(db)
    out = {}
    for rec in store.records():
        try:
            with Image.open(store.thumbnail_file(rec)) as im:
                small = jpeg_thumbnail(im, side, quality=70)
        except OSError:
            continue  # a missing thumbnail only loses its hover preview; `rdm check` reports it
        out[rec.id] = "data:image/jpeg;base64," + base64.b64encode(small).decode("ascii")
    return out


def db_key(store: ImageStore) -> str:
    return str(store.path.resolve())


# --- the thumbnail grid with selection ---


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True)
class Tile:
    record: ImageRecord
    score: float | None = None
    badge: str = ""  # e.g. ":green-badge[kept]"
    note: str = ""  # one more line under the caption


def selection(key: str) -> set[int]:
    return st.session_state.setdefault(f"{key}:selected", set())


def set_selection(key: str, ids: Sequence[int]) -> None:
    st.session_state[f"{key}:selected"] = {int(i) for i in ids}


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
        lines.append(f":gray[{_short(r.caption or r.filename, 32)}]")
        return "  \n".join(lines)
    head = f"**#{r.id}** · {r.category or 'uncategorised'}"
    if tile.score is not None:
        head += f" · `cos {tile.score:.3f}`"
    if tile.badge:
        head += f" {tile.badge}"
    lines = [head, _short((r.caption or r.filename).replace("\n", " "), 70)]
    if r.tags:
        lines.append(" ".join(f"`{t}`" for t in r.tags[:4]) + (" …" if len(r.tags) > 4 else ""))
    if tile.note:
        lines.append(f":gray[{tile.note}]")
    if r.deleted:
        lines.append(":red-badge[deleted]")
    return "  \n".join(lines)


# Thumbnails of any shape sit in equal square boxes, so a grid reads as rows and columns.
GRID_CSS = """<style>
[class*="st-key-rdm-tiles"] [data-testid="stImage"] img {
  aspect-ratio: 1 / 1; object-fit: contain; background: #f3f4f6; border-radius: 6px; width: 100%;
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
                if selectable or on_similar:
                    row = st.container(horizontal=True, vertical_alignment="center", gap="small")
                    if selectable:
                        pick = f"{key}:pick:{rid}"
                        st.session_state[pick] = rid in chosen  # the selection set is the truth
                        row.checkbox("Select", key=pick, on_change=_toggle, args=(key, rid))
                    if on_similar:
                        row.button(":material/image_search:", key=f"{key}:similar:{rid}", on_click=on_similar,
                                   args=(rid,), type="tertiary", help="Find the images most like this one")


def _add_to_selection(key: str, ids: Sequence[int]) -> None:
    selection(key).update(int(i) for i in ids)


def select_buttons(key: str, visible_ids: Sequence[int]) -> None:
    a, b, _ = st.columns([1, 1, 3])
    a.button("Select all shown", key=f"{key}:select-shown", icon=":material/select_all:",
             on_click=_add_to_selection, args=(key, list(visible_ids)), disabled=not visible_ids)
    b.button("Clear selection", key=f"{key}:clear", icon=":material/deselect:", disabled=not selection(key),
             on_click=set_selection, args=(key, []))


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
        store.edit_many(ids, **changes)
        names = [{"add_tags": "added tags"}.get(c, c) for c in changes]
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
        n = getattr(store, action)(ids)
        selection(key).clear()
        return done.format(n=n)
    run_safely(verb, work)


def bulk_actions(store: ImageStore, key: str) -> None:
    """Edit category/tags/caption, delete, restore the selected images; saved at once."""
    ids = sorted(selection(key))
    if not ids:
        st.caption("Tick **Select** on images to edit, delete or restore them together.")
        return
    records = store.records(include_deleted=True, ids=ids)
    live = [r.id for r in records if not r.deleted]
    gone = [r.id for r in records if r.deleted]
    single = records[0] if len(records) == 1 else None
    form = f"{key}:edit:{hash(tuple(ids))}"  # new defaults whenever the selection changes
    with st.container(border=True):
        st.markdown(f"#### :material/checklist: {len(ids)} selected" +
                    (f" · image #{single.id}" if single else ""))
        with st.form(form, border=False):
            c1, c2, c3 = st.columns([1, 1, 2])
            categories = ["(keep)"] + store.categories()
            c1.selectbox("Category", categories, key=f"{form}:category", accept_new_options=True,
                         index=categories.index(single.category) if single and single.category in categories else 0,
                         help="Pick one, or type a new category")
            c2.text_input("Tags (comma-separated)", key=f"{form}:tags",
                          value=", ".join(single.tags) if single else "")
            c2.radio("Tags", ["Add tags", "Replace tags"], key=f"{form}:tag-mode", horizontal=True,
                     index=1 if single else 0, label_visibility="collapsed")
            c3.text_area("Caption", key=f"{form}:caption", value=single.caption if single else "", height=90,
                         placeholder=None if single else "Leave empty to keep each image's caption")
            st.form_submit_button("Save changes", type="primary", icon=":material/save:",
                                  on_click=_apply_edit, args=(store, key, ids, form))
        row = st.container(horizontal=True, gap="small")
        if live:
            row.button(f"Delete {len(live)}", key=f"{key}:delete", icon=":material/delete:",
                       on_click=_bulk, args=(store, key, live, "delete"), help="Hidden from search and the grid; restorable")
        if gone:
            row.button(f"Restore {len(gone)}", key=f"{key}:restore", icon=":material/restore_from_trash:",
                       on_click=_bulk, args=(store, key, gone, "restore"))
            with row.popover("Remove for good", icon=":material/delete_forever:"):
                st.write(f"Remove {len(gone)} deleted image(s) with their files? This cannot be undone.")
                st.button("Yes, remove", key=f"{key}:purge", type="primary", on_click=_bulk,
                          args=(store, key, gone, "purge"))


def settings_summary(s: Settings) -> dict[str, str]:
    """What the dashboard runs against, for the sidebar (never secrets: only whether they are set)."""
    return {"DB": str(s.db), "Runs": str(s.runs_dir), "Backend": s.backend,
            "Worker": s.worker_url or "–", "Worker token": "set" if s.worker_token else "not set",
            "LLM": (s.llm_base_url or ("api.openai.com" if s.llm_api_key else "not configured")),
            "LLM key": "set" if s.llm_api_key else "not set"}


# --- a run: the side-by-side grid (shared by Generate & compare and Runs & report) ---

TEST_MODEL_BANNER = ("**TEST MODEL** – these images come from the tiny random-weight Kandinsky used for tests: "
                     "they are noise, not results. Set RDM_BACKEND=local or remote for real images.")


def score_table(record) -> pd.DataFrame:
    """Mean CLIP cosine per mode: the full prompt, then one row per requirement (sub-query)."""
    means = [m.mean_scores() for m in record.modes]
    rows = [{"requirement": "full prompt", **{m.mode: p for m, (p, _) in zip(record.modes, means)}}]
    rows += [{"requirement": req, **{m.mode: (r[i] if r else None) for m, (_, r) in zip(record.modes, means)}}
             for i, req in enumerate(record.requirements)]
    return pd.DataFrame(rows)


def render_run(record) -> None:
    """Test-model banner, scores per requirement, then one column per mode and one row per seed."""
    if record.test_model:
        st.warning(TEST_MODEL_BANNER, icon=":material/science:")
    s, g = record.settings, record.generator
    st.caption(f"Run `{record.id}` · {record.created} · seed {s.seed} · {s.steps} steps (prior {s.prior_steps}) · "
               f"guidance {s.guidance} · {s.size[0]}×{s.size[1]} · {g.backend} on {g.gpu_name or g.device}"
               + (" · **test model**" if record.test_model else ""))
    if record.product:
        st.info(f"Product kept pixel-identical: `{Path(record.product.get('source') or 'product').name}`, "
                f"{placement_text(record.product)}; only its surroundings were generated.", icon=":material/lock:")
    if record.scorer:
        st.markdown(f"**Requirement satisfaction** (mean cosine, scored with `{record.scorer}`)")
        table = score_table(record)
        modes = [m.mode for m in record.modes]
        styled = table.style.format("{:.3f}", subset=modes, na_rep="–")
        if len(modes) > 1:
            styled = styled.highlight_max(subset=modes, axis=1, color="#d7f0dd")
        st.dataframe(styled, hide_index=True, width="stretch")
        if len(modes) > 1:
            st.caption("Green: the best mode for each requirement.")
    base = record.folder or Path(".")
    cols = st.columns(len(record.modes))
    for col, mode in zip(cols, record.modes):
        prompt_mean, _ = mode.mean_scores()
        col.markdown(f"#### {mode.mode}")
        col.caption(f"{len(mode.plan.items)} plan items · {mode.seconds:.1f} s"
                    + (f" · prompt {prompt_mean:.3f}" if prompt_mean is not None else ""))
    for row in range(max(len(m.images) for m in record.modes)):
        cols = st.columns(len(record.modes))
        for col, mode in zip(cols, record.modes):
            if row >= len(mode.images):
                continue
            image = mode.images[row]
            with col.container(border=True):
                path = base / image.file
                if path.is_file():
                    st.image(str(path), width="stretch")
                else:
                    st.warning(f"{image.file} is missing from the run folder.")
                head = f"**seed {image.seed}**" + (" :orange-badge[test model]" if record.test_model else "")
                if image.prompt_score is not None:
                    head += f" · prompt `{image.prompt_score:.3f}`"
                details = " · ".join(f"{_short(req)} `{v:.3f}`"
                                     for req, v in zip(record.requirements, image.requirement_scores))
                st.markdown(head + (f"  \n:gray[{details}]" if details else ""))
    with st.expander("What conditioned each mode (plan items and weights)"):
        for mode in record.modes:
            st.markdown(f"**{mode.mode}**" + (f" – {' '.join(mode.plan.notes)}" if mode.plan.notes else ""))
            st.dataframe(pd.DataFrame([{"source": i.source, "item": i.label(), "answers": i.subquery or "",
                                        "cosine": i.score, "weight": round(i.weight, 4)} for i in mode.plan.items]),
                         hide_index=True, width="stretch")
