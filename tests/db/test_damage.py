"""Damage from outside the DB's own writes: a vector file cut short under a running process, a read-only
folder, a full disk. Each is a clear error or still works; none is a crash or a traceback."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdm.db import ImageStore
from rdm.settings import DEMO_PHOTOS

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))
WAIT_S = 240  # bounds a hung subprocess (a failure), not a timing expectation
ROOT = Path(__file__).resolve().parents[2]  # the checkout, for the subprocesses' imports


@pytest.fixture
def db(tmp_path, tiny_encoder) -> Path:
    """A DB closed cleanly: its commits are all in meta.sqlite, no -wal or -shm file left beside it."""
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest(PHOTOS[:4])
    del store
    gc.collect()  # closes the SQLite connections, which checkpoints the WAL and removes it
    assert not (tmp_path / "db" / "meta.sqlite-wal").exists()
    return tmp_path / "db"


def _python(script: str, *args: str, wrap: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*wrap, sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=WAIT_S,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


SHRINK = """
import os, sys
from rdm.db import ImageStore
store = ImageStore.open(sys.argv[1])
store.vectors()  # the file is mapped now
os.truncate(store.catalog.vector_file().path, 0)  # cut short by something else
print(len(store.vectors()[0]), len(store.search_vectors(store.encoder.encode_texts(["a dog"]), k=10)[0]))
"""


def test_a_vector_file_cut_short_under_a_running_process_is_not_a_crash(db):
    """Defect 9: reading a mapped page past the file's new end would be SIGBUS; the shrink is seen first."""
    done = _python(SHRINK, str(db))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "4"]  # no vector left to read; the index's own copies still answer
    assert "shrank" in done.stderr
    assert any("no vector" in p for p in ImageStore.open(db).check().problems)


READ_ONLY = """
import json, sys
from rdm.db import ImageStore, StoreError
store = ImageStore.open(sys.argv[1])
out = {"live": store.stats().live, "hits": len(store.search_vectors(store.encoder.encode_texts(["a dog"]), k=3)[0]),
       "check": store.check().ok}
for name, write in (("delete", lambda: store.delete(1)), ("edit", lambda: store.edit(1, caption="x"))):
    try:
        write()
    except StoreError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


def _read_only(folder: Path) -> list[str]:
    """A command prefix that runs with ``folder`` read-only: a private read-only bind mount (root ignores
    permission bits), or the bits themselves for another user."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return []
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m to mount the DB folder read-only as root")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" && exec "$@"', "sh"]


