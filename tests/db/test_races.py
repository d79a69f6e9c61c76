"""Writers racing on one DB, as separate processes (``racers.py``, stopped at a gate at the moment that
matters): nothing a command acknowledged may be unsearchable afterwards, and no race is a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from racers import Reversed, register_reversed
from rdm.db import ImageStore
from rdm.encoders import load_encoder
from rdm.settings import DEMO_PHOTOS

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))
RACERS = Path(__file__).with_name("racers.py")
WAIT_S = 240  # bounds a wait for a process that hangs (a failure), not a timing expectation
ROOT = Path(__file__).resolve().parents[2]  # the checkout, for the subprocesses' imports


@pytest.fixture
def db(tmp_path, tiny_encoder) -> Path:
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest(PHOTOS[:4])
    return store.path


def _folder(tmp_path: Path, name: str, photos) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    return folder


def _start(action: str, db: Path, what: str, gates: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RACERS), action, str(db), what, str(gates)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(RACERS.parent)])})


def _reached(proc: subprocess.Popen, gates: Path, name: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (gates / f"{name}.reached").exists():
        assert proc.poll() is None, f"{name} ended before its gate: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{name} never reached its gate"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    return out


def _rdm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdm.cli", *args], capture_output=True, text=True, timeout=WAIT_S,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _assert_every_image_findable(db: Path) -> None:
    """Each image, embedded by the DB's encoder of now, finds itself first; its stored vector is that embedding."""
    register_reversed()
    store = ImageStore.open(db)
    encoder = load_encoder(store.encoder_name)
    records = store.records(include_deleted=True)
    for rec in records:
        query = encoder.encode_images([store.open_image(rec.id)])
        assert store.search_vectors(query, k=1)[0][0].id == rec.id, rec.filename
        assert np.allclose(store.vectors([rec.id])[1], query, atol=1e-5), rec.filename
    assert store.check().ok


def test_reindex_racing_an_ingest_keeps_every_acknowledged_image_searchable(db, tmp_path):
    """Defect 1: `rdm ingest` commits while `rdm reindex` embeds; the switch must take its rows along."""
    gates = tmp_path / "gates"
    gates.mkdir()
    reindex = _start("reindex", db, "tiny", gates)
    _reached(reindex, gates, "reindex")
    ingest = _rdm("ingest", str(_folder(tmp_path, "more", PHOTOS[4:10])), "--db", str(db))
    assert ingest.returncode == 0, ingest.stderr
    assert "6 added" in ingest.stdout
    (gates / "reindex.go").touch()
    assert _finish(reindex).strip() == "10"
    _assert_every_image_findable(db)


def test_an_ingest_embedded_before_a_reindex_commits_vectors_of_the_new_encoder(db, tmp_path):
    """Defect 1, the other order: a batch embedded with the old encoder is committed after the switch."""
    gates = tmp_path / "gates"
    gates.mkdir()
    ingest = _start("ingest", db, str(_folder(tmp_path, "more", PHOTOS[4:8])), gates)
    _reached(ingest, gates, "ingest")
    (gates / "reindex.go").touch()  # the reindex runs through
    _finish(_start("reindex", db, Reversed.name, gates))
    (gates / "ingest.go").touch()
    assert [s for s, _ in json.loads(_finish(ingest)).values()] == ["added"] * 4
    assert ImageStore.open(db).encoder_name == Reversed.name
    _assert_every_image_findable(db)


def test_overlapping_ingests_store_the_later_ones_unique_files(db, tmp_path):
    """Defect 5: a file another ingest stored meanwhile is 'already stored', not an IntegrityError."""
    gates = tmp_path / "gates"
    gates.mkdir()
    later = _start("ingest", db, str(_folder(tmp_path, "b", PHOTOS[6:12])), gates)
    _reached(later, gates, "ingest")
    first = _rdm("ingest", str(_folder(tmp_path, "a", PHOTOS[4:8])), "--db", str(db))
    assert first.returncode == 0, first.stderr
    (gates / "ingest.go").touch()
    items = json.loads(_finish(later))
    assert {n for n, (s, _) in items.items() if s == "duplicate"} == {p.name for p in PHOTOS[6:8]}
    assert {n for n, (s, _) in items.items() if s == "added"} == {p.name for p in PHOTOS[8:12]}
    assert len(ImageStore.open(db).records()) == 12
    _assert_every_image_findable(db)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from rdm.db.writelock import write_lock
with write_lock(Path(sys.argv[1])).held():
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_holding_the_lock_does_not_block_the_next(db):
    """The write lock is an flock: the kernel releases it when its holder dies, whatever it was doing."""
    from rdm.db.writelock import write_lock

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with write_lock(db).try_held() as mine:
            assert not mine  # another process holds it: writers here wait
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)
    added = ImageStore.open(db).ingest(PHOTOS[4:6]).added
    assert len(added) == 2
    _assert_every_image_findable(db)


def test_a_reindex_killed_mid_way_loses_nothing(db, tmp_path):
    """Defect 1 with a kill: the re-embed dies after an ingest committed; every acknowledged image stays found."""
    gates = tmp_path / "gates"
    gates.mkdir()
    reindex = _start("reindex", db, Reversed.name, gates)
    _reached(reindex, gates, "reindex")
    ingest = _rdm("ingest", str(_folder(tmp_path, "more", PHOTOS[4:7])), "--db", str(db))
    assert ingest.returncode == 0 and "3 added" in ingest.stdout, ingest.stderr
    reindex.kill()
    reindex.communicate(timeout=WAIT_S)
    assert ImageStore.open(db).encoder_name == "tiny"  # the switch never happened
    _assert_every_image_findable(db)


def test_a_shared_engine_is_not_rebuilt_by_a_reader_while_another_process_writes(tmp_path, tiny_encoder):
    """A Milvus collection is the index itself: a search that finds it behind the catalog while another process
    holds the write lock reads it as it is (that writer brings it in step) instead of rebuilding it under it."""
    store = ImageStore.create(tmp_path / "db", tiny_encoder, vector_backend="milvus")
    ids = [i.image_id for i in store.ingest(PHOTOS[:4]).added]
    _, vectors = store.vectors()
    store.catalog.set_deleted([ids[0]], True)  # the catalog moves on; the collection still holds the image
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(store.path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        reader = ImageStore.open(store.path)
        assert ids[0] not in [h.id for h in reader.search_vectors(vectors[:1], 4)[0]]  # the catalog's filter
        assert reader.read_index_file().size == 4  # the collection as it is: not rebuilt from under the writer
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)
    reader.search_vectors(vectors[:1], 4)
    assert reader.read_index_file().size == 3  # caught up once no one writes
    assert reader.check().ok
