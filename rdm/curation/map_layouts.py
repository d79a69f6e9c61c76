"""The embedding map's layout, saved in the DB folder per index version.

A UMAP fit of 20,000 images takes about 46 s here, so a layout is computed once per index version
and saved (``maps/umap-v<version>.npz``, arrays only): another server process, or the next start, opens it
instead of fitting again (FiftyOne keeps such results with the dataset for the same reason). After a small
change (an upload, a few deletions or restores) each new image is placed among its nearest neighbours'
saved positions and every other point stays where it was, so the map does not jump; past ``REFIT_SHARE``
new images, or when asked, it is refitted. A fit over ``BACKGROUND_MIN`` images or more is the dashboard's
background job (``rdm.jobs``), not its page's. No fitted model is saved: a DB folder is data a colleague
may share or a zip may bring, so nothing in it is ever unpickled.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from rdm.db import ImageStore
from rdm.curation.embedmap import MapLayout, fit_umap, place_by_neighbours
from rdm.common.files import atomic_write

MAP_DIR = "maps"
REFIT_SHARE = 0.2  # more new images than this share of the fitted ones: a fresh fit reads better
KEEP_VERSIONS = 3  # older layouts are removed once a newer one is saved
BACKGROUND_MIN = 2_000  # a fresh fit of this many images takes 5+ s here: the page hands it to the job worker
_LAYOUT = re.compile(r"umap-v(\d+)\.npz$")


def layout_file(store: ImageStore, version: int) -> Path:
    return store.path / MAP_DIR / f"umap-v{version}.npz"


def saved_layout(store: ImageStore, version: int | None = None) -> MapLayout | None:
    """The layout saved for ``version`` (default: the current index version), or None."""
    path = layout_file(store, store.index_version if version is None else version)
    try:
        with np.load(path, allow_pickle=False) as saved:
            info = json.loads(str(saved["info"]))
            ids, xy = saved["ids"].astype(np.int64), saved["xy"].astype(np.float32)
            if ids.ndim != 1 or xy.shape != (len(ids), 2) or not np.isfinite(xy).all():
                return None
            return MapLayout(tuple(ids.tolist()), xy, str(info["method"]), str(info["note"]),
                             fit_version=int(info["fit_version"]), encoder=str(info.get("encoder", "")))
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return None  # none saved, or unreadable or damaged: it is derived data, computed again


def map_layout(store: ImageStore, *, refit: bool = False, seed: int = 42) -> MapLayout:
    """The map of the store's live images at its current index version.

    Args:
        store: the DB.
        refit: fit UMAP afresh even when a saved layout or model could be used.
        seed: UMAP's random state (the same vectors and seed give the same map).
    """
    version = store.index_version
    # 1. saved for this version already (by this process or another)
    if not refit and (found := saved_layout(store, version)) is not None:
        return found
    ids, vectors = store.vectors()
    ids = tuple(int(i) for i in ids)
    # 2. a small change since the last fit: place the new images among their neighbours
    layout = None if refit else _placed(store, ids, vectors)
    # 3. otherwise fit afresh
    if layout is None:
        layout = replace(fit_umap(ids, vectors, seed=seed), fit_version=version, encoder=store.encoder_name)
    _save(store, version, layout)
    return layout


def fit_due(store: ImageStore) -> bool:
    """Whether the map of the current index version needs a fresh UMAP fit (nothing saved for it, and no
    fit to place its new images by), which ``map_layout`` would run."""
    if saved_layout(store) is not None:
        return False
    previous = _latest_saved(store)
    return not _builds_on(store, previous, store.catalog.live_ids())


def _builds_on(store: ImageStore, previous: MapLayout | None, ids) -> bool:
    """Whether ``previous`` can be kept, with the images new since placed among its points."""
    if previous is None or previous.method != "umap" or previous.encoder != store.encoder_name:
        return False  # nothing to build on, or another encoder's map (after `rdm reindex`): fit afresh
    new = len(np.setdiff1d(np.asarray(ids, np.int64), np.asarray(previous.ids, np.int64)))
    return new <= REFIT_SHARE * len(previous.ids)


def _placed(store: ImageStore, ids: tuple[int, ...], vectors: np.ndarray) -> MapLayout | None:
    """The latest saved layout with deleted images dropped and new ones placed among their neighbours on it."""
    previous = _latest_saved(store)
    if not _builds_on(store, previous, ids):
        return None
    row_of = {image_id: row for row, image_id in enumerate(previous.ids)}
    new_rows = [n for n, image_id in enumerate(ids) if image_id not in row_of]
    kept_rows = [n for n, image_id in enumerate(ids) if image_id in row_of]
    xy = np.empty((len(ids), 2), np.float32)
    xy[kept_rows] = previous.xy[[row_of[ids[n]] for n in kept_rows]]
    if new_rows and kept_rows:
        xy[new_rows] = place_by_neighbours(xy[kept_rows], vectors[kept_rows], vectors[new_rows])
    elif new_rows:
        return None  # every fitted image is gone: nothing to place by
    fitted = len(ids) - len(new_rows)
    note = (f"UMAP of {len(ids)} images: {fitted} as fitted at index version {previous.fit_version}"
            + (f", {len(new_rows)} placed by that fit since" if new_rows else "") + "; refit for a fresh layout")
    return MapLayout(ids, xy, "umap", note, fit_version=previous.fit_version, encoder=previous.encoder)


def _latest_saved(store: ImageStore) -> MapLayout | None:
    versions = sorted((int(m.group(1)) for p in (store.path / MAP_DIR).glob("umap-v*.npz")
                       if (m := _LAYOUT.search(p.name))), reverse=True)
    for version in versions:
        if (found := saved_layout(store, version)) is not None:
            return found
    return None


def _save(store: ImageStore, version: int, layout: MapLayout) -> None:
    buffer = io.BytesIO()
    info = {"method": layout.method, "note": layout.note, "fit_version": layout.fit_version, "encoder": layout.encoder}
    np.savez(buffer, ids=np.asarray(layout.ids, np.int64), xy=layout.xy, info=np.asarray(json.dumps(info)))
    atomic_write(layout_file(store, version), buffer.getvalue())
    _prune(store)


def _prune(store: ImageStore) -> None:
    """Old layouts, and fitted models older versions pickled (never loaded now); derived data, so losing one
    only costs a refit."""
    folder = store.path / MAP_DIR
    layouts = sorted(((int(m.group(1)), p) for p in folder.glob("umap-v*.npz") if (m := _LAYOUT.search(p.name))),
                     reverse=True)
    for path in [p for _, p in layouts[KEEP_VERSIONS:]] + list(folder.glob("umap-model-v*.pkl")):
        path.unlink(missing_ok=True)
