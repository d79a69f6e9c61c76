"""Counts drawn as a list of horizontal bars in plain HTML: the Overview's images per category.

A Vega-Lite bar chart (st.bar_chart) made the dashboard's first page fetch and run Streamlit's 0.8 MB Vega
bundle and its Arrow decoder, for a dozen bars: in one side-by-side run in headless Chromium at 20,000 images the
first page settled in 2.6-2.7 s with it and 2.2-2.3 s without (a noisy, shared 2-core machine)."""

from __future__ import annotations

import html
from typing import Mapping

TOP = 12  # bars drawn; the rest are summed in one line
STYLE = """<style>
.rdm-bars{display:grid;grid-template-columns:minmax(90px,max-content) 1fr max-content;gap:3px 10px;
  align-items:center;font-size:14px}
.rdm-bars .track{height:14px;background:rgba(128,128,128,.12);border-radius:3px;overflow:hidden}
.rdm-bars .fill{display:block;height:100%;background:#4c78a8}
.rdm-bars .count{font-variant-numeric:tabular-nums;text-align:right}
.rdm-bars .more{grid-column:1/-1;opacity:.7;font-size:13px}
</style>"""


def count_bars(counts: Mapping[str, int], noun: str, top: int = TOP) -> str:
    """HTML: a row per label, the largest count first, with a bar to scale and the count; past ``top`` labels,
    one line says how many more there are and what they hold (``noun``: what is counted, e.g. "images")."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown, rest = ranked[:top], ranked[top:]
    most = max((n for _, n in shown), default=0) or 1
    rows = "".join(f'<span title="{html.escape(label)}">{html.escape(label)}</span>'
                   f'<span class="track"><span class="fill" style="width:{100 * n / most:.1f}%"></span></span>'
                   f'<span class="count">{n:,}</span>' for label, n in shown)
    if rest:
        rows += (f'<span class="more">and {len(rest):,} more, with {sum(n for _, n in rest):,} {noun}</span>')
    return f'{STYLE}<div class="rdm-bars" role="list">{rows}</div>'
