"""Dashboard interactions timed as a person sees them: from the click to the page settled in Chromium.

    .venv/bin/python bench/browser.py [--sizes 244,20000] [--repeats 3] [--pause 3] [--cap 120] [--json]

Each size gets its own DB and its own dashboard server (`python -m dashboard.serve`, as `make run` serves it): 244 is the
demo photos (data/demo-photos), any other size synthetic photos (tests/synthetic_db.py, as bench/dashboard.py builds them); both
with the tiny encoder, so the sizes differ in nothing else. The map's layout is fitted before the server starts
(once per DB version, a background job in the dashboard: not an interaction). Debian's Chromium (Playwright,
headless) then clicks: a click is timed until Streamlit's script has run and gone idle, no spinner is left and
every image on the page has loaded. "first" interactions are a fresh server's first (the encoder loads on the
first search); the others are the median of --repeats, each in a new browser tab. "Settled" includes the
browser's own work after the script: the page's main thread has been free of long tasks (React, Plotly) for
300 ms, and the time is taken to the end of the last one. Between two clicks the tab waits --pause seconds (default
3: a person looks at the page before the next click; the dashboard loads the chart library in such a pause,
dashboard/chart_preload.py); --pause 0 clicks as soon as the page has settled. An interaction that has not
settled after --cap seconds is reported as the cap (the table marks it ">"). Goal (issue 25): every interaction at 20k under
2 s. This machine is shared and noisy: read the figures side by side, not alone.

--json prints {"244": {INTERACTION: seconds, ...}, "20000": {...}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

torch.set_num_threads(1)

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, dashboard_server  # noqa: E402  (tests/dashboard_server.py)
from synthetic_db import build_synthetic_db  # noqa: E402  (tests/synthetic_db.py)

from rdm.db import ImageStore  # noqa: E402
from rdm.encoders import load_encoder  # noqa: E402

DEMO_SIZE = 244
# Counts Streamlit's finished script runs and notes when the page's main thread was last busy (a long task:
# React and Plotly drawing after the script has finished), in the page's own clock. Each batch of mutation
# records is read in order (a run that starts and ends between two callbacks still counts).
WATCH = """() => {
  window.__rdm = {runs: 0, busyUntil: 0, okSince: null};
  new MutationObserver((records) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app) return;
    const states = records.filter(r => r.target === app).map(r => r.oldValue);
    states.push(app.getAttribute('data-test-script-state'));
    for (let i = 1; i < states.length; i++)
      if (states[i - 1] === 'running' && states[i] !== 'running') window.__rdm.runs += 1;
  }).observe(document, {attributes: true, subtree: true, attributeFilter: ['data-test-script-state'],
                        attributeOldValue: true});
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__rdm.busyUntil = Math.max(window.__rdm.busyUntil, e.startTime + e.duration);
  }).observe({type: 'longtask', buffered: true});
}"""
# Settled: a new run has finished, no spinner is left, every image has loaded, and the main thread has had no
# long task for QUIET_MS since; the moment it settled is the later of the first poll that saw all that and the
# end of the last long task (so the quiet wait itself is not counted).
QUIET_MS = 300
SETTLED = """([runs, quiet]) => {
  const r = window.__rdm, app = document.querySelector('[data-testid="stApp"]');
  const ok = r.runs > runs && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSpinner"]') && [...document.images].every(i => i.complete);
  if (!ok) { r.okSince = null; return false; }
  const now = performance.now();
  if (r.okSince === null) r.okSince = now;
  const settled = Math.max(r.okSince, r.busyUntil);
  return now - settled >= quiet ? settled : false;
}"""


def demo_db(folder: Path) -> Path:
    from rdm.ingest import manifest_metadata
    from rdm.settings import DEMO_PHOTOS

    store = ImageStore.create(folder, load_encoder("tiny"), encoder_reason="bench")
    store.ingest(sorted((DEMO_PHOTOS / "images").iterdir()), metadata=manifest_metadata(DEMO_PHOTOS))
    return folder


class Clock:
    """One tab; ``time(name, action)`` clicks and waits for the page to settle."""

    def __init__(self, browser, url: str, cap_s: float, pause_s: float):
        self.context = browser.new_context(viewport={"width": 1500, "height": 1600})
        self.tab, self.cap_s, self.pause_s = self.context.new_page(), cap_s, pause_s
        self.tab.add_init_script(f"({WATCH})()")
        self.tab.set_default_timeout(cap_s * 1000)
        self.times: dict[str, float] = {}
        self.time("open the dashboard", lambda: self.tab.goto(url), navigation=True)

    def time(self, name: str, action, navigation: bool = False) -> None:
        """Click (``action``) and wait until the page has settled; the time is the page's own, click to settled
        (for a ``navigation``, from the new page's start: its clock starts then). A click comes ``pause_s`` after
        the last one settled."""
        if not navigation:
            self.tab.wait_for_timeout(self.pause_s * 1000)
        runs, started = [0, 0.0] if navigation else self.tab.evaluate("() => [window.__rdm.runs, performance.now()]")
        try:
            action()
            settled = self.tab.wait_for_function(SETTLED, arg=[runs, QUIET_MS], timeout=self.cap_s * 1000, polling=50)
            self.times[name] = (settled.json_value() - started) / 1000
        except Exception as exc:  # noqa: BLE001 - Playwright's timeout: not settled (or not clickable) within the cap
            print(f"{name}: did not settle within {self.cap_s:.0f} s ({type(exc).__name__})", file=sys.stderr)
            self.times[name] = self.cap_s

    def nav(self, title: str):
        return lambda: self.tab.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()

    def button(self, name: str):
        return lambda: self.tab.get_by_role("button", name=name).first.click()

    def close(self) -> None:
        self.context.close()


def session(browser, url: str, cap_s: float, pause_s: float, first: bool) -> dict[str, float]:
    clock = Clock(browser, url, cap_s, pause_s)
    tab = clock.tab
    clock.time("browse: open", clock.nav("Browse & curate"))
    clock.time("browse: tick a tile", lambda: tab.locator('[data-testid="stCheckbox"]').first.click())
    clock.time("browse: next page", clock.button("Next page"))
    tab.get_by_label("Find images of …").fill("a dog on a sofa")
    clock.time("browse: text search" + (" (first of the server)" if first else ""), clock.button("Search"))
    clock.time("browse: review copies" + (" (first)" if first else ""),
               lambda: tab.get_by_role("tab", name="Review").click())
    clock.time("browse: review look-alikes", lambda: tab.get_by_role("tab", name="Similar (embedding)").click())
    clock.time("map: open", clock.nav("Embedding map"))
    clock.time("map: colour by tag", lambda: tab.locator('[data-testid="stButtonGroup"]').get_by_text(
        "Tag", exact=True).first.click())

    def pick_tag() -> None:
        tab.locator('[data-testid="stSelectbox"]').filter(has_text="Highlight one tag").locator("input").click()
        tab.get_by_role("option").first.click()
    clock.time("map: highlight a tag", pick_tag)
    clock.time("evaluation: open", clock.nav("Retrieval evaluation"))
    clock.time("evaluation: run", clock.button("Run evaluation"))
    clock.time("map: open again (its script loaded)", clock.nav("Embedding map"))  # a tab's second visit
    clock.close()
    return clock.times


def measure(n: int, repeats: int, cap_s: float, pause_s: float, browser, tmp: Path,
            keep: Path | None) -> dict[str, float]:
    from rdm.curation import map_layout

    db = (keep or tmp) / f"db-{n}"
    built = db.with_name(db.name + ".built")
    if not built.exists():  # with --keep: built once and reused (a session edits no image)
        import shutil

        shutil.rmtree(db, ignore_errors=True)
        demo_db(db) if n == DEMO_SIZE else build_synthetic_db(db, n)
        built.touch()
    map_layout(ImageStore.open(db))  # the layout a team's DB has: fitted once per version, saved beside it
    with dashboard_server(db, tmp) as url:
        runs = [session(browser, url, cap_s, pause_s, first=(i == 0)) for i in range(repeats)]
    out = {}
    for name in runs[0]:
        values = [r[name] for r in runs if name in r]
        out[name] = round(statistics.median(values), 3) if "first" not in name else round(values[0], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=f"{DEMO_SIZE},20000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause", type=float, default=3.0,
                        help="seconds a person looks at a page before the next click")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds before an interaction counts as unsettled")
    parser.add_argument("--keep", type=Path, help="a folder to keep the DBs in and reuse them from (20k: minutes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("Debian's Chromium is needed at /usr/bin/chromium: `make browser` installs it")
    from playwright.sync_api import sync_playwright

    sizes = [int(s) for s in args.sizes.split(",")]
    table: dict[int, dict[str, float]] = {}
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            table[n] = measure(n, args.repeats, args.cap, args.pause, browser, folder, args.keep)
            print(f"measured {n:,} images", file=sys.stderr)
        browser.close()
    if args.json:
        print(json.dumps({str(n): row for n, row in table.items()}, indent=2))
        return
    names = list(dict.fromkeys(name for row in table.values() for name in row))
    print(f"{'interaction (click -> settled; ' + format(args.pause, 'g') + ' s pause before)':<46}"
          + "".join(f"{n:>11,}" for n in sizes))
    for name in names:
        cells = "".join(f"{('>' if v >= args.cap else '') + format(v, '.2f'):>10}s"
                        for v in (table[n].get(name, float('nan')) for n in sizes))
        slow = table[sizes[-1]].get(name, 0) >= 2
        print(f"{name:<46}{cells}{'  over 2 s' if slow else ''}")


if __name__ == "__main__":
    main()
