"""The map layout saved in the DB folder: opened by a new process without fitting, new images placed by
the saved fit while the others stay put, a refit on request or after a large change."""

import io

import numpy as np
import pytest
from PIL import Image

import rdm.curation.map_layouts as map_layouts
from rdm.db import ImageStore
from rdm.curation.map_layouts import MAP_DIR, layout_file, map_layout, saved_layout


@pytest.fixture
def fits(monkeypatch):
    """Counts UMAP fits."""
    calls = []
    real = map_layouts.fit_umap
    monkeypatch.setattr(map_layouts, "fit_umap", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def png(colour, size=(96, 72)) -> bytes:
    rng = np.random.default_rng(sum(colour))
    pixels = (rng.integers(0, 60, (*size[::-1], 3)) + np.array(colour) * 0.7).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_second_process_opens_the_saved_layout_without_fitting(tiny_db, fits):
    first = map_layout(ImageStore.open(tiny_db))
    assert len(fits) == 1 and first.method == "umap" and len(first.ids) == 12
    assert layout_file(ImageStore.open(tiny_db), first.fit_version).exists()
    again = map_layout(ImageStore.open(tiny_db))  # a new handle, as another server process has
    assert len(fits) == 1
    assert again.ids == first.ids
    np.testing.assert_array_equal(again.xy, first.xy)


def test_new_images_are_placed_by_the_saved_fit_and_the_others_stay(tiny_db, fits):
    store = ImageStore.open(tiny_db)
    before = map_layout(store)
    store.delete([before.ids[0]])
    (added,) = store.ingest_bytes([("new-red.png", png((200, 40, 40)))], category="objects").items
    after = map_layout(ImageStore.open(tiny_db))
    assert len(fits) == 1  # placed, not refitted
    assert before.ids[0] not in after.ids and added.image_id in after.ids
    assert len(after.ids) == 12 and after.fit_version == before.fit_version
    for image_id in before.ids[1:]:
        assert after.position(image_id) == pytest.approx(before.position(image_id))
    assert np.isfinite(after.position(added.image_id)).all()
    assert "placed by that fit" in after.note and "refit" in after.note
    refitted = map_layout(store, refit=True)
    assert len(fits) == 2 and refitted.fit_version == store.index_version and "placed" not in refitted.note


def test_a_large_change_is_refitted(tiny_db, fits):
    store = ImageStore.open(tiny_db)
    map_layout(store)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]  # 3 new of 12 is past the 20% placed by a fit
    store.ingest_bytes([(f"new-{n}.png", png(c)) for n, c in enumerate(colours)], category="objects")
    layout = map_layout(store)
    assert len(fits) == 2 and len(layout.ids) == 15 and layout.fit_version == store.index_version


def test_an_unreadable_saved_layout_is_computed_again(tiny_db, fits):
    store = ImageStore.open(tiny_db)
    layout = map_layout(store)
    layout_file(store, store.index_version).write_bytes(b"not a layout")
    assert saved_layout(store) is None
    assert map_layout(store).ids == layout.ids and len(fits) == 2


def test_old_layouts_are_pruned(tiny_db):
    store = ImageStore.open(tiny_db)
    map_layout(store)
    ids = [r.id for r in store.records()]
    for image_id in ids[:4]:  # four new index versions, each a small change placed by the first fit
        store.delete([image_id])
        map_layout(store)
    folder = tiny_db / MAP_DIR
    assert len(list(folder.glob("umap-v*.npz"))) == map_layouts.KEEP_VERSIONS
    assert not list(folder.glob("umap-model-v*.pkl"))  # no fitted model is saved


def test_rdm_map_saves_the_layout_that_the_dashboard_opens(tiny_db, fits):
    import json

    from typer.testing import CliRunner

    from rdm.cli import app

    out = CliRunner().invoke(app, ["map", "--db", str(tiny_db), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["images"] == 12 and report["method"] == "umap" and len(fits) == 1
    assert (tiny_db / MAP_DIR / f"umap-v{report['index_version']}.npz").exists()
    assert map_layout(ImageStore.open(tiny_db)).note == report["note"] and len(fits) == 1
    again = CliRunner().invoke(app, ["map", "--db", str(tiny_db), "--refit"])
    assert again.exit_code == 0 and "saved:" in again.output and len(fits) == 2


class _Planted:
    """What a hostile DB folder could hold: a pickle that runs code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_in_the_db_folder_is_never_loaded(tiny_db, tmp_path, fits):
    """Defect 2: a DB folder is data. New images are placed among their neighbours' saved positions,
    with no fitted model loaded from the folder."""
    import pickle

    store = ImageStore.open(tiny_db)
    before = map_layout(store)
    marker = tmp_path / "code-ran"
    for fit in range(before.fit_version, before.fit_version + 5):
        (tiny_db / MAP_DIR / f"umap-model-v{fit}.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    (added,) = store.ingest_bytes([("new-red.png", png((200, 40, 40)))], category="objects").items
    after = map_layout(ImageStore.open(tiny_db))
    assert not marker.exists()
    assert len(fits) == 1 and "placed by that fit" in after.note
    x, y = after.position(added.image_id)
    xs, ys = before.xy[:, 0], before.xy[:, 1]
    assert xs.min() <= x <= xs.max() and ys.min() <= y <= ys.max()  # among the fitted points
    assert not list((tiny_db / MAP_DIR).glob("*.pkl"))  # a stale model left by an older version is removed


def test_a_damaged_saved_layout_is_computed_again(tiny_db, fits):
    store = ImageStore.open(tiny_db)
    layout = map_layout(store)
    buffer = io.BytesIO()
    np.savez(buffer, ids=np.asarray(layout.ids[:3]), xy=np.zeros((5, 2)), info=np.asarray('{"method": 1}'))
    layout_file(store, store.index_version).write_bytes(buffer.getvalue())
    assert saved_layout(store) is None
