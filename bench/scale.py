"""The DB at scale: flat against auto (IVF-Flat past 50k vectors), side by side in one run, and with
``--milvus`` the same DB moved to the Milvus backend (Milvus Lite, or the server ``--milvus-uri`` names; flat:
exact, so its top-10 should be FAISS flat's).

    .venv/bin/python bench/scale.py [--n 1000000] [--dim 512] [--queries 100] [--clusters 256] [--milvus]
                                    [--milvus-uri http://127.0.0.1:19530] [--json]

A standalone server comes with the pip package ``milvus``: ``milvus-server --data DIR`` listens on 19530.

Synthetic clustered, L2-normalised vectors go through the store's own catalog (one SQLite transaction
per 20k rows, file fsyncs off in this process only: durability is not what is measured) into one DB;
then each index kind is built in a child process and measured in a fresh one (so open time and RSS
are its own): build, open + first search (``open_s``), the time until a mapped IVF file is copied into memory
in the background (``settled_s``; searches are timed after it), RSS, index file size, search p50/p95
for one query and for five sub-queries together with 1% of the images deleted and a 10% category
filter (and one query without the filter), recall@10 against exact (flat) search on the same queries
and filter, and an ingest of 32 images (``ingest32_s``) and a delete of one (``delete_s``) into the
full DB; ``same_top10`` is the share of queries whose top-10 is exact (flat) search's. This machine is
shared: read the ratios.

The vectors form ``--clusters`` clusters (256: about 4,000 images each at 1M), and the category is
independent of the cluster. Synthetic clusters flatter IVF's recall; how much depends on their size: where a
cluster holds fewer than ten images of the filtered category (``--clusters 12800`` at 1M: 78 images, 8 of
them in the category), the rest of a filtered top-10 is noise-far from the query, anywhere in the index,
and IVF must probe a large share of its lists. Real embeddings have neighbours at every distance, not
gaps; measure a real DB with `rdm index` (it records recall@10, unfiltered and under a 10% filter, on a
sample when it builds).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CATEGORIES = 10
CLUSTERS = 256
BATCH = 20_000


class Declared:
    """The DB's encoder as declared (the bench never encodes: it brings its own vectors)."""

    def __init__(self, dim: int):
        self.name, self.dim = "tiny", dim


def clustered(n: int, centres: np.ndarray, rng) -> np.ndarray:
    """``n`` vectors around the given centres (shared by every batch of one DB)."""
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.6, (n, centres.shape[1])).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(folder: Path, n: int, dim: int, clusters: int = CLUSTERS) -> float:
    import rdm.common.files
    from rdm.db import ImageStore
    from rdm.db.catalog import now

    started = time.perf_counter()
    real = os.fsync, rdm.common.files.fsync_dir
    os.fsync, rdm.common.files.fsync_dir = (lambda fd: None), (lambda path: None)
    try:
        store = ImageStore.create(folder, Declared(dim))
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(clusters, dim)).astype(np.float32)
        for start in range(0, n, BATCH):
            vectors = clustered(min(BATCH, n - start), centres, rng)
            rows = [({"sha256": f"{start + i:064x}", "filename": f"img-{start + i:07d}.jpg", "ext": ".jpg",
                      "category": f"c{(start + i) % CATEGORIES}", "tags": "[]", "caption": f"synthetic {start + i}",
                      "source": "", "licence": "", "author": "", "width": 64, "height": 64, "added_at": now(),
                      "phash": ""}, vec) for i, vec in enumerate(vectors)]
            store.catalog.insert(rows)
    finally:
        os.fsync, rdm.common.files.fsync_dir = real
    return time.perf_counter() - started


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def build_child(db: Path, kind: str) -> dict:
    """One kind's index built and saved, in its own process (what the build leaves in memory is not the
    RSS of a process that opens the DB)."""
    from rdm.db import ImageStore

    store = ImageStore.open(db)
    t0 = time.perf_counter()
    info = store.rebuild_index("flat", backend="milvus") if kind == "milvus" else store.rebuild_index(kind)
    return {"kind": info.kind, "index": info.describe(), "build_s": time.perf_counter() - t0,
            "recall_at_10_built": info.recall_at_10}


