"""Writers for the race tests, each run as its own process that stops at a gate until the test opens it:
``python racers.py reindex DB ENCODER GATES`` and ``python racers.py ingest DB FOLDER GATES``.

A gate makes a race happen at the one moment that matters (a reindex between reading the catalog and
switching, an ingest between embedding and committing) instead of hoping a sleep lands there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

GATE_WAIT_S = 300  # a gate never opened (the test failed) ends the process instead of leaving it behind


class Reversed:
    """A second encoder that every process can load by name: the tiny one's vectors reversed (unit length)."""

    name, dim = "tiny-reversed", 32

    def encode_images(self, images):
        from rdm.encoders import load_encoder
        return load_encoder("tiny").encode_images(images)[:, ::-1].copy()

    def encode_texts(self, texts):
        from rdm.encoders import load_encoder
        return load_encoder("tiny").encode_texts(texts)[:, ::-1].copy()


def register_reversed() -> None:
    from rdm.encoders import resolve

    resolve._CACHE[(Reversed.name, "auto")] = Reversed()


def gate(folder: Path, name: str) -> None:
    """Say ``name`` is reached, then wait until the test opens it."""
    (folder / f"{name}.reached").touch()
    deadline = time.monotonic() + GATE_WAIT_S
    while not (folder / f"{name}.go").exists():
        if time.monotonic() > deadline:
            sys.exit(f"gate {name} was never opened")
        time.sleep(0.05)


class Gated:
    """``encoder``, stopping at gate ``name`` on its first call: ``after`` the first batch is embedded, or before."""

    def __init__(self, encoder, gates: Path, name: str, after: bool):
        self.name, self.dim = encoder.name, encoder.dim
        self._encoder, self._gates, self._gate, self._after = encoder, gates, name, after

    def encode_images(self, images):
        if self._gate and not self._after:
            self._open_gate()
        vectors = self._encoder.encode_images(images)
        if self._gate:
            self._open_gate()
        return vectors

    def _open_gate(self):
        gate(self._gates, self._gate)
        self._gate = ""

    def encode_texts(self, texts):
        return self._encoder.encode_texts(texts)


def main(action: str, db: str, what: str, gates: str) -> None:
    import torch

    torch.set_num_threads(1)
    register_reversed()
    from rdm.db import ImageStore
    from rdm.encoders import load_encoder

    store = ImageStore.open(db)
    if action == "reindex":  # stops after reading the catalog, before embedding
        print(store.reindex(Gated(load_encoder(what), Path(gates), "reindex", after=False)))
    else:  # stops with its one batch embedded, before committing it
        store._encoder = Gated(store.encoder, Path(gates), "ingest", after=True)
        report = store.ingest([Path(what)], batch_size=64)
        print(json.dumps({i.name: [i.status, i.image_id] for i in report.items}))


if __name__ == "__main__":
    main(*sys.argv[1:])
