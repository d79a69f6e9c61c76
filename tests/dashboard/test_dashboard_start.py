"""What a dashboard server does at its first page, before anyone asks: the DB's encoder loads in the
background, so the first search does not wait for it."""

from __future__ import annotations

import threading

from streamlit.testing.v1 import AppTest
from test_dashboard import APP, TIMEOUT, no_traceback


def test_the_encoder_loads_in_the_background_from_the_first_page(dashboard_env, monkeypatch):
    import dashboard.resources as resources

    loaded, load = threading.Event(), resources.load_encoder
    monkeypatch.setattr(resources, "load_encoder", lambda name: (loaded.set(), load(name))[1])
    resources._warm_encoder.clear()  # a new server
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # the Overview: no search on it
    no_traceback(at)
    assert loaded.wait(60)
