"""Ingest throughput against the encoder's forward pass, and search latency at 1,300 images.

    .venv/bin/python bench/ingest.py [--encoder conse] [--images N]

1. Forward pass alone: the encoder on already-decoded images, in the store's batch size.
2. Ingest: the same files through `ImageStore.ingest` (read, hash, decode, embed, thumbnails,
   fsynced files, SQLite commit, FAISS write) into a fresh DB. Overhead = ingest / forward - 1
   (goal: under 15%).
3. Search: a DB of 1,300 images (the demo photos plus flipped/cropped variants so every file is
   distinct) with 512-d vectors (CLIP ViT-B/32's width); latency per query at k=10 after the
   text is encoded (goal: under 5 ms).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdm.encoders import l2_normalise, load_encoder  # noqa: E402
from rdm.settings import DEMO_PHOTOS  # noqa: E402
from rdm.db import ImageStore  # noqa: E402
from rdm.db.intake import ENCODE_BATCH  # noqa: E402

BATCH = ENCODE_BATCH  # the store's own batch size


class HashEncoder:
    """512-d unit vectors derived from pixels: CLIP's index width without CLIP's compute."""

    name, dim = "bench-512", 512

    def encode_images(self, images):
        rows = [np.resize(np.asarray(im.convert("L").resize((32, 16)), np.float32).ravel(), 512)
                for im in images]
        return l2_normalise(np.stack(rows) + 1e-3)

    def encode_texts(self, texts):
        rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
        return l2_normalise(rng.standard_normal((len(texts), 512)))


def bench_ingest(encoder_name: str, files: list[Path]) -> None:
    encoder = load_encoder(encoder_name)
    images = [Image.open(f).convert("RGB") for f in files]
    encoder.encode_images(images[:4])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(images), BATCH):
        encoder.encode_images(images[i:i + BATCH])
    forward = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        store = ImageStore.create(Path(tmp) / "db", encoder)
        t0 = time.perf_counter()
        report = store.ingest(files, batch_size=BATCH)
        ingest = time.perf_counter() - t0
    assert len(report.added) == len(files), report.summary()
    n = len(files)
    print(f"ingest vs forward pass ({encoder_name}, {n} images, batch {BATCH}, "
          f"torch threads {torch.get_num_threads()}):")
    print(f"  forward pass alone   {n / forward:7.1f} images/s  ({forward:.2f} s)")
    print(f"  full ingest          {n / ingest:7.1f} images/s  ({ingest:.2f} s)")
    print(f"  ratio ingest/forward {ingest / forward:.3f}  (overhead {100 * (ingest / forward - 1):+.1f}%, "
          f"goal < +15%)")


def variants(files: list[Path], total: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    ops = [lambda im: im, ImageOps.mirror, ImageOps.flip, lambda im: ImageOps.crop(im, 8),
           lambda im: ImageOps.mirror(ImageOps.crop(im, 12)), lambda im: ImageOps.grayscale(im)]
    for k, op in enumerate(ops):
        for f in files:
            if len(out) >= total:
                return out
            buf = io.BytesIO()
            op(Image.open(f).convert("RGB")).save(buf, format="JPEG", quality=80)
            out.append((f"v{k}-{f.name}", buf.getvalue()))
    return out


def bench_search(files: list[Path], total: int = 1300, queries: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = ImageStore.create(Path(tmp) / "db", HashEncoder())
        report = store.ingest_bytes(variants(files, total), batch_size=256)
        n = store.stats().live
        q = HashEncoder().encode_texts([f"query {i}" for i in range(queries)])
        store.search_vectors(q[:1], k=10)  # load the index once, as a running dashboard has
        times = []
        for row in q:
            t0 = time.perf_counter()
            hits = store.search_vectors(row[None], k=10)[0]
            times.append(time.perf_counter() - t0)
        assert len(hits) == 10
    ms = sorted(1000 * t for t in times)
    print(f"search latency ({n} images, 512-d, k=10, {queries} queries; {report.summary()}):")
    print(f"  median {statistics.median(ms):.2f} ms, p95 {ms[int(0.95 * len(ms))]:.2f} ms "
          f"(goal < 5 ms; ratio median/goal {statistics.median(ms) / 5:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="conse")
    parser.add_argument("--images", type=int, default=0, help="limit the ingest set (0 = all demo photos)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))
    bench_ingest(args.encoder, files[: args.images or None])
    bench_search(files)


if __name__ == "__main__":
    main()
