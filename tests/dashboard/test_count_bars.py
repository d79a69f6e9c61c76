"""The Overview's images per category, drawn as HTML bars."""

from __future__ import annotations

import re

from dashboard.count_bars import count_bars


def test_the_largest_category_comes_first_with_a_full_bar_and_the_rest_are_summed():
    counts = {f"cat{i:02d}": i for i in range(1, 16)}  # 15 categories, cat15 the largest
    counts["<b>odd</b>"] = 1
    page = count_bars(counts, "images", top=12)
    labels = re.findall(r'<span title="[^"]*">([^<]*)</span>', page)
    assert labels[:3] == ["cat15", "cat14", "cat13"] and len(labels) == 12
    widths = [float(w) for w in re.findall(r"width:([\d.]+)%", page)]
    assert widths[0] == 100.0 and widths == sorted(widths, reverse=True)
    # the four smallest (cat01-cat03 and the odd one, 1+2+3+1 images) are one line
    assert "and 4 more, with 7 images" in page
    assert "<b>odd</b>" not in page  # a category name is text, never markup


def test_every_category_is_drawn_when_there_are_few():
    page = count_bars({"(none)": 3, "food": 5}, "images")
    assert re.findall(r'<span title="[^"]*">([^<]*)</span>', page) == ["food", "(none)"] and 'class="more"' not in page
