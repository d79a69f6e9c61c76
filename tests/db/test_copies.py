"""Copies of one photo: perceptual hashes at ingest, groups around the largest, keep-best, rdm dupes."""

from __future__ import annotations

import json
import sqlite3

from PIL import Image
from typer.testing import CliRunner

from rdm.cli import app
from rdm.db.copies import copy_groups, find_copies
from rdm.db import ImageStore
from photo_copies import DOG, IMAGES, copies_of, jpeg

SOLAR = [IMAGES / f"gcompris-categories-renewable-solar-{n}.jpg" for n in (1, 5, 6, 8)]


def test_copies_are_grouped_with_the_original_and_look_alikes_are_not(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest([DOG, *SOLAR])
    store.ingest_bytes(copies_of(DOG))
    (group,) = find_copies(store)
    names = {r.id: r.filename for r in store.records()}
    assert names[group.leader] == DOG.name  # the largest copy is the one to keep
    assert sorted(names[i] for i in group.members) == ["dog-brighter.png", "dog-recompressed.jpg", "dog-small.jpg"]
    assert max(group.distances) <= 8
    assert not any(names[i].startswith("gcompris-categories-renewable") for i in group.members)


def test_keep_best_soft_deletes_the_copies_and_is_restorable(tmp_path, tiny_encoder):
    db = tmp_path / "db"
    store = ImageStore.create(db, tiny_encoder)
    store.ingest([DOG, *SOLAR])
    store.ingest_bytes(copies_of(DOG))
    out = CliRunner().invoke(app, ["dupes", "--db", str(db), "--json"])
    assert out.exit_code == 0, out.output
    groups = json.loads(out.stdout)["groups"]
    assert len(groups) == 1 and set(groups[0]) >= {"leader", "members"} and len(groups[0]["members"]) == 3
    kept = CliRunner().invoke(app, ["dupes", "--db", str(db), "--keep-best", "--json"])
    assert json.loads(kept.stdout)["deleted"] == 3
    assert store.stats().live == 5 and find_copies(store) == []
    store.restore(groups[0]["members"])
    assert store.stats().live == 8


def test_a_db_from_before_hashes_is_hashed_from_its_thumbnails(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest([DOG])
    store.ingest_bytes(copies_of(DOG)[:1])
    con = sqlite3.connect(store.db_file)
    con.execute("DROP TABLE hashes")  # as a DB written by an earlier version
    con.commit()
    con.close()
    reopened = ImageStore.open(store.path)
    (group,) = find_copies(reopened)
    assert len(group.members) == 1 and len(reopened.catalog.hashes()) == 2  # saved for next time


def test_plain_fills_of_different_colours_are_not_copies(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    fills = [(f"{name}.jpg", jpeg(Image.new("RGB", (96, 72), colour)))
             for name, colour in (("red", (210, 40, 40)), ("teal", (20, 160, 150)), ("red-again", (212, 42, 40)))]
    store.ingest_bytes(fills)
    (group,) = find_copies(store)
    names = {r.id: r.filename for r in store.records()}
    assert sorted([names[group.leader], *(names[i] for i in group.members)]) == ["red-again.jpg", "red.jpg"]


def test_groups_form_around_leaders_without_chaining():
    # a-b and b-c are close, a-c are not: b joins the largest (a), c stays alone
    hashes = [h + "808080" for h in ("0000000000000000", "000000000000000f", "00000000000000ff")]
    groups = copy_groups([1, 2, 3], hashes, [100, 50, 10], max_distance=4)
    assert [(g.leader, g.members) for g in groups] == [(1, (2,))]