def test_a_read_only_db_folder_can_be_searched_and_checked(db):
    """Defect 9: reads never take the write lock or write to SQLite; a write says the folder is read-only."""
    wrap = _read_only(db)
    try:
        done = _python(READ_ONLY, str(db), wrap=wrap)
    finally:
        for path in [db, *db.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["live"] == 4 and out["hits"] == 3 and out["check"]
    assert "read-only" in out["delete"] and "read-only" in out["edit"]


DISK_FULL = """
import errno, json, sys
from pathlib import Path
from rdm.db import ImageStore
from rdm.encoders import load_encoder
from rdm.errors import RDMError

root, photos = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
store = ImageStore.create(root / "db", load_encoder("tiny"))
store.ingest(photos[:2])
filler, results = root / "filler", []
for n, spare in enumerate((0, 40_000, 160_000)):  # bytes left free: the disk fills at a different write each time
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        fh.truncate(max(0, fh.tell() - spare))
    try:
        outcome = store.ingest(photos[2 + 6 * n:8 + 6 * n], batch_size=2).summary()
    except RDMError as exc:  # anything else is a traceback: the test fails on the exit status
        outcome = f"{type(exc).__name__}: {exc}"
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))
    filler.unlink()
    store.check(repair=True)
    fresh = ImageStore.open(root / "db")
    found = all(fresh.search_vectors(fresh.encoder.encode_images([fresh.open_image(r.id)]), k=1)[0][0].id == r.id
                for r in fresh.records())
    results.append({"outcome": outcome, "tmp": left, "ok": fresh.check().ok, "found": found})
print(json.dumps(results))
"""


def test_a_full_disk_is_a_clear_error_that_keeps_what_was_stored(tmp_path):
    """Defect 7: a disk that fills at a blob, a vector, the commit or the index save is an RDMError saying what
    was kept; no temp file is left; once space is freed `check --repair` leaves every stored image searchable."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs root and unshare -m to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs -o size=4m none "{disk}" && exec "$@"', "sh"]
    done = _python(DISK_FULL, str(disk), *map(str, PHOTOS[:20]), wrap=wrap)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for result in results:
        assert result["tmp"] == [] and result["ok"] and result["found"], result
    failed = [r["outcome"] for r in results if "added" not in r["outcome"]]
    assert failed and all("DiskFull" in o or "full" in o or "space" in o for o in failed), results


def test_atomic_write_on_a_full_disk_leaves_no_temp_file(tmp_path, monkeypatch):
    from rdm.common.files import atomic_write
    from rdm.errors import DiskFull

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFull, match="no space left to write .*x.bin"):
        atomic_write(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_a_commit_failing_on_a_full_disk_says_so_not_cannot_rollback(db):
    """Defect 7: SQLite rolls a failed COMMIT back itself; a second ROLLBACK used to hide the real error."""
    import sqlite3

    from rdm.errors import StoreError

    catalog = ImageStore.open(db).catalog
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    with pytest.raises(StoreError, match="disk holding the DB .* is full.*was not stored"):
        with catalog.tx() as con:
            con.execute("UPDATE meta SET value = 'x' WHERE key = 'encoder_reason'")
            con.execute("ROLLBACK")  # what SQLite does when the COMMIT cannot be written
            raise full
    assert catalog.meta("encoder_reason") != "x"


MAPPED_INDEX = """
import os, sys
import numpy as np
from pathlib import Path
from rdm.db.index import FaissIndex
from rdm.errors import StoreError
path = Path(sys.argv[1])
vectors = np.random.default_rng(0).normal(size=(4000, 32)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
FaissIndex.build(np.arange(4000), vectors, 32, "ivf").persist(path, 1)
mapped = FaissIndex.read(path, copy=False)  # searched through the mapping
assert mapped.mapped
os.truncate(path, 0)  # cut short in place by something else
try:
    mapped.search(vectors[:2], 5)
except StoreError as exc:
    print("refused:", exc)
"""


def test_a_mapped_index_file_cut_short_is_refused_not_a_crash(tmp_path):
    """Defect 9: the IVF index file is mapped until its copy in memory is made; cut short, it is refused."""
    done = _python(MAPPED_INDEX, str(tmp_path / "index.faiss"))
    assert done.returncode == 0, done.stderr
    assert "refused: the index file" in done.stdout and "rdm check --repair" in done.stdout


def test_a_store_whose_mapped_index_is_cut_short_reads_it_again(tmp_path, tiny_encoder, monkeypatch):
    """Defect 9: the process does not keep a broken mapping: the next search reads the index again (rebuilt from
    the catalog when the file is gone)."""
    import rdm.db.index.base as index_base
    from rdm.db.index import FaissIndex

    monkeypatch.setattr(index_base, "IVF_MIN", 4)  # a handful of images make an IVF index, mapped on open
    monkeypatch.setattr(index_base, "TRAIN_PER_LIST", 1)
    monkeypatch.setattr(FaissIndex, "_load", lambda self: None)  # the copy into memory never comes: still mapped
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest(PHOTOS[:12])
    store.rebuild_index("ivf")
    reader = ImageStore.open(store.path)
    held = reader._keeper.current()
    if not held.mapped:
        pytest.skip("this FAISS build did not map the IVF file")
    os.truncate(store.path / "index.faiss", 0)
    assert len(reader.search("a dog", k=5)) == 5
