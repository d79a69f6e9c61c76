"""What a dashboard server does at its first page, before anyone asks: the DB's encoder loads in the
background, so the first search does not wait for it; and what a tab loads ahead (the chart library)."""

from __future__ import annotations

import threading

from streamlit.testing.v1 import AppTest
from test_dashboard import APP, TIMEOUT, no_traceback


def test_the_encoder_loads_in_the_background_from_the_first_page(dashboard_env, monkeypatch):
    import dashboard.resources as resources

    loaded, load = threading.Event(), resources.load_encoder
    monkeypatch.setattr(resources, "load_encoder", lambda name: (loaded.set(), load(name))[1])
    resources._warm_up.clear()  # a new server
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # the Overview: no search on it
    no_traceback(at)
    assert loaded.wait(60)


def test_review_opens_on_groups_found_in_the_background(dashboard_env, monkeypatch):
    """The copy and look-alike groups Review opens with are found after the encoder loads, before anyone asks:
    the first open of Review finds them ready (at 20,000 images they take seconds to find)."""
    from pathlib import Path

    import dashboard.resources as resources

    resources._warm_up.clear()  # a new server
    resources.near_duplicates.clear()
    resources.copies.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    no_traceback(at)
    resources._warm_up(str(Path(dashboard_env).resolve())).join(120)

    def not_again(*args, **kwargs):
        raise AssertionError("Review computed its groups again")
    monkeypatch.setattr(resources, "look_alikes", not_again)
    monkeypatch.setattr(resources, "find_copies", not_again)
    at.switch_page("../pages/browse.py")
    at.session_state["browse:section"] = "Review"
    at.run()
    no_traceback(at)
    assert any("group(s) of copies" in m.value for m in at.markdown)
    at.session_state["browse:review"] = "Similar (embedding)"
    at.run()
    no_traceback(at)
    assert any("group(s) of" in m.value and "images." in m.value for m in at.markdown)


def test_the_chart_library_the_tabs_load_ahead_is_streamlits_own_chunk():
    """A Streamlit upgrade that renames or splits its Plotly chunk would silently stop the loading ahead."""
    from dashboard.chart_preload import STATIC_JS, plotly_chunk

    chunk = plotly_chunk()
    assert chunk is not None and (STATIC_JS / chunk).is_file()
    assert "window.Plotly" in (STATIC_JS / chunk).read_text(encoding="utf-8")  # it is the Plotly bundle
