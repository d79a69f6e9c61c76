"""Driving dashboard pages headless with AppTest, for every dashboard test: open a page, read what it shows,
find a widget by its label, and run the jobs a page queued (what the background worker would do)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
TIMEOUT = 180  # the first map compiles UMAP (~20 s) and the first generation builds the tiny model


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(f"../pages/{name}.py").run()
    no_traceback(at)
    return at


def no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def by_label(elements, label: str):
    found = [e for e in elements if getattr(e, "label", None) == label]
    assert found, f"no widget labelled {label!r}: {[getattr(e, 'label', None) for e in elements]}"
    return found[0]


def texts(at: AppTest) -> str:
    parts = [e.value for kind in (at.markdown, at.caption, at.info, at.success, at.warning, at.error)
             for e in kind]
    return "\n".join(str(p) for p in parts)


def jpeg(colour: tuple[int, int, int], size=(80, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def drain(at: AppTest) -> AppTest:
    """What the background worker does: run every queued job (here, in this process); then the page reruns."""
    from rdm.jobs import JobBook, execute

    folder = Path(os.environ["RDM_JOBS"])
    for job in reversed(JobBook(folder).jobs()):
        if job.status == "queued":
            execute(folder, job.id)
    return at.run()
