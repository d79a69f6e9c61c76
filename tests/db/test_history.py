"""Every curation change is recorded with time, before and after (and who); changes and whole bulk
actions can be reverted, from the library and the CLI; a purge says it cannot be."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db import ImageStore
from rdm.errors import StoreError

runner = CliRunner()


def test_a_bulk_caption_edit_is_recorded_and_reverted_as_one(tiny_db):
    store = ImageStore.open(tiny_db)
    ids = [r.id for r in store.records()][:3]
    originals = {i: store.get(i).caption for i in ids}
    store.edit_many(ids, caption="Same caption for all", who="maria")
    changes = store.history()
    assert len({c.batch for c in changes[:3]}) == 1 and all(c.who == "maria" for c in changes[:3])
    assert changes[0].before == {"caption": originals[changes[0].image_id]}
    assert changes[0].after == {"caption": "Same caption for all"}
    assert store.undo(changes[0].id, whole_batch=True) == 3
    assert {i: ImageStore.open(tiny_db).get(i).caption for i in ids} == originals  # back, after a reopen
    # the revert is itself a change, and can be reverted (a redo)
    redo = store.history()[0]
    assert redo.undoes is not None and store.undo(redo.id, whole_batch=True) == 3
    assert {store.get(i).caption for i in ids} == {"Same caption for all"}


def test_delete_restore_and_upload_are_undoable_and_search_follows(tiny_db):
    store = ImageStore.open(tiny_db)
    target = store.records()[0].id
    store.delete(target)
    assert target not in [h.id for h in store.search("x", k=50)]
    store.undo(store.history(target)[0].id)
    assert target in [h.id for h in store.search("x", k=50)] and store.check().ok
    (added,) = store.ingest_bytes([("new.png", _png())]).added
    upload = store.history(added.image_id)[0]
    assert upload.action == "upload"
    store.undo(upload.id)
    assert store.get(added.image_id).deleted and store.check().ok


def test_a_later_edit_must_be_reverted_first(tiny_db):
    store = ImageStore.open(tiny_db)
    image = store.records()[0].id
    store.edit(image, caption="first")
    first = store.history(image)[0]
    store.edit(image, caption="second")
    with pytest.raises(StoreError, match="changed again after change"):
        store.undo(first.id)
    assert store.get(image).caption == "second"  # nothing half-reverted


def test_a_purge_is_recorded_and_cannot_be_undone(tiny_db):
    store = ImageStore.open(tiny_db)
    image = store.records()[0]
    store.delete(image.id)
    store.purge(image.id)
    purge = store.history(image.id)[0]
    assert purge.action == "purge" and purge.before["filename"] == image.filename and not purge.reversible
    with pytest.raises(StoreError, match="cannot be undone"):
        store.undo(purge.id)


def test_rdm_history_and_undo(tiny_db, monkeypatch):
    monkeypatch.setenv("RDM_USER", "jun")
    store = ImageStore.open(tiny_db)
    ids = [str(r.id) for r in store.records()][:3]
    original = store.get(int(ids[0])).caption
    for image_id in ids:
        assert runner.invoke(app, ["edit", image_id, "--caption", "via the CLI", "--db", str(tiny_db)]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["history", ids[0], "--db", str(tiny_db), "--json"]).stdout)["changes"]
    assert listed[0]["who"] == "jun" and listed[0]["after"] == {"caption": "via the CLI"}
    shown = runner.invoke(app, ["history", "--db", str(tiny_db)])
    assert "caption: " in shown.stdout and "by jun" in shown.stdout
    result = runner.invoke(app, ["undo", str(listed[0]["id"]), "--db", str(tiny_db)])
    assert result.exit_code == 0 and "reverted 1 change" in result.stdout
    assert ImageStore.open(tiny_db).get(int(ids[0])).caption == original
    again = runner.invoke(app, ["undo", str(listed[0]["id"]), "--db", str(tiny_db)])
    assert again.exit_code == 1 and "already reverted" in again.output


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (9, 99, 199)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_typed_percent_sign_is_text_not_a_wildcard(tiny_db):
    store = ImageStore.open(tiny_db)
    assert store.records(text="%") == [] and store.records(text="_") == []
    store.edit(store.records()[0].id, caption="50% off")
    assert [r.caption for r in store.records(text="0%")] == ["50% off"]
