"""The Milvus backend against a real standalone Milvus server (the pip package ``milvus`` ships one, started
here on free local ports), not only Milvus Lite: the same top-10 as FAISS's flat index, a delete seen by the
next search, and a clean check. Skipped, with the reason, where the package is missing or cannot start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rdm.db import ImageStore
from rdm.settings import DEMO_PHOTOS

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))
START_S = 120  # the server unpacks its binary on first start; a slow shared machine needs a while


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    milvus = pytest.importorskip("milvus", reason="the pip package `milvus` (a standalone Milvus server) is not "
                                                  "installed")
    # every port of its own, free now: another server on this machine (a colleague's tests) holds the defaults
    ports = {key: _free_port() for key in milvus.default_server.config_keys if key.endswith("_port")}
    data, port = tmp_path_factory.mktemp("milvus-server"), ports["proxy_port"]
    server = subprocess.Popen([sys.executable, "-c", "from milvus import main; main()", "--data", str(data),
                               *(f"--{key.replace('_', '-')}={value}" for key, value in ports.items())],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own group: the server binary is its child
    try:
        deadline = time.monotonic() + START_S
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                logs = sorted((data / "logs").glob("*.log")) if (data / "logs").is_dir() else []
                tail = logs[-1].read_text(errors="replace")[-500:] if logs else "no log"
                pytest.skip(f"the standalone Milvus server did not start here: {tail}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    """The server and the binary it started (one process group) stopped: asked, then made to."""
    deadline = time.monotonic() + 30
    try:
        while True:
            os.killpg(server.pid, signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL)
            server.poll()
            time.sleep(0.5)
    except ProcessLookupError:  # nothing of the group is left
        server.wait()


def test_a_milvus_server_answers_like_faiss_flat(milvus_uri, tiny_encoder, tmp_path, monkeypatch):
    """Defect 13: parity with FAISS flat (exact) on a real server; every write is seen by the next search."""
    monkeypatch.setenv("RDM_MILVUS_URI", milvus_uri)
    faiss = ImageStore.create(tmp_path / "faiss", tiny_encoder, vector_backend="faiss")
    milvus = ImageStore.create(tmp_path / "milvus", tiny_encoder, vector_backend="milvus")
    for store in (faiss, milvus):
        store.ingest(PHOTOS[:30])
    assert milvus_uri in milvus.index_backend.where()
    ids, vectors = faiss.vectors()
    queries = np.concatenate([vectors[:5], tiny_encoder.encode_texts(["a dog", "a red hammer"])])

    def top10(store: ImageStore) -> list[list[int]]:
        return [[h.id for h in hits] for hits in store.search_vectors(queries, 10)]

    assert top10(milvus) == top10(faiss)
    for store in (faiss, milvus):
        store.delete([int(ids[0])])
    assert top10(milvus) == top10(faiss) and int(ids[0]) not in sum(top10(milvus), [])
    assert milvus.check().ok
    assert [[h.id for h in hits] for hits in ImageStore.open(milvus.path).search_vectors(queries, 10)] == top10(faiss)
