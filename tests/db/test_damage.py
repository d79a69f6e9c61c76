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
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})


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
