"""Dashboard interaction times at 1k, 5k and 20k images, as ratios to the 1k figure.

    .venv/bin/python bench/dashboard.py [--sizes 1000,5000,20000] [--map] [--json]

Each DB is built quickly (tests/synthetic_db.py): synthetic 96x72 photos (distinct noise patterns, four
categories, a few tags) through the store's own ingest with the tiny encoder, file fsyncs switched off in
this process only (durability is not what is measured here). Each interaction runs the real pages headless with
Streamlit's AppTest, in this process, one after the other, and is timed from the click to the end of
the rerun: Browse's first load, ticking a tile, a text search, the next page, opening Review (copies) and
History, the Overview, and with --map the Embedding map: UMAP's first fit of the DB (once per DB version,
timed apart: it is not an interaction), the map opened by a new server process (caches cleared: the layout
saved in the DB folder is read), colouring by tag, highlighting a tag, and the map after 10 uploads (placed
by the saved fit). Goal (issue 11): every interaction at 20k within 2x of its 1k time, or under 2 s. Times
are medians of --repeats runs; this machine is shared, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

torch.set_num_threads(1)

from rdm.db import ImageStore  # noqa: E402
from synthetic_db import TAGS, build_synthetic_db as build, synthetic  # noqa: E402

APP = ROOT / "dashboard" / "app.py"


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def interactions(db: Path, repeats: int, with_map: bool) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    os.environ.update(RDM_DB=str(db), RDM_BACKEND="tiny", RDM_RUNS=str(db.parent / "runs"))
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)

    for _ in range(repeats):
        at = AppTest.from_file(str(APP), default_timeout=600).run()
        record("overview", timed(lambda: at.switch_page("../pages/overview.py").run()))
        record("browse: first load", timed(lambda: at.switch_page("../pages/browse.py").run()))
        first = next(c for c in at.checkbox if str(c.key).startswith("browse:pick:"))
        record("browse: tick a tile", timed(lambda: first.check().run()))
        at.text_input(key="browse:search-text").input("synthetic picture")
        record("browse: text search", timed(lambda: next(b for b in at.button if b.label == "Search").click().run()))
        record("browse: next page", timed(lambda: next(b for b in at.button if b.label == "Next page").click().run()))
        at.session_state["browse:section"] = "Review"
        record("browse: open Review (copies)", timed(lambda: at.run()))
        at.session_state["browse:section"] = "History"
        record("browse: open History", timed(lambda: at.run()))
        if with_map:
            st.cache_data.clear()  # what a new server process has: only the layout saved in the DB folder
            record("map: open (new process)", timed(lambda: at.switch_page("../pages/embedding_map.py").run()))
            record("map: colour by tag", timed(lambda: at.segmented_control(key="map:colour").set_value("Tag").run()))
            highlight = at.selectbox(key="map:highlight:Tag")
            record("map: highlight a tag", timed(lambda: highlight.set_value(TAGS[0]).run()))
        assert not at.exception, [e.value for e in at.exception]
    if with_map:
        store = ImageStore.open(db)
        store.ingest_bytes(synthetic(10, seed=99), category="objects")
        record("map: after 10 uploads (placed)", timed(lambda: AppTest.from_file(str(APP), default_timeout=600).run()
                                                        .switch_page("../pages/embedding_map.py").run()))
    return {name: statistics.median(values) for name, values in results.items()}


def first_fit(db: Path) -> float:
    """UMAP's first fit of the DB's layout (saved in the DB folder for every later process)."""
    from rdm.curation import map_layout

    return timed(lambda: map_layout(ImageStore.open(db)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--map", action="store_true", help="also time the embedding map (UMAP: minutes at 20k)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            started = time.perf_counter()
            db = build(Path(tmp) / f"db-{n}", n)
            built = time.perf_counter() - started
            fit = {"map: first fit (once a version)": first_fit(db)} if args.map else {}
            table[n] = {**interactions(db, args.repeats, args.map), **fit}
            print(f"built {n} images in {built:.0f} s", file=sys.stderr)
    base = table[sizes[0]]
    if args.json:
        print(json.dumps({"seconds": table, "ratio_to_first": {
            n: {k: round(v / base[k], 2) for k, v in row.items()} for n, row in table.items()}}, indent=2))
        return
    names = list(base)
    print(f"{'interaction':<32}" + "".join(f"{n:>12,}" for n in sizes) + f"{'ratio':>10}")
    for name in names:
        cells = "".join(f"{table[n][name]:>11.2f}s" for n in sizes)
        ratio = table[sizes[-1]][name] / base[name]
        verdict = "ok" if ratio <= 2 or table[sizes[-1]][name] < 2 else "SLOW"
        print(f"{name:<32}{cells}{ratio:>9.1f}x {verdict}")


if __name__ == "__main__":
    main()
