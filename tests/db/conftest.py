"""Fixtures of the DB tests: the real Milvus server, started once for the session when a test asks."""

import pytest

import milvus_server


@pytest.fixture(scope="session")
def milvus_standalone(tmp_path_factory):
    """A standalone Milvus server (not Lite) on free local ports; skipped, saying why, where it cannot run."""
    try:
        server = milvus_server.start(tmp_path_factory.mktemp("milvus-server"))
    except milvus_server.Unavailable as exc:
        pytest.skip(f"no standalone Milvus server here: {exc}")
    yield server
    server.stop()