def child(db: Path, kind: str, queries: int, exact_file: Path) -> dict:
    """One kind, in its own process, once its index is built: open, search, recall, ingest 32, delete 1."""
    import torch

    torch.set_num_threads(1)
    from rdm.db import ImageStore
    from rdm.common.sources import Candidate

    store = ImageStore.open(db)  # no search: the index is not loaded
    # the queries: live images' vectors with a little noise, drawn before the clock starts
    rng = np.random.default_rng(1)
    _, sample = store.catalog.vectors(rng.choice(store.catalog.live_ids(), queries * 5, replace=False).tolist())
    q = sample + rng.normal(0, 0.05, sample.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    del store
    # 1. open and first search, as a new process does
    t0 = time.perf_counter()
    store = ImageStore.open(db)
    store.search_vectors(q[:1], 10)
    open_s = time.perf_counter() - t0
    store.settle_index()  # a mapped IVF file is copied into memory in the background: searched from there
    settle_s = time.perf_counter() - t0
    rss = rss_mb()
    # 2. searches with the filters a curator uses (1% deleted was done by the parent; a 10% category)
    single, five, found, unfiltered, found_all = [], [], [], [], []
    for n in range(queries):
        t0 = time.perf_counter()
        hits = store.search_vectors(q[n:n + 1], 10, category="c3")[0]
        single.append(time.perf_counter() - t0)
        found.append([h.id for h in hits])
        t0 = time.perf_counter()
        store.search_vectors(q[queries + 4 * n: queries + 4 * n + 5], 10, category="c3")
        five.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # and without the category filter (the 1% deleted still apply)
        found_all.append([h.id for h in store.search_vectors(q[n:n + 1], 10)[0]])
        unfiltered.append(time.perf_counter() - t0)
    if kind == "flat":
        exact_file.write_text(json.dumps([found, found_all]))
    truth, truth_all = json.loads(exact_file.read_text())
    recall = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(found, truth)]))
    recall_all = float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(found_all, truth_all)]))
    same = float(np.mean([set(a) == set(b) for a, b in zip(found, truth)]))
    # 3. a write of 32 images and a delete of one into the full DB
    vectors = {f"new-{kind}-{i}.png": v for i, v in enumerate(q[:32])}
    t0 = time.perf_counter()
    report = store.ingest_candidates([Candidate(name, lambda s=i: png(s)) for i, name in enumerate(vectors)],
                                     vectors=vectors)
    ingest32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.delete([report.added[0].image_id])
    delete = time.perf_counter() - t0
    store.purge([i.image_id for i in report.added])  # leave the DB as the next kind finds it
    store.save_index()
    pct = lambda xs, p: float(np.percentile(xs, p)) * 1000  # noqa: E731
    return {"open_s": open_s, "settled_s": settle_s, "rss_mb": rss,
            "index_mb": store.index_backend.disk_bytes() / 2**20,
            "search1_p50_ms": pct(single, 50), "search1_p95_ms": pct(single, 95),
            "search5_p50_ms": pct(five, 50), "search5_p95_ms": pct(five, 95),
            "search1_unfiltered_p50_ms": pct(unfiltered, 50), "recall_at_10_unfiltered": recall_all,
            "recall_at_10": recall, "same_top10": same, "ingest32_s": ingest32,
            "delete_s": delete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=CLUSTERS,
                        help="clusters the synthetic vectors form (more, smaller ones: a filter leaves fewer near "
                             "neighbours, and an approximate index must search wider)")
    parser.add_argument("--milvus", action="store_true", help="also measure the Milvus (Lite) backend")
    parser.add_argument("--milvus-uri", default="", help="measure the Milvus backend on this server instead of "
                        "Milvus Lite (implies --milvus)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("DB", "KIND", "EXACT"), help=argparse.SUPPRESS)
    parser.add_argument("--build-child", nargs=2, metavar=("DB", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.milvus_uri:  # the children read it from the environment, as the store does
        os.environ["RDM_MILVUS_URI"] = args.milvus_uri
        args.milvus = True
    if args.build_child:
        print(json.dumps(build_child(Path(args.build_child[0]), args.build_child[1])))
        return
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], args.queries, Path(args.child[2]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        built = build(db, args.n, args.dim, args.clusters)
        from rdm.db.catalog import Catalog

        # 1% deleted in the catalog only: every child rebuilds the index first (through the store, an IVF
        # index would be built here just for this delete, minutes at 1M)
        catalog = Catalog(db / "meta.sqlite")
        live = catalog.live_ids()
        catalog.set_deleted(np.random.default_rng(2).choice(live, len(live) // 100, replace=False).tolist(), True)
        del catalog
        with closing(sqlite3.connect(db / "meta.sqlite")) as con:  # the build's write-ahead log into the DB now,
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")            # not into the first child's first write
        results = {}
        kinds = ("flat", "auto", "milvus") if args.milvus or args.milvus_uri else ("flat", "auto")
        for kind in kinds:
            results[kind] = {}
            for flags in (["--build-child", str(db), kind],
                          ["--child", str(db), kind, str(Path(tmp) / "exact.json"), "--queries", str(args.queries)]):
                out = subprocess.run([sys.executable, __file__, *flags], capture_output=True, text=True, check=True)
                results[kind].update(json.loads(out.stdout.strip().splitlines()[-1]))
        sqlite_mb = (db / "meta.sqlite").stat().st_size / 2**20
        vectors_mb = sum(f.stat().st_size for f in db.glob("vectors*.f32")) / 2**20
    figures = {"n": args.n, "dim": args.dim, "clusters": args.clusters, "db_build_s": built, "sqlite_mb": sqlite_mb,
               "vectors_mb": vectors_mb,
               **results,
               "speedup_search1_p50": results["flat"]["search1_p50_ms"] / results["auto"]["search1_p50_ms"],
               "speedup_search5_p50": results["flat"]["search5_p50_ms"] / results["auto"]["search5_p50_ms"],
               "speedup_search1_unfiltered_p50": (results["flat"]["search1_unfiltered_p50_ms"]
                                                  / results["auto"]["search1_unfiltered_p50_ms"])}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.n:,} x {args.dim}-d vectors in {args.clusters} clusters; DB built in {built:.0f} s "
          f"({sqlite_mb:,.0f} MB of SQLite, {vectors_mb:,.0f} MB of vectors); 1% deleted, 10% category filter")
    keys = [k for k in results["flat"] if k not in ("kind", "index")]
    print(f"{'':24}" + "".join(f"{k:>14}" for k in results))
    for key in keys:
        cells = "".join(f"{results[k][key]:>14.3f}" if isinstance(results[k][key], float) else
                        f"{str(results[k][key]):>14}" for k in results)
        print(f"{key:<24}{cells}")
    print(f"auto: {results['auto']['index']}")
    print(f"search p50 speed-up under the filter, one query {figures['speedup_search1_p50']:.1f}x, five sub-queries "
          f"{figures['speedup_search5_p50']:.1f}x; one query without it "
          f"{figures['speedup_search1_unfiltered_p50']:.1f}x")


if __name__ == "__main__":
    main()
